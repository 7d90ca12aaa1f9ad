"""UpdateOmniUserOperator against the emulator over loopback: inputs, validation, no-write guarantees."""

from __future__ import annotations

import json
import logging
import unicodedata
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from omni_testkit import TEST_API_KEY, omni_connection_json

from omni_provider import UpdateOmniUserOperator
from omni_provider._compat import AirflowException, AirflowFailException, AirflowSkipException
from omni_provider.emulator import EmulatorConfig, EmulatorServer
from omni_provider.emulator.attributes import custom_attribute, default_catalogue
from omni_provider.emulator.state import EmulatorState

UNTOUCHED = {"department": "Finance", "regions": ["EU", "US"], "cost_centre": 4100}


@pytest.fixture
def ada(omni_connection: EmulatorServer) -> Any:
    return omni_connection.state.add_user(
        "Ada.Lovelace@Example.com", "Ada Lovelace", {"region": "us-east", **UNTOUCHED}
    )


def run(**kwargs: Any) -> dict[str, Any]:
    op = UpdateOmniUserOperator(task_id="update", **kwargs)
    return op.execute({})


def writes(emu: EmulatorServer) -> int:
    methods = emu.stats.snapshot()["requests_by_method"]
    return sum(methods.get(m, 0) for m in ("POST", "PUT", "PATCH", "DELETE"))


@pytest.mark.parametrize("put_mode", ["merge", "replace"])
def test_changes_only_named_attribute_under_both_put_modes(
    omni_connection: EmulatorServer, ada: Any, put_mode: str
) -> None:
    omni_connection.config.put_mode = put_mode  # type: ignore[assignment]
    result = run(user_name="ada.lovelace@example.com", attributes={"region": "EMEA"})

    after = omni_connection.state.get_user(ada.id)
    assert after is not None
    assert dict(after.attributes) == {"region": "EMEA", **UNTOUCHED}
    assert after.display_name == "Ada Lovelace" and after.active is True
    assert result == {
        "user_id": ada.id,
        "user_name": "Ada.Lovelace@Example.com",
        "action": "updated",
        "changes": {"attributes": {"region": {"old": "us-east", "new": "EMEA"}}, "user": {}},
    }
    json.dumps(result)  # XCom-safe
    assert omni_connection.stats.snapshot()["requests_by_method"].get("PUT", 0) == 0


def test_by_user_id_with_display_name_active_and_unset(omni_connection: EmulatorServer, ada: Any) -> None:
    result = run(
        user_id=ada.id.upper(),
        attributes={"cost_centre": None},
        display_name="Countess Lovelace",
        active="false",
    )
    after = omni_connection.state.get_user(ada.id)
    assert after is not None
    assert "cost_centre" not in after.attributes
    assert after.attributes["department"] == "Finance"
    assert after.display_name == "Countess Lovelace" and after.active is False
    assert result["changes"] == {
        "attributes": {"cost_centre": {"old": 4100, "new": None}},
        "user": {
            "displayName": {"old": "Ada Lovelace", "new": "Countess Lovelace"},
            "active": {"old": True, "new": False},
        },
    }


def test_no_write_when_nothing_changes(omni_connection: EmulatorServer, ada: Any) -> None:
    result = run(
        user_name="ada.lovelace@example.com", attributes={"region": "us-east", "cost_centre": "4100"}
    )
    assert result["action"] == "unchanged" and result["changes"] == {"attributes": {}, "user": {}}
    assert writes(omni_connection) == 0


def test_dry_run_reports_without_writing(omni_connection: EmulatorServer, ada: Any) -> None:
    result = run(user_name="ada.lovelace@example.com", attributes={"region": "EMEA"}, dry_run="True")
    assert result["action"] == "dry_run"
    assert result["changes"] == {"attributes": {"region": {"old": "us-east", "new": "EMEA"}}, "user": {}}
    assert writes(omni_connection) == 0
    assert omni_connection.state.get_user(ada.id).attributes["region"] == "us-east"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "attributes",
    [
        '{"region": "EMEA", "cost_centre": 4200}',  # JSON from `| tojson`
        "{'region': 'EMEA', 'cost_centre': 4200}",  # Python repr from plain Jinja of a dict
        {"region": "EMEA", "cost_centre": Decimal("4200")},  # SQL driver numbers
        {"region": "EMEA", "cost_centre": "4200"},  # numeric text into a Number attribute
    ],
)
def test_attribute_forms_all_land_the_same(
    omni_connection: EmulatorServer, ada: Any, attributes: Any
) -> None:
    run(user_name="ada.lovelace@example.com", attributes=attributes)
    after = omni_connection.state.get_user(ada.id)
    assert after is not None
    assert after.attributes["region"] == "EMEA"
    assert after.attributes["cost_centre"] == 4200 and isinstance(after.attributes["cost_centre"], int)


def test_dates_become_iso_strings(omni_connection: EmulatorServer, ada: Any) -> None:
    run(
        user_name="ada.lovelace@example.com",
        attributes={"region": date(2026, 1, 31), "department": datetime(2026, 1, 31, 12, 30)},
    )
    after = omni_connection.state.get_user(ada.id)
    assert after is not None
    assert after.attributes["region"] == "2026-01-31"
    assert after.attributes["department"] == "2026-01-31T12:30:00"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give user_id"),
        ({"user_name": "not-an-email", "attributes": {"region": "x"}}, "not an email"),
        ({"user_id": "../../scim/v2/users", "attributes": {"region": "x"}}, "not a UUID"),
        ({"user_id": 12345, "attributes": {"region": "x"}}, "not a UUID"),
        ({"user_name": "ada.lovelace@example.com"}, "nothing to update"),
        ({"user_name": "ada.lovelace@example.com", "attributes": '{"region": '}, "not valid JSON"),
        ({"user_name": "ada.lovelace@example.com", "attributes": "[1, 2]"}, "must be an object"),
        ({"user_name": "ada.lovelace@example.com", "attributes": {"regoin": "x"}}, "regoin"),
        ({"user_name": "ada.lovelace@example.com", "attributes": {"cost_centre": "abc"}}, "cost_centre"),
        ({"user_name": "ada.lovelace@example.com", "attributes": {"region": ["a", "b"]}}, "single-valued"),
        ({"user_name": "ada.lovelace@example.com", "attributes": {"region": float("nan")}}, "region"),
        ({"user_name": "ada.lovelace@example.com", "attributes": {"region": True}}, "boolean"),
        ({"user_name": "ada.lovelace@example.com", "attributes": {"region": {"a": 1}}}, "region"),
        ({"user_name": "ada.lovelace@example.com", "attributes": {"omni_user_name": "x"}}, "omni_user_name"),
        (
            {"user_name": "ada.lovelace@example.com", "attributes": {"region": "x"}, "dry_run": "maybe"},
            "dry_run",
        ),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(
    omni_connection: EmulatorServer, ada: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(AirflowFailException, match=message):
        run(**kwargs)
    assert writes(omni_connection) == 0
    assert dict(omni_connection.state.get_user(ada.id).attributes) == {"region": "us-east", **UNTOUCHED}  # type: ignore[union-attr]


def test_id_and_email_must_agree(omni_connection: EmulatorServer, ada: Any) -> None:
    other = omni_connection.state.add_user("grace@example.com", "Grace")
    with pytest.raises(AirflowFailException, match="belongs to"):
        run(user_id=other.id, user_name="ada.lovelace@example.com", attributes={"region": "x"})
    assert writes(omni_connection) == 0
    result = run(user_id=ada.id, user_name="ADA.LOVELACE@example.com", attributes={"region": "EMEA"})
    assert result["action"] == "updated"


def test_missing_user_fails_or_skips(omni_connection: EmulatorServer) -> None:
    with pytest.raises(AirflowFailException, match=r"nobody@example\.com"):
        run(user_name="nobody@example.com", attributes={"region": "x"})
    with pytest.raises(AirflowSkipException):
        run(user_name="nobody@example.com", attributes={"region": "x"}, if_missing="skip")
    with pytest.raises(AirflowFailException):
        run(user_id="9e8719d9-276a-4964-9395-a493189a247c", attributes={"region": "x"})


def test_ambiguous_email_is_refused(omni_connection: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # Omni keeps emails unique, but a lenient filter could return two users that differ only in case.
    from omni_provider.client import OmniScimClient, UserListPage

    twins = [
        {"id": "9e8719d9-276a-4964-9395-a493189a247c", "userName": "twin@example.com", "displayName": "A"},
        {"id": "0e8719d9-276a-4964-9395-a493189a247c", "userName": "TWIN@example.com", "displayName": "B"},
    ]
    page = UserListPage.model_validate({"Resources": twins, "totalResults": 2, "startIndex": 1})
    monkeypatch.setattr(OmniScimClient, "list_users_page", lambda self, *a, **k: page)
    with pytest.raises(AirflowFailException, match="2 Omni users match"):
        run(user_name="twin@example.com", attributes={"region": "x"})
    assert writes(omni_connection) == 0


def test_transient_errors_are_retryable_and_permanent_ones_are_not(
    omni_connection: EmulatorServer, ada: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omni_testkit import omni_connection_json

    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(omni_connection.base_url, max_retries=0)
    )
    omni_connection.config.faults = {"error_503": 1.0}
    omni_connection.config.fault_methods = frozenset({"PATCH"})
    with pytest.raises(AirflowException) as info:
        run(user_name="ada.lovelace@example.com", attributes={"region": "EMEA"})
    assert not isinstance(info.value, AirflowFailException)  # Airflow may retry the task
    assert "503" in str(info.value) and "Ada.Lovelace@Example.com" in str(info.value)

    monkeypatch.setenv(
        "AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(omni_connection.base_url, key="wrong-key-12345")
    )
    with pytest.raises(AirflowFailException, match="Organization API key"):
        run(user_name="ada.lovelace@example.com", attributes={"region": "EMEA"})


def test_template_fields_and_renderers() -> None:
    assert {"user_id", "user_name", "attributes", "display_name"} <= set(
        UpdateOmniUserOperator.template_fields
    )
    assert UpdateOmniUserOperator.template_fields_renderers["attributes"] == "json"


def test_key_never_logged(
    omni_connection: EmulatorServer,
    ada: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "omni_provider", "airflow"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    run(user_name="ada.lovelace@example.com", attributes={"region": "EMEA"})
    with pytest.raises(AirflowFailException):
        run(user_name="ada.lovelace@example.com", attributes={"regoin": "EMEA"})
    out, err = capfd.readouterr()
    assert TEST_API_KEY not in caplog.text + out + err
    assert caplog.text  # the debug logging did capture something


def test_attribute_named_active_and_the_active_flag_are_both_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The result nests attribute changes and user-field changes: neither can overwrite the other."""
    state = EmulatorState([*default_catalogue(), custom_attribute("active", "Active")])
    user = state.add_user("grace@example.com", "Grace", {"active": "no"})
    config = EmulatorConfig(api_keys=[TEST_API_KEY], rate_limit_enabled=False)
    with EmulatorServer(config, state=state) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_OMNI_DEFAULT", omni_connection_json(emu.base_url))
        result = run(user_name="grace@example.com", attributes={"active": "yes"}, active=False)
        after = emu.state.get_user(user.id)

    assert after is not None and after.active is False and after.attributes["active"] == "yes"
    assert result["changes"] == {
        "attributes": {"active": {"old": "no", "new": "yes"}},
        "user": {"active": {"old": True, "new": False}},
    }


def test_email_given_in_nfc_finds_the_user_omni_stores_in_nfd(omni_connection: EmulatorServer) -> None:
    """The emulator compares code points (like an index on lower(userName)); the client asks for both Unicode
    spellings and re-checks with the one identity rule, so the operator still reaches the one user."""
    nfc = unicodedata.normalize("NFC", "Zoë.Ångström@exämple.com")
    stored = omni_connection.state.add_user(unicodedata.normalize("NFD", nfc), "Zoë", {"region": "us-east"})
    result = run(user_name=nfc.upper(), attributes={"region": "EMEA"})
    assert result["user_id"] == stored.id and result["action"] == "updated"
    after = omni_connection.state.get_user(stored.id)
    assert after is not None and after.attributes["region"] == "EMEA"
    assert omni_connection.stats.snapshot()["users_created"] == 0
