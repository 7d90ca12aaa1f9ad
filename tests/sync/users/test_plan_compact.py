"""Issue 13 item 4: unchanged rows are kept compact, every row still has its item, and the cyclic GC is
paused while planning and restored after (also when planning fails)."""

from __future__ import annotations

import gc

import pytest

from omni_provider.domain.models import USER_ATTRIBUTES_URN, AttributeDefinition, OmniUser
from omni_provider.errors import OmniValidationError
from omni_provider.sync import RowAction, SyncSpec, build_plan, definitions_by_name
from omni_provider.sync.users.outcome import RowOutcome, RowStatus

DEFS = definitions_by_name([AttributeDefinition(name="region", type="String")])
SPEC = SyncSpec(attributes={"REGION": "region"}, key_column="EMAIL")


def _user(i: int, region: str) -> OmniUser:
    return OmniUser.model_validate(
        {
            "id": f"00000000-0000-4000-8000-{i:012d}",
            "userName": f"u{i}@x.co",
            "displayName": f"U {i}",
            USER_ATTRIBUTES_URN: {"region": region},
        }
    )


def test_unchanged_rows_are_compact_yet_every_row_has_its_item_and_outcome() -> None:
    users = [_user(i, "eu") for i in range(5)]
    rows = [{"EMAIL": f"u{i}@x.co", "REGION": "us" if i == 2 else "eu"} for i in range(5)]

    plan = build_plan(rows, users, SPEC, DEFS)

    assert plan.items.unchanged_count == 4 and len(plan.items.stored()) == 1
    assert plan.counts()["unchanged"] == 4 and plan.counts()["update"] == 1
    items = list(plan.items)
    assert [item.row_number for item in items] == [1, 2, 3, 4, 5]
    assert [item.action for item in items] == [RowAction.UNCHANGED] * 2 + [RowAction.UPDATE] + [
        RowAction.UNCHANGED
    ] * 2
    unchanged = plan.items[0]
    assert (unchanged.key, unchanged.user_id, unchanged.user_name) == ("u0@x.co", users[0].id, "u0@x.co")
    assert unchanged.attributes == {} and unchanged.changes == ()
    outcomes = [RowOutcome.without_write(item, dry_run=False) for item in plan.items]
    assert [o.status for o in outcomes if o is not None] == [RowStatus.UNCHANGED] * 4
    # The compact record is the matched user itself, which the input already holds: nothing is allocated.
    assert plan.items._entries[0] is users[0]  # type: ignore[attr-defined]
    assert plan.items[0] == plan.items[0] and plan.items[0] is not plan.items[0]  # made when read


@pytest.mark.parametrize("enabled", [True, False])
def test_planning_pauses_the_gc_and_restores_it(enabled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    real = SyncSpec.key.fget  # type: ignore[attr-defined]

    def key(spec: SyncSpec) -> str:
        seen.append(gc.isenabled())
        return real(spec)

    monkeypatch.setattr(SyncSpec, "key", property(key))
    (gc.enable if enabled else gc.disable)()
    try:
        build_plan([{"EMAIL": "u0@x.co", "REGION": "eu"}], [_user(0, "eu")], SPEC, DEFS)
        assert seen and not any(seen)  # off while planning
        assert gc.isenabled() is enabled  # as it was after
        with pytest.raises(OmniValidationError):
            build_plan([{"OTHER": 1}], [], SPEC, DEFS)  # the key column is missing: planning raises
        assert gc.isenabled() is enabled
    finally:
        gc.enable()
