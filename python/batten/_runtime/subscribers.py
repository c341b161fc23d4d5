"""Delivering a run's events to its subscribers (private, layer ``batten._runtime``): the step
callbacks and loggers of a workflow (``on_step_completed``, ``add_logger``), a stream's queue,
the CLI's progress display.

The engine reports ``(kind, step_id, attempt, payload)`` on whichever thread the event happens
(the event loop's for async steps, a worker's for sync steps); everything here hops to the event
loop's thread first, so subscribers only ever run on the loop. Steps of a composite step's
nested run report with ids ``"parent/child"``. Builds no typed events (NOTE: those classes cost
~15 ms of ``import batten``; :mod:`batten._runtime.streaming` builds them).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from batten._internal.context import EventSink, Raw
from batten._internal.status import TERMINAL

if TYPE_CHECKING:
    from batten.result import WorkflowResult

__all__ = ["notify_completed", "on_loop", "subscriber"]

_log = logging.getLogger("batten")


def on_loop(deliver: Callable[[Raw], None], is_live: Callable[[], bool]) -> EventSink:
    """An engine event sink that calls ``deliver(raw)`` on the running loop's thread, always
    through the loop's callback queue (``call_soon`` there, ``call_soon_threadsafe`` from a
    worker thread). The engine hands events over in the order it recorded them and announces
    the run's end only after the last one; one FIFO queue keeps that order to the subscriber.
    """
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()

    def sink(kind: str, step_id: str, attempt: int, payload: Any) -> None:
        raw = (kind, step_id, attempt, payload)
        if threading.get_ident() == loop_thread:
            loop.call_soon(deliver, raw)
        elif is_live():
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
                loop.call_soon_threadsafe(deliver, raw)

    return sink


# Async step callbacks and logger hooks still running, by the task of the run that started
# them; `notify_completed` awaits them so they finish before `execute` returns.
_pending: weakref.WeakKeyDictionary[asyncio.Task[Any], set[asyncio.Future[Any]]] = (
    weakref.WeakKeyDictionary()
)


def subscriber(workflow: Any, extra: EventSink | None) -> EventSink | None:
    """The run's event sink: ``extra`` plus the workflow's step callbacks and loggers, all
    called on the event loop's thread in causal order (see :func:`stream`). ``None`` when
    nobody listens (the engine then builds no events at all). Call it from the run's task."""
    callbacks = list(workflow._step_callbacks)
    loggers = list(workflow._loggers)
    if not callbacks and not loggers:
        return extra
    run_task = asyncio.current_task()
    pending: set[asyncio.Future[Any]] = set()
    if run_task is not None:
        _pending[run_task] = pending
    # Callbacks and loggers hear the workflow's own steps and compensations, as
    # execute_workflow_stream yields them; nested steps ("parent/child") stay in their
    # composite's result and in `stream`.
    own = {s.step_id for s in workflow._steps}
    own.update(s.compensation.step_id for s in workflow._steps if s.compensation is not None)

    def dispatch(raw: Raw) -> None:
        kind, step_id, attempt, payload = raw
        if extra is not None:
            extra(kind, step_id, attempt, payload)
        if step_id not in own:
            return
        if kind == "started":
            for lg in loggers:
                _safely(pending, getattr(lg, "log_step_start", None), step_id, payload)
        elif kind == "retrying":
            delay, error = payload
            for lg in loggers:
                _safely(
                    pending, getattr(lg, "log_step_retry", None), step_id, attempt, delay, error
                )
        elif kind in TERMINAL:
            for lg in loggers:
                _safely(
                    pending,
                    getattr(lg, "log_step_complete", None),
                    step_id,
                    payload,
                    payload.execution_time_ms,
                )
            for cb in callbacks:
                _safely(pending, cb, payload)

    return on_loop(dispatch, lambda: True)


def _safely(pending: set[asyncio.Future[Any]], fn: Callable[..., Any] | None, *args: Any) -> None:
    if fn is None:
        return
    try:
        out = fn(*args)
        if inspect.isawaitable(out):
            task = asyncio.ensure_future(out)
            pending.add(task)
            task.add_done_callback(pending.discard)
            task.add_done_callback(_log_task_error)
    except Exception:
        _log.exception("batten: a step callback or logger raised; the run goes on")


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("batten: an async step callback or logger raised", exc_info=task.exception())


async def notify_completed(
    callbacks: Sequence[Callable[[WorkflowResult], Any]],
    result: WorkflowResult,
    loggers: Sequence[Any] = (),
) -> None:
    """Ends a run's notifications: waits for the run's async step callbacks and logger hooks
    still running, then calls each completion callback with ``result``, then each logger's
    ``log_workflow_complete(result)`` (awaiting async ones). One that raises is logged on the
    ``batten`` logger and skipped; the result stands. Call it from the run's task."""
    run_task = asyncio.current_task()
    pending = _pending.pop(run_task, None) if run_task is not None else None
    if pending:
        await asyncio.wait(list(pending))
    hooks = [*callbacks, *(getattr(lg, "log_workflow_complete", None) for lg in loggers)]
    for hook in hooks:
        if hook is None:
            continue
        try:
            out = hook(result)
            if inspect.isawaitable(out):
                await out
        except Exception:
            _log.exception("batten: a workflow completion callback raised; the result stands")
