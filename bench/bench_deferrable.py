"""A deferrable sync against the same sync holding its worker: wall time, worker-slot seconds, requests.

Run:  .venv/bin/python bench/bench_deferrable.py              # N=2000, k=600, about 4 minutes
      .venv/bin/python bench/bench_deferrable.py --quick      # N=300, k=100, a few seconds
      options: --limit 60 --window 10 --users N --changed K

Omni allows 60 requests per minute per key; the emulator (in-process, loopback) enforces ``--limit``
requests per ``--window`` seconds, so the run that would take ~11 minutes against Omni takes about two
minutes per case. (A step's own work does not shrink with the window, so a much shorter window than the
default would mostly measure it: the share of the slot held grows as the window shrinks.) Both cases
start from the same freshly seeded emulator (N users) and want the same rows (k regions changed), through
``SyncOmniUserAttributesOperator`` and an ``omni`` connection with the same limit and window
(``bench_sync.py``'s helpers):

* not deferred: ``execute`` as a DAG runs it; the worker slot is held for the whole run.
* deferred: ``deferrable=True``, ``min_defer_seconds`` scaled like the window (10 s x window/60), driven
  as Airflow drives it: ``execute`` -> ``TaskDeferred`` -> wait for the ``DateTimeTrigger``'s moment (the
  triggerer's job; no slot held) -> a fresh operator instance's ``execute_complete`` -> ... -> the summary.
  The slot is held only inside ``execute`` / ``execute_complete``; that is the "slot s" figure.

Requests and 429s come from the emulator's request log, "peak" is the most requests it accepted in any
window-length span (the limit caps it), "lost" the rows whose wanted value is not in Omni afterwards.

The figure for Omni's real 60 s window is computed, not measured: a step's work (sending up to the limit,
saving the state, starting again from the state) does not grow with the window, while the time between
steps does. So at 60 s: slot seconds = the deferred case's measured slot seconds; wall = its measured wall
x 60/window; the share is their ratio. (Omni's answers take longer than the emulator's: with ~0.2 s per
request and the sync's concurrency, add about 1 s per step to the slot seconds.)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import logging
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from bench_sync import (
    ATTRIBUTES,
    CONN_ID,
    KEY,
    RecordingTI,
    World,
    changes_lost,
    engine_log_at,
    limit_use,
    omni_connection,
)

from omni_provider.emulator import EmulatorConfig, EmulatorServer


@dataclass
class Case:
    label: str
    wall: float
    slot: float
    deferrals: int
    steps: int
    requests: int
    rate_limited: int
    peak: int | None
    lost: int
    applied: int


def build(emu: EmulatorServer, users: int, changed: int, seed: int) -> World:
    emu.reset(seed_users=users, seed=seed)
    every = users / changed
    chosen = {int(i * every) for i in range(changed)}
    rows, before = [], []
    for i, user in enumerate(emu.state.users()):
        current = {name: user.attributes.get(name) for name in ATTRIBUTES} | {"userName": user.user_name}
        before.append(current)
        rows.append({**current, "region": f"changed-{i}"} if i in chosen else current)
    return World(users=users, changed=len(chosen), rows=rows, before=before)


def run_case(
    label: str, emu: EmulatorServer, world: World, args: argparse.Namespace, *, deferrable: bool
) -> Case:
    from omni_provider._compat import TaskDeferred
    from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator

    emu.reset(seed_users=world.users, seed=args.seed)
    reports = tempfile.mkdtemp(prefix="bench-deferrable-")
    ti = RecordingTI()
    context: Any = {"ti": ti, "run_id": f"bench-{label}"}

    def operator() -> Any:  # a fresh instance for every step, as on a new worker
        return SyncOmniUserAttributesOperator(
            task_id="bench_deferrable",
            rows=world.rows,
            attributes=list(ATTRIBUTES),
            omni_conn_id=CONN_ID,
            progress_every=3600,
            report_path=reports + "/",
            deferrable=deferrable,
            min_defer_seconds=10.0 * args.window / 60.0,
        )

    slot = 0.0
    deferrals = 0
    steps = 0
    quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    gc.collect()
    started = time.monotonic()
    with omni_connection(emu, args), quiet[0], quiet[1], engine_log_at(logging.WARNING):
        resume: tuple[str, dict[str, Any]] | None = None  # (method, kwargs) of the last deferral
        while True:
            steps += 1
            task = operator()
            entered = time.monotonic()
            try:
                if resume is None:
                    task.execute(context)
                else:
                    getattr(task, resume[0])(context, **resume[1])
                slot += time.monotonic() - entered
                break
            except TaskDeferred as deferred:
                slot += time.monotonic() - entered
                deferrals += 1
                moment = deferred.trigger.moment
                time.sleep(max(0.0, moment.timestamp() - time.time()))  # the triggerer's wait
                resume = (deferred.method_name, {"event": moment, **(deferred.kwargs or {})})
    wall = time.monotonic() - started
    log = emu.stats.request_log()
    _use, peak = limit_use(log, args.limit, args.window)
    summary = ti.pushed["sync_summary"]
    assert summary.get("deferrals", 0) == deferrals
    return Case(
        label=label,
        wall=wall,
        slot=slot,
        deferrals=deferrals,
        steps=steps,
        requests=len(log),
        rate_limited=sum(r.status == 429 for r in log),
        peak=peak,
        lost=changes_lost(emu, world.rows),
        applied=summary["outcomes"]["applied"],
    )


def print_results(world: World, cases: list[Case], args: argparse.Namespace) -> None:
    print(f"\nN={world.users} users, k={world.changed} changed; {args.limit} requests per {args.window:g} s")
    header = f"{'case':<14}{'wall s':>9}{'slot s':>9}{'slot %':>8}{'steps':>7}{'defer':>7}"
    print(header + f"{'requests':>10}{'429s':>6}{'peak':>6}{'applied':>9}{'lost':>6}")
    for c in cases:
        peak = "-" if c.peak is None else str(c.peak)
        print(
            f"{c.label:<14}{c.wall:>9.1f}{c.slot:>9.2f}{100 * c.slot / c.wall:>7.1f}%{c.steps:>7}"
            f"{c.deferrals:>7}{c.requests:>10}{c.rate_limited:>6}{peak:>6}{c.applied:>9}{c.lost:>6}"
        )
    held, deferred = cases
    print(
        f"ratios (deferred / not deferred, same run): wall x{deferred.wall / held.wall:.2f}, worker-slot "
        f"seconds x{deferred.slot / held.slot:.3f}, requests x{deferred.requests / held.requests:.2f}"
    )
    scale = 60.0 / args.window
    wall_60 = deferred.wall * scale
    print(
        f"at Omni's 60 s window (computed: slot seconds as measured, wall x{scale:g}): wall "
        f"{wall_60 / 60:.1f} min, slot held {deferred.slot:.1f} s = "
        f"{100 * deferred.slot / wall_60:.2f}% of it "
        f"(not deferred: 100%, {held.wall * scale / 60:.1f} min)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=60, help="requests per window per key (Omni: 60)")
    parser.add_argument("--window", type=float, default=10.0, help="rate window in seconds (Omni: 60)")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--changed", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: N=300, k=100")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.changed, args.window = 300, 100, 3.0
    print("command:", shlex.join([".venv/bin/python", "bench/bench_deferrable.py", *sys.argv[1:]]))
    # Imported before any timing: loading Airflow takes seconds and is not part of a sync.
    import omni_provider.operators.sync_attributes  # noqa: F401

    config = EmulatorConfig(api_keys=[KEY], rate_limit=args.limit, rate_window=args.window)
    with EmulatorServer(config) as emu:
        world = build(emu, args.users, args.changed, args.seed)
        cases = [
            run_case("not deferred", emu, world, args, deferrable=False),
            run_case("deferred", emu, world, args, deferrable=True),
        ]
    print_results(world, cases, args)
    failed = [c.label for c in cases if c.lost or c.rate_limited or (c.peak or 0) > args.limit]
    for label in failed:
        print(f"[MISSED] {label}: changes lost, 429s or more than the limit in a window")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
