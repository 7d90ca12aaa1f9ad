"""``SyncOptions``: one place for the attribute sync's defaults and checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omni_provider.client import OmniValidationError
from omni_provider.sync.snapshot.format import DEFAULT_FULL_RESYNC_EVERY, FileSnapshotStore
from omni_provider.sync.users.options import SYNC_DEFAULTS, SyncOptions
from omni_provider.sync.users.spec import SyncMode


def test_defaults() -> None:
    options = SyncOptions(attributes=["region"])
    assert options.attributes == {"region": "region"}
    assert options.mode is SyncMode.UPDATE and options.spec.key == "userName"
    assert SyncOptions(attributes=["region"], match_on="id").spec.key == "id"
    assert options.full_resync_every == DEFAULT_FULL_RESYNC_EVERY == SYNC_DEFAULTS["full_resync_every"]
    assert options.snapshot() is None
    assert set(SYNC_DEFAULTS) == {name for name in SyncOptions.__dataclass_fields__} - {"attributes", "spec"}


def test_equal_whatever_the_attribute_form() -> None:
    assert SyncOptions(attributes=["region"], mode="mirror") == SyncOptions(
        attributes={"region": "region"}, mode=SyncMode.MIRROR
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"attributes": []}, "attributes mapping is empty"),
        ({"match_on": "email"}, "match_on"),
        ({"mode": "sideways"}, "mode must be one of"),
        ({"mode": "upsert"}, "display_name_column"),
        ({"key_column": ""}, "key_column"),
        ({"key_column": "region"}, "also mapped as an attribute"),
        ({"dry_run": "yes"}, "dry_run must be true or false"),
        ({"allow_empty_input": 1}, "allow_empty_input must be true or false"),
        ({"max_changes": "lots"}, "max_changes"),
        ({"max_changes": -1}, "max_changes"),
        ({"max_failed_rows": -1}, "max_failed_rows"),
        ({"max_failed_pct": 101}, "max_failed_pct"),
        ({"max_failed_pct": "ten"}, "max_failed_pct"),
        ({"max_workers": 0}, "max_workers"),
        ({"max_workers": True}, "max_workers"),
        ({"progress_every": float("nan")}, "progress_every"),
        ({"progress_every": -1}, "progress_every"),
        ({"report_path": ""}, "report_path"),
        ({"diff_against": "warehouse"}, "diff_against"),
        ({"diff_against": "snapshot"}, "needs snapshot_path"),
        ({"snapshot_path": "s.json"}, "only used with diff_against='snapshot'"),
        ({"full_resync_every": 0}, "full_resync_every"),
    ],
)
def test_bad_options_are_refused_with_the_option_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(OmniValidationError, match=message):
        SyncOptions(**{"attributes": ["region"], **changes})


def test_good_options() -> None:
    options = SyncOptions(
        attributes={"REGION": "region"},
        key_column="email",
        mode="mirror",
        max_changes="10%",
        max_failed_rows=None,
        max_failed_pct="2.5%",
        max_workers=2,
        progress_every=0,
        diff_against="snapshot",
        snapshot_path="state/omni.json",
        full_resync_every=3,
    )
    settings = options.snapshot()
    assert settings is not None and settings.full_resync_every == 3
    assert isinstance(settings.store, FileSnapshotStore)
    made: list[str] = []
    options.snapshot(lambda path: made.append(path) or FileSnapshotStore(path))  # type: ignore[func-returns-value]
    assert made == ["state/omni.json"]


def test_replace_checks_again() -> None:
    options = SyncOptions(attributes=["region"], report_path="r.jsonl")
    assert options.replace(report_path="other.jsonl").report_path == "other.jsonl"
    with pytest.raises(OmniValidationError, match="max_workers"):
        options.replace(max_workers=-2)


def test_readme_documents_every_option_once() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("### Sync options", 1)[1].split("\n#", 1)[0]
    for name in [*SYNC_DEFAULTS, "attributes"]:
        assert section.count(f"\n| `{name}` |") == 1, name
