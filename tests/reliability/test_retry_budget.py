"""Retry budgets compose: client retries x Airflow task retries x parallel tasks stay bounded in an outage.

The emulator answers every request with 503 (or drops every connection) for the whole simulated outage.
K tasks run in parallel threads (two ``UpdateOmniUserOperator``, two ``SyncOmniUserAttributesOperator``),
each on its own connection and simulated clock: the client's ``sleep`` and ``clock`` are injected
through the hook's ``client_options``, so every back-off, pacing wait and Airflow ``retry_delay`` is
recorded and added to the clock instead of slept. Requests go over loopback to the emulator through a
transport that stamps each with its task's simulated time.

Airflow's task retries are simulated the way the task runner decides them: ``AirflowFailException`` ends
the task, any other ``AirflowException`` is retried after ``retry_delay`` until ``retries`` is used up.

Budget: each task attempt fails at its first client call after N = ``max_retries`` + 1 attempts, so the
whole outage costs at most K x M x N requests (M = ``retries`` + 1), however long it lasts.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import timedelta
from typing import Any

import httpx
import pytest
from omni_testkit import omni_connection_json
from reliability_kit import print_figures

from omni_provider._compat import AirflowException, AirflowFailException
from omni_provider.client import RetryPolicy
from omni_provider.emulator import EmulatorServer
from omni_provider.hooks.omni import OmniScimHook
from omni_provider.operators import common as sync_module  # where every sync task builds its hook
from omni_provider.operators import update_user as update_module
from omni_provider.operators.sync_attributes import SyncOmniUserAttributesOperator
from omni_provider.operators.update_user import UpdateOmniUserOperator

OUTAGE_SECONDS = 60.0
CLIENT_MAX_RETRIES = 4  # the hook's default: N = 5 attempts per client call
TASK_RETRIES = 2  # M = 3 task attempts
RETRY_DELAY = timedelta(seconds=10)
#: With the rate limit lifted (a window of 1,000,000 requests) the pacer never waits, so every wait is a
#: retry back-off or the task's retry delay. (A threshold above zero would misfile a back-off drawn below
#: it: full jitter draws from [0, cap], and did so about once in ten runs at 1 ms.)
PACING_NOISE = 0.0


class SimClock:
    """A task's simulated time: ``sleep`` records the wait and moves the clock, nothing is slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += max(0.0, seconds)


class StampingTransport(httpx.BaseTransport):
    """Real HTTP to the emulator; records (simulated time, method, path) of every request sent."""

    def __init__(self, clock: SimClock, log: list[tuple[float, str, str]]) -> None:
        self._clock = clock
        self._log = log
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._log.append((self._clock.now, request.method, request.url.path))
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def run_like_airflow(op: Any, clock: SimClock, attempts_log: list[str]) -> None:
    """Run ``op`` as the task runner would: up to ``retries`` + 1 attempts, ``retry_delay`` between them."""
    for attempt in range(op.retries + 1):
        try:
            op.execute({"run_id": "outage"})
            attempts_log.append("success")
            return
        except AirflowFailException:
            attempts_log.append("failed (no retry)")
            return
        except AirflowException:
            attempts_log.append("failed (retryable)")
            if attempt < op.retries:
                clock.sleep(op.retry_delay.total_seconds())


@pytest.mark.parametrize("outage", ["error_503", "drop_connection"])
def test_outage_request_count_is_bounded_by_composed_budget(
    omni_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, outage: str
) -> None:
    emu = omni_emulator
    emu.state.add_user("ada@example.com", "Ada", {"region": "us-east"})
    clocks: dict[str, SimClock] = {}
    sent: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    attempts: dict[str, list[str]] = defaultdict(list)

    def hook_factory(omni_conn_id: str = "omni_default", **kwargs: Any) -> OmniScimHook:
        clock = clocks[omni_conn_id]
        options = {
            "sleep": clock.sleep,
            "clock": clock.clock,
            "transport": StampingTransport(clock, sent[omni_conn_id]),
        }
        return OmniScimHook(omni_conn_id=omni_conn_id, client_options=options, **kwargs)

    monkeypatch.setattr(update_module, "OmniScimHook", hook_factory)
    monkeypatch.setattr(sync_module, "OmniScimHook", hook_factory)

    common: dict[str, Any] = {"retries": TASK_RETRIES, "retry_delay": RETRY_DELAY}
    ops: list[Any] = []
    for i in range(4):
        conn_id = f"omni_task_{i}"
        clocks[conn_id] = SimClock()
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            omni_connection_json(emu.base_url, max_retries=CLIENT_MAX_RETRIES),
        )
        if i < 2:
            ops.append(
                UpdateOmniUserOperator(
                    task_id=f"update_{i}",
                    user_name="ada@example.com",
                    attributes={"region": "eu-west"},
                    omni_conn_id=conn_id,
                    **common,
                )
            )
        else:
            ops.append(
                SyncOmniUserAttributesOperator(
                    task_id=f"sync_{i}",
                    rows=[{"userName": "ada@example.com", "region": "eu-west"}],
                    attributes=["region"],
                    omni_conn_id=conn_id,
                    **common,
                )
            )

    emu.config.apply_patch({"faults": {outage: 1.0}})
    emu.stats.reset()
    threads = [
        threading.Thread(
            target=run_like_airflow, args=(op, clocks[op.omni_conn_id], attempts[op.omni_conn_id])
        )
        for op in ops
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()

    k, m, n = len(ops), TASK_RETRIES + 1, CLIENT_MAX_RETRIES + 1
    budget = k * m * n
    total = sum(len(log) for log in sent.values())
    in_outage = sum(1 for log in sent.values() for t, _m, _p in log if t < OUTAGE_SECONDS)
    server_seen = emu.stats.snapshot()["requests_total"]

    # The bound, per task and in total, counted at both ends of the wire.
    assert total <= budget and server_seen == total
    for conn_id, log in sent.items():
        assert len(log) <= m * n, conn_id
        assert attempts[conn_id] == ["failed (retryable)"] * m  # an outage is worth a task retry...
    assert in_outage <= budget  # ...and the request count in the 60 s window is within the same budget

    # Waits grow: within each client call the n-th back-off is drawn from [0, min(30, 2**(n-1))] s.
    policy = RetryPolicy(max_attempts=n)
    retry_delay = RETRY_DELAY.total_seconds()
    by_index: dict[int, list[float]] = defaultdict(list)
    for clock in clocks.values():
        backoffs = [w for w in clock.waits if w > PACING_NOISE and w != retry_delay]
        assert len(backoffs) == m * (n - 1)
        for call in range(m):
            for index, wait in enumerate(backoffs[call * (n - 1) : (call + 1) * (n - 1)]):
                by_index[index].append(wait)
    caps = [min(policy.backoff_max, policy.backoff_initial * 2**i) for i in range(n - 1)]
    for index, waits in by_index.items():
        assert all(0 <= w <= caps[index] for w in waits), (index, waits)
    means = [sum(by_index[i]) / len(by_index[i]) for i in range(n - 1)]
    assert means[-1] > 2 * means[0]
    # A task's whole outage (all attempts, back-offs and retry delays) in simulated seconds: bounded too.
    longest = max(c.now for c in clocks.values())
    assert longest <= m * sum(caps) + (m - 1) * retry_delay

    print_figures(
        f"RETRY BUDGET ({outage})",
        {
            "parallel_tasks_K": k,
            "task_attempts_M": m,
            "client_attempts_N": n,
            "budget_KxMxN": budget,
            "requests_sent": total,
            "requests_seen_by_emulator": server_seen,
            "requests_in_first_60s": in_outage,
            "requests_per_task": {c: len(log) for c, log in sorted(sent.items())},
            "backoff_caps_s": caps,
            "mean_backoff_by_retry_s": [round(x, 2) for x in means],
            "longest_task_timeline_s": round(longest, 1),
            "retry_delay_s": retry_delay,
        },
    )
