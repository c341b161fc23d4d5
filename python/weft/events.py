"""Engine events for subscribers: step callbacks, ``WorkflowLogger`` and streaming (private
wiring; the public classes are re-exported by ``weft``)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from weft._compile import EventSink
from weft._core import StepResult

if TYPE_CHECKING:
    from weft.workflow import Workflow, WorkflowResult

_log = logging.getLogger("weft")

#: Event kinds that end a step; their payload is the StepResult.
TERMINAL = frozenset({"completed", "failed", "timeout", "skipped", "blocked", "cancelled"})


def subscriber(workflow: Workflow, extra: EventSink | None) -> EventSink | None:
    """The run's event sink: ``extra`` plus the workflow's step callbacks and loggers, all
    called on the event loop's thread. ``None`` when nobody listens (the engine then builds no
    events at all)."""
    callbacks = list(workflow._step_callbacks)
    loggers = list(workflow._loggers)
    if not callbacks and not loggers:
        return extra
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()

    def deliver(kind: str, step_id: str, attempt: int, payload: Any) -> None:
        if extra is not None:
            extra(kind, step_id, attempt, payload)
        if kind == "started":
            for lg in loggers:
                _safely(getattr(lg, "log_step_start", None), step_id, payload)
        elif kind in TERMINAL and isinstance(payload, StepResult):
            for lg in loggers:
                _safely(
                    getattr(lg, "log_step_complete", None),
                    step_id,
                    payload,
                    payload.execution_time_ms,
                )
            for cb in callbacks:
                _safely(cb, payload)

    def sink(kind: str, step_id: str, attempt: int, payload: Any) -> None:
        if threading.get_ident() == loop_thread:
            deliver(kind, step_id, attempt, payload)
        else:
            loop.call_soon_threadsafe(deliver, kind, step_id, attempt, payload)

    return sink


def _safely(fn: Callable[..., Any] | None, *args: Any) -> None:
    if fn is None:
        return
    try:
        out = fn(*args)
        if inspect.isawaitable(out):
            task = asyncio.ensure_future(out)
            task.add_done_callback(_log_task_error)
    except Exception:
        _log.exception("weft: a step callback raised; the run goes on")


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("weft: an async step callback raised", exc_info=task.exception())


async def notify_completed(
    callbacks: Sequence[Callable[[WorkflowResult], Any]], result: WorkflowResult
) -> None:
    """Calls each completion callback with ``result`` (awaiting async ones); a callback that
    raises is logged and skipped."""
    for cb in callbacks:
        try:
            out = cb(result)
            if inspect.isawaitable(out):
                await out
        except Exception:
            _log.exception("weft: a workflow completion callback raised; the result stands")
