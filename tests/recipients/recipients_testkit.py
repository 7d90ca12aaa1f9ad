"""Recipients seeded in the emulator and counted requests, for the recipients tests (import as
``recipients_testkit``)."""

from __future__ import annotations

from typing import Any

from omni_provider.emulator import EmulatorServer

ROUTE = "/v1/users/email-only"
#: Set on some seeded recipients and never managed: every run must leave it alone.
UNMANAGED = {"department": "Sales", "omni_user_timezone": "Europe/Paris"}


def seed_recipients(emu: EmulatorServer, n: int, *, unmanaged_every: int = 3) -> list[str]:
    """``n`` recipients ``r0001@example.com``... in region "eu" with cost centre 1; every
    ``unmanaged_every``-th also holds ``UNMANAGED``."""
    emails = [f"r{i:04d}@example.com" for i in range(1, n + 1)]
    for i, email in enumerate(emails, start=1):
        extra = UNMANAGED if i % unmanaged_every == 0 else {}
        emu.state.recipients.add(email, {"region": "eu", "cost_centre": 1, **extra})
    return emails


def recipient_state(emu: EmulatorServer) -> dict[str, dict[str, Any]]:
    return {r.email.lower(): dict(r.attributes) for r in emu.state.recipients.all()}


def route_count(emu: EmulatorServer, route: str) -> int:
    return int(emu.stats.snapshot()["requests_by_route"].get(route, 0))


def listing_pages(emu: EmulatorServer) -> int:
    return route_count(emu, f"GET {ROUTE}")


def bulk_writes(emu: EmulatorServer) -> int:
    return route_count(emu, f"POST {ROUTE}/bulk")


def writes(emu: EmulatorServer) -> int:
    return route_count(emu, f"POST {ROUTE}") + bulk_writes(emu)
