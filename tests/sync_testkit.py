"""The shared emulator, reset and seeded, for the engine and Dagster tests (import as ``sync_testkit``)."""

from __future__ import annotations

import os
from typing import Any

from omni_provider.client import OmniScimClient, RetryPolicy
from omni_provider.emulator import EmulatorConfig, EmulatorServer
from omni_provider.emulator.config import PATCHABLE_FIELDS
from omni_provider.sync.engine.plan_artifact import PlanArtifact, PlanStore

#: What every test starts from: every setting a test may change at runtime, back to the emulator's
#: defaults (the shared emulator may have been changed by an earlier test), with no rate limit.
EMULATOR_DEFAULTS: dict[str, Any] = {
    **{name: getattr(EmulatorConfig(), name) for name in PATCHABLE_FIELDS},
    "faults": {},
    "fault_seed": 0,
    "rate_limit_enabled": False,
}
MANAGED = ["region", "cost_centre"]
#: Set on every seeded user and never managed here: every run must leave it alone.
UNMANAGED = {"department": "Sales"}
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def unpaced_client(emu: EmulatorServer, key: str) -> OmniScimClient:
    """An unpaced client of the emulator with one quick retry (close it, or use it as a context manager)."""
    return OmniScimClient(
        emu.api_url, key, rate_limit_per_minute=1e6, retry_policy=RetryPolicy(max_attempts=2)
    )


def fresh(emu: EmulatorServer) -> EmulatorServer:
    """The emulator emptied and set back to ``EMULATOR_DEFAULTS``."""
    emu.config.apply_patch(EMULATOR_DEFAULTS)
    emu.reset()
    return emu


def seed(emu: EmulatorServer, n: int, *, region: str = "us-east") -> list[str]:
    emails = [f"user{i:03d}@example.com" for i in range(1, n + 1)]
    for i, email in enumerate(emails, start=1):
        emu.state.add_user(email, f"User {i}", {"region": region, **UNMANAGED})
    return emails


def attrs(emu: EmulatorServer, email: str) -> dict[str, Any]:
    user = emu.state.find_by_email(email)
    assert user is not None, email
    return dict(user.attributes)


def state_of(emu: EmulatorServer) -> dict[str, dict[str, Any]]:
    return {u.user_name.lower(): dict(u.attributes) for u in emu.state.users()}


def method_count(emu: EmulatorServer, method: str) -> int:
    return int(emu.stats.snapshot()["requests_by_method"].get(method, 0))


def writes(emu: EmulatorServer) -> int:
    return sum(method_count(emu, m) for m in WRITE_METHODS)


def requests(emu: EmulatorServer) -> int:
    return sum(emu.stats.snapshot()["requests_by_method"].values())


def rewrite_plan(path: str | os.PathLike[str], **changes: Any) -> str:
    """The plan file at ``path`` written again with ``changes`` (``items``, or ``PlanArtifact.build``'s
    header arguments such as ``created_at`` or ``omni``) and a digest of its own: a valid plan, but not
    the one reviewed. Returns its digest."""
    store = PlanStore(path)
    artifact = store.load()
    header = artifact.header
    arguments: dict[str, Any] = {
        "target": header.target,
        "omni": header.omni,
        "managed": header.managed,
        "mode": header.mode,
        "items": artifact.items,
        "rows": header.rows,
        "counts": header.counts,
        "options": header.options,
        "created_at": artifact.created,
        **changes,
    }
    return store.save(PlanArtifact.build(**arguments))
