"""Streaming a run's events (private, layer ``batten._runtime``): :func:`stream` yields the
typed events of :mod:`batten._internal.events` as the engine emits them, then
:class:`RunFinished`; :func:`execute_workflow_stream` yields each step's result. Public as
:mod:`batten.events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from batten._core import StepResult, WorkflowContext
from batten._internal.checks import check_run_options
from batten._internal.context import Raw
from batten._internal.events import RunFinished, StepFinished, WorkflowEvent, event_of
from batten._internal.options import CompileOptions
from batten._runtime import lifecycle
from batten._runtime.subscribers import on_loop

if TYPE_CHECKING:
    from batten.workflow import Workflow

__all__ = ["execute_workflow_stream", "stream"]

_log = logging.getLogger("batten")


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

    sink = on_loop(deliver, lambda: live)
    check_run_options(timeout, max_concurrency)  # before a durable run is recorded
    # A workflow with a store (``with_store``) streams a durable run, as ``execute`` would.
    context, durable = lifecycle.begin_durable(workflow, context, None, None)
    task = asyncio.create_task(
        lifecycle.execute(
            workflow,
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
