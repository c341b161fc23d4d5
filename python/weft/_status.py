"""Run and step statuses (DESIGN §4) as str-valued enums.

``WorkflowStatus.COMPLETED == "completed"``, and f-strings print the value.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["StepStatus", "WorkflowStatus"]


class WorkflowStatus(StrEnum):
    """The lifecycle of a workflow run, as in JAF's and seed 001's ``WorkflowStatus``.

    ``PAUSED``, ``WAITING_APPROVAL`` and ``COMPENSATED`` are reached by durable runs, human
    approval and compensation; a run on the core engine ends ``COMPLETED``, ``FAILED`` or
    ``CANCELLED``.
    """

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING_APPROVAL = "waiting_approval"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPENSATED = "compensated"


class StepStatus(StrEnum):
    """The lifecycle of one step within a run.

    ``SKIPPED``: a condition was false (dependents still run). ``BLOCKED``: a dependency failed, so
    the step never ran. ``TIMEOUT``: its last attempt exceeded its timeout. ``CANCELLED``: the run
    was cancelled or timed out before the step finished.
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
