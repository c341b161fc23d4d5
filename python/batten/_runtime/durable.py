"""Durable runs, one process's side (private, layer ``batten._runtime``): recording a run,
reopening it to resume, watching the store for pause and cancel, recording its end, and reading
a run's result back from the store. The run controls users call are :mod:`batten.durable`.

``Workflow.execute(store=...)`` records the run in the store and checkpoints every step as it
changes status (the engine writes them natively, append-only: a completed step's output and
state delta, never the whole state again). ``Workflow.resume(run_id)`` restores the completed
steps' outputs without running them again and runs the rest; a step that was in flight when
its process died runs again with the same ``context.idempotency_key``. Temporal, DBOS and
LangGraph's checkpointers work the same way.

A run executing here honours a ``pause`` or ``cancel`` recorded by any process sharing the store
within about ``POLL_INTERVAL`` seconds (it looks at the store's control that often); a store
that pushes changes (PostgreSQL: LISTEN/NOTIFY, see ``batten._core.Store.watch``) also wakes
the watcher at once, the poll staying as the fallback for a push lost while its connection was
down.

Ownership (DESIGN §4): executing a durable run first claims its lease in the store
(:func:`claim_run`: owner host/pid/random id, a fencing token one higher than the last claim's,
an expiry ``lease_seconds`` ahead), atomically, as Temporal's activity heartbeats and Prefect's
zombie detection do. One heartbeat thread per process renews it every ``heartbeat_seconds``; every
checkpoint and status write carries the token and the store refuses a stale one, so a process
that was stopped past its lease and comes back cannot overwrite its successor: its run stops
with :class:`~batten.LeaseLostError`. The lease is released whenever the execution ends here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from batten._core import Journal, StepResult, WorkflowContext
from batten._internal.checks import check_lease as check_lease
from batten._internal.owner import DEFAULT_HEARTBEAT_SECONDS as DEFAULT_HEARTBEAT_SECONDS
from batten._internal.owner import DEFAULT_LEASE_SECONDS as DEFAULT_LEASE_SECONDS
from batten._internal.owner import lease_is_live, new_owner, owner_is_alive
from batten._internal.status import StepStatus, WorkflowStatus
from batten.errors import (
    CorruptRecordError,
    LeaseLostError,
    RunLeasedError,
    WorkflowDefinitionError,
)
from batten.result import WorkflowResult
from batten.store import RunInfo, StepRecord, Store, open_store

if TYPE_CHECKING:
    from batten._runtime.run import Outcome
    from batten.durable import Durability

__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "DEFAULT_LEASE_SECONDS",
    "LEASE_POLL_INTERVAL",
    "POLL_INTERVAL",
    "DurableRun",
    "check_durability",
    "check_lease",
    "claim_run",
    "is_finished",
    "require_store",
    "stored_result",
]

_log = logging.getLogger("batten.store")

#: Seconds between two looks at the store for a pause or cancel request while a run executes.
POLL_INTERVAL = 0.1

#: Longest sleep between two claims while ``resume(wait=True)`` waits for a live owner.
LEASE_POLL_INTERVAL = 0.5


_RUNNING = WorkflowStatus.RUNNING.value

_FINISHED = {
    WorkflowStatus.COMPLETED,
    WorkflowStatus.FAILED,
    WorkflowStatus.CANCELLED,
    WorkflowStatus.COMPENSATED,
}


def require_store(store: Store | str | None) -> Store:
    """``store`` opened, or the ``BATTEN_STORE`` environment variable's URL when ``None``.

    Raises:
        TypeError: no store given and ``BATTEN_STORE`` unset.
        StoreURLError, StoreUnavailableError, SchemaVersionError: as :class:`batten.Store`.
    """
    st = open_store(store)
    if st is None:
        url = os.environ.get("BATTEN_STORE")
        if not url:
            raise TypeError(
                "no store: pass store=... (a batten.Store or a URL) or set BATTEN_STORE"
            )
        st = open_store(url)
    assert st is not None
    return st


#: The key of the run's W3C trace context (``{"traceparent": ...}``) in its stored input, next
#: to the context's fields (not in its metadata: steps never see it). Written when the run is
#: traced (:mod:`batten._runtime.telemetry`), read back when it is resumed.
TRACE_KEY = "trace"


def new_run_id() -> str:
    """A new run id: a random (version 4) UUID as 32 hex digits, as ``uuid.uuid4().hex``.
    NOTE: the same bits as :func:`uuid.uuid4` sets, without the module (~2.5 ms of import, with
    platform) or a ``UUID`` object per run (~3 µs of issue 18's D4)."""
    n = int.from_bytes(os.urandom(16), "big")
    n = (n & ~(0xC000 << 48)) | (0x8000 << 48)  # the RFC 4122 variant
    n = (n & ~(0xF000 << 64)) | (4 << 76)  # version 4
    return f"{n:032x}"


def _context_json(context: WorkflowContext, trace: dict[str, str] | None = None) -> dict[str, Any]:
    data = {
        "workflow_id": context.workflow_id,
        "user_context": context.user_context,
        "variables": dict(context.variables),
        "metadata": dict(context.metadata),
    }
    if trace:
        data[TRACE_KEY] = dict(trace)
    return data


def _context_from(
    journal: Any, run_id: str, stored: Any, extra: dict[str, Any] | None = None
) -> WorkflowContext:
    """The input context stored with run ``run_id``; ``CorruptRecordError`` naming the run when
    it is not the context ``begin`` wrote. ``extra`` receives the stored trace context under
    :data:`TRACE_KEY` when there is a valid one."""
    d = journal.decode_output(stored)
    if extra is not None and isinstance(d, dict):
        trace = d.get(TRACE_KEY)
        if isinstance(trace, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in trace.items()
        ):
            extra[TRACE_KEY] = trace
    try:
        return WorkflowContext(d["workflow_id"], d["user_context"], d["variables"], d["metadata"])
    except (KeyError, TypeError) as exc:
        raise CorruptRecordError(
            f"corrupt record in the store: run {run_id!r} input: not a workflow context "
            f"({type(exc).__name__}: {exc})"
        ) from None


def check_durability(durability: Any) -> None:
    if durability not in ("sync", "batch"):
        raise WorkflowDefinitionError(f"durability must be 'sync' or 'batch', got {durability!r}")


def _leased_error(run_id: str, lease: dict[str, Any], waited: float | None) -> RunLeasedError:
    now = time.time()
    age = max(0.0, now - lease["heartbeat_at"])
    expires_in = lease["expires_at"] - now
    tail = (
        f"; still held after waiting {waited:.1f}s"
        if waited is not None
        else "; resume(..., wait=True) (batten resume --wait) waits for it"
    )
    return RunLeasedError(
        f"run '{run_id}' is being executed by {lease['host']} pid {lease['pid']} (lease token "
        f"{lease['token']}, last heartbeat {age:.1f}s ago, lease expires in "
        f"{max(0.0, expires_in):.1f}s unless renewed){tail}",
        run_id=run_id,
        host=lease["host"],
        pid=int(lease["pid"]),
        owner_id=lease["owner_id"],
        heartbeat_age=age,
        expires_at=lease["expires_at"],
        token=int(lease["token"]),
    )


async def claim_run(
    store: Store,
    run_id: str,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    wait: bool = False,
    wait_timeout: float | None = None,
) -> int:
    """Claims the execution of run ``run_id`` for this process and returns the fencing token.

    Won when no one holds the run, its lease expired, or (on this host) its owner's process is
    gone: a dead pid, a zombie, or a pid reused by another process (start time differs); that
    lease is taken over at once, by compare-and-set on its token, so of several claimants
    exactly one wins.

    Args:
        store: the store.
        run_id: the run.
        lease_seconds: the lease's duration in seconds.
        wait: while a live owner holds it, poll (every ``LEASE_POLL_INTERVAL`` seconds at most)
            until it is released or expires, instead of raising.
        wait_timeout: seconds to wait at most (``None``: no bound).

    Raises:
        RunLeasedError: a live owner holds the run (and ``wait`` is false, or ``wait_timeout``
            passed); it names the owner, its heartbeat age and the lease's expiry.
        RunNotFoundError: no such run.
    """
    native = store._native
    host, pid, owner_id, started = new_owner()
    began = time.monotonic()
    while True:
        now = time.time()
        won, lease = native.claim(run_id, host, pid, owner_id, started, now, lease_seconds)
        if not won and not owner_is_alive(lease):
            won, lease = native.claim(
                run_id, host, pid, owner_id, started, now, lease_seconds, lease["token"]
            )
        if won:
            return int(lease["token"])
        if not lease_is_live(lease, now):
            continue  # expired or died between the two looks: claim again
        waited = time.monotonic() - began
        if not wait:
            raise _leased_error(run_id, lease, None)
        if wait_timeout is not None and waited >= wait_timeout:
            raise _leased_error(run_id, lease, waited)
        pause = min(LEASE_POLL_INTERVAL, max(0.01, lease["expires_at"] - time.time()))
        if wait_timeout is not None:
            pause = min(pause, max(0.01, wait_timeout - waited))
        await asyncio.sleep(pause)


class DurableRun:
    """One process's execution of a durable run (private: ``Workflow`` drives it)."""

    def __init__(
        self, store: Store, run_id: str, journal: Any, trace: dict[str, str] | None = None
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.journal = journal
        #: The W3C trace context stored with the run (``{"traceparent": ...}``) or ``None``.
        self.trace = trace
        #: The run's observation (``telemetry.RunTelemetry``) when it began traced here.
        self.telemetry: Any = None
        #: The workflow's plan as ``begin_durable`` compiled it just before (``None`` once
        #: used, or for a resume): the run's execution does not look it up again.
        self.plan: Any = None
        self._watcher: asyncio.TimerHandle | None = None
        #: The store's push subscription for this run (``_core.StoreWatch``) while it runs.
        self._watch: Any = None
        #: The store control (``"pause"`` / ``"cancel"``) this process obeyed, or ``None``.
        self.control_seen: str | None = None

    def hold(self, token: int, workflow: Any) -> None:
        """Holds the claimed lease ``token``: writes are fenced with it, heartbeats renew it."""
        self.journal.hold(token, workflow._lease_seconds, workflow._heartbeat_seconds)

    def release(self) -> None:
        """Stops the heartbeat and releases the lease (best effort: an unreachable store lets
        it lapse on its own)."""
        try:
            self.journal.release()
        except Exception:  # the lease expires by itself
            pass

    def check_lease(self) -> None:
        """Raises ``LeaseLostError`` when another process took the run over."""
        lost = self.journal.lease_lost
        if lost is not None:
            raise LeaseLostError(
                f"{lost}; this process stopped executing it and wrote nothing more",
                self.run_id,
            )

    @classmethod
    def begin(
        cls,
        workflow: Any,
        context: WorkflowContext,
        store: Store,
        run_id: str | None,
        serializer: Any,
        durability: Durability,
        trace: dict[str, str] | None = None,
    ) -> DurableRun:
        """Records a new run (before any step runs); ``trace`` is the run span's W3C trace
        context, stored with the run's input so a resume joins the same trace."""
        check_durability(durability)
        if not run_id:
            run_id = new_run_id()
        journal = Journal(store._native, run_id, serializer=serializer, batch=durability == "batch")
        # The run and its lease in one store transaction where the store can (one commit per
        # durable run fewer: issue 18's D4), the context encoded and the lease held in the same
        # native call. Nobody else knows the id yet, so the claim cannot meet a live owner
        # (unless a resume raced it: then it raises RunLeasedError).
        host, pid, owner_id, started = new_owner()
        try:
            held = journal.begin_run(
                workflow.workflow_id,
                workflow.name,
                str(workflow.version),
                _RUNNING,
                _context_json(context, trace),
                time.time(),
                host,
                pid,
                owner_id,
                started,
                workflow._lease_seconds,
                workflow._heartbeat_seconds,
                what="the run's input context",
            )
        except TypeError as exc:
            raise TypeError(f"workflow '{workflow.workflow_id}': {exc}") from None
        if held is not None:
            raise _leased_error(run_id, held, None)
        return cls(store, run_id, journal, trace)

    @classmethod
    def reopen(
        cls,
        workflow: Any,
        store: Store,
        run_id: str,
        serializer: Any,
        durability: Durability,
        token: int | None = None,
    ) -> tuple[DurableRun, WorkflowContext, RunInfo]:
        """Loads run ``run_id`` to resume it: its journal restores every completed step.
        ``token``: the lease this process claimed (read after the claim, so what it restores
        is what the previous owner left)."""
        check_durability(durability)
        native = store._native
        raw, info = cls.checked(workflow, store, run_id)
        journal = Journal(
            native, run_id, serializer=serializer, batch=durability == "batch", resume=True
        )
        stored: dict[str, Any] = {}
        context = _context_from(journal, run_id, raw["input"], stored)
        run = cls(store, run_id, journal, stored.get(TRACE_KEY) or None)
        if token is not None:
            run.hold(token, workflow)
        return run, context, info

    @staticmethod
    def checked(workflow: Any, store: Store, run_id: str) -> tuple[dict[str, Any], RunInfo]:
        """Run ``run_id``'s record (raw and as ``RunInfo``), after checking that it belongs to
        this workflow and version (``WorkflowDefinitionError`` otherwise)."""
        raw = store._native.get_run(run_id)
        info = RunInfo._from(raw)
        _check_identity(workflow, run_id, info.workflow_id, info.version)
        return raw, info

    @staticmethod
    def belongs(workflow: Any, store: Store, run_id: str) -> None:
        """:meth:`checked`'s checks alone, on the raw record: what a resume asks before it
        claims the run (so a run of another workflow is refused without waiting); the claim's
        :meth:`reopen` reads the record again, as it is once the lease is held.

        Raises:
            RunNotFoundError: no such run.
            WorkflowDefinitionError: the run belongs to another workflow or version.
            CorruptRecordError: the record cannot be decoded.
        """
        raw = store._native.get_run(run_id)
        workflow_id, version = raw.get("workflow_id"), raw.get("version")
        if not isinstance(workflow_id, str) or not isinstance(version, str):
            RunInfo._from(raw)  # raises CorruptRecordError, naming the field
        _check_identity(workflow, run_id, workflow_id, version)

    def on_run(self, run: Any) -> None:
        """Watches the store for ``pause``/``cancel`` requests while ``run`` executes: a look
        every ``POLL_INTERVAL`` seconds, from a loop timer, and a look at once whenever the store
        pushes a change of the run's control (``_core.Store.watch``: PostgreSQL's NOTIFY; the
        other stores push nothing and the poll alone serves).
        NOTE: a timer handle rather than a task looping on ``asyncio.sleep``: creating and
        cancelling a task per run (and the loop pass that unwinds it) was part of the per-run
        cost of small durable workflows (issue 18's D4); the looks are the same."""
        if run.done.done():
            return  # it finished as it started (steps called on the loop): nothing to watch
        loop = asyncio.get_running_loop()
        self._watcher = loop.call_later(POLL_INTERVAL, self._look, run, loop)
        try:
            self._watch = self.store._native.watch(
                self.run_id, functools.partial(self._pushed, run, loop)
            )
        except Exception:  # no push channel: the poll alone
            self._watch = None
        if self._watch is not None:
            run.done.add_done_callback(lambda _done: self._stop_watching())

    def _pushed(self, run: Any, loop: asyncio.AbstractEventLoop) -> None:
        """The store's push (on a thread of the store's): a look, on the loop, now."""
        with contextlib.suppress(RuntimeError):  # the loop closed: the run is over
            loop.call_soon_threadsafe(self._look_now, run, loop)

    def _look_now(self, run: Any, loop: asyncio.AbstractEventLoop) -> None:
        """A look ahead of the poll's next one (which it replaces), unless watching stopped."""
        if self._watcher is None:
            return
        self._watcher.cancel()
        self._look(run, loop)

    def _stop_watching(self) -> None:
        """Ends the poll and the push subscription (idempotent)."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    def _look(self, run: Any, loop: asyncio.AbstractEventLoop) -> None:
        """One look at the store's control for the run; schedules the next unless it acted."""
        self._watcher = None
        if self.journal.lease_lost is not None:
            run.cancel()  # another process took over: stop now, write nothing more
            return
        try:
            control = self.store._native.control(self.run_id)
        except Exception:  # a store hiccup: the next look may succeed
            control = None
        if control == "pause":
            self.control_seen = control
            run.pause()
            return
        if control == "cancel":
            self.control_seen = control
            run.cancel()
            return
        self._watcher = loop.call_later(POLL_INTERVAL, self._look, run, loop)

    def finish(
        self, out: Outcome, status: WorkflowStatus
    ) -> tuple[WorkflowStatus, list[StepResult], str | None]:
        """The run's status as the store records it (``WAITING_APPROVAL`` when only approvals
        keep it from completing; ``PAUSED``), with the approval steps' results saying so."""
        self._stop_watching()
        steps, error = out.steps, out.error
        if status != WorkflowStatus.FAILED:
            return status, steps, error  # only a failed run can be one waiting for approvals
        waiting = [s for s in steps if s.is_failure and s.error_type == "ApprovalPending"]
        others = [s for s in steps if s.is_failure and s.error_type != "ApprovalPending"]
        if waiting and not others:
            status, error = WorkflowStatus.WAITING_APPROVAL, None
            steps = [_waiting_result(s) if s in waiting else s for s in steps]
        return status, steps, error

    def record_trace_end(self, carrier: dict[str, str]) -> None:
        """Keeps ``carrier`` (the W3C trace context of the run span of the stretch ending now)
        in the store's cache, for the next resume's span link (``telemetry.end_key``). Best
        effort: a store error leaves the link on the run's first span."""
        if not carrier:
            return
        from batten._runtime.telemetry import END_TTL, end_key

        with contextlib.suppress(Exception):
            self.store._native.cache_put(end_key(self.run_id), dict(carrier), time.time() + END_TTL)

    def trace_end(self) -> dict[str, str] | None:
        """The trace context :meth:`record_trace_end` kept for this run, or ``None``."""
        from batten._runtime.telemetry import end_key

        try:
            found, value = self.store._native.cache_get(end_key(self.run_id), time.time())
        except Exception:
            return None
        if not found or not isinstance(value, dict):
            return None
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            return None
        return value

    def attempts_so_far(self) -> dict[str, int]:
        """``{step path: attempts}`` of the steps the run's earlier stretches started and did
        not complete (the ones a resume runs again), from its history; ``{}`` on a store
        error. Steps under a composite have paths ``"parent/child"``."""
        try:
            records = self.store.history(self.run_id)
        except Exception:
            return {}
        # The engine numbers attempts from 1 in each stretch: a stretch's attempts end with
        # the step's terminal record, or where the numbers start again.
        done: dict[str, int] = {}  # attempts of the steps' finished stretches
        last: dict[str, tuple[int, bool]] = {}  # (latest attempt, its record was terminal)
        for rec in records:
            sid = rec.step_id
            if rec.status == StepStatus.COMPLETED:
                done.pop(sid, None)
                last.pop(sid, None)
                continue
            prev = last.get(sid)
            if prev is not None and (rec.attempt < prev[0] or prev[1]):
                done[sid] = done.get(sid, 0) + prev[0]
                prev = None
            latest = rec.attempt if prev is None else max(prev[0], rec.attempt)
            last[sid] = (latest, rec.status not in (StepStatus.RUNNING, StepStatus.RETRYING))
        return {sid: done.get(sid, 0) + n for sid, (n, _t) in last.items()}

    def record_end(self, status: WorkflowStatus, error: str | None, final_output: Any) -> None:
        """Writes the run's end: pending checkpoints, its status and stored result, its control
        request cleared (unless it paused or waits for an approval), and the lease released,
        in one store transaction where the store can (``Journal.finish_run``): the execution
        here is over once its end is recorded."""
        # The result is stored as outputs are (JSON or the serializer's form), or as None when
        # it cannot be; encoded natively, with the rest, in one call.
        self.journal.finish_run(
            status.value,
            time.time(),
            error,
            final_output if status == WorkflowStatus.COMPLETED else None,
            status not in (WorkflowStatus.PAUSED, WorkflowStatus.WAITING_APPROVAL),
            encode_result=True,
        )

    def record_interrupted(self, reason: str) -> None:
        """Records the run ``INTERRUPTED`` with error ``reason`` when its execution here is
        abandoned by an exception (``CancelledError``, ``KeyboardInterrupt``): best effort, as
        that exception is about to propagate; a store failure is logged (``batten.store``
        logger) and left for the lease's expiry to reveal. A run that had obeyed a ``cancel``
        request from the store is recorded ``CANCELLED`` instead."""
        self._stop_watching()
        status = WorkflowStatus.INTERRUPTED
        if self.control_seen == "cancel":
            status = WorkflowStatus.CANCELLED
        try:
            self.record_end(status, reason, None)
        except Exception as exc:  # the original exception matters more
            _log.warning(
                "run %s: could not record it %s: %s: %s",
                self.run_id,
                status,
                type(exc).__name__,
                exc,
            )


def _check_identity(workflow: Any, run_id: str, workflow_id: Any, version: Any) -> None:
    """``WorkflowDefinitionError`` unless run ``run_id``'s recorded ``workflow_id`` and
    ``version`` are ``workflow``'s."""
    if workflow_id != workflow.workflow_id:
        raise WorkflowDefinitionError(
            f"run '{run_id}' belongs to workflow '{workflow_id}', not '{workflow.workflow_id}'"
        )
    if version != str(workflow.version):
        raise WorkflowDefinitionError(
            f"run '{run_id}' was started by version {version!r} of workflow "
            f"'{workflow_id}'; this is version {workflow.version!r} (its steps may "
            "differ, so its checkpoints do not apply)"
        )


def _waiting_result(s: StepResult) -> StepResult:
    return s.replace(
        status=StepStatus.WAITING_APPROVAL,
        output=None,
        exception=None,
        metadata=dict(s.metadata),
        children=list(s.children),
    )


def stored_steps(history: Sequence[StepRecord]) -> list[StepResult]:
    """Each top-level step's last recorded outcome, as ``StepResult``s (a finished run's
    result read back from the store)."""
    last: dict[str, StepRecord] = {}
    attempts: dict[str, int] = {}
    for rec in history:
        if "/" in rec.step_id:
            continue
        attempts[rec.step_id] = max(attempts.get(rec.step_id, 0), rec.attempt)
        if rec.status not in (StepStatus.RUNNING, StepStatus.RETRYING):
            last[rec.step_id] = rec
    return [
        StepResult(
            step_id=r.step_id,
            status=r.status,
            output=r.output,
            error=r.error,
            error_type=r.error_type,
            attempts=attempts.get(r.step_id, 0),
            execution_time_ms=r.duration_ms or 0.0,
            metadata=(
                {"from_store": True}
                if r.traceback is None
                else {"from_store": True, "traceback": r.traceback}
            ),
        )
        for r in last.values()
    ]


def stored_result(
    info: RunInfo,
    history: Sequence[StepRecord],
    context: WorkflowContext | None,
    total_steps: int,
) -> WorkflowResult:
    """A run's result as its store holds it (a finished run's, or a run's so far)."""
    return WorkflowResult(
        workflow_id=info.workflow_id,
        run_id=info.run_id,
        status=info.status,
        steps=stored_steps(history),
        final_output=info.result,
        error=info.error,
        total_execution_time_ms=(info.updated_at - info.created_at) * 1000.0,
        context=context,  # type: ignore[arg-type]
        total_steps=total_steps,
    )


def is_finished(status: WorkflowStatus | str) -> bool:
    """True for the statuses a run never leaves (completed, failed, cancelled, compensated):
    it takes no more pause, cancel or approval."""
    return status in _FINISHED
