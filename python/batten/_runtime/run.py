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

__all__ = ["INTERRUPT_GRACE", "Interrupt", "Outcome", "run_plan"]

#: Seconds an interrupted run waits for its cancelled async steps to finish unwinding (their
#: ``finally`` blocks) before it ends anyway; a step that ignores cancellation is left behind.
INTERRUPT_GRACE = 5.0

#: A finished run (``_core.RunOutcome``): ``run_id``, ``status``, ``steps``, ``final_output``,
#: ``error``, ``elapsed_ms`` (milliseconds), ``context``, and ``by_id(step_id)``.
Outcome = RunOutcome


class Interrupt:
    """An in-process request to stop a run because its process is being stopped (a signal):
    the ``batten`` command's SIGTERM/SIGINT/SIGHUP handler asks, the run executing in this
    process obeys, with no store round trip (pause and cancel from other processes go through
    the store instead). Obeying is cancelling: nothing new starts, running async steps are
    cancelled and sync steps abandoned (as at a timeout), so the steps that did not finish are
    not recorded as completed and a resume runs them again; the run then ends
    ``INTERRUPTED`` rather than ``CANCELLED`` (``lifecycle.execute`` decides that).

    One ``Interrupt`` may serve several runs in turn (a run, then its ``--yes`` approval
    continuations): a request made before a run starts stops that run as soon as it starts.
    Call :meth:`request` on the loop thread (``loop.call_soon_threadsafe`` from a signal
    handler).
    """

    def __init__(self) -> None:
        #: Why the run was asked to stop (e.g. ``"interrupted by SIGTERM"``), or ``None``.
        self.reason: str | None = None
        self._run: Any = None
        self._stopped = False
        self._unwinding: Any = None

    def request(self, reason: str) -> None:
        """Asks the run to stop, giving ``reason`` (str, kept as the run's error); a second
        request changes nothing."""
        if self.reason is not None:
            return
        self.reason = reason
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            self._stop_current()
        else:
            # One loop turn later: completions already queued on the loop (a step that has
            # just returned) are recorded as completed first, so a resume does not redo them.
            loop.call_soon(self._stop_current)

    def _stop_current(self) -> None:
        if self._run is not None and not self._stopped:
            self._stop(self._run)

    def attach(self, run: Any) -> None:
        """Makes ``run`` (a started ``_core.Run``) the one a request stops; stops it at once if
        a request came earlier."""
        self._run = run
        self._stopped = False
        self._unwinding = None
        if self.reason is not None:
            self._stop(run)

    def _stop(self, run: Any) -> None:
        self._stopped = True
        self._unwinding = run.cancel()

    async def settle(self) -> None:
        """Waits (at most ``INTERRUPT_GRACE`` seconds) for the stopped run's cancelled tasks to
        unwind, then forgets the run."""
        unwinding, self._unwinding, self._run = self._unwinding, None, None
        if unwinding is not None:
            await asyncio.wait([unwinding], timeout=INTERRUPT_GRACE)


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
    interrupt: Interrupt | None = None,
) -> Outcome:
    """Runs ``plan`` on the running loop from ``context`` and waits for it.

    Cancelling the awaiting task cancels the run and waits until its tasks have unwound before
    ``CancelledError`` propagates. A nested run (``event_prefix`` given) reports its events to
    the enclosing run's subscriber with ids ``"<prefix>/<step_id>"``, and checkpoints through
    the enclosing durable run's journal under the same paths. ``journal`` makes a top-level run
    durable; ``on_run(run)`` is called with the started ``_core.Run`` (pause/cancel control);
    ``interrupt`` stops the run when requested (see :class:`Interrupt`).

    A ``KeyboardInterrupt`` (or any other ``BaseException``) raised while waiting cancels the
    run before propagating, as ``CancelledError`` does, without waiting for it to unwind.
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
    if interrupt is not None:
        interrupt.attach(run)
    try:
        await run.done
    except asyncio.CancelledError:
        unwinding = run.cancel()
        if unwinding is not None:
            await unwinding
        raise
    except BaseException:
        run.cancel()
        raise
    if interrupt is not None:
        await interrupt.settle()
    return run.outcome()
