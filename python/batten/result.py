"""``WorkflowResult``: what one run of a workflow produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from batten._core import StepResult, WorkflowContext
from batten._internal.kinds import ResultKind
from batten._internal.status import StepStatus, WorkflowStatus

__all__ = ["WorkflowResult"]


_ITEM_KEYS = frozenset({"result", "workflow_id", "run_id", "status", "error", "steps"})


@dataclass(eq=False)
class WorkflowResult(ResultKind):
    """What one run produced (JAF's ``WorkflowResult``).

    Attributes:
        workflow_id: the workflow's id.
        run_id: this run's id (uuid4 hex).
        status: ``COMPLETED`` (every step completed or was skipped; with ``continue_on_error``,
            whatever failed), ``FAILED`` (a step failed or timed out, or the run timed out),
            ``COMPENSATED`` (it failed and every compensation ran) or ``CANCELLED``.
        steps: one :class:`~batten.StepResult` per step: those that ran in completion order, then
            the skipped, blocked and cancelled ones, then the compensations that ran.
        final_output: the output of the last-declared completed step that no other step depends
            on (``None`` if there is none).
        error: ``"step_id: ErrorType: message"`` of the first failure, or the run's timeout or
            cancellation; ``None`` on success.
        total_execution_time_ms: wall-clock milliseconds from start to end of the run.
        context: the final :class:`~batten.WorkflowContext` (every completed step merged in
            declaration order).
        total_steps: number of steps in the workflow.
    """

    workflow_id: str
    run_id: str
    status: WorkflowStatus
    steps: list[StepResult]
    final_output: Any
    error: str | None
    total_execution_time_ms: float
    context: WorkflowContext
    total_steps: int
    # Built by the first ``step()`` call, not per run: most results are never searched by id.
    _by_id: dict[str, StepResult] | None = field(default=None, repr=False)

    @property
    def errors(self) -> list[str]:
        """``"step_id: ErrorType: message"`` for every step that failed or timed out, in
        completion order (seed 002's ``errors`` list; useful with ``continue_on_error``)."""
        return [f"{s.step_id}: {s.error_type}: {s.error}" for s in self.steps if s.is_failure]

    @property
    def result(self) -> Any:
        """Alias of ``final_output`` (seed 004's ``result["result"]``)."""
        return self.final_output

    def __getitem__(self, key: str) -> Any:
        """Dict-style access for seed 004's ``result["result"]`` / ``result["workflow_id"]``:
        ``"result"``, ``"workflow_id"``, ``"run_id"``, ``"status"``, ``"error"``, ``"steps"``.

        Raises:
            KeyError: any other key.
        """
        if key in _ITEM_KEYS:
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``result[key]`` for the keys ``__getitem__`` knows, else ``default`` (seed 004's
        ``result.get("result", ...)``)."""
        return getattr(self, key) if key in _ITEM_KEYS else default

    @property
    def execution_time_ms(self) -> float:
        """Alias of ``total_execution_time_ms`` (the name JAF's e-commerce example prints)."""
        return self.total_execution_time_ms

    @property
    def success_rate(self) -> float:
        """Percentage (0-100) of steps that completed or were skipped; 100.0 for no steps."""
        if not self.total_steps:
            return 100.0
        ok = sum(s.status in (StepStatus.COMPLETED, StepStatus.SKIPPED) for s in self.steps)
        return 100.0 * ok / self.total_steps

    @property
    def failed_steps(self) -> list[str]:
        """Ids of the steps that failed or timed out, in completion order."""
        return [s.step_id for s in self.steps if s.is_failure]

    @property
    def steps_completed(self) -> int:
        """Number of steps whose status is ``COMPLETED``."""
        # ``is_success`` is ``status == COMPLETED``, read without comparing two enum members.
        return sum(1 for s in self.steps if s.is_success)

    @property
    def is_success(self) -> bool:
        """True when the run's status is ``COMPLETED``."""
        return self.status == WorkflowStatus.COMPLETED

    def _repr_html_(self) -> str:
        """Jupyter's HTML view: a table of the steps (status, attempts, time, error); see
        :func:`batten.display.result_html`."""
        # NOTE: imported on first use, keeping `import batten` free of display (test_process).
        from batten.display import result_html

        return result_html(self)

    def step(self, step_id: str) -> StepResult:
        """The result of step ``step_id``.

        Raises:
            KeyError: no step has that id.
        """
        by_id = self._by_id
        if by_id is None:
            by_id = self._by_id = {s.step_id: s for s in self.steps}
        return by_id[step_id]

    def __repr__(self) -> str:
        return (
            f"WorkflowResult(workflow_id={self.workflow_id!r}, status={self.status.value}, "
            f"steps_completed={self.steps_completed}/{self.total_steps}, "
            f"total_execution_time_ms={self.total_execution_time_ms:.3f}, error={self.error!r})"
        )
