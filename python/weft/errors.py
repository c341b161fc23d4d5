"""The exceptions weft raises. Every one subclasses :class:`WeftError`.

The native engine imports these classes (it never defines its own), so ``except weft.WeftError``
catches everything weft itself raises; exceptions raised *by steps* are recorded on their
:class:`~weft.StepResult` with their original type and message, never wrapped.
"""

from __future__ import annotations

__all__ = [
    "StepTimeoutError",
    "WeftError",
    "WorkflowCancelledError",
    "WorkflowDefinitionError",
    "WorkflowTimeoutError",
]


class WeftError(Exception):
    """Base class of every exception raised by weft itself."""


class WorkflowDefinitionError(WeftError, ValueError):
    """The workflow or one of its steps is malformed.

    Raised before any step runs: by a step's constructor or fluent method (a non-callable agent, a
    negative timeout, fewer than one attempt) or by ``Workflow.execute``/``run`` (duplicate step
    ids, an unknown ``depends_on``, a dependency cycle, a ``{step_id.result}`` reference to a step
    that is not an ancestor). The message names the offending step and what was expected. Also a
    ``ValueError``, so code written against JAF's plain ``ValueError`` still catches it.
    """


class StepTimeoutError(WeftError, TimeoutError):
    """A step attempt ran past its ``with_timeout`` (seconds).

    Recorded on the step's result (``error_type == "StepTimeoutError"``, status ``TIMEOUT``); it is
    a ``TimeoutError``, so the default retry policy retries it.
    """


class WorkflowTimeoutError(WeftError, TimeoutError):
    """The whole run exceeded ``execute(timeout=...)`` (seconds)."""


class WorkflowCancelledError(WeftError):
    """The run was cancelled before it finished."""
