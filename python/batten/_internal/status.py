"""Run and step statuses (DESIGN §4) as str-valued enums.

``WorkflowStatus.COMPLETED == "completed"``, and f-strings print the value.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TERMINAL", "StepStatus", "WorkflowStatus"]


class WorkflowStatus(StrEnum):
    """The lifecycle of a workflow run, as in JAF's and seed 001's ``WorkflowStatus``.

    A run ends ``COMPLETED``, ``FAILED``, ``CANCELLED`` or ``COMPENSATED`` (it failed and its
    saga compensations ran). ``INITIALIZING`` (set-up) and ``ROLLBACK`` (compensating) are
    seed 001's names for two phases of a run, kept so code written against it imports; batten
    reports a run ``RUNNING`` through both. ``PAUSED`` and ``WAITING_APPROVAL`` belong to
    durable runs and human approval.

    ``INTERRUPTED``: a durable run that stopped before finishing and can be resumed. It is
    stored when its executor stopped on a signal (SIGTERM, SIGINT, SIGHUP; ``batten run`` on
    Ctrl-C, or an ``execute()`` cancelled or hit by ``KeyboardInterrupt``), and derived when a
    run recorded ``RUNNING`` has lost its executor (its lease expired, or its pid on this host no
    longer exists). Like ``PAUSED`` it has not finished: ``resume`` continues it, re-running the
    steps that did not complete (as a Temporal workflow continues on another worker after its
    worker stops).
    """

    INITIALIZING = "initializing"
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    #: Stopped by a signal or by its owner's death; resumable (see the class docstring).
    INTERRUPTED = "interrupted"
    WAITING_APPROVAL = "waiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPENSATED = "compensated"
    ROLLBACK = "rollback"


class StepStatus(StrEnum):
    """The lifecycle of one step within a run.

    ``SKIPPED``: a condition was false (dependents still run). ``BLOCKED``: a dependency failed, so
    the step never ran. ``TIMEOUT``: its last attempt exceeded its timeout. ``CANCELLED``: the run
    was cancelled, paused or timed out before the step finished. ``WAITING_APPROVAL``: a human
    approval step is waiting for its decision.
    """

    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"
    #: A :class:`~batten.HumanApprovalStep` waiting for ``approve``/``reject`` (durable runs).
    WAITING_APPROVAL = "waiting_approval"


#: Engine event kinds that end a step (terminal step statuses); their payload is the StepResult.
TERMINAL = frozenset({"completed", "failed", "timeout", "skipped", "blocked", "cancelled"})
