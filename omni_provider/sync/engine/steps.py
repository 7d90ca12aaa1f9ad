"""A deferrable run in steps: pause when the rate window is full, save the state, resume in a fresh run.

``EngineRun`` inherits this part. A target's apply stage calls ``_writing(attempt, settled, verified,
...)``; when the write loop pauses (``pause.WritesPaused``) the state goes to the ``Deferral``'s store and
``RunDeferred`` tells the adapter when to resume (Airflow defers to a ``DateTimeTrigger``; a Dagster step
resumes in-process). A resumed step (``resume``) rebuilds the plan from the state, settles what was settled
and goes on; its client, pacer and gate are new. Past the run's deadline nothing more is sent: the rest is
reported as not attempted and the run ends with a complete report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, TypeVar

from pydantic import TypeAdapter

from omni_provider.client import OmniScimClient
from omni_provider.client.urls import normalize_base_url
from omni_provider.errors import OmniValidationError
from omni_provider.sync.engine.breaker import WriteGate
from omni_provider.sync.engine.pause import Deferral, PauseRule, RunDeferred, WritesPaused
from omni_provider.sync.engine.plan_artifact import PlanArtifact, PlanRefusedError, canonical_json, parse_plan
from omni_provider.sync.engine.state import STATE_FORMAT, STATE_VERSION, age_seconds

ResultT = TypeVar("ResultT")
#: What a target's apply stage is called with: the items settled so far, the run's canary gate (the kinds of
#: write verified so far already passed), and the pause rule (None: never pause).
Attempt = Callable[[Mapping[int, Any], WriteGate, PauseRule | None], ResultT]

#: How a step waits for the rate window itself (``run_in_steps``, a resume after a crash).
wait_for_window = time.sleep

DEADLINE_REACHED = "the run's execution_timeout ends before Omni's rate window frees"


def add_counters(carried: Mapping[str, Any], part: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Counters of earlier steps plus this step's (``requests_by_method`` added per method)."""
    total: dict[str, Any] = {name: part.get(name, 0) + carried.get(name, 0) for name in names}
    methods = dict(carried.get("requests_by_method", {}))
    for method, count in part.get("requests_by_method", {}).items():
        methods[method] = methods.get(method, 0) + count
    total["requests_by_method"] = dict(sorted(methods.items()))
    return total


class Steps:
    """The deferrable part of ``EngineRun`` (see the module's docstring)."""

    #: The target's outcome type (its state is saved as these).
    outcome_type: ClassVar[type]
    #: The target's name in a state document ("user_attributes", "group_membership").
    target: ClassVar[str]

    client: OmniScimClient
    summary: dict[str, Any]
    dry_run: bool
    log: Any
    run_id: str
    _stop: threading.Event

    def _init_steps(self, deferral: Deferral | None) -> None:
        self.deferral = deferral
        #: How often this run deferred so far.
        self.deferrals = 0
        #: Client counters of earlier steps (added to this step's in the report).
        self._carried: dict[str, Any] = {}
        self._started_at = time.time()
        #: The plan artifact's document (made once per run, kept in every save of its state).
        self._artifact_document: dict[str, Any] | None = None
        self._detail_document: dict[str, Any] | None = None

    # -- the target's part ---------------------------------------------------------------------------------

    def _fingerprint(self) -> str:
        """A digest of the sync's options: a state made with others is not continued."""
        raise NotImplementedError

    def plan_artifact(self) -> PlanArtifact:
        """The plan made (after ``run``), as the stored plan file (``plan_artifact``) an apply reads: its
        writes, with a digest; a deferrable run's state holds it too."""
        raise NotImplementedError

    def _plan_state(self) -> dict[str, Any]:
        """What a resumed step needs beyond the plan artifact, JSON-ready: every plan item in order (the
        report lists the unchanged and rejected ones too) and the Omni states the writes are based on."""
        raise NotImplementedError

    def _load_plan_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _progress_state(self) -> dict[str, Any]:
        """What else of the target changes as the writes go (JSON-ready, saved at every save; e.g. the
        snapshot keeper's confirmed states); none by default."""
        return {}

    def _load_progress_state(self, state: Mapping[str, Any]) -> None:
        """A resumed step takes back ``_progress_state``'s document."""

    def _all_outcomes(self, settled: Mapping[int, Any]) -> list[Any]:
        """Every item's outcome: those settled, the rest as not attempted."""
        raise NotImplementedError

    def _continue(
        self,
        settled: Mapping[int, Any],
        verified: frozenset[str],
        started: float,
        counters_before: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The apply stage onwards, from ``settled`` (a resumed step: ``counters_before`` None, the client
        is new)."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------------------

    def _pause_rule(self) -> PauseRule | None:
        if self.deferral is None or self.dry_run:
            return None
        return PauseRule(self.client.pacer, self.deferral.min_defer_seconds)

    def _outcomes_adapter(self) -> TypeAdapter[dict[int, Any]]:
        return TypeAdapter(dict[int, self.outcome_type])  # type: ignore[name-defined]

    def _writing(
        self,
        attempt: Attempt[ResultT],
        settled: Mapping[int, Any],
        verified: frozenset[str],
        counters: Callable[[], dict[str, Any]],
    ) -> ResultT:
        """The target's apply stage, paused and saved as the rate window requires (``RunDeferred``), or
        stopped at the deadline. ``counters``: the client counters of the run so far, for the state."""
        deferral = self.deferral
        if deferral is not None and not self.dry_run:
            if deferral.deadline is not None and time.time() >= deferral.deadline:
                self._stop_at_deadline()
            elif self._detail_document is None:
                # Before the run's first write: a crash from here on resumes from this state. (A resumed
                # step starts from the state saved at its deferral, which is current.)
                self._save(settled, verified, counters(), deferrals=self.deferrals)
        while True:
            try:
                gate = WriteGate()
                gate.verified(verified)
                return attempt(settled, gate, None if self._stop.is_set() else self._pause_rule())
            except WritesPaused as paused:
                assert deferral is not None
                settled, verified = paused.settled, paused.verified
                if deferral.deadline is not None and paused.resume_at >= deferral.deadline:
                    self._stop_at_deadline()
                    continue  # stopped: the loop settles the rest as not attempted
                self.deferrals += 1
                self._save(settled, verified, counters(), deferrals=self.deferrals)
                items = self._save_interim_report(settled)
                self.log.info(
                    "Omni's rate window is full: %d of %d items settled; deferring for %.1f s (deferral %d)",
                    len(settled),
                    items,
                    max(0.0, paused.resume_at - time.time()),
                    self.deferrals,
                )
                raise RunDeferred(
                    deferral.store.path, paused.resume_at, self.deferrals, deferral.deadline
                ) from None

    def _stop_at_deadline(self) -> None:
        self.log.error("Stopping: %s; the rest is reported as not attempted", DEADLINE_REACHED)
        self.summary["stopped"] = DEADLINE_REACHED
        self._stop.set()

    def _save(
        self,
        settled: Mapping[int, Any],
        verified: frozenset[str],
        counters: dict[str, Any],
        *,
        deferrals: int,
    ) -> None:
        assert self.deferral is not None
        document = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "run": {
                "target": self.target,
                "base_url": self.client.base_url,
                "fingerprint": self._fingerprint(),
                "run_id": self.run_id,
                "started_at": self._started_at,
                "saved_at": time.time(),
                "deferrals": deferrals,
                "deadline": self.deferral.deadline,
                "summary": dict(self.summary),
                "counters": counters,
            },
            "progress": {
                "settled": self._outcomes_adapter().dump_python(dict(settled), mode="json"),
                "verified": sorted(verified),
                "target": self._progress_state(),
            },
            "plan": self._artifact_document or self._new_artifact_document(),
            # The same in every save of a run: made once (or taken as loaded by a resumed step).
            "detail": self._detail_document or self._new_detail_document(),
        }
        self.deferral.store.save(document)

    def _new_detail_document(self) -> dict[str, Any]:
        self._detail_document = self._plan_state()
        return self._detail_document

    def _new_artifact_document(self) -> dict[str, Any]:
        artifact = self.plan_artifact()
        self._artifact_document = {**artifact.content(), "digest": artifact.digest}
        return self._artifact_document

    def _check_artifact(self, document: Mapping[str, Any]) -> None:
        """The state's plan is intact (its digest) and was made by this target against this Omni."""
        assert self.deferral is not None
        where = f"the plan in the run state at {self.deferral.store.path}"
        artifact = parse_plan(canonical_json(document), where=where)
        if artifact.header.target != self.target or artifact.header.omni != normalize_base_url(
            self.client.base_url
        ):
            raise PlanRefusedError(
                f"{where} was made for another sync ({artifact.header.target}, another Omni)"
            )
        self._artifact_document = dict(document)

    def _save_interim_report(self, settled: Mapping[int, Any]) -> int:
        """Every item's outcome so far, the rest as not attempted: what is left if the run is cancelled
        (or marked failed) while deferred, when no step of it runs again. Returns the number of items."""
        assert self.deferral is not None
        outcomes = self._all_outcomes(settled)
        try:
            self.deferral.store.save_report(outcomes)
        except Exception as exc:
            self.log.warning(
                "Could not write the interim report %s (%s)", self.deferral.store.report_path, exc
            )
        return len(outcomes)

    def _finish_state(self) -> None:
        """The run ended (its report is written): its state goes."""
        if self.deferral is not None:
            self.deferral.store.remove()

    def resumable_state(self) -> dict[str, Any] | None:
        """The state a retry of this run continues from: same run, target, host and options, younger than
        ``resume_within``; an older or foreign one is discarded (logged) and None returned."""
        if self.deferral is None:
            return None
        store = self.deferral.store
        document = store.load()
        if document is None:
            return None
        run = document.get("run", {})
        same = (
            run.get("target") == self.target
            and run.get("base_url") == self.client.base_url
            and run.get("fingerprint") == self._fingerprint()
            and run.get("run_id") == self.run_id  # a retry, not the next scheduled run
        )
        age = age_seconds(document)
        if not same:
            self.log.warning(
                "Discarding the run state at %s: made for another sync; starting over", store.path
            )
        elif age > self.deferral.resume_within:
            self.log.warning(
                "Discarding the run state at %s: saved %.0f s ago, older than resume_within (%.0f s); "
                "starting over",
                store.path,
                age,
                self.deferral.resume_within,
            )
        else:
            return document
        store.remove()
        return None

    def resume(self, document: Mapping[str, Any], *, after_crash: bool = False) -> dict[str, Any]:
        """Continue the run saved in ``document`` (a step after a deferral, or a retry after a crash: then
        the canary state is dropped, so the first write is a canary again). Returns the summary, or raises
        ``RunDeferred`` again, or the run's errors, as ``run`` does."""
        try:
            self._check_before_resume()
            run = document["run"]
            self.summary.clear()
            self.summary.update(run["summary"])
            self.deferrals = int(run["deferrals"])
            self._carried = dict(run["counters"])
            self._started_at = float(run["started_at"])
            # A deferred step keeps the run's deadline; a retry after a crash has its own try's.
            if self.deferral is not None and run.get("deadline") is not None and not after_crash:
                self.deferral.deadline = float(run["deadline"])
            self._check_artifact(document["plan"])
            self._load_plan_state(document["detail"])
            self._detail_document = dict(document["detail"])
            self._load_progress_state(document["progress"].get("target", {}))
            settled = self._outcomes_adapter().validate_python(document["progress"]["settled"])
            verified = frozenset(document["progress"]["verified"])
            if after_crash:
                verified = frozenset()
                self.log.warning(
                    "Resuming from the run state saved %.0f s ago at %s: %d items already settled keep their "
                    "outcome; Omni is not listed again, the first write (after one rate window, for the "
                    "requests of the interrupted step) is a canary again",
                    age_seconds(dict(document)),
                    self.deferral.store.path if self.deferral else "?",
                    len(settled),
                )
            if after_crash:
                # The interrupted step's last requests may still count in Omni's window, and this pacer
                # knows nothing of them: one window from now they no longer do.
                wait_for_window(self.client.pacer.window)
            started = time.monotonic() - (time.time() - self._started_at)
            result = self._continue(settled, verified, started)
        except RunDeferred:
            raise
        except BaseException as exc:
            self.summary.setdefault("error", str(exc) or type(exc).__name__)
            self._finish_state()
            raise
        self._finish_state()
        return result

    def _check_before_resume(self) -> None:
        raise NotImplementedError


RunT = TypeVar("RunT", bound="Steps")


def run_in_steps(
    start: Callable[[], AbstractContextManager[RunT]],
    first: Callable[[RunT], dict[str, Any]],
    *,
    sleep: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """A resumable run in one process (a Dagster step): ``start()`` opens a fresh run (its own client and
    pacer, closed on exit) with a ``deferral``; ``first(run)`` runs it from the rows. Whenever the rate window
    is full the state is saved and the wait happens here; a step retry finding a young state continues from
    it (the first write a canary again) instead of reading Omni again."""
    with start() as run:
        earlier = run.resumable_state()
        try:
            return run.resume(earlier, after_crash=True) if earlier is not None else first(run)
        except RunDeferred as deferred:
            paused = deferred
    while True:
        (sleep or wait_for_window)(max(0.0, paused.resume_at - time.time()))
        with start() as run:
            assert run.deferral is not None
            document = run.deferral.store.load()
            if document is None:
                raise OmniValidationError(f"the run state at {paused.state_path} is gone; run the sync again")
            try:
                return run.resume(document)
            except RunDeferred as deferred:
                paused = deferred
