"""The sync against what users would write instead, side by side, on the emulator enforcing the limit.

Run:  .venv/bin/python bench/bench_sync.py                 # both workloads, about 2-3 minutes on 2 cores
      .venv/bin/python bench/bench_sync.py --quick         # a smoke run of a few seconds
      options: --limit 60 --window 2 --mode sliding|fixed --skip-peer --peer-venv DIR

Omni allows 60 requests per minute per API key. The emulator (in-process, loopback) enforces ``--limit``
requests per ``--window`` seconds per key, counted in ``--mode`` windows, so a run that would take an hour
against Omni takes a few minutes. Every case starts from the same freshly seeded emulator (N users, region
and department attributes) and wants the same rows: every user's current values, with k regions changed.
Before any case, one untimed sync of each kind on five users takes the process's one-off set-up (about
0.8 s: connection, hook, lazy imports) out of the first case's wall time, and every timed run starts after
a full garbage collection, so a collection owed to earlier cases (0.1-0.2 s with Airflow loaded) does not
land on whichever run happens to cross the threshold.

Cases:

* sync (live diff): ``SyncOmniUserAttributesOperator.execute`` as a DAG runs it, through an ``omni``
  connection whose extras give the same limit and window: definitions, every page of users, a plan, one
  PATCH per changed user.
* sync (snapshot diff): the same operator with ``diff_against="snapshot"`` and a snapshot file in a temp
  dir. The snapshot comes from a previous real run of the operator: a priming run (a live diff, since there
  is no snapshot yet) against the same seeded users with the rows before the k changes, which writes
  nothing and leaves the snapshot. Its own requests and time are printed on a line of their own and are not
  part of the case's figures; the emulator's counters and rate windows are cleared after it (keeping the
  users), as if it had run the day before. The measured run then applies the k changes: definitions, no
  listing, one PATCH per changed user, and for the first write of each kind (the canary) a fresh read
  before it (its snapshot state is not Omni's) and one after it.
* sync (snapshot, full resync): the run a snapshot-mode sync makes every ``full_resync_every``-th time (the
  default, 7): a live listing, plus the drift check against the snapshot. It is primed the same way with
  seven runs of the rows before the k changes (the live diff that leaves the snapshot, then six snapshot
  runs), so the measured run is the eighth, the next full resync. With these two the table prints the cost
  of 7 runs (1 full resync + 6 snapshot runs) against 7 live diffs, computed from the measured runs.
* naive PUT/row, unpaced: what a generic HTTP operator does, in plain httpx: list the users once (for their
  ids), then one PUT per row with the full user, as fast as the server answers. A 429 is a failed request,
  as it is for an HTTP operator without retries.
* naive PUT/row, paced: the same, sleeping window/limit (60/L s at Omni's scale) before every request, as a
  careful user would.
* omni-user-manager (PyPI): the closest peer, installed into a throwaway venv and run as its CLI
  (``sync --mode attributes`` from a JSON file). Its built-in sleeps (0.3 s per row, 0.5 s per page) are
  meant for Omni's one-minute window, so they are scaled by window/60 like everything else. Skipped with a
  message when it cannot be installed.

A second table, email-only recipients (``/api/v1/users/email-only``): R recipients seeded (region, seat
tier, and a department the sync does not manage on a third of them), rows changing k regions and adding m
new recipients. Cases, each on the same freshly seeded recipients:

* sync (recipients): ``SyncOmniEmailRecipientsOperator.execute`` (upsert mode): the listing (20 per page),
  one canary upsert and its fresh read, then bulk upserts of 20.
* upsert/changed recipient, paced: the same listing and diff by hand, then one single upsert
  (``POST /v1/users/email-only``) per changed or new recipient, paced as above: the baseline the bulk
  writes are measured against ("requests vs one upsert per recipient").
* upsert/row, paced: one single upsert per row, no listing and no diff (what an HTTP operator does).

Every figure but wall time comes from the emulator: requests and 429s from its request log, "changes
lost" from its final state (rows whose wanted value is not in Omni afterwards). "Use of the limit" is the
mean number of requests the emulator accepted per full window (windows counted from the first accepted
request; a run shorter than one window has none) as a percentage of the limit, and "peak" is the most it
accepted in any window-length span, which the limit caps. Under each table: the priming runs, the sync
cases' requests by route (from the emulator's counters) and the ratios against the baselines.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import gc
import io
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from omni_provider.client.client import listing_page_count
from omni_provider.domain.models import USER_ATTRIBUTES_URN
from omni_provider.emulator import EmulatorConfig, EmulatorServer
from omni_provider.emulator.stats import LoggedRequest

KEY = "bench-key-one-7c1f2a"
CONN_ID = "omni_bench"
ATTRIBUTES = ("region", "department")
PAGE_SIZE = 100
WORKLOADS = ((2000, 0.01), (200, 1.0))
QUICK_WORKLOADS = ((300, 0.05), (60, 1.0))
PEER_PACKAGE = "omni-user-manager"


@dataclass
class Result:
    label: str
    requests: int | None = None
    rate_limited: int | None = None
    lost: int | None = None
    wall: float | None = None
    use_pct: float | None = None
    peak: int | None = None
    note: str = ""
    routes: dict[str, int] | None = None
    #: The run that left the snapshot this case diffs against (not counted in the figures above).
    primed: Result | None = None


@dataclass
class World:
    """One workload: the seeded users and the rows every case is asked to bring about."""

    users: int
    changed: int
    rows: list[dict[str, Any]]  # userName + wanted region/department (None = absent)
    before: list[dict[str, Any]]  # the same rows before the k changes (what Omni holds when seeded)


class RecordingTI:
    """The task instance in ``context["ti"]``: the operator pushes its summary to XCom."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


# -- the workload ------------------------------------------------------------------------------------------


def build_world(emu: EmulatorServer, users: int, share: float, seed: int) -> World:
    emu.reset(seed_users=users, seed=seed)
    changed = round(users * share)
    step = users / changed if changed else 0.0
    chosen = {int(i * step) for i in range(changed)}
    rows, before = [], []
    for i, user in enumerate(emu.state.users()):
        current = {
            "userName": user.user_name,
            "region": user.attributes.get("region"),
            "department": user.attributes.get("department"),
        }
        before.append(current)
        rows.append({**current, "region": f"changed-{i}"} if i in chosen else current)
    return World(users=users, changed=len(chosen), rows=rows, before=before)


def changes_lost(emu: EmulatorServer, rows: list[dict[str, Any]]) -> int:
    """Rows whose wanted values are not what Omni holds after the run."""
    lost = 0
    for row in rows:
        user = emu.state.find_by_email(row["userName"])
        held = dict(user.attributes) if user is not None else {}
        if any(held.get(name) != row[name] for name in ATTRIBUTES):
            lost += 1
    return lost


def measure(
    label: str,
    emu: EmulatorServer,
    world: World,
    args: argparse.Namespace,
    run: Callable[[], str],
    prime: Callable[[], str] | None = None,
) -> Result:
    """One case on a freshly seeded emulator; ``prime`` is an earlier run on the same users, measured on its
    own and then forgotten by the emulator (counters and rate windows cleared, users kept)."""
    emu.reset(seed_users=world.users, seed=args.seed)
    primed = None
    if prime is not None:
        primed = timed(f"{label}: priming run", emu, world.before, args, prime)
        emu.context.reset(keep_users=True)
    result = timed(label, emu, world.rows, args, run)
    result.primed = primed
    return result


def timed(
    label: str,
    emu: EmulatorServer,
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    run: Callable[[], str],
    lost: Callable[[], int] | None = None,
) -> Result:
    """Run once from the emulator's current state and read the figures from its request log and state
    (``lost``: the case's own count of rows not as wanted; default: users' attributes)."""
    # A full collection owed to what earlier cases left (about 0.1-0.2 s with Airflow loaded) is not this
    # case's cost: without this, it lands on whichever run crosses the threshold.
    gc.collect()
    started = time.monotonic()
    note = run()
    wall = time.monotonic() - started
    log = emu.stats.request_log()
    use, peak = limit_use(log, args.limit, args.window)
    return Result(
        label=label,
        requests=len(log),
        rate_limited=sum(r.status == 429 for r in log),
        lost=lost() if lost is not None else changes_lost(emu, rows),
        wall=wall,
        use_pct=use,
        peak=peak,
        note=note,
        routes=dict(emu.stats.snapshot()["requests_by_route"]),
    )


def limit_use(log: list[LoggedRequest], limit: int, window: float) -> tuple[float | None, int | None]:
    """(mean accepted requests per full window as % of the limit, most accepted in any window span)."""
    times = sorted(r.at for r in log if r.status != 429)
    if not times:
        return None, None
    peak = max(bisect.bisect_left(times, s + window) - i for i, s in enumerate(times))
    full = int((times[-1] - times[0]) // window)
    if full == 0:
        return None, peak
    in_full = sum(1 for t in times if t < times[0] + full * window)
    return 100.0 * in_full / (full * limit), peak


# -- the cases ---------------------------------------------------------------------------------------------


@contextmanager
def omni_connection(emu: EmulatorServer, args: argparse.Namespace) -> Iterator[None]:
    name = f"AIRFLOW_CONN_{CONN_ID.upper()}"
    extra = {"rate_limit_per_minute": args.limit, "rate_window_seconds": args.window}
    os.environ[name] = json.dumps(
        {"conn_type": "omni", "host": emu.base_url, "password": KEY, "extra": extra}
    )
    try:
        yield
    finally:
        del os.environ[name]


@dataclass(frozen=True)
class SnapshotMode:
    """``diff_against="snapshot"`` with this file and resync period."""

    path: Path
    full_resync_every: int = 7


@contextmanager
def engine_log_at(level: int) -> Iterator[None]:
    engine = logging.getLogger("omni_provider")
    before = engine.level
    engine.setLevel(level)
    try:
        yield
    finally:
        engine.setLevel(before)


def run_sync(
    emu: EmulatorServer,
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    snapshot: SnapshotMode | None = None,
) -> str:
    from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator

    ti = RecordingTI()
    context: Any = {"ti": ti, "run_id": "bench"}
    diff: dict[str, Any] = {}
    if snapshot is not None:
        diff = {
            "diff_against": "snapshot",
            "snapshot_path": str(snapshot.path),
            "full_resync_every": snapshot.full_resync_every,
        }
    # The operator's task log would bury the table (the engine's INFO lines reach the console directly).
    quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    with omni_connection(emu, args), quiet[0], quiet[1], engine_log_at(logging.WARNING):
        SyncOmniUserAttributesOperator(
            task_id="bench_sync",
            rows=rows,
            attributes=list(ATTRIBUTES),
            omni_conn_id=CONN_ID,
            progress_every=3600,
            **diff,
        ).execute(context)
    summary = ti.pushed["sync_summary"]
    note = f"applied {summary['outcomes'].get('applied', 0)}"
    if snapshot is None:
        return note
    if summary["diff_against"] == "snapshot":
        note += f"; diffed against the snapshot, {summary['snapshot'].get('lookups', 0)} lookups"
    else:
        note += f"; diffed against live Omni ({summary['diff_reason']})"
    if "drift" in summary:
        note += f", drift: {summary['drift']['users']} users"
    return note


def run_naive(emu: EmulatorServer, world: World, pause: float) -> str:
    """List the users (for ids), then PUT every row's full user; no retry, ``pause`` before each request."""
    headers = {"Authorization": f"Bearer {KEY}"}
    failed = 0
    with httpx.Client(base_url=emu.api_url, headers=headers, timeout=30) as http:
        users: dict[str, dict[str, Any]] = {}
        start = 1
        while True:
            time.sleep(pause)
            answer = http.get("/scim/v2/users", params={"startIndex": start, "count": PAGE_SIZE})
            if answer.status_code != 200:
                return f"listing failed with HTTP {answer.status_code}: nothing written"
            page = answer.json()
            users.update({u["userName"].lower(): u for u in page["Resources"]})
            start += len(page["Resources"])
            if not page["Resources"] or start > page["totalResults"]:
                break
        for row in world.rows:
            user = dict(users[row["userName"].lower()])
            attributes = dict(user.get(USER_ATTRIBUTES_URN) or {})
            for name in ATTRIBUTES:
                if row[name] is None:
                    attributes.pop(name, None)
                else:
                    attributes[name] = row[name]
            user[USER_ATTRIBUTES_URN] = attributes
            time.sleep(pause)
            if http.put(f"/scim/v2/users/{user['id']}", json=user).status_code >= 400:
                failed += 1
    return f"{failed} PUTs failed"


def peer_venv(args: argparse.Namespace) -> Path | None:
    """A venv with omni-user-manager, or None (with the reason printed)."""
    if args.skip_peer:
        print(f"{PEER_PACKAGE}: skipped (--skip-peer)")
        return None
    venv = Path(args.peer_venv) if args.peer_venv else Path(tempfile.mkdtemp(prefix="omni-peer-"))
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"{PEER_PACKAGE}: installing into a throwaway venv at {venv} ...", flush=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "-q", PEER_PACKAGE],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                print(f"{PEER_PACKAGE}: skipped, it did not install ({tail[0]})")
                return None
    version = subprocess.run(
        [str(python), "-m", "pip", "show", PEER_PACKAGE], capture_output=True, text=True, check=False
    ).stdout
    found = next(
        (line.split(":", 1)[1].strip() for line in version.splitlines() if line.startswith("Version")), ""
    )
    if not found:
        print(f"{PEER_PACKAGE}: skipped, not found in {venv}")
        return None
    print(f"{PEER_PACKAGE}: version {found} in {venv}")
    return python


#: Runs the peer's CLI with its sleeps scaled to the emulator's window (argv[1] = scale, the rest = CLI args).
PEER_RUNNER = """
import sys, time
scale = float(sys.argv[1])
real_sleep = time.sleep
time.sleep = lambda seconds: real_sleep(seconds * scale)
sys.argv = ["omni-user-manager", *sys.argv[2:]]
from omni_sync.cli import main
sys.exit(main())
"""


def run_peer(emu: EmulatorServer, world: World, python: Path, args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="omni-peer-run-") as tmp:
        users_file = Path(tmp) / "users.json"
        resources = []
        for row in world.rows:
            wanted = {name: row[name] for name in ATTRIBUTES if row[name] is not None}
            resources.append({"userName": row["userName"], USER_ATTRIBUTES_URN: wanted})
        users_file.write_text(json.dumps({"Resources": resources}))
        env = {
            "PATH": os.environ.get("PATH", ""),
            "OMNI_BASE_URL": emu.api_url,
            "OMNI_API_KEY": KEY,
            "PYTHONIOENCODING": "utf-8",
        }
        command = [str(python), "-c", PEER_RUNNER, str(args.window / 60)]
        command += ["sync", "--source", "json", "--users", str(users_file), "--mode", "attributes"]
        done = subprocess.run(
            command, cwd=tmp, env=env, capture_output=True, text=True, timeout=1800, check=False
        )
    summary = [line.strip() for line in done.stdout.splitlines() if "updates succeeded" in line]
    return summary[-1] if summary else f"exit {done.returncode}"


# -- output ------------------------------------------------------------------------------------------------


#: Requests beyond pages + writes + 1 the sync may send: the canaries' fresh reads (one per write kind).
CANARY_READS = 2
#: In snapshot mode each canary also reads the user before its write (one read before and one after).
SNAPSHOT_CANARY_READS = 2 * CANARY_READS
LIVE, SNAPSHOT, FULL_RESYNC = "sync (live diff)", "sync (snapshot diff)", "sync (snapshot, full resync)"
UNPACED, PACED = "naive PUT/row, unpaced", "naive PUT/row, paced"
#: The emulator's route for a page of the user listing (a lookup by email is "GET /scim/v2/users?filter").
LIST_ROUTE = "GET /scim/v2/users"
#: The default ``full_resync_every``: the period the amortised cost is computed over.
RESYNC_PERIOD = 7


def fmt(value: float | int | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_table(world: World, results: list[Result], args: argparse.Namespace) -> None:
    pages = listing_page_count(world.users, PAGE_SIZE)
    print()
    print(
        f"N={world.users:,} users, k={world.changed:,} changed; the least a live diff can send: "
        f"{pages} pages (overlapping by one user) + {world.changed} writes + 1 = "
        f"{pages + world.changed + 1} requests, plus up to {CANARY_READS} canary reads; a snapshot diff: "
        f"{world.changed} writes + 1 = {world.changed + 1}, plus up to {SNAPSHOT_CANARY_READS} canary reads"
    )
    header = (
        f"{'case':<34}{'requests':>9}{'429s':>7}{'lost':>6}{'wall s':>9}{'x60/W min':>11}"
        f"{'use of limit':>14}{'peak/window':>13}   note"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        if r.requests is None:
            print(f"{r.label:<34}{r.note}")
            continue
        assert r.wall is not None
        scaled = r.wall * 60 / args.window / 60
        peak = f"{r.peak}/{args.limit}" if r.peak is not None else "n/a"
        use = "< 1 window" if r.use_pct is None else f"{r.use_pct:.1f}%"
        print(
            f"{r.label:<34}{r.requests:>9}{fmt(r.rate_limited, 'd'):>7}{fmt(r.lost, 'd'):>6}"
            f"{r.wall:>9.2f}{scaled:>11.1f}{use:>14}{peak:>13}   {r.note}"
        )
    for r in results:
        if r.primed is not None:
            p = r.primed
            print(
                f"{r.label} assumes the snapshot left by earlier runs of the operator on the rows before "
                f"the k changes ({p.note}); not counted above: {p.requests} requests, "
                f"{p.rate_limited} x 429, {p.lost} rows not as wanted, {fmt(p.wall, '.2f')} s"
            )
    for r in results:
        if r.label.startswith("sync") and r.routes is not None:
            by_route = ", ".join(f"{route} {n}" for route, n in sorted(r.routes.items()))
            print(f"requests by route, {r.label}: {by_route}")


def find(results: list[Result], prefix: str) -> Result | None:
    return next((r for r in results if r.label.startswith(prefix) and r.requests is not None), None)


def ratio(case: Result, base: Result) -> str:
    assert case.requests is not None and case.wall is not None
    assert base.requests is not None and base.wall is not None
    requests = f"requests {case.requests}/{base.requests} = {case.requests / base.requests:.3f}"
    return f"{requests}, wall {case.wall:.2f}/{base.wall:.2f} s = {case.wall / base.wall:.3f}"


def print_ratios(results: list[Result]) -> None:
    live, snapshot, full = find(results, LIVE), find(results, SNAPSHOT), find(results, FULL_RESYNC)
    unpaced, paced = find(results, UNPACED), find(results, PACED)
    if unpaced is not None:
        print(f"naive unpaced: {unpaced.rate_limited} x 429, {unpaced.lost} changes lost")
    for case in (live, snapshot):
        if case is None:
            continue
        parts = [f"/ {base.label.split(' (')[0]}: {ratio(case, base)}" for base in (unpaced, paced) if base]
        if case is snapshot and live is not None:
            parts.append(f"/ live diff: {ratio(case, live)}")
        print(f"{case.label} " + "; ".join(parts))
    if live is None or snapshot is None or full is None:
        return
    assert live.requests is not None and snapshot.requests is not None and full.requests is not None
    assert live.wall is not None and snapshot.wall is not None and full.wall is not None
    rest = RESYNC_PERIOD - 1
    amortised = full.requests + rest * snapshot.requests
    every_run = RESYNC_PERIOD * live.requests
    amortised_wall = full.wall + rest * snapshot.wall
    every_run_wall = RESYNC_PERIOD * live.wall
    print(
        f"per {RESYNC_PERIOD} runs (full_resync_every={RESYNC_PERIOD}, computed from the measured runs, each "
        f"applying k changes): 1 full resync + {rest} snapshot = {full.requests} + {rest} x "
        f"{snapshot.requests} = {amortised} requests, {amortised_wall:.2f} s vs {RESYNC_PERIOD} live = "
        f"{RESYNC_PERIOD} x {live.requests} = {every_run} requests, {every_run_wall:.2f} s "
        f"(requests {amortised / every_run:.3f}, wall {amortised_wall / every_run_wall:.3f})"
    )


def run_workload(
    emu: EmulatorServer, world: World, args: argparse.Namespace, peer: Path | None
) -> list[Result]:
    pause = args.window / args.limit
    with tempfile.TemporaryDirectory(prefix="omni-bench-snapshot-") as tmp:
        incremental = SnapshotMode(Path(tmp) / "incremental.json")
        resync = SnapshotMode(Path(tmp) / "resync.json", full_resync_every=RESYNC_PERIOD)

        def runs_before_the_resync() -> str:
            """A live diff that leaves the snapshot, then 6 snapshot runs: the next run is a full resync."""
            notes = [run_sync(emu, world.before, args, resync) for _ in range(RESYNC_PERIOD)]
            return f"{len(notes)} runs: " + " | ".join(dict.fromkeys(notes))

        results = [
            measure(LIVE, emu, world, args, lambda: run_sync(emu, world.rows, args)),
            measure(
                SNAPSHOT,
                emu,
                world,
                args,
                lambda: run_sync(emu, world.rows, args, incremental),
                prime=lambda: "1 run: " + run_sync(emu, world.before, args, incremental),
            ),
            measure(
                FULL_RESYNC,
                emu,
                world,
                args,
                lambda: run_sync(emu, world.rows, args, resync),
                prime=runs_before_the_resync,
            ),
        ]
    results += [
        measure(UNPACED, emu, world, args, lambda: run_naive(emu, world, 0.0)),
        measure(f"{PACED} ({pause:.3g} s)", emu, world, args, lambda: run_naive(emu, world, pause)),
    ]
    if peer is not None:
        results.append(measure(PEER_PACKAGE, emu, world, args, lambda: run_peer(emu, world, peer, args)))
    else:
        results.append(Result(PEER_PACKAGE, note="skipped (see above)"))
    return results


# -- email-only recipients -----------------------------------------------------------------------------

RECIPIENT_ROUTE = "/v1/users/email-only"
RECIPIENT_ATTRIBUTES = ("region", "seat_tier")
RECIPIENT_WORKLOADS = ((400, 0.25, 100),)
QUICK_RECIPIENT_WORKLOADS = ((60, 0.25, 15),)
BULK, PER_CHANGED, PER_ROW = "sync (recipients)", "upsert/changed recipient, paced", "upsert/row, paced"


@dataclass
class RecipientWorld:
    recipients: int
    changed: int
    new: int
    #: email + wanted region/seat_tier.
    rows: list[dict[str, Any]]
    #: The unmanaged department of the seeded recipients holding one (must survive every case).
    unmanaged: dict[str, str]


def seed_recipients(emu: EmulatorServer, world: RecipientWorld) -> None:
    emu.reset()
    for i in range(world.recipients):
        extra = {"department": world.unmanaged[f"r{i:05d}@example.com"]} if i % 3 == 0 else {}
        emu.state.recipients.add(f"r{i:05d}@example.com", {"region": "EMEA", "seat_tier": "gold", **extra})
    emu.context.reset(keep_users=True)  # counters and rate windows cleared, recipients kept


def build_recipient_world(recipients: int, share: float, new: int) -> RecipientWorld:
    changed = round(recipients * share)
    step = recipients / changed if changed else 0.0
    chosen = {int(i * step) for i in range(changed)}
    rows = [
        {"email": f"r{i:05d}@example.com", "region": "AMER" if i in chosen else "EMEA", "seat_tier": "gold"}
        for i in range(recipients)
    ]
    rows += [
        {"email": f"new{i:05d}@example.com", "region": "APAC", "seat_tier": "silver"} for i in range(new)
    ]
    unmanaged = {f"r{i:05d}@example.com": f"dept-{i}" for i in range(0, recipients, 3)}
    return RecipientWorld(recipients, len(chosen), new, rows, unmanaged)


def recipients_lost(emu: EmulatorServer, world: RecipientWorld) -> int:
    """Rows whose wanted values are not held, and recipients that lost their unmanaged department."""
    held = {r.email: dict(r.attributes) for r in emu.state.recipients.all()}
    wrong = sum(
        1
        for row in world.rows
        if any(held.get(row["email"], {}).get(a) != row[a] for a in RECIPIENT_ATTRIBUTES)
    )
    return wrong + sum(1 for email, dept in world.unmanaged.items() if held[email].get("department") != dept)


def run_recipient_sync(emu: EmulatorServer, world: RecipientWorld, args: argparse.Namespace) -> str:
    from omni_provider.operators.sync_recipients import SyncOmniEmailRecipientsOperator

    ti = RecordingTI()
    quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    with omni_connection(emu, args), quiet[0], quiet[1], engine_log_at(logging.WARNING):
        SyncOmniEmailRecipientsOperator(
            task_id="bench_recipients",
            rows=world.rows,
            attributes=list(RECIPIENT_ATTRIBUTES),
            omni_conn_id=CONN_ID,
        ).execute({"ti": ti, "run_id": "bench"})
    summary = ti.pushed["recipient_sync_summary"]
    return f"applied {summary['outcomes']['applied']}, {summary['write_requests']} bulk upserts"


def run_single_upserts(emu: EmulatorServer, world: RecipientWorld, pause: float, *, diffed: bool) -> str:
    """One ``POST /v1/users/email-only`` per changed recipient (``diffed``: after listing them all, each body
    carrying the recipient's other attributes) or per row; ``pause`` before each request, no retry."""
    failed = 0
    with httpx.Client(base_url=emu.api_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
        held: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        while diffed:
            time.sleep(pause)
            params: dict[str, Any] = {"pageSize": 20, **({"cursor": cursor} if cursor else {})}
            page = http.get(RECIPIENT_ROUTE, params=params).json()
            for record in page["records"]:
                held[record["email"]] = {
                    k: v for k, v in record["user_attributes"].items() if not k.startswith("omni_")
                }
            cursor = page["pageInfo"]["nextCursor"]
            if not page["pageInfo"]["hasNextPage"]:
                break
        for row in world.rows:
            current = held.get(row["email"], {})
            wanted = {a: row[a] for a in RECIPIENT_ATTRIBUTES}
            if diffed and all(current.get(a) == v for a, v in wanted.items()):
                continue
            time.sleep(pause)
            body = {"email": row["email"], "userAttributes": {**current, **wanted}}
            if http.post(RECIPIENT_ROUTE, json=body).status_code >= 400:
                failed += 1
    return f"{failed} upserts failed"


def run_recipient_workload(
    emu: EmulatorServer, world: RecipientWorld, args: argparse.Namespace
) -> list[Result]:
    pause = args.window / args.limit
    cases: list[tuple[str, Callable[[], str]]] = [
        (BULK, lambda: run_recipient_sync(emu, world, args)),
        (PER_CHANGED, lambda: run_single_upserts(emu, world, pause, diffed=True)),
        (PER_ROW, lambda: run_single_upserts(emu, world, pause, diffed=False)),
    ]
    results = []
    for label, run in cases:
        seed_recipients(emu, world)
        results.append(timed(label, emu, world.rows, args, run, lost=lambda: recipients_lost(emu, world)))
    return results


def print_recipient_table(world: RecipientWorld, results: list[Result], args: argparse.Namespace) -> None:
    sent = world.changed + world.new
    pages = max(1, -(-world.recipients // 20))
    print()
    print(
        f"R={world.recipients} email-only recipients, k={world.changed} changed, m={world.new} new; the "
        f"least the sync can send: 1 definitions read + {pages} pages + ceil({sent}/20) = "
        f"{-(-sent // 20)} bulk upserts + the canary (1 upsert, 1 read)"
    )
    header = f"{'case':<34}{'requests':>9}{'429s':>7}{'lost':>6}{'wall s':>9}{'x60/W min':>11}   note"
    print(header)
    print("-" * len(header))
    for r in results:
        assert r.wall is not None
        print(
            f"{r.label:<34}{r.requests:>9}{fmt(r.rate_limited, 'd'):>7}{fmt(r.lost, 'd'):>6}"
            f"{r.wall:>9.2f}{r.wall / args.window:>11.1f}   {r.note}"
        )
    bulk, per_changed, per_row = (find(results, label) for label in (BULK, PER_CHANGED, PER_ROW))
    if bulk is not None and bulk.routes is not None:
        by_route = ", ".join(f"{route} {n}" for route, n in sorted(bulk.routes.items()))
        print(f"requests by route, {bulk.label}: {by_route}")
    for base in (per_changed, per_row):
        if bulk is not None and base is not None:
            print(f"{bulk.label} / {base.label}: {ratio(bulk, base)}")


def recipients_missed(world: RecipientWorld, results: list[Result]) -> list[str]:
    sent = world.changed + world.new
    bound = 1 + max(1, -(-world.recipients // 20)) + -(-sent // 20) + 2
    bulk = find(results, BULK)
    if bulk is None or bulk.rate_limited or bulk.lost or (bulk.requests or 0) > bound:
        return [f"R={world.recipients}: {BULK} sent {bulk and bulk.requests} requests (bound {bound})"]
    return []


def warm_up(emu: EmulatorServer, args: argparse.Namespace) -> None:
    """One untimed sync of each kind on a few users: the first run in a process pays about 0.8 s of one-off
    set-up (connection, hook, lazy imports) that would otherwise be charged to whichever case runs first."""
    world = build_world(emu, 5, 1.0, args.seed)
    with tempfile.TemporaryDirectory(prefix="omni-bench-warm-up-") as tmp:
        snapshot = SnapshotMode(Path(tmp) / "warm-up.json")
        for rows in (world.before, world.rows):
            run_sync(emu, rows, args)
            run_sync(emu, rows, args, snapshot)
    emu.reset()


def missed(world: World, results: list[Result]) -> list[str]:
    """What the sync cases should have achieved and did not (bounds from the description above)."""
    pages = listing_page_count(world.users, PAGE_SIZE)
    bounds = {
        LIVE: pages + world.changed + 1 + CANARY_READS,
        FULL_RESYNC: pages + world.changed + 1 + CANARY_READS,
        SNAPSHOT: world.changed + 1 + SNAPSHOT_CANARY_READS,
    }
    failures = []
    for label, bound in bounds.items():
        case = find(results, label)
        if case is None:
            failures.append(f"N={world.users}: {label} did not run")
            continue
        listed = (case.routes or {}).get(LIST_ROUTE, 0)
        if case.rate_limited or case.lost or (case.requests or 0) > bound or (label == SNAPSHOT and listed):
            failures.append(
                f"N={world.users}: {label} sent {case.requests} requests (bound {bound}; {listed} list "
                f"pages), {case.rate_limited} x 429, {case.lost} changes lost"
            )
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=60, help="requests per window per key (Omni: 60)")
    parser.add_argument("--window", type=float, default=2.0, help="rate window in seconds (Omni: 60)")
    parser.add_argument(
        "--mode", choices=("sliding", "fixed"), default="sliding", help="how the emulator counts"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: small workloads, no peer")
    parser.add_argument("--skip-peer", action="store_true", help=f"leave out {PEER_PACKAGE}")
    parser.add_argument("--peer-venv", help=f"reuse (or create) this venv for {PEER_PACKAGE}")
    args = parser.parse_args(argv)
    if args.quick:
        args.skip_peer = True

    print("command:", shlex.join([".venv/bin/python", "bench/bench_sync.py", *sys.argv[1:]]))
    print(
        f"emulator: {args.limit} requests per {args.window:g} s per key, {args.mode} window, in-process on "
        f"127.0.0.1; one key; page size {PAGE_SIZE}. 'x60/W min' = wall time scaled to Omni's 60 s window."
    )
    peer = peer_venv(args)
    # Imported before any timing: loading Airflow takes seconds and is not part of a sync.
    import omni_provider.operators.sync_attributes
    import omni_provider.operators.sync_recipients  # noqa: F401

    config = EmulatorConfig(
        api_keys=[KEY], rate_limit=args.limit, rate_window=args.window, rate_window_mode=args.mode
    )
    failures = []
    with EmulatorServer(config) as emu:
        warm_up(emu, args)
        for users, share in QUICK_WORKLOADS if args.quick else WORKLOADS:
            world = build_world(emu, users, share, args.seed)
            results = run_workload(emu, world, args, peer)
            print_table(world, results, args)
            print_ratios(results)
            failures += missed(world, results)
        for recipients, share, new in QUICK_RECIPIENT_WORKLOADS if args.quick else RECIPIENT_WORKLOADS:
            recipient_world = build_recipient_world(recipients, share, new)
            recipient_results = run_recipient_workload(emu, recipient_world, args)
            print_recipient_table(recipient_world, recipient_results, args)
            failures += recipients_missed(recipient_world, recipient_results)
    if peer is not None and not args.peer_venv:
        shutil.rmtree(peer.parent.parent, ignore_errors=True)
    for failure in failures:
        print(f"[MISSED] {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
