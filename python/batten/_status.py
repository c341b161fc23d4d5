"""``batten._status``: the path the compiled core imports ``StepStatus`` from
(``src/py/results.rs``); the statuses live in :mod:`batten._internal.status`."""

from __future__ import annotations

from batten._internal.status import StepStatus, WorkflowStatus

__all__ = ["StepStatus", "WorkflowStatus"]
