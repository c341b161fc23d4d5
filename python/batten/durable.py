"""Durable runs' controls: pause, cancel, status, listing and history of runs in a store.

``Workflow.execute(store=...)`` records the run in the store and checkpoints every step as it
changes status (the engine writes them natively, append-only: a completed step's output and
state delta, never the whole state again). ``Workflow.resume(run_id)`` restores the completed
steps' outputs without running them again and runs the rest; a step that was in flight when
its process died runs again with the same ``context.idempotency_key``. Temporal, DBOS and
LangGraph's checkpointers work the same way.

The functions here (``pause``, ``cancel``, ``get_workflow_status``, ``list_runs``,
``run_history``) work from any process that shares the store; a run executing elsewhere
honours ``pause`` and ``cancel`` within about ``POLL_INTERVAL`` seconds.

A public facade (layer beside ``batten.workflow`` and ``batten.events``): the executing side of
a durable run is :mod:`batten._runtime.durable`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from batten._internal.status import WorkflowStatus
from batten._runtime.durable import POLL_INTERVAL as POLL_INTERVAL
from batten._runtime.durable import is_finished as is_finished
from batten._runtime.durable import require_store as require_store
from batten._runtime.durable import stored_result as stored_result
from batten.errors import RunEndedError
from batten.store import RunInfo, StepRecord, Store

#: ``"sync"``: each checkpoint is written before the next step starts (the default; a crash
#: loses nothing that finished). ``"batch"``: checkpoints are buffered and written every 256
#: events and at the run's end (faster; a crash re-runs the steps whose checkpoints were still
#: buffered).
Durability = Literal["sync", "batch"]

# POLL_INTERVAL, is_finished, require_store and stored_result are importable from here too, as
# before the runtime was split out (the CLI and the approval functions use them).
__all__ = [
    "Durability",
    "cancel",
    "get_workflow_status",
    "list_runs",
    "pause",
    "run_history",
]


def pause(run_id: str, *, store: Store | str | None = None) -> None:
    """Asks run ``run_id`` to pause (seed 001's ``pause``): running steps finish, nothing new
    starts, and the run ends ``PAUSED``; ``resume`` continues it. Recorded in the store, so a
    run executing in another process honours it within ``POLL_INTERVAL`` seconds.

    Args:
        run_id: the durable run's id.
        store: the store (object or URL); default: the ``BATTEN_STORE`` environment variable.

    Raises:
        RunNotFoundError: no such run.
        RunEndedError: the run has already ended (completed, failed, cancelled or
            compensated); nothing is recorded.
    """
    native = require_store(store)._native
    _refuse_ended(run_id, native.get_run(run_id), "paused")
    native.set_control(run_id, "pause")


def _refuse_ended(run_id: str, info: Mapping[str, Any], what: str) -> None:
    status = info["status"]
    if is_finished(status):
        raise RunEndedError(
            f"run '{run_id}' is {status}: it has ended and cannot be {what}"
            + (
                "; `resume(run_id, retry_failed=True)` runs its failed steps again"
                if status == WorkflowStatus.FAILED.value
                else ""
            ),
            run_id=run_id,
            status=status,
        )


def cancel(run_id: str, *, store: Store | str | None = None) -> None:
    """Cancels run ``run_id``: running steps are cancelled (async) or abandoned (sync) and the
    run ends ``CANCELLED``. A run executing in another process honours it within
    ``POLL_INTERVAL`` seconds; a paused, waiting or interrupted run (no process executes it)
    is marked ``CANCELLED`` at once, and ``resume`` then returns it as it is. Arguments and
    errors as :func:`pause` (a run that has ended raises :class:`~batten.RunEndedError`)."""
    native = require_store(store)._native
    info = native.get_run(run_id)
    _refuse_ended(run_id, info, "cancelled")
    native.set_control(run_id, "cancel")
    if info["status"] in _IDLE:
        native.finish_status(run_id, WorkflowStatus.CANCELLED.value, time.time(), None, None)


#: Statuses of a run that has not finished but that no process executes (it waits for a
#: resume): a cancel marks it ``CANCELLED`` at once.
_IDLE = (
    WorkflowStatus.PAUSED.value,
    WorkflowStatus.WAITING_APPROVAL.value,
    WorkflowStatus.INTERRUPTED.value,
)


def get_workflow_status(run_id: str, *, store: Store | str | None = None) -> RunInfo:
    """The record of run ``run_id`` (status, timestamps, input, error, result).

    Raises:
        RunNotFoundError: no such run.
        CorruptRecordError: its record cannot be decoded; the message names the run.
    """
    return require_store(store).get_run(run_id)


def list_runs(
    *,
    store: Store | str | None = None,
    status: WorkflowStatus | str | None = None,
    workflow_id: str | None = None,
    limit: int = 1000,
) -> list[RunInfo]:
    """Runs in the store, newest first, filtered by ``status`` and ``workflow_id``; at most
    ``limit`` (int >= 0). A run whose record cannot be decoded is left out, with a warning on
    the ``batten.store`` logger naming it (see :meth:`batten.Store.list_runs`).

    Raises:
        ValueError: ``status`` is not a ``WorkflowStatus`` value, or a bad ``limit``.
    """
    return require_store(store).list_runs(status=status, workflow_id=workflow_id, limit=limit)


def run_history(run_id: str, *, store: Store | str | None = None) -> list[StepRecord]:
    """Run ``run_id``'s step history: every start, retry, outcome, approval wait and decision,
    with attempts, durations and errors (seed 001's audit trail).

    Raises:
        RunNotFoundError: no such run.
        CorruptRecordError: a stored event cannot be decoded; the message names the run and the
            event.
    """
    return require_store(store).history(run_id)
