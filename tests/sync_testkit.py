"""The shared emulator, reset and seeded, for the engine and Dagster tests (import as ``sync_testkit``)."""

from __future__ import annotations

from typing import Any

from omni_provider.emulator import EmulatorServer

#: What every test starts from (the shared emulator may have been changed by an earlier test).
EMULATOR_DEFAULTS: dict[str, Any] = {
    "put_mode": "replace",
    "max_page_size": 100,
    "strict_attributes": True,
    "rate_limit_enabled": False,
    "faults": {},
    "fault_seed": 0,
    "fault_methods": None,
}
MANAGED = ["region", "cost_centre"]
#: Set on every seeded user and never managed here: every run must leave it alone.
UNMANAGED = {"department": "Sales"}
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


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
