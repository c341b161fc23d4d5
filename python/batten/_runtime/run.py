"""Running a compiled plan (private, layer ``batten._runtime``): :func:`run_plan` starts a
native run (``_core.Run.start``) on the running event loop from a context and waits for it;
it returns the run's ``_core.RunOutcome`` (:data:`Outcome`).

A nested run (a composite's, a recovery's) reports its events to the enclosing run's subscriber
and checkpoints through the enclosing durable run's journal, both found in the contextvars of
:mod:`batten._internal.context`.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

from batten._core import Run, RunOutcome, WorkflowContext
from batten._internal.context import EVENT_SINK, JOURNAL, EventSink

__all__ = ["Outcome", "run_plan"]

#: A finished run (``_core.RunOutcome``): ``run_id``, ``status``, ``steps``, ``final_output``,
#: ``error``, ``elapsed_ms`` (milliseconds), ``context``, and ``by_id(step_id)``.
Outcome = RunOutcome


async def run_plan(
    plan: Any,
    context: WorkflowContext,
    *,
    timeout: float | None = None,
    max_concurrency: int | None = None,
    on_event: EventSink | None = None,
    event_prefix: str | None = None,
    journal: Any = None,
    on_run: Callable[[Any], None] | None = None,
) -> Outcome:
    """Runs ``plan`` on the running loop from ``context`` and waits for it.

    Cancelling the awaiting task cancels the run and waits until its tasks have unwound before
    ``CancelledError`` propagates. A nested run (``event_prefix`` given) reports its events to
    the enclosing run's subscriber with ids ``"<prefix>/<step_id>"``, and checkpoints through
    the enclosing durable run's journal under the same paths. ``journal`` makes a top-level run
    durable; ``on_run(run)`` is called with the started ``_core.Run`` (pause/cancel control).
    """
    if on_event is None and event_prefix is not None:
        parent = EVENT_SINK.get()
        if parent is not None:
            prefix = event_prefix + "/"

            def on_event(kind: str, step_id: str, attempt: int, payload: Any) -> None:
                parent(kind, prefix + step_id, attempt, payload)

    if journal is None and event_prefix is not None:
        parent_journal = JOURNAL.get()
        if parent_journal is not None:
            journal = parent_journal.child(event_prefix)
    pyctx = contextvars.copy_context()
    if on_event is not None:
        pyctx.run(EVENT_SINK.set, on_event)
    if journal is not None:
        pyctx.run(JOURNAL.set, journal)
    run = Run.start(
        plan,
        context,
        pycontext=pyctx,
        timeout=timeout,
        max_concurrency=max_concurrency,
        on_event=on_event,
        journal=journal,
    )
    if on_run is not None:
        on_run(run)
    try:
        await run.done
    except asyncio.CancelledError:
        unwinding = run.cancel()
        if unwinding is not None:
            await unwinding
        raise
    return run.outcome()
