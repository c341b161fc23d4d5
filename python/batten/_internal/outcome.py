"""Helpers that read a nested run's outcome (private, ``batten._internal``): what a composite
step, a recovery wrapper or the run lifecycle does with the results of a run it started.
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

from batten._core import CompositeFailure, Nested, StepResult, WorkflowContext

__all__ = ["raise_failed", "state_delta"]


def state_delta(initial: WorkflowContext, final: WorkflowContext) -> dict[str, Any]:
    """The variables a nested run added or replaced: what its composite step merges upstream."""
    before = initial.variables
    delta: dict[str, Any] = {}
    for key, value in final.variables.items():
        if key not in before or before[key] is not value:
            delta[key] = value
    return delta


def raise_failed(child: StepResult, nested: Nested, step_id: str) -> NoReturn:
    """Fails the composite ``step_id`` with ``child``'s exception, keeping ``nested``.

    Raises:
        CompositeFailure: always; the engine records its ``error`` as the step's exception.
    """
    exc = child.exception
    if not isinstance(exc, BaseException) or isinstance(exc, asyncio.CancelledError):
        exc = RuntimeError(f"step '{step_id}': {child.step_id} {child.status}: {child.error}")
    raise CompositeFailure(exc, nested)
