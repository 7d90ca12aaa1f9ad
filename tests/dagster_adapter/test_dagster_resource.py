"""``OmniScimResource``: its client, the single-user update, a whole sync, and the key kept secret."""

from __future__ import annotations

import logging
from typing import Any

import dagster as dg
import pytest
from omni_testkit import TEST_API_KEY, TEST_API_KEY_2
from sync_testkit import UNMANAGED, attrs, seed, writes

from omni_provider.client import OmniAuthenticationError, UserNotFoundError
from omni_provider.dagster import OmniScimResource, build_omni_user_attributes_asset
from omni_provider.emulator import EmulatorServer
from omni_provider.errors import SyncFailedError

WRONG_KEY = "omni-wrong-key-9d8c7b6a5f"


def test_get_client_is_configured_from_the_resource(emu: EmulatorServer) -> None:
    resource = OmniScimResource(
        host=emu.api_url, api_key=TEST_API_KEY, additional_api_keys=[TEST_API_KEY_2, " "], timeout=5
    )
    with resource.get_client() as client:
        assert client.key_count == 2
        assert client.list_users() == []


def test_update_user(emu: EmulatorServer, omni: OmniScimResource) -> None:
    emails = seed(emu, 2)
    result = omni.update_user(
        user_name="USER002@example.com", attributes={"region": "apac", "cost_centre": 9}
    )
    assert result["action"] == "updated" and result["user_name"] == emails[1]
    assert result["changes"]["attributes"] == {
        "region": {"old": "us-east", "new": "apac"},
        "cost_centre": {"old": None, "new": 9},
    }
    assert attrs(emu, emails[1]) == {**UNMANAGED, "region": "apac", "cost_centre": 9}
    assert omni.update_user(user_id=result["user_id"], attributes={"region": "apac"})["action"] == "unchanged"
    with pytest.raises(UserNotFoundError):
        omni.update_user(user_name="ghost@example.com", attributes={"region": "apac"})


def test_sync_user_attributes(emu: EmulatorServer, omni: OmniScimResource) -> None:
    emails = seed(emu, 3)
    rows = ({"email": e, "region": "apac"} for e in emails[:2])  # any iterable of dicts
    summary = omni.sync_user_attributes(rows, attributes=["region"], key_column="email")
    assert summary["plan"]["update"] == 2 and summary["outcomes"]["applied"] == 2
    assert attrs(emu, emails[2]) == {**UNMANAGED, "region": "us-east"}

    with pytest.raises(SyncFailedError) as info:
        omni.sync_user_attributes(
            [{"email": "ghost@example.com", "region": "x"}], attributes=["region"], key_column="email"
        )
    assert info.value.summary["outcomes"]["rejected"] == 1 and writes(emu) == 2


def test_the_key_is_never_shown(
    emu: EmulatorServer, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Not in the resource's repr, the run's events and logs, the metadata, nor a failure's message."""
    emails = seed(emu, 1)
    good = OmniScimResource(host=emu.api_url, api_key=TEST_API_KEY, rate_limit_per_minute=1e6)
    bad = OmniScimResource(host=emu.api_url, api_key=WRONG_KEY, additional_api_keys=[WRONG_KEY + "2"])
    for resource in (good, bad):
        assert TEST_API_KEY not in repr(resource) + str(resource)
        assert WRONG_KEY not in repr(resource) + str(resource)

    @dg.asset(name="warehouse_users")
    def warehouse_users() -> Any:
        return [{"email": emails[0], "region": "apac"}]

    asset = build_omni_user_attributes_asset(
        "omni_user_attributes", "warehouse_users", ["region"], key_column="email"
    )
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for resource in (good, bad):
            instance = dg.DagsterInstance.ephemeral()
            result = dg.materialize(
                [warehouse_users, asset],
                resources={"omni": resource},
                instance=instance,
                raise_on_error=False,
            )
            texts += [dg.serialize_value(entry) for entry in instance.all_logs(result.run_id)]
            texts += [str(event) for event in result.all_events]
    assert result.get_step_failure_events(), "the wrong key must fail the run"
    assert "401" in "".join(texts)  # the failure is explained...
    out, err = capfd.readouterr()
    texts += [out, err, caplog.text]
    everything = "\n".join(texts)
    assert TEST_API_KEY not in everything and WRONG_KEY not in everything  # ...without the key

    with pytest.raises(OmniAuthenticationError) as info:
        bad.update_user(user_name=emails[0], attributes={"region": "x"})
    chain: list[BaseException] = []
    error: BaseException | None = info.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert all(WRONG_KEY not in f"{e!s} {e!r} {vars(e)}" for e in chain)


def test_the_key_from_an_environment_variable(emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the docs recommend: ``EnvVar``, read at run launch and shown only by its name."""
    monkeypatch.setenv("OMNI_TEST_DAGSTER_KEY", TEST_API_KEY)
    emails = seed(emu, 1)
    resource = OmniScimResource(host=emu.api_url, api_key=dg.EnvVar("OMNI_TEST_DAGSTER_KEY"))
    assert TEST_API_KEY not in repr(resource)
    with dg.build_resources({"omni": resource}) as resources:
        resolved = resources.omni
        assert TEST_API_KEY not in repr(resolved) + str(resolved)
        assert resolved.update_user(user_name=emails[0], attributes={"region": "apac"})["action"] == "updated"
