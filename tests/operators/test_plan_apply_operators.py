"""The plan operators and ApplyOmniPlanOperator against the emulator over loopback (issue 23): a plan task
writes nothing and hands over plan_path, plan_digest and review; the apply sends exactly the planned writes,
skips what changed in Omni since the plan, and refuses an edited, expired or foreign plan before any request
with a failure Airflow does not retry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow_testkit import RecordingTI, capture_task_logs
from omni_testkit import TEST_API_KEY
from sync_testkit import rewrite_plan

from omni_provider import (
    ApplyOmniPlanOperator,
    PlanOmniGroupMembershipOperator,
    PlanOmniUserAttributesOperator,
)
from omni_provider._compat import AirflowFailException
from omni_provider.client import OmniScimClient
from omni_provider.emulator import EmulatorServer
from omni_provider.sync.engine.plan_artifact import CHANGED_SINCE_PLAN, PlanStore

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
N, CHANGES = 200, 30
RUN_ID = "manual__2026-12-06"


def execute(operator: Any, *, raises: type[BaseException] | None = None) -> tuple[Any, RecordingTI]:
    ti = RecordingTI()
    context: Any = {"ti": ti, "run_id": RUN_ID}
    with capture_task_logs():
        if raises is None:
            return operator.execute(context), ti
        with pytest.raises(raises) as info:
            operator.execute(context)
    assert type(info.value) is raises, f"expected {raises.__name__}, got {type(info.value).__name__}"
    return info.value, ti


def writes(emu: EmulatorServer) -> int:
    methods = emu.stats.snapshot()["requests_by_method"]
    return sum(methods.get(m, 0) for m in WRITE_METHODS)


def seed(emu: EmulatorServer, n: int) -> list[str]:
    emails = [f"user{i:03d}@example.com" for i in range(1, n + 1)]
    for i, email in enumerate(emails, start=1):
        emu.state.add_user(email, f"User {i}", {"region": "us-east", "department": "Sales"})
    return emails


def region_of(emu: EmulatorServer, email: str) -> Any:
    user = emu.state.find_by_email(email)
    assert user is not None
    return user.attributes.get("region")


def plan_task(
    tmp_path: Path, emails: list[str], changes: int, **kwargs: Any
) -> PlanOmniUserAttributesOperator:
    rows = [{"userName": e, "region": "eu-west" if i < changes else "us-east"} for i, e in enumerate(emails)]
    return PlanOmniUserAttributesOperator(
        task_id="plan", rows=rows, attributes=["region"], plan_path=f"{tmp_path}/plans/", **kwargs
    )


def test_plan_then_apply_with_the_approved_digest(omni_connection: EmulatorServer, tmp_path: Path) -> None:
    emu = omni_connection
    emails = seed(emu, N)
    result, ti = execute(plan_task(tmp_path, emails, CHANGES, max_changes=50))
    # The plan task wrote nothing and handed over where the plan is, its digest and the review.
    assert writes(emu) == 0
    assert result["summary"]["stage"] == "planned"
    assert result["summary"]["plan"]["update"] == CHANGES
    assert ti.pushed["plan_path"] == result["plan_path"] == f"{tmp_path}/plans/dag.plan.{RUN_ID}.plan.json"
    assert ti.pushed["plan_digest"] == result["plan_digest"] == PlanStore(result["plan_path"]).load().digest
    review = ti.pushed["review"]
    assert f"| update | {CHANGES} |" in review
    assert "| user001@example.com | update | region | us-east | eu-west |" in review
    assert "… and 10 more" in review

    # Someone else changes 2 of the 30 in Omni after the review.
    with OmniScimClient(emu.api_url, TEST_API_KEY) as other:
        for email in emails[:2]:
            user = other.find_user_by_email(email)
            assert user is not None
            other.update_user(user, attributes={"region": "ap-south"})
    emu.stats.reset()
    apply = ApplyOmniPlanOperator(
        task_id="apply", plan_path=result["plan_path"], plan_digest=result["plan_digest"], max_failed_rows=2
    )
    summary, ti = execute(apply)
    assert summary["outcomes"]["applied"] == CHANGES - 2
    assert summary["outcomes"]["rejected"] == 2
    assert {s["error"] for s in summary["errors_sample"]} == {f"{CHANGED_SINCE_PLAN}: region"}
    assert ti.pushed["apply_summary"]["outcomes"] == summary["outcomes"]
    assert [region_of(emu, e) for e in emails[:2]] == ["ap-south", "ap-south"]
    assert {region_of(emu, e) for e in emails[2:CHANGES]} == {"eu-west"}
    assert {region_of(emu, e) for e in emails[CHANGES:]} == {"us-east"}
    by_method = emu.stats.snapshot()["requests_by_method"]
    assert writes(emu) == by_method["PATCH"] == CHANGES - 2


def test_changed_users_fail_the_apply_by_default_without_a_retry(
    omni_connection: EmulatorServer, tmp_path: Path
) -> None:
    emu = omni_connection
    emails = seed(emu, 4)
    result, _ = execute(plan_task(tmp_path, emails, 2))
    emu.state.replace_user(emu.state.find_by_email(emails[0]).evolve(attributes={"region": "x"}))  # type: ignore[union-attr]
    error, ti = execute(
        ApplyOmniPlanOperator(
            task_id="apply", plan_path=result["plan_path"], plan_digest=result["plan_digest"]
        ),
        raises=AirflowFailException,
    )
    assert "1 of 2 rows did not sync (1 rejected, 0 failed writes)" in str(error)
    assert ti.pushed["apply_summary"]["outcomes"]["applied"] == 1


def spoil_edited(path: str) -> None:
    document = json.loads(Path(path).read_text())
    document["items"][0]["changes"][0]["new"] = "cn-north"
    Path(path).write_text(json.dumps(document))


def spoil_reauthored(path: str) -> None:
    items = [dict(item) for item in PlanStore(path).load().items]
    items[0]["changes"] = [{"attribute": "region", "old": "us-east", "new": "cn-north"}]
    rewrite_plan(path, items=items)


def spoil_expired(path: str) -> str:
    return rewrite_plan(path, created_at=datetime.now(UTC) - timedelta(hours=25))


def spoil_foreign(path: str) -> str:
    return rewrite_plan(path, omni="https://acme.omniapp.co")


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (spoil_edited, "was changed after it was written"),
        (spoil_reauthored, "replaced or edited after review"),
        (spoil_expired, "older than max_age"),
        (spoil_foreign, "made for Omni https://acme.omniapp.co/api"),
    ],
)
def test_a_spoiled_plan_is_refused_before_any_request_and_not_retried(
    omni_connection: EmulatorServer, tmp_path: Path, spoil: Any, message: str
) -> None:
    emu = omni_connection
    emails = seed(emu, 5)
    result, _ = execute(plan_task(tmp_path, emails, 3))
    # Expired and foreign: the digest is the reviewed plan's own (the reviewer approved that file).
    digest = spoil(result["plan_path"]) or result["plan_digest"]
    emu.stats.reset()
    error, ti = execute(
        ApplyOmniPlanOperator(task_id="apply", plan_path=result["plan_path"], plan_digest=digest),
        raises=AirflowFailException,
    )
    assert message in str(error)
    assert emu.stats.snapshot()["requests_total"] == 0
    assert ti.pushed["apply_summary"]["stage"] == "configuration"
    assert {region_of(emu, e) for e in emails} == {"us-east"}


def test_a_missing_plan_and_a_bad_max_age_are_refused(
    omni_connection: EmulatorServer, tmp_path: Path
) -> None:
    error, _ = execute(
        ApplyOmniPlanOperator(task_id="apply", plan_path=str(tmp_path / "none.json")),
        raises=AirflowFailException,
    )
    assert "there is no plan" in str(error)
    error, _ = execute(
        ApplyOmniPlanOperator(task_id="apply", plan_path=str(tmp_path / "p.json"), max_age="soon"),  # type: ignore[arg-type]
        raises=AirflowFailException,
    )
    assert "max_age must be" in str(error)


def test_the_plan_task_refuses_like_the_sync(omni_connection: EmulatorServer, tmp_path: Path) -> None:
    emu = omni_connection
    emails = seed(emu, 10)
    error, ti = execute(plan_task(tmp_path, emails, 5, max_changes=2), raises=AirflowFailException)
    assert "max_changes" in str(error)
    assert "plan_path" not in ti.pushed
    assert writes(emu) == 0


def test_group_plan_then_apply(omni_connection: EmulatorServer, tmp_path: Path) -> None:
    emu = omni_connection
    ids = {u.user_name: u.id for u in (emu.state.add_user(f"user{i}@example.com") for i in range(1, 5))}
    emu.state.groups.add_group("Sales", [ids["user1@example.com"]])
    rows = [{"email": f"user{i}@example.com", "group": "Sales"} for i in (1, 2, 3)]
    plan = PlanOmniGroupMembershipOperator(
        task_id="plan_groups", rows=rows, groups=["Sales"], plan_path=str(tmp_path / "{{ run_id }}.json")
    )
    plan.render_template_fields({"run_id": RUN_ID})  # type: ignore[arg-type]
    result, ti = execute(plan)
    assert result["plan_path"] == str(tmp_path / f"{RUN_ID}.json")
    assert "| Sales | add | user2@example.com |" in ti.pushed["review"]
    assert writes(emu) == 0
    summary, _ = execute(
        ApplyOmniPlanOperator(
            task_id="apply", plan_path=result["plan_path"], plan_digest=result["plan_digest"]
        )
    )
    assert summary["outcomes"]["added"] == 2
    (sales,) = emu.state.groups.named("Sales")
    assert set(sales.members) == {ids[f"user{i}@example.com"] for i in (1, 2, 3)}
    assert emu.stats.snapshot()["requests_by_method"]["PATCH"] == 1
