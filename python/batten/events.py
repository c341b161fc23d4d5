"""Run events: the typed event classes, streaming (:func:`stream`,
:func:`execute_workflow_stream`) and :class:`WorkflowLogger`.

A public facade (layer beside ``batten.workflow`` and ``batten.durable``): the event classes are
defined in :mod:`batten._internal.events`, streaming in :mod:`batten._runtime.streaming`, the
delivery to a workflow's step callbacks and loggers in :mod:`batten._runtime.subscribers`.
Everything a subscriber or a stream consumer sees runs on the event loop's thread; steps of a
composite step's nested run report with ids ``"parent/child"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from batten._core import StepResult, WorkflowContext
from batten._internal.events import (
    CircuitStateChanged,
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
)
from batten._runtime.streaming import execute_workflow_stream, stream

if TYPE_CHECKING:
    from batten.result import WorkflowResult

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
