"""The plan artifact: one versioned format, a digest any edit changes, and the apply's refusals (an
edited or replaced file, an expired plan, another Omni), all before any request."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import pytest

from omni_provider.sync.engine.plan_artifact import (
    PLAN_FORMAT_VERSION,
    PlanArtifact,
    PlanRefusedError,
    PlanStore,
    check_plan_for_apply,
    parse_plan,
)

HOST = "http://127.0.0.1:8123"
PLANNED_AT = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)


def artifact(**overrides: object) -> PlanArtifact:
    arguments: dict[str, object] = {
        "target": "user_attributes",
        "omni": HOST,
        "managed": ["region", "team"],
        "mode": "upsert",
        "items": [
            {
                "user_id": "u1",
                "userName": "a@x.io",
                "changes": [{"attribute": "region", "old": "EU", "new": "US"}],
            }
        ],
        "rows": 2,
        "counts": {"update": 1, "unchanged": 1},
        "created_at": PLANNED_AT,
    }
    arguments.update(overrides)
    return PlanArtifact.build(**arguments)  # type: ignore[arg-type]


def test_the_header_says_what_the_plan_was_made_against(tmp_path: Path) -> None:
    plan = artifact(managed=["team", "region", "team"], omni="127.0.0.1:8123/")
    document = json.loads(plan.render())
    assert document["format"] == "omni-provider/plan"
    assert document["format_version"] == PLAN_FORMAT_VERSION
    # The client's URL rule: the same host written two ways is one Omni.
    assert document["header"]["omni"] == "https://127.0.0.1:8123/api"
    assert document["header"]["managed"] == ["region", "team"]
    assert document["header"]["writes"] == 1
    assert document["header"]["created_at"] == "2026-12-06T06:00:00+00:00"
    assert document["digest"] == plan.digest
    assert plan.digest.startswith("sha256:") and len(plan.digest) == 7 + 64


def test_a_plan_round_trips_through_its_file(tmp_path: Path) -> None:
    store = PlanStore(tmp_path / "plans" / "plan.json")
    plan = artifact()
    assert store.save(plan) == plan.digest
    assert store.load() == plan
    assert store.load().digest == plan.digest


def test_a_plan_round_trips_through_a_url() -> None:
    store = PlanStore("memory://plans/plan.json")
    store.check()
    store.save(artifact())
    assert store.load() == artifact()
    fsspec.filesystem("memory").rm("/plans", recursive=True)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["items"][0]["changes"][0].__setitem__("new", "CN"),
        lambda d: d["header"].__setitem__("created_at", "2030-01-01T00:00:00+00:00"),
        lambda d: d["items"].append({"user_id": "u9", "changes": []}),
        lambda d: d["header"]["managed"].append("salary"),
    ],
)
def test_any_edit_changes_the_digest(edit: object) -> None:
    document = json.loads(artifact().render())
    edit(document)  # type: ignore[operator]
    # Edited with the digest kept: the file no longer matches its own digest.
    with pytest.raises(PlanRefusedError, match="changed after it was written"):
        parse_plan(json.dumps(document))
    # Edited and the digest recomputed: readable, but not the digest that was approved.
    document.pop("digest")
    edited = parse_plan_with_fresh_digest(document)
    assert edited.digest != artifact().digest
    with pytest.raises(PlanRefusedError, match="replaced or edited after review"):
        check_plan_for_apply(edited, omni=HOST, plan_digest=artifact().digest, max_age=None)


def parse_plan_with_fresh_digest(document: dict[str, object]) -> PlanArtifact:
    header = document["header"]
    assert isinstance(header, dict)
    rebuilt = PlanArtifact.build(
        target=header["target"],
        omni=header["omni"],
        managed=header["managed"],
        mode=header["mode"],
        items=document["items"],  # type: ignore[arg-type]
        rows=header["rows"],
        counts=header["counts"],
        created_at=datetime.fromisoformat(header["created_at"]),
    )
    return parse_plan(rebuilt.render())


def test_the_approved_plan_passes() -> None:
    plan = artifact()
    check_plan_for_apply(
        plan, omni=HOST + "/api/", plan_digest=plan.digest, now=PLANNED_AT + timedelta(hours=23)
    )


def test_an_expired_plan_is_refused() -> None:
    with pytest.raises(PlanRefusedError, match="older than max_age"):
        check_plan_for_apply(
            artifact(), omni=HOST, max_age=timedelta(hours=24), now=PLANNED_AT + timedelta(hours=25)
        )


def test_a_plan_for_another_omni_is_refused() -> None:
    with pytest.raises(
        PlanRefusedError, match=r"made for Omni http://127\.0\.0\.1:8123/api, not https://acme"
    ):
        check_plan_for_apply(artifact(), omni="acme.omniapp.co", max_age=None)


def test_a_plan_for_another_target_is_refused() -> None:
    with pytest.raises(PlanRefusedError, match="target 'user_attributes'"):
        check_plan_for_apply(artifact(), omni=HOST, max_age=None, targets=["group_membership"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ('{"format": "other"}', "not an omni-provider plan"),
        ('{"format": "omni-provider/plan", "format_version": 99}', "format version 99"),
        ('{"format": "omni-provider/plan", "format_version": 1, "items": []}', "not a valid plan"),
    ],
)
def test_what_is_not_a_plan_is_refused(text: str, message: str) -> None:
    with pytest.raises(PlanRefusedError, match=message):
        parse_plan(text)


def test_a_missing_plan_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanRefusedError, match="there is no plan"):
        PlanStore(tmp_path / "none.json").load()
