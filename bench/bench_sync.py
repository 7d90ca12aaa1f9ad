"""Benchmark of the sync engine against a naive baseline, on the emulator with a scaled-down rate window.

Run:  .venv/bin/python bench/bench_sync.py [--users 1000] [--changed 300] [--limit 60] [--window 2.0]
      .venv/bin/python bench/bench_sync.py --quick          # a smoke run of a few seconds

Omni allows 60 requests per minute per API key. Here the emulator (in-process, loopback) enforces
``--limit`` requests per ``--window`` seconds per key over a sliding window, and every client is paced to
the same numbers, so a run that would take hours against Omni takes about a minute. Three cases, each on a
freshly seeded emulator with N users of which k get a changed attribute:

* sync, 1 key: what SyncOmniUserAttributesOperator does (attribute definitions, every page of users,
  ``build_plan``, ``apply_plan``): one request per page, one PATCH per changed user.
* naive, 1 key: read the users once (same pages, to learn ids and full bodies), then one PUT per row
  with the full user body, changed or not, one after the other, through the same paced client.
* sync, 2 keys: the sync case with a second key on the connection; the client spreads the writes.
* sync, 1 key, no canary: the first case with the canary's probation lifted in advance (the gate told
  that both kinds of change are verified), to measure what the canary costs: the first write sent alone
  and checked on a fresh GET before the others start.

Columns: requests sent (client count; the emulator's count is checked against it), 429 answers, wall time,
and the write phase's sustained rate (writes - 1 over the time from the first to the last write, as sent
by the client) as a percentage of the configured limit (keys x limit / window). The targets from the issue
are checked at the end: requests <= ceil(N/100) + k + a small constant, write rate >= 95% of the limit
with no 429, and two keys close to twice one key's rate.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from omni_provider.client import OmniScimClient, RetryPolicy
from omni_provider.client.models import USER_ATTRIBUTES_URN, OmniUser
from omni_provider.emulator import EmulatorConfig, EmulatorServer
from omni_provider.sync import SyncSpec, build_plan
from omni_provider.sync.apply import WriteGate, apply_plan
from omni_provider.sync.outcome import RowStatus

KEYS = ("bench-key-one-7c1f2a", "bench-key-two-93be40")
PAGE_SIZE = 100
WRITE_METHODS = frozenset({"PATCH", "PUT", "POST", "DELETE"})
SPEC = SyncSpec(attributes={"region": "region", "department": "department"})
#: Requests the sync sends besides pages and writes: GET /v1/user-attributes and the canary's fresh GET.
SYNC_OVERHEAD = 2
#: The "small constant" the target allows on top of pages + k.
ALLOWED_OVERHEAD = 2


def listing_pages(users: int, page: int) -> int:
    """Pages to list ``users``: each page after the first starts on the last user already read (the
    client's check that the list did not shift), so it brings ``page - 1`` new users."""
    return 1 if users <= page else 1 + math.ceil((users - page) / (page - 1))


class RecordingTransport(httpx.BaseTransport):
    """Notes (method, monotonic send time, status) of every request the client sends."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self._lock = threading.Lock()
        self.sent: list[tuple[str, float, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        response = self._inner.handle_request(request)
        with self._lock:
            self.sent.append((request.method, started, response.status_code))
        return response

    def close(self) -> None:
        self._inner.close()


@dataclass
class Result:
    label: str
    keys: int
    requests: int
    server_requests: int
    writes: int
    rate_limited: int
    wall: float
    write_rate: float | None
    limit_rate: float
    applied: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate_pct(self) -> float | None:
        return None if self.write_rate is None else 100.0 * self.write_rate / self.limit_rate


def desired_rows(users: list[OmniUser], changed: int) -> list[dict[str, Any]]:
    """One row per user with its current values, except every (N/k)th user gets a new region."""
    step = len(users) / changed if changed else 0.0
    chosen = {int(i * step) for i in range(changed)}
    rows = []
    for i, user in enumerate(users):
        region = user.attributes.get("region")
        rows.append(
            {
                # Upper-cased on purpose: matching is case-insensitive.
                "userName": user.user_name.upper() if i % 2 else user.user_name,
                "region": f"changed-{i}" if i in chosen else region,
                "department": user.attributes.get("department"),
            }
        )
    return rows


def write_rate(sent: list[tuple[str, float, int]]) -> float | None:
    times = sorted(t for method, t, status in sent if method in WRITE_METHODS and status < 400)
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


def run_case(
    label: str,
    emu: EmulatorServer,
    args: argparse.Namespace,
    keys: int,
    body: Callable[[OmniScimClient], int],
) -> Result:
    emu.reset(seed_users=args.users, seed=args.seed)
    transport = RecordingTransport()
    client = OmniScimClient(
        emu.api_url,
        list(KEYS[:keys]),
        rate_limit_per_minute=args.limit,
        rate_window_seconds=args.window,
        # Backoff in the scaled time of the run; a 429 is still counted, as it would be against Omni.
        retry_policy=RetryPolicy(backoff_initial=args.window / 60, backoff_max=args.window),
        transport=transport,
        page_size=PAGE_SIZE,
    )
    started = time.monotonic()
    with client:
        applied = body(client)
    wall = time.monotonic() - started
    stats = client.stats.snapshot()
    server = emu.stats.snapshot()
    return Result(
        label=label,
        keys=keys,
        requests=stats["requests"],
        server_requests=server["requests_total"],
        writes=sum(n for m, n in stats["by_method"].items() if m in WRITE_METHODS),
        rate_limited=server["responses_429"],
        wall=wall,
        write_rate=write_rate(transport.sent),
        limit_rate=keys * args.limit / args.window,
        applied=applied,
    )


def sync_body(args: argparse.Namespace, *, canary: bool = True) -> Callable[[OmniScimClient], int]:
    def body(client: OmniScimClient) -> int:
        # The operator's code path: definitions, every page of users, a pure plan, the paced executor.
        definitions = client.attribute_definitions_by_name()
        users = client.list_users()
        plan = build_plan(desired_rows(users, args.changed), users, SPEC, definitions)
        gate = WriteGate()
        if not canary:  # for the measurement only: never how the operator runs
            gate.verified(frozenset({"set", "unset", "set+others", "unset+others"}))
        outcomes = apply_plan(client, plan, {u.id: u for u in users}, definitions=definitions, gate=gate)
        return sum(o.status is RowStatus.APPLIED for o in outcomes)

    return body


def naive_body(args: argparse.Namespace) -> Callable[[OmniScimClient], int]:
    def body(client: OmniScimClient) -> int:
        users = client.list_users()
        rows = desired_rows(users, args.changed)
        for user, row in zip(users, rows, strict=True):
            full = user.to_scim()
            attributes = dict(full.get(USER_ATTRIBUTES_URN) or {})
            for name in ("region", "department"):
                if row[name] is None:
                    attributes.pop(name, None)
                else:
                    attributes[name] = row[name]
            full[USER_ATTRIBUTES_URN] = attributes
            client.replace_user(user.id, full)
        return len(rows)

    return body


def fmt_rate(result: Result) -> str:
    if result.write_rate is None:
        return "n/a"
    return f"{result.write_rate:6.1f}/s ({result.rate_pct:5.1f}%)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1000, help="N: Omni users, one input row each")
    parser.add_argument("--changed", type=int, default=300, help="k: rows whose region differs")
    parser.add_argument("--limit", type=int, default=60, help="requests per window per key")
    parser.add_argument("--window", type=float, default=2.0, help="rate window in seconds (Omni: 60)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 users, 40 changed, 1 s window")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the naive baseline")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.changed, args.window = 200, 40, 1.0
    if not 0 <= args.changed <= args.users:
        parser.error("--changed must be between 0 and --users")

    print("command:", shlex.join([".venv/bin/python", "bench/bench_sync.py", *sys.argv[1:]]))
    print(
        f"N={args.users} users, k={args.changed} changed, emulator limit {args.limit} requests / "
        f"{args.window:g} s per key (= {args.limit / args.window:g}/s), client paced to the same, "
        f"page size {PAGE_SIZE}, emulator in-process on 127.0.0.1"
    )
    config = EmulatorConfig(api_keys=list(KEYS), rate_limit=args.limit, rate_window=args.window)
    results: list[Result] = []
    with EmulatorServer(config) as emu:
        results.append(run_case("sync, 1 key", emu, args, 1, sync_body(args)))
        if not args.skip_naive:
            results.append(run_case("naive PUT/row, 1 key", emu, args, 1, naive_body(args)))
        results.append(run_case("sync, 2 keys", emu, args, 2, sync_body(args)))
        results.append(run_case("sync, 1 key, no canary", emu, args, 1, sync_body(args, canary=False)))

    header = f"{'case':<22}{'requests':>9}{'writes':>8}{'429s':>6}{'wall s':>9}   write rate (% of limit)"
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r.label:<22}{r.requests:>9}{r.writes:>8}{r.rate_limited:>6}{r.wall:>9.2f}   {fmt_rate(r)}")
    for r in results:
        if r.server_requests != r.requests:
            print(f"note: {r.label}: the emulator counted {r.server_requests} requests")

    sync1, sync2, no_canary = results[0], results[-2], results[-1]
    naive = results[1] if not args.skip_naive else None
    pages = listing_pages(args.users, PAGE_SIZE)
    bound = pages + args.changed + ALLOWED_OVERHEAD
    slot = args.window / args.limit
    cost = sync1.wall - no_canary.wall
    print(
        f"canary cost: wall {sync1.wall:.2f} s with it, {no_canary.wall:.2f} s without = {cost:+.2f} s "
        f"(one paced slot is {slot:.3f} s, the rate window {args.window:g} s)"
    )
    print()
    if naive is not None:
        print(
            f"sync / naive: requests {sync1.requests}/{naive.requests} = "
            f"{sync1.requests / naive.requests:.3f}, wall {sync1.wall:.2f}/{naive.wall:.2f} s = "
            f"{sync1.wall / naive.wall:.3f}"
        )
    checks = [
        (
            f"sync requests {sync1.requests} <= pages + k + {ALLOWED_OVERHEAD} = {bound} "
            f"(pages {pages}, writes {sync1.writes}, other {sync1.requests - pages - sync1.writes})",
            sync1.requests <= bound,
        ),
    ]
    for r in results:
        pct = r.rate_pct
        checks.append(
            (
                f"{r.label}: write rate {fmt_rate(r).strip()} >= 95% of {r.limit_rate:g}/s, "
                f"{r.rate_limited} x 429",
                pct is not None and pct >= 95.0 and r.rate_limited == 0,
            )
        )
    checks.append(
        (
            f"the canary costs {cost:+.2f} s: under a quarter of the rate window ({args.window / 4:g} s)",
            cost < args.window / 4,
        )
    )
    if sync1.write_rate and sync2.write_rate:
        ratio = sync2.write_rate / sync1.write_rate
        checks.append((f"2 keys / 1 key write rate = {ratio:.2f} (target close to 2)", ratio >= 1.9))
    for r in results:
        expected = args.users if r is naive else args.changed
        checks.append((f"{r.label}: {r.applied} of {expected} writes applied", r.applied == expected))
    for text, ok in checks:
        print(f"[{'ok' if ok else 'MISSED'}] {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
