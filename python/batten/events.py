"""Run events: typed event classes, streaming (:func:`stream`, :func:`execute_workflow_stream`),
:class:`WorkflowLogger`, and the wiring of a workflow's step callbacks and loggers.

The engine reports ``(kind, step_id, attempt, payload)`` on whichever thread the event happens
(the event loop's for async steps, a worker's for sync steps); everything here hops to the event
loop's thread first, so subscribers and stream consumers only ever run on the loop. Steps of a
composite step's nested run report with ids ``"parent/child"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from batten._core import StepResult, WorkflowContext
from batten._internal.checks import check_run_options
from batten._internal.context import EventSink
from batten._internal.events import (
    CircuitStateChanged,
    Raw,
    RunFinished,
    StepBlocked,
    StepCancelled,
    StepCompleted,
    StepFailed,
    StepFinished,
    StepRetrying,
    StepSkipped,
    StepStarted,
    StepTimedOut,
    WorkflowEvent,
    event_of,
)
from batten._internal.options import CompileOptions
from batten._internal.status import TERMINAL

if TYPE_CHECKING:
    from batten.workflow import Workflow, WorkflowResult

__all__ = [
    "CircuitStateChanged",
    "RunFinished",
    "StepBlocked",
    "StepCancelled",
    "StepCompleted",
    "StepFailed",
    "StepFinished",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "StepTimedOut",
    "WorkflowEvent",
    "WorkflowLogger",
    "execute_workflow_stream",
    "stream",
]

_log = logging.getLogger("batten")


class WorkflowLogger:
    """Base class of run loggers, attached with ``Workflow.add_logger`` (JAF's
    ``WorkflowLogger``, seed 000 "Implement Proper Logging"). Every hook is a no-op; override
    the ones you need.

    Hooks run on the event loop's thread as the events happen. A hook may be ``async def``
    (step hooks then run as tasks that the run awaits before it returns). A hook that raises is
    logged on the ``batten`` logger and does not affect the run. Steps of a composite step's
    nested run are reported as ``"parent/child"``.
    """

    def log_step_start(self, step_name: str, state: WorkflowContext) -> None:
        """An attempt of step ``step_name`` (str) starts; ``state`` is the
        :class:`~batten.WorkflowContext` it runs with (``state.variables``, ``state.workflow_id``).
        """

    def log_step_complete(self, step_name: str, result: StepResult, duration_ms: float) -> None:
        """Step ``step_name`` (str) ended with ``result`` (any final status: completed, failed,
        timeout, skipped, blocked, cancelled); ``duration_ms`` (float, milliseconds) is
        ``result.execution_time_ms``."""

    def log_step_retry(
        self, step_name: str, attempt: int, delay: float, error: BaseException
    ) -> None:
        """Attempt ``attempt`` (int, 1-based) of step ``step_name`` failed with ``error``; the
        next attempt starts after ``delay`` seconds (float)."""

    def log_workflow_complete(self, result: WorkflowResult) -> None:
        """The run ended with ``result`` (a :class:`~batten.WorkflowResult`), after the
        workflow's completion callbacks."""


def _on_loop(deliver: Callable[[Raw], None], is_live: Callable[[], bool]) -> EventSink:
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


async def stream(
    workflow: Workflow,
    context: WorkflowContext | None = None,
    *,
    timeout: float | None = None,
    max_concurrency: int | None = None,
    base: CompileOptions | None = None,
) -> AsyncGenerator[WorkflowEvent, None]:
    """Runs ``workflow`` and yields its events as they happen, then :class:`RunFinished`
    (seed 002's streamed ``phase_start`` / ``phase_retry`` / ``phase_complete`` /
    ``final_result``, typed).

    Args:
        workflow: the :class:`~batten.Workflow` to run (its step callbacks, completion callbacks
            and loggers run as with ``execute``).
        context: the initial :class:`~batten.WorkflowContext` (default: an empty one).
        timeout: seconds for the whole run, as ``Workflow.execute``.
        max_concurrency: at most this many steps in flight, as ``Workflow.execute``.
        base: compile options of a ``WorkflowEngine`` (private; ``None`` for the defaults).

    Yields:
        :class:`StepStarted` per attempt, :class:`StepRetrying` per failed attempt that will be
        retried, one :class:`StepFinished` subclass per step (``StepCompleted``, ``StepFailed``,
        ``StepTimedOut``, ``StepSkipped``, ``StepBlocked``, ``StepCancelled``), compensations
        included, and last :class:`RunFinished`. Nested steps of composite steps appear with ids
        ``"parent/child"``. A step's ``StepStarted`` comes before its other events, and a
        step's ``StepStarted`` after the terminal events of the steps it depends on.

    The run is a task on the running loop that does not wait for the consumer: events queue up
    (unbounded) while the consumer is busy. Leaving early (``break``, ``aclose()``, or
    cancelling the consumer) cancels the run and waits for its steps to unwind, as cancelling
    ``execute`` does; after a bare ``break`` that happens when the event loop finalizes the
    generator, so use ``async with contextlib.aclosing(stream(...)) as events:`` to have the
    run stopped by the end of the ``async with``.

    Raises:
        WorkflowDefinitionError, TypeError: as ``Workflow.execute``, from the first
            ``__anext__``, before any step runs.
    """
    live = True
    queue: asyncio.Queue[WorkflowEvent | None] = asyncio.Queue()

    def deliver(raw: Raw) -> None:
        event = event_of(raw)
        if live and event is not None:
            queue.put_nowait(event)

    sink = _on_loop(deliver, lambda: live)
    check_run_options(timeout, max_concurrency)  # before a durable run is recorded
    # A workflow with a store (``with_store``) streams a durable run, as ``execute`` would.
    context, durable = workflow._begin_durable(context, None, None)
    task = asyncio.create_task(
        workflow._execute(
            context,
            timeout=timeout,
            max_concurrency=max_concurrency,
            on_event=sink,
            base=base,
            durable=durable,
        )
    )
    # Done callbacks run after the callbacks already queued, so every event reported before the
    # run finished is ahead of this sentinel.
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (event := await queue.get()) is not None:
            yield event
        result = task.result()
        live = False
        yield RunFinished(result)
    finally:
        live = False
        if not task.done():
            await _stop(task)


async def _stop(task: asyncio.Task[Any]) -> None:
    """Cancels the run task and waits until its steps have unwound."""
    task.cancel()
    try:
        await asyncio.wait((task,))
    finally:
        if task.done() and not task.cancelled() and task.exception() is not None:
            _log.error(
                "batten: a streamed run raised while it was being stopped",
                exc_info=task.exception(),
            )


async def execute_workflow_stream(
    workflow: Workflow,
    context: WorkflowContext | None = None,
    *,
    timeout: float | None = None,
    max_concurrency: int | None = None,
    base: CompileOptions | None = None,
) -> AsyncGenerator[StepResult, None]:
    """Runs ``workflow`` and yields each step's :class:`~batten.StepResult` as the step ends, in
    order of completion (JAF's ``execute_workflow_stream``, seed 000 "Streaming Execution")::

        async for step_result in execute_workflow_stream(workflow, context):
            print(step_result.step_id, step_result.status, step_result.execution_time_ms)

    Args:
        workflow, context, timeout, max_concurrency, base: as :func:`stream`.

    Yields:
        one StepResult per step of ``workflow`` (any final status, blocked and skipped steps
        included) and per compensation that ran; steps of composite steps' nested runs are not
        yielded (they are in their composite's result). Use :func:`stream` for start and retry
        events and the final :class:`~batten.WorkflowResult`.

    Leaving early cancels the run, as :func:`stream`.

    Raises:
        WorkflowDefinitionError, TypeError: as ``Workflow.execute``, before any step runs.
    """
    events = stream(workflow, context, timeout=timeout, max_concurrency=max_concurrency, base=base)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, StepFinished) and event.result.step_id == event.step_id:
                yield event.result


# Async step callbacks and logger hooks still running, by the task of the run that started
# them; `notify_completed` awaits them so they finish before `execute` returns.
_pending: weakref.WeakKeyDictionary[asyncio.Task[Any], set[asyncio.Future[Any]]] = (
    weakref.WeakKeyDictionary()
)


def subscriber(workflow: Workflow, extra: EventSink | None) -> EventSink | None:
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

    return _on_loop(dispatch, lambda: True)


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
