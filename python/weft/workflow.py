"""``Workflow``: a DAG of steps, and ``WorkflowResult``: what one run of it produced."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from dataclasses import dataclass, field
from typing import Any

from weft import _core
from weft._core import StepResult, WorkflowContext
from weft._status import StepStatus, WorkflowStatus
from weft.errors import WorkflowDefinitionError
from weft.steps import Step

__all__ = ["Workflow", "WorkflowResult"]


@dataclass(eq=False)
class WorkflowResult:
    """What one run produced (JAF's ``WorkflowResult``).

    Attributes:
        workflow_id: the workflow's id.
        run_id: this run's id (uuid4 hex).
        status: ``COMPLETED`` (every step completed or was skipped), ``FAILED`` (a step failed or
            timed out, or the run timed out) or ``CANCELLED``.
        steps: one :class:`~weft.StepResult` per step: those that ran in completion order, then
            the skipped, blocked and cancelled ones.
        final_output: the output of the last-declared completed step that no other step depends
            on (``None`` if there is none).
        error: ``"step_id: ErrorType: message"`` of the first failure, or the run's timeout or
            cancellation; ``None`` on success.
        total_execution_time_ms: wall-clock milliseconds from start to end of the run.
        context: the final :class:`~weft.WorkflowContext` (every completed step merged in
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
    _by_id: dict[str, StepResult] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {s.step_id: s for s in self.steps}

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
        return sum(s.status == StepStatus.COMPLETED for s in self.steps)

    @property
    def is_success(self) -> bool:
        """True when the run's status is ``COMPLETED``."""
        return self.status == WorkflowStatus.COMPLETED

    def step(self, step_id: str) -> StepResult:
        """The result of step ``step_id``.

        Raises:
            KeyError: no step has that id.
        """
        return self._by_id[step_id]

    def __repr__(self) -> str:
        return (
            f"WorkflowResult(workflow_id={self.workflow_id!r}, status={self.status.value}, "
            f"steps_completed={self.steps_completed}/{self.total_steps}, "
            f"total_execution_time_ms={self.total_execution_time_ms:.3f}, error={self.error!r})"
        )


_runners = threading.local()
_all_runners: list[asyncio.Runner] = []
_runners_lock = threading.Lock()


def _thread_runner() -> asyncio.Runner:
    """This thread's ``asyncio.Runner`` for ``Workflow.run`` (created on first use)."""
    runner: asyncio.Runner | None = getattr(_runners, "runner", None)
    if runner is None:
        runner = asyncio.Runner()
        _runners.runner = runner
        with _runners_lock:
            _all_runners.append(runner)
    return runner


def _close_runners() -> None:
    """Closes every ``Workflow.run`` loop; ``weft`` registers it with ``atexit``."""
    with _runners_lock:
        runners, _all_runners[:] = list(_all_runners), []
    for runner in runners:
        try:
            runner.close()
        except Exception:  # a runner closed elsewhere, or one whose loop is still running
            pass


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise WorkflowDefinitionError(f"{name} must be an int >= 1 or None, got {value!r}")


class Workflow:
    """A DAG of steps, run by the native engine (JAF's ``Workflow``).

    Args:
        workflow_id: the workflow's id (str).
        name: a human-readable name.
        description: free text.
        max_parallel_steps: at most this many steps in flight at once (``None``: unbounded), as
            seed 001's ``WorkflowConfiguration.max_parallel_steps``.

    Steps start as soon as all their dependencies have completed (no waves), a failed step
    blocks only its dependents, and sync steps run on weft's worker threads while async steps
    run as tasks on the caller's event loop.

    Raises:
        WorkflowDefinitionError: ``max_parallel_steps`` is not a positive int.
    """

    def __init__(
        self,
        workflow_id: str,
        name: str,
        description: str = "",
        *,
        max_parallel_steps: int | None = None,
    ) -> None:
        _check_limit("max_parallel_steps", max_parallel_steps)
        self.workflow_id = workflow_id
        self.name = name
        self.description = description
        self.max_parallel_steps = max_parallel_steps
        self._steps: list[Step] = []
        self._deps: list[list[str]] = []
        self._plan: Any = None
        self._plan_key: tuple[int, ...] = ()

    @property
    def steps(self) -> list[Step]:
        """The steps, in declaration order (a copy)."""
        return list(self._steps)

    def add_step(self, step: Step, depends_on: list[str] | None = None) -> Workflow:
        """Adds ``step``; returns the workflow for chaining.

        Args:
            step: the step to add.
            depends_on: ``None`` (default) runs it after the previously added step, as JAF's
                sequential ``add_step``; a list of step ids runs it once exactly those have
                completed; ``[]`` makes it a root that starts at once. Ids may name steps added
                later; they are checked when the workflow runs.

        Raises:
            WorkflowDefinitionError: ``step`` is not a step or ``depends_on`` not a list of str.
        """
        if not isinstance(step, Step):
            raise WorkflowDefinitionError(
                f"add_step expects a weft step (AgentStep, ToolStep, ...), got {step!r:.80}"
            )
        if depends_on is None:
            deps = [self._steps[-1].step_id] if self._steps else []
        elif isinstance(depends_on, list | tuple) and all(isinstance(d, str) for d in depends_on):
            deps = list(depends_on)
        else:
            raise WorkflowDefinitionError(
                f"step '{step.step_id}': depends_on must be a list of step ids, got {depends_on!r}"
            )
        self._steps.append(step)
        self._deps.append(deps)
        self._plan = None
        return self

    def _compiled(self) -> Any:
        key = tuple(s._version for s in self._steps)
        if self._plan is None or key != self._plan_key:
            specs = []
            for step, deps in zip(self._steps, self._deps, strict=True):
                invoke, is_async, wants_context, refs = step._call_spec()
                specs.append(
                    (
                        step.step_id,
                        deps,
                        refs,
                        invoke,
                        is_async,
                        wants_context,
                        step.timeout,
                        step.retry_policy,
                        list(step.conditions),
                    )
                )
            self._plan = _core.Plan(self.workflow_id, specs, self.max_parallel_steps)
            self._plan_key = key
        return self._plan

    def validate(self) -> None:
        """Checks the workflow without running it.

        Raises:
            WorkflowDefinitionError: duplicate step ids, an unknown ``depends_on``, a cycle
                (the message lists it, e.g. ``a -> b -> a``), or a ``{x.result}`` reference to
                a step that is not an ancestor.
        """
        self._compiled()

    async def execute(
        self,
        context: WorkflowContext | None = None,
        *,
        timeout: float | None = None,
        max_concurrency: int | None = None,
    ) -> WorkflowResult:
        """Runs the workflow on the running event loop and returns its result.

        Args:
            context: the initial state (default: an empty ``WorkflowContext(workflow_id)``).
            timeout: seconds for the whole run; at the deadline running steps are cancelled
                (async) or abandoned (sync) and end ``TIMEOUT``, unstarted ones ``CANCELLED``,
                and the run ends ``FAILED``.
            max_concurrency: at most this many steps in flight (the smaller of it and
                ``max_parallel_steps`` applies).

        Step failures never raise: they are recorded on the result. Cancelling the task that
        awaits ``execute`` cancels every running step and waits for their tasks to unwind
        before re-raising ``CancelledError``.

        Raises:
            WorkflowDefinitionError: the workflow is malformed (before any step runs), or a
                bad ``timeout`` / ``max_concurrency``.
            TypeError: ``context`` is not a WorkflowContext.
        """
        _check_limit("max_concurrency", max_concurrency)
        plan = self._compiled()
        if context is None:
            context = WorkflowContext(self.workflow_id)
        elif not isinstance(context, WorkflowContext):
            raise TypeError(f"context must be a weft.WorkflowContext, got {type(context).__name__}")
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        run = plan.start(context, loop, contextvars.copy_context(), done, timeout, max_concurrency)
        try:
            await done
        except asyncio.CancelledError:
            unwinding = run.cancel()
            if unwinding is not None:
                await unwinding
            raise
        status, steps, final_output, error, elapsed_ms, final_context = run.outcome()
        return WorkflowResult(
            workflow_id=self.workflow_id,
            run_id=run.run_id,
            status=WorkflowStatus(status),
            steps=steps,
            final_output=final_output,
            error=error,
            total_execution_time_ms=elapsed_ms,
            context=final_context,
            total_steps=len(self._steps),
        )

    def run(
        self,
        context: WorkflowContext | None = None,
        *,
        timeout: float | None = None,
        max_concurrency: int | None = None,
    ) -> WorkflowResult:
        """Runs the workflow to completion from synchronous code; same arguments as ``execute``.

        With no event loop running in this thread it runs on an ``asyncio.Runner`` kept for this
        thread (NOTE: ``asyncio.run`` builds a new loop per call, ~0.5 ms, which was 80% of a
        3-step workflow's ``run()``); the runner's loop is closed at interpreter exit. Under a
        running loop (a Jupyter cell) it cannot block that loop's thread on itself, so it runs
        the workflow with ``asyncio.run`` in a helper thread and waits; contextvars are carried
        over. In async code prefer ``await workflow.execute(...)``.

        Raises:
            WorkflowDefinitionError, TypeError: as ``execute``.
        """
        kwargs: dict[str, Any] = {"timeout": timeout, "max_concurrency": max_concurrency}
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # Runner.run defaults to the context captured when the runner was made; pass the
            # caller's current one so contextvars set since then reach the steps.
            return _thread_runner().run(
                self.execute(context, **kwargs), context=contextvars.copy_context()
            )
        box: list[Any] = []

        def target() -> None:
            try:
                box.append(asyncio.run(self.execute(context, **kwargs)))
            except BaseException as exc:
                box.append(exc)

        caller = contextvars.copy_context()
        thread = threading.Thread(target=caller.run, args=(target,), name="weft-run")
        thread.start()
        thread.join()
        outcome = box[0]
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, WorkflowResult)
        return outcome

    def __repr__(self) -> str:
        return f"Workflow({self.workflow_id!r}, {self.name!r}, steps={len(self._steps)})"
