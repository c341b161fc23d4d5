"""The typed run events (private home; public as :mod:`batten.events`), and how an engine
event ``(kind, step_id, attempt, payload)`` becomes one (``batten._internal``).

Defined below the runtime so that the runtime's streaming can build them; ``batten.events``
re-exports them. Loaded on first use only: NOTE: a dozen frozen slotted dataclasses cost
~15 ms of ``import batten`` that a run without subscribers never needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from batten._core import StepResult, WorkflowContext
from batten._internal.context import Raw
from batten._internal.status import TERMINAL

if TYPE_CHECKING:
    from batten.result import WorkflowResult

__all__ = [
    "TERMINAL",
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
    "event_of",
]


@dataclass(frozen=True, slots=True)
class WorkflowEvent:
    """Base class of the events :func:`stream` yields (seed 002's ``phase_*`` dicts, typed).

    Attributes:
        step_id: the step the event is about; ``"parent/child"`` for a step of a composite
            step's nested run; ``None`` for :class:`RunFinished`.
        kind: the event's kind (a class attribute): ``"started"``, ``"retrying"``, a terminal
            :class:`~batten.StepStatus` value (``"completed"``, ``"failed"``, ``"timeout"``,
            ``"skipped"``, ``"blocked"``, ``"cancelled"``) or ``"finished"``.
    """

    step_id: str | None
    kind: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class StepStarted(WorkflowEvent):
    """An attempt of a step started (seed 002's ``phase_start``).

    Attributes:
        step_id: the step's id (str).
        attempt: the attempt that started (int, 1-based).
        context: the :class:`~batten.WorkflowContext` the step runs with.
    """

    step_id: str
    attempt: int
    context: WorkflowContext
    kind: ClassVar[str] = "started"


@dataclass(frozen=True, slots=True)
class StepRetrying(WorkflowEvent):
    """An attempt of a step failed and the step will run again (seed 002's ``phase_retry``).

    Attributes:
        step_id: the step's id (str).
        attempt: the attempt that failed (int, 1-based); the next :class:`StepStarted` of the
            step has ``attempt + 1``.
        delay: seconds the engine waits before the next attempt (float, jitter applied).
        error: the exception that ended the attempt.
    """

    step_id: str
    attempt: int
    delay: float
    error: BaseException
    kind: ClassVar[str] = "retrying"


@dataclass(frozen=True, slots=True)
class StepFinished(WorkflowEvent):
    """Base class of the events that end a step; each subclass is one terminal status.

    Attributes:
        step_id: the step's id as the run reports it (``"parent/child"`` for a nested step,
            while ``result.step_id`` is the nested run's own ``"child"``).
        result: the step's :class:`~batten.StepResult`.
    """

    step_id: str
    result: StepResult


@dataclass(frozen=True, slots=True)
class StepCompleted(StepFinished):
    """A step completed (seed 002's ``phase_complete``); ``result.output`` is its output."""

    kind: ClassVar[str] = "completed"


@dataclass(frozen=True, slots=True)
class StepFailed(StepFinished):
    """A step failed after its last attempt; ``result.error`` / ``result.exception`` say why."""

    kind: ClassVar[str] = "failed"


@dataclass(frozen=True, slots=True)
class StepTimedOut(StepFinished):
    """A step's last attempt exceeded its timeout (``result.error_type`` is
    ``"StepTimeoutError"``)."""

    kind: ClassVar[str] = "timeout"


@dataclass(frozen=True, slots=True)
class StepSkipped(StepFinished):
    """A step's condition was false, so it did not run (seed 002's ``phase_skipped``)."""

    kind: ClassVar[str] = "skipped"


@dataclass(frozen=True, slots=True)
class StepBlocked(StepFinished):
    """A step never ran because a step it depends on failed."""

    kind: ClassVar[str] = "blocked"


@dataclass(frozen=True, slots=True)
class StepCancelled(StepFinished):
    """A step was cancelled: the run was cancelled or timed out, or its failure policy ended
    it."""

    kind: ClassVar[str] = "cancelled"


@dataclass(frozen=True, slots=True)
class RunFinished(WorkflowEvent):
    """The run ended; always the last event of a :func:`stream` (seed 002's ``final_result``).

    Attributes:
        result: the run's :class:`~batten.WorkflowResult`, as ``Workflow.execute`` returns it.
        step_id: always ``None``.
    """

    result: WorkflowResult
    step_id: None = field(default=None, init=False, repr=False)
    kind: ClassVar[str] = "finished"


@dataclass(frozen=True, slots=True)
class CircuitStateChanged(WorkflowEvent):
    """A :class:`~batten.CircuitBreaker` changed state (seed 001's fault tolerance): ``closed``
    → ``open`` after its failure threshold, ``open`` → ``half_open`` once its recovery
    timeout passed, ``half_open`` → ``closed`` after a successful trial call (or back to
    ``open`` after a failed one).

    Attributes:
        step_id: the step whose attempt caused the change (or asked while it happened).
        attempt: that attempt's number.
        breaker: the breaker's key.
        old: the state it left: ``"closed"``, ``"open"`` or ``"half_open"``.
        new: the state it entered.
    """

    step_id: str
    attempt: int
    breaker: str
    old: str
    new: str
    kind: ClassVar[str] = "circuit"


_FINISHED: dict[str, type[StepFinished]] = {
    cls.kind: cls
    for cls in (StepCompleted, StepFailed, StepTimedOut, StepSkipped, StepBlocked, StepCancelled)
}


def event_of(raw: Raw) -> WorkflowEvent | None:
    """The typed event for an engine event ``raw`` (``(kind, step_id, attempt, payload)``);
    ``None`` for a kind this module does not know."""
    kind, step_id, attempt, payload = raw
    if kind == "started":
        return StepStarted(step_id, attempt, payload)
    if kind == "retrying":
        delay, error = payload
        return StepRetrying(step_id, attempt, float(delay), error)
    if kind == "circuit":
        breaker, old, new = payload
        return CircuitStateChanged(step_id, attempt, breaker, old, new)
    finished = _FINISHED.get(kind)
    return None if finished is None else finished(step_id, payload)
