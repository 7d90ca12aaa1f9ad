"""``build_omni_user_attributes_asset`` materialised with ``dagster.materialize`` against the emulator."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from omni_testkit import TEST_API_KEY
from sync_testkit import UNMANAGED, attrs, method_count, requests, seed, state_of, writes

from omni_provider.client import OmniValidationError
from omni_provider.dagster import NO_FAILED_ROWS, OmniScimResource, build_omni_user_attributes_asset
from omni_provider.emulator import EmulatorServer

ASSET = "omni_user_attributes"
ATTRIBUTES = ["region", "cost_centre"]


def source(rows: Any) -> dg.AssetsDefinition:
    @dg.asset(name="warehouse_users")
    def warehouse_users() -> Any:
        return rows

    return warehouse_users


def materialize(
    omni: OmniScimResource,
    rows: Any,
    *,
    raise_on_error: bool = True,
    instance: dg.DagsterInstance | None = None,
    **asset_kwargs: Any,
) -> dg.ExecuteInProcessResult:
    asset_kwargs.setdefault("attributes", ATTRIBUTES)
    asset_kwargs.setdefault("key_column", "email")
    asset = build_omni_user_attributes_asset(ASSET, "warehouse_users", **asset_kwargs)
    return dg.materialize(
        [source(rows), asset],
        resources={"omni": omni},
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def metadata_of(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (materialization,) = result.asset_materializations_for_node(ASSET)
    return {key: value.value for key, value in materialization.metadata.items()}


def check_of(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == NO_FAILED_ROWS
    return evaluation


def failure_of(result: dg.ExecuteInProcessResult) -> tuple[str, dict[str, Any]]:
    """The step failure's message and metadata (the run must have failed)."""
    assert not result.success
    (event,) = result.get_step_failure_events()
    data = event.step_failure_data
    assert data.user_failure_data is not None
    metadata = {key: value.value for key, value in data.user_failure_data.metadata.items()}
    return data.error.message if data.error else "", metadata


def rows(emails: Sequence[str], **values: Any) -> list[dict[str, Any]]:
    return [{"email": e, "region": "eu-west", "cost_centre": 4100, **values} for e in emails]


def test_update_materialises_counts_plan_and_report(
    emu: EmulatorServer, omni: OmniScimResource, tmp_path: Path
) -> None:
    emails = seed(emu, 4)
    report = tmp_path / "omni-{run_id}.jsonl"
    data = [*rows(emails[:2]), {"email": emails[2], "region": "us-east", "cost_centre": None}]
    result = materialize(omni, data, report_path=str(report))

    assert result.success
    assert attrs(emu, emails[0]) == {**UNMANAGED, "region": "eu-west", "cost_centre": 4100}
    assert attrs(emu, emails[3]) == {**UNMANAGED, "region": "us-east"}
    assert method_count(emu, "PATCH") == 2
    metadata = metadata_of(result)
    assert {k: metadata[k] for k in ("applied", "unchanged", "rejected", "failed", "planned")} == {
        "applied": 2, "unchanged": 1, "rejected": 0, "failed": 0, "planned": 0,
    }  # fmt: skip
    assert all(isinstance(metadata[k], int) for k in ("applied", "unchanged", "rejected", "failed"))
    assert metadata["requests"] == requests(emu)  # definitions, one page, the writes and their checks
    assert metadata["report_path"] == str(tmp_path / f"omni-{result.run_id}.jsonl")
    records = [json.loads(line) for line in Path(metadata["report_path"]).read_text().splitlines()]
    assert [r["status"] for r in records] == ["applied", "applied", "unchanged"]
    plan = metadata["plan"]
    assert plan.splitlines()[0].startswith("| action | rows | applied")
    assert "| update | 2 | 2 | 0 | 0 | 0 | 0 |" in plan and "| unchanged | 1 | 0 | 1 |" in plan
    assert check_of(result).passed


def test_rerun_sends_nothing(emu: EmulatorServer, omni: OmniScimResource) -> None:
    emails = seed(emu, 3)
    assert metadata_of(materialize(omni, rows(emails)))["applied"] == 3
    sent = writes(emu)
    again = metadata_of(materialize(omni, rows(emails)))
    assert writes(emu) == sent
    assert again["applied"] == 0 and again["unchanged"] == 3 and again["requests"] == 2


def test_upsert_creates_users(emu: EmulatorServer, omni: OmniScimResource) -> None:
    seed(emu, 1)
    data = rows(["user001@example.com", "new.hire@example.com"], name="New Hire")
    metadata = metadata_of(materialize(omni, data, mode="upsert", display_name_column="name"))
    assert metadata["applied"] == 2 and "| create | 1 | 1 |" in metadata["plan"]
    created = emu.state.find_by_email("new.hire@example.com")
    assert created is not None and created.display_name == "New Hire"


def test_mirror_unsets_absent_users(emu: EmulatorServer, omni: OmniScimResource) -> None:
    emails = seed(emu, 3)
    metadata = metadata_of(materialize(omni, rows(emails[:1]), mode="mirror", max_changes=3))
    assert "| unset | 2 | 2 |" in metadata["plan"]
    assert attrs(emu, emails[1]) == UNMANAGED and attrs(emu, emails[2]) == UNMANAGED


def test_dry_run_writes_nothing(emu: EmulatorServer, omni: OmniScimResource) -> None:
    emails = seed(emu, 2)
    before = state_of(emu)
    metadata = metadata_of(materialize(omni, rows(emails), dry_run=True))
    assert metadata["planned"] == 2 and metadata["applied"] == 0 and metadata["dry_run"] is True
    assert writes(emu) == 0 and state_of(emu) == before


def test_rows_over_the_threshold_fail_the_run_with_the_summary(
    emu: EmulatorServer, omni: OmniScimResource
) -> None:
    emails = seed(emu, 2)
    data = rows(emails) + rows(["ghost@example.com", "nobody@example.com"])
    retry = dg.RetryPolicy(max_retries=2)
    result = materialize(omni, data, max_failed_rows=1, retry_policy=retry, raise_on_error=False)
    message, metadata = failure_of(result)
    assert "2 of 4 rows did not sync (2 rejected" in message and "max_failed_rows=1" in message
    assert metadata["rejected"] == 2 and metadata["applied"] == 2
    assert result.retry_attempts_for_node(ASSET) == 0  # rejected rows need a fix in the input, not a retry
    assert [e["error"] for e in metadata["errors_sample"]] == ["no Omni user with this email"] * 2


def test_rows_within_the_threshold_pass_but_the_check_fails(
    emu: EmulatorServer, omni: OmniScimResource
) -> None:
    emails = seed(emu, 2)
    result = materialize(omni, rows(emails) + rows(["ghost@example.com"]), max_failed_rows=1)
    assert result.success and metadata_of(result)["rejected"] == 1
    check = check_of(result)
    assert not check.passed and check.severity is dg.AssetCheckSeverity.ERROR
    assert check.metadata["rejected"].value == 1


def test_plan_over_max_changes_fails_before_any_write(emu: EmulatorServer, omni: OmniScimResource) -> None:
    emails = seed(emu, 4)
    retry = dg.RetryPolicy(max_retries=2)
    result = materialize(omni, rows(emails), max_changes="25%", retry_policy=retry, raise_on_error=False)
    message, _ = failure_of(result)
    assert "more than max_changes" in message and result.retry_attempts_for_node(ASSET) == 0
    assert writes(emu) == 0


def test_failed_writes_are_retried_by_the_retry_policy_and_the_retry_applies_them(
    emu: EmulatorServer, omni: OmniScimResource
) -> None:
    emails = seed(emu, 2)
    # Exactly two PATCH answers fail (503, no client retry): the first attempt fails both rows.
    emu.context.faults.set_fail_next([{"status": 503, "count": 2, "methods": ["PATCH"]}])
    once = OmniScimResource(host=emu.api_url, api_key=TEST_API_KEY, rate_limit_per_minute=1e6, max_retries=0)
    result = materialize(once, rows(emails), retry_policy=dg.RetryPolicy(max_retries=1))
    assert result.retry_attempts_for_node(ASSET) == 1
    assert metadata_of(result)["applied"] == 2
    assert attrs(emu, emails[1])["region"] == "eu-west"


def test_a_dataframe_source_with_missing_values(emu: EmulatorServer, omni: OmniScimResource) -> None:
    emails = seed(emu, 2)
    frame = pd.DataFrame({"email": emails, "region": ["apac", None], "cost_centre": [7.0, float("nan")]})
    metadata = metadata_of(materialize(omni, frame))
    assert metadata["applied"] == 2
    assert attrs(emu, emails[0]) == {**UNMANAGED, "region": "apac", "cost_centre": 7}
    assert attrs(emu, emails[1]) == UNMANAGED  # NaN and None are SQL NULL: the attribute is unset


def test_misconfigured_asset_fails_when_definitions_load() -> None:
    with pytest.raises(OmniValidationError, match="mode must be one of"):
        build_omni_user_attributes_asset(ASSET, "warehouse_users", ATTRIBUTES, mode="sideways")
    with pytest.raises(OmniValidationError, match="display_name_column"):
        build_omni_user_attributes_asset(ASSET, "warehouse_users", ATTRIBUTES, mode="upsert")


def test_asset_shape() -> None:
    asset = build_omni_user_attributes_asset(
        ASSET, ["warehouse", "users"], {"REGION": "region"}, group_name="omni"
    )
    assert asset.key == dg.AssetKey(ASSET)
    assert asset.asset_deps[asset.key] == {dg.AssetKey(["warehouse", "users"])}
    assert "omni" in asset.required_resource_keys
    assert [spec.name for spec in asset.check_specs] == [NO_FAILED_ROWS]
    assert asset.group_names_by_key[asset.key] == "omni"


def test_snapshot_diff_on_the_asset_lists_omni_once_and_reports_its_source(
    emu: EmulatorServer, omni: OmniScimResource, tmp_path: Path
) -> None:
    emails = seed(emu, 3)
    snapshot = str(tmp_path / "omni-snapshot.json")
    first = metadata_of(materialize(omni, rows(emails), diff_against="snapshot", snapshot_path=snapshot))
    assert first["diff_against"] == "omni" and first["diff_reason"] == "no snapshot yet"
    listed = emu.stats.snapshot()["requests_by_route"]["GET /scim/v2/users"]
    changed = rows(emails)
    changed[0]["region"] = "apac"
    second = metadata_of(materialize(omni, changed, diff_against="snapshot", snapshot_path=snapshot))
    assert second["diff_against"] == "snapshot" and second["applied"] == 1
    assert second["snapshot"]["runs_since_full_resync"] == 1
    assert emu.stats.snapshot()["requests_by_route"]["GET /scim/v2/users"] == listed
    assert attrs(emu, emails[0])["region"] == "apac"


def test_bad_snapshot_arguments_fail_when_definitions_load() -> None:
    with pytest.raises(OmniValidationError, match="needs snapshot_path"):
        build_omni_user_attributes_asset(ASSET, "warehouse_users", ATTRIBUTES, diff_against="snapshot")
    with pytest.raises(OmniValidationError, match="full_resync_every"):
        build_omni_user_attributes_asset(
            ASSET,
            "warehouse_users",
            ATTRIBUTES,
            diff_against="snapshot",
            snapshot_path="s.json",
            full_resync_every=0,
        )


# -- the rows in the metadata: changes, items that did not sync, a failed run that wrote ------------------


def table_rows(value: Any) -> list[dict[str, Any]]:
    """A ``MetadataValue.table``'s records as dicts."""
    return [dict(record.data) for record in value.records]


def test_the_materialization_lists_each_change_and_each_rejected_row(
    emu: EmulatorServer, omni: OmniScimResource
) -> None:
    emails = seed(emu, 2)
    data = [*rows(emails[:1]), {"email": emails[1], "region": "us-east", "cost_centre": None}]
    result = materialize(omni, [*data, *rows(["nobody@example.com"])], max_failed_rows=1)
    assert result.success
    metadata = metadata_of(result)
    assert table_rows(metadata["changes"]) == [
        {
            "key": emails[0],
            "attribute": "region",
            "old": '"us-east"',
            "new": '"eu-west"',
            "status": "applied",
        },
        {"key": emails[0], "attribute": "cost_centre", "old": "(unset)", "new": "4100", "status": "applied"},
    ]
    assert metadata["changes_count"] == 2
    assert table_rows(metadata["not_synced"]) == [
        {"key": "nobody@example.com", "status": "rejected", "reason": "no Omni user with this email"}
    ]
    assert [e["key"] for e in metadata["errors_sample"]] == ["nobody@example.com"]
    # Every column says what it holds; the check names the count and the row.
    columns = metadata["changes"].schema.columns
    assert [c.name for c in columns] == ["key", "attribute", "old", "new", "status"]
    assert all(c.description for c in columns)
    check = check_of(result)
    assert not check.passed
    assert check.description == "1 rejected: nobody@example.com: no Omni user with this email"


def events_of(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult, kind: Any) -> list[Any]:
    """What the instance's event log (the UI's) holds of ``kind`` for the run."""
    return [
        record.dagster_event.event_specific_data
        for record in instance.all_logs(result.run_id, of_type=kind)
        if record.dagster_event is not None
    ]


def failed_run_events(
    omni: OmniScimResource, data: list[dict[str, Any]]
) -> tuple[str, dict[str, Any], list[dict[str, Any]], dg.AssetCheckEvaluation]:
    """A run failing its threshold: the failure's message and metadata, the metadata of each
    materialization the UI shows, and the check's evaluation."""
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(omni, data, raise_on_error=False, instance=instance)
    message, failure = failure_of(result)
    materialized = [
        {k: v.value for k, v in data.materialization.metadata.items()}
        for data in events_of(instance, result, dg.DagsterEventType.ASSET_MATERIALIZATION)
        if data.materialization.asset_key == dg.AssetKey(ASSET)
    ]
    (check,) = events_of(instance, result, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    assert check.check_name == NO_FAILED_ROWS
    return message, failure, materialized, check


def test_a_failed_run_that_wrote_records_what_it_wrote(emu: EmulatorServer, omni: OmniScimResource) -> None:
    emails = seed(emu, 1)
    message, failure, materialized, check = failed_run_events(omni, rows([*emails, "nobody@example.com"]))
    assert "1 of 2 rows did not sync" in message
    assert attrs(emu, emails[0])["region"] == "eu-west"  # written before the verdict
    # The step failed, but the asset has a materialization with the changes Omni now holds.
    (metadata,) = materialized
    assert metadata["applied"] == 1 and metadata["rejected"] == 1 and metadata["verdict"] == "failed"
    assert [(r["key"], r["attribute"], r["new"]) for r in table_rows(metadata["changes"])] == [
        (emails[0], "region", '"eu-west"'),
        (emails[0], "cost_centre", "4100"),
    ]
    assert table_rows(failure["not_synced"])[0]["key"] == "nobody@example.com"
    assert not check.passed  # evaluated, not "Execution failed"
    assert check.description == "1 rejected: nobody@example.com: no Omni user with this email"


def test_a_failed_run_that_wrote_nothing_records_no_materialization(
    emu: EmulatorServer, omni: OmniScimResource
) -> None:
    seed(emu, 1)
    _, _, materialized, check = failed_run_events(omni, rows(["nobody@example.com"]))
    assert materialized == []  # Omni did not change
    assert check.description == "1 rejected: nobody@example.com: no Omni user with this email"


def test_a_launch_config_previews_the_sync(emu: EmulatorServer, omni: OmniScimResource) -> None:
    emails = seed(emu, 2)
    before = state_of(emu)
    asset = build_omni_user_attributes_asset(ASSET, "warehouse_users", ATTRIBUTES, key_column="email")
    result = dg.materialize(
        [source(rows(emails)), asset],
        resources={"omni": omni},
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {ASSET: {"config": {"dry_run": True, "max_changes": "1"}}}},
    )
    metadata = metadata_of(result)
    assert writes(emu) == 0 and state_of(emu) == before
    assert metadata["dry_run"] is True and metadata["planned"] == 2
    assert {r["status"] for r in table_rows(metadata["changes"])} == {"planned"}
    assert "max_changes='1'" in metadata["refused"]  # the launch's limit, reported by the preview


def test_the_description_is_plain_and_explains_every_metadata_key() -> None:
    asset = build_omni_user_attributes_asset(ASSET, "warehouse_users", ATTRIBUTES, key_column="email")
    description = asset.descriptions_by_key[dg.AssetKey(ASSET)]
    assert description.startswith("Omni user attributes (region, cost_centre) from warehouse_users")
    assert "[" not in description
    for key in ("planned", "complete", "diff_against", "changes", "not_synced", "report_path"):
        assert f"- `{key}`: " in description


def test_a_bad_launch_config_fails_before_any_request(emu: EmulatorServer, omni: OmniScimResource) -> None:
    emails = seed(emu, 1)
    asset = build_omni_user_attributes_asset(ASSET, "warehouse_users", ATTRIBUTES, key_column="email")
    before = requests(emu)
    result = dg.materialize(
        [source(rows(emails)), asset],
        resources={"omni": omni},
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"ops": {ASSET: {"config": {"max_changes": "many"}}}},
        raise_on_error=False,
    )
    message, _ = failure_of(result)
    assert "max_changes" in message and "'many'" in message
    assert requests(emu) == before


def test_the_run_log_names_each_change_and_each_rejected_row(
    emu: EmulatorServer, omni: OmniScimResource, capfd: pytest.CaptureFixture[str]
) -> None:
    emails = seed(emu, 1)
    capfd.readouterr()
    materialize(omni, rows([*emails, "nobody@example.com"]), max_failed_rows=1)
    log = "".join(capfd.readouterr())  # Dagster's console logger: the run log as the UI shows it
    assert f'\n  {emails[0]}: region "us-east" -> "eu-west"\n' in log
    assert (
        "Rejected before sending, 1 (nothing was sent for these):\n  nobody@example.com: no Omni user" in log
    )
