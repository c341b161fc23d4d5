"""Nominal kinds that let a lower layer recognise an object of a higher one without importing
it (private, ``batten._internal``).

``batten.workflow.Workflow`` is a :class:`WorkflowKind`, ``batten.builder.DagWorkflow`` a
:class:`WorkflowHolderKind` and ``batten.result.WorkflowResult`` a :class:`ResultKind`; the
step model (``SubWorkflowStep``), the runtime's nesting check, the workflow-factory registry and
``batten.display`` test for these instead of importing the classes above them. The bases hold
no state and no behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ResultKind", "WorkflowHolderKind", "WorkflowKind"]


class WorkflowKind:
    """Base of :class:`batten.Workflow`: an object with ``workflow_id``, ``_steps`` and
    ``_deps``."""

    __slots__ = ()

    workflow_id: str
    _steps: list[Any]
    _deps: list[Sequence[str]]


class WorkflowHolderKind:
    """Base of what is not a workflow but runs one it holds as ``.workflow``
    (:class:`batten.DagWorkflow`): drawn and built as that workflow."""

    __slots__ = ()


class ResultKind:
    """Base of :class:`batten.WorkflowResult` (a run's result)."""

    __slots__ = ()
