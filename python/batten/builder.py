"""``WorkflowBuilder``: a fluent way to declare a workflow, in JAF's style or JarvisCore's.

- JAF (seed 000): ``WorkflowBuilder("id", "Name").add_agent_step(...).add_tool_step(...)
  .with_error_handler(fn).build()`` returns a :class:`~batten.Workflow` whose steps run one after
  another unless ``depends_on`` says otherwise.
- JarvisCore (seed 003): ``WorkflowBuilder().step("research", "researcher", "...")
  .step("analyse", "analyst", "Analyse: {research.result}", depends_on=["research"])
  .build(title=..., team=...)`` returns a :class:`DagWorkflow` whose ``execute`` returns
  JarvisCore's list of per-step dicts.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from batten._core import StepResult, WorkflowContext
from batten._internal.checks import check_callable, check_count, check_seconds
from batten._internal.kinds import WorkflowHolderKind
from batten._internal.status import StepStatus
from batten._internal.templates import lookup, ref_pattern, template_refs
from batten.engine import WorkflowEngine, _context_for, _open_store
from batten.errors import WorkflowDefinitionError
from batten.registry import _name_of
from batten.steps import AgentStep, Step, ToolStep
from batten.steps.composite import ConditionalStep, LoopStep, ParallelStep
from batten.workflow import Workflow, WorkflowResult

if TYPE_CHECKING:
    from batten._internal.options import WorkflowErrorHandler

__all__ = ["DagWorkflow", "WorkflowBuilder"]

#: JarvisCore's ``status`` for each step status that means the step ran; the others (blocked,
#: skipped, cancelled) are left out of ``DagWorkflow.execute``'s list, as JarvisCore does.
_DAG_STATUS = {
    StepStatus.COMPLETED: "success",
    StepStatus.FAILED: "failure",
    StepStatus.TIMEOUT: "timeout",
}


class WorkflowBuilder:
    """Builds a :class:`~batten.Workflow` fluently; every method but ``build`` returns the builder.

    Args:
        workflow_id: the workflow's id (non-empty str). ``None`` (default, JarvisCore's
            ``WorkflowBuilder()``) generates ``"workflow-<8 hex digits>"``.
        name: a human-readable name (default: the id; ``build(title=...)`` overrides it).

    Two seeds, two default dependency rules, one builder:

    - ``add_step`` and the ``add_*_step`` methods (JAF, seed 000) chain: without
      ``depends_on`` a step runs after the previously added step.
    - ``step()`` (JarvisCore, seed 003) without ``depends_on`` is a root that starts at once;
      its ``depends_on`` may name only steps already declared, so the DAG is written in
      topological order and mistakes surface at the call that makes them.

    ``build()`` returns a plain :class:`~batten.Workflow`, or a :class:`DagWorkflow` (which holds
    one) when ``step()`` was used. Each ``build()`` makes a new workflow holding the same step
    objects.

    Raises:
        WorkflowDefinitionError: ``workflow_id`` or ``name`` is not a non-empty str.
    """

    def __init__(self, workflow_id: str | None = None, name: str | None = None) -> None:
        # JAF names its builders; JarvisCore's WorkflowBuilder() has no id (see build()).
        self._named = workflow_id is not None
        if workflow_id is None:
            workflow_id = f"workflow-{os.urandom(4).hex()}"
        for what, value in (("workflow_id", workflow_id), ("name", name)):
            if value is not None and (not isinstance(value, str) or not value):
                raise WorkflowDefinitionError(f"{what} must be a non-empty str, got {value!r}")
        self.workflow_id: str = workflow_id
        self.name: str | None = name
        self._description = ""
        self._steps: list[Step] = []
        self._deps: dict[str, list[str]] = {}
        self._dag = False  # step() was used: build() returns a DagWorkflow
        self._error_handler: WorkflowErrorHandler | None = None
        self._step_callbacks: list[Callable[[StepResult], Any]] = []
        self._completion_callbacks: list[Callable[[WorkflowResult], Any]] = []
        self._loggers: list[Any] = []
        self._max_parallel_steps: int | None = None
        self._continue_on_error = False
        self._max_total_retries: int | None = None

    @property
    def _owner(self) -> str:
        """How argument errors name this builder's workflow."""
        return f"workflow '{self.workflow_id}'"

    # -- steps -------------------------------------------------------------------------------

    def _add(self, step: Step, deps: list[str]) -> WorkflowBuilder:
        if step.step_id in self._deps:
            raise WorkflowDefinitionError(
                f"workflow '{self.workflow_id}': duplicate step id '{step.step_id}'"
            )
        self._steps.append(step)
        self._deps[step.step_id] = deps
        return self

    def _chained(self, step: Step, depends_on: Sequence[str] | None) -> WorkflowBuilder:
        if not isinstance(step, Step):
            raise WorkflowDefinitionError(
                f"add_step expects a batten step (AgentStep, ToolStep, ...), got {step!r:.80}"
            )
        if depends_on is None:
            deps = [self._steps[-1].step_id] if self._steps else []
        else:
            deps = _dep_list(step.step_id, depends_on)
        return self._add(step, deps)

    def add_step(self, step: Step, depends_on: Sequence[str] | None = None) -> WorkflowBuilder:
        """Adds ``step`` (JAF's ``add_step``, seed 000).

        Args:
            step: any batten step.
            depends_on: ``None`` (default) runs it after the previously added step; a list of
                step ids runs it once those have completed (ids of steps added later are
                allowed and checked by ``build``); ``[]`` makes it a root.

        Raises:
            WorkflowDefinitionError: ``step`` is not a step, its id is taken, or
                ``depends_on`` is not a list of str.
        """
        return self._chained(step, depends_on)

    def add_agent_step(
        self,
        step_id: str,
        agent: Any,
        message: str,
        depends_on: Sequence[str] | None = None,
    ) -> WorkflowBuilder:
        """Adds ``AgentStep(step_id, agent, message)`` (seed 000), chained as ``add_step``.

        Raises:
            WorkflowDefinitionError: as ``AgentStep`` and ``add_step``.
        """
        return self._chained(AgentStep(step_id, agent, message), depends_on)

    def add_tool_step(
        self,
        step_id: str,
        tool: Any,
        args: Mapping[str, Any] | None = None,
        depends_on: Sequence[str] | None = None,
    ) -> WorkflowBuilder:
        """Adds ``ToolStep(step_id, tool, args)`` (seed 000), chained as ``add_step``.

        Raises:
            WorkflowDefinitionError: as ``ToolStep`` and ``add_step``.
        """
        return self._chained(ToolStep(step_id, tool, args), depends_on)

    def add_conditional_step(
        self,
        step_id: str,
        condition: Callable[[Any], Any],
        true_step: Step,
        false_step: Step | None = None,
        depends_on: Sequence[str] | None = None,
    ) -> WorkflowBuilder:
        """Adds ``ConditionalStep(step_id, condition, true_step, false_step)`` (seed 000):
        ``condition(context)`` picks the branch that runs; with no ``false_step`` a false
        condition skips the step. Chained as ``add_step``.

        Raises:
            WorkflowDefinitionError: as ``ConditionalStep`` and ``add_step``.
        """
        step = ConditionalStep(
            step_id, condition=condition, true_step=true_step, false_step=false_step
        )
        return self._chained(step, depends_on)

    def add_parallel_step(
        self,
        step_id: str,
        steps: Sequence[Step],
        wait_for_all: bool = True,
        depends_on: Sequence[str] | None = None,
    ) -> WorkflowBuilder:
        """Adds ``ParallelStep(step_id, steps, wait_for_all)`` (seed 000): the ``steps`` run
        concurrently as one step. Chained as ``add_step``.

        Raises:
            WorkflowDefinitionError: as ``ParallelStep`` and ``add_step``.
        """
        step = ParallelStep(step_id, steps=list(steps), wait_for_all=wait_for_all)
        return self._chained(step, depends_on)

    def add_loop_step(
        self,
        step_id: str,
        step: Step,
        condition: Callable[[Any, int], Any],
        max_iterations: int = 10,
        depends_on: Sequence[str] | None = None,
    ) -> WorkflowBuilder:
        """Adds ``LoopStep(step_id, step, condition, max_iterations)`` (seed 000): ``step``
        runs while ``condition(context, iteration)`` is true, at most ``max_iterations``
        (default 10) times. Chained as ``add_step``.

        Raises:
            WorkflowDefinitionError: as ``LoopStep`` and ``add_step``.
        """
        loop = LoopStep(step_id, step, condition, max_iterations=max_iterations)
        return self._chained(loop, depends_on)

    def step(
        self,
        step_id: str,
        agent: Any,
        task: str,
        depends_on: Sequence[str] | None = None,
    ) -> WorkflowBuilder:
        """Adds an agent step, JarvisCore's ``builder.step`` (seed 003).

        Args:
            step_id: unique id; downstream tasks reference its output as ``{step_id.result}``.
            agent: the agent's role name (str), resolved when the workflow is compiled in the
                running :class:`~batten.WorkflowEngine`'s registry, then the process-wide one
                (``@batten.agent``); or the agent itself (a callable, or an object with
                ``arun`` / ``run`` / ...), called as ``agent(task)``.
            task: the message (str). ``{x.result}`` is replaced by the output of ancestor step
                ``x`` when the step runs, as JarvisCore does it: a dict output contributes its
                ``"output"`` key (else its ``"result"`` key, else the whole dict), as text
                capped at 500 characters. ``{x.result.key}`` picks a key first.
            depends_on: ids of steps already declared with this builder that must complete
                first. ``None`` (default) or ``[]``: the step is a root and starts at once.

        Raises:
            WorkflowDefinitionError (a ``ValueError``): at this call, when ``step_id`` is taken,
                ``depends_on`` names a step not declared yet, or ``task`` references a step
                that is not among its dependencies (directly or transitively).
        """
        step = AgentStep(step_id, agent, task)
        refs = template_refs(task)
        if refs:
            step.with_input_function(_dag_message(step_id, task))
        deps = [] if depends_on is None else _dep_list(step_id, depends_on)
        unknown = [d for d in deps if d not in self._deps]
        if unknown:
            raise WorkflowDefinitionError(
                f"step '{step_id}' depends on undeclared step(s) {', '.join(map(repr, unknown))}; "
                "declare steps in topological order (dependencies first)"
            )
        ancestors = self._ancestors(deps)
        stray = [r for r in refs if r not in ancestors]
        if stray:
            raise WorkflowDefinitionError(
                f"step '{step_id}': its task references "
                f"{', '.join('{' + r + '.result}' for r in stray)} but "
                f"{', '.join(map(repr, stray))} is not among its dependencies; "
                f"add it to depends_on"
            )
        self._dag = True
        return self._add(step, deps)

    def _ancestors(self, deps: Sequence[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(deps)
        while todo:
            d = todo.pop()
            if d not in seen:
                seen.add(d)
                todo.extend(self._deps.get(d, ()))
        return seen

    # -- workflow settings -------------------------------------------------------------------

    def description(self, text: str) -> WorkflowBuilder:
        """Sets the workflow's description (seed 000).

        Raises:
            WorkflowDefinitionError: ``text`` is not a str.
        """
        if not isinstance(text, str):
            raise WorkflowDefinitionError(f"description must be a str, got {type(text).__name__}")
        self._description = text
        return self

    def with_error_handler(
        self, fn: Callable[[BaseException, Step, WorkflowContext], Any]
    ) -> WorkflowBuilder:
        """Decides what happens when any step fails after its retries (seed 000's
        e-commerce example).

        ``fn(error, step, state)`` gets the exception, the step and the step's
        :class:`~batten.WorkflowContext` and returns ``{"action": "retry"}`` (run the step
        again, up to ``"max_retries"`` times, default 1), ``{"action": "fail"}`` (or ``None``),
        ``{"action": "skip"}`` (the step ends ``SKIPPED``; dependents run) or
        ``{"action": "fallback", "step": other_step}`` / ``{"action": "fallback",
        "output": value}``. Other keys (``"escalate"``, ``"notify_team"``) are ignored. A
        handler that raises or returns anything else fails the step with that error.

        Raises:
            WorkflowDefinitionError: ``fn`` is not callable.
        """
        check_callable(fn, "with_error_handler's handler", owner=self._owner)
        self._error_handler = fn
        return self

    def with_step_callback(self, fn: Callable[[StepResult], Any]) -> WorkflowBuilder:
        """Calls ``fn(step_result)`` as each step finishes (seed 000); see
        :meth:`batten.Workflow.on_step_completed`.

        Raises:
            WorkflowDefinitionError: ``fn`` is not callable.
        """
        check_callable(fn, "with_step_callback's callback", owner=self._owner)
        self._step_callbacks.append(fn)
        return self

    def with_completion_callback(self, fn: Callable[[WorkflowResult], Any]) -> WorkflowBuilder:
        """Calls ``fn(workflow_result)`` when a run ends (seed 000); see
        :meth:`batten.Workflow.on_workflow_completed`.

        Raises:
            WorkflowDefinitionError: ``fn`` is not callable.
        """
        check_callable(fn, "with_completion_callback's callback", owner=self._owner)
        self._completion_callbacks.append(fn)
        return self

    def with_logger(self, logger: Any) -> WorkflowBuilder:
        """Attaches a ``WorkflowLogger`` (seed 000); see :meth:`batten.Workflow.add_logger`.

        Raises:
            WorkflowDefinitionError: ``logger`` has neither ``log_step_start`` nor
                ``log_step_complete``.
        """
        if not (hasattr(logger, "log_step_start") or hasattr(logger, "log_step_complete")):
            raise WorkflowDefinitionError(
                f"workflow '{self.workflow_id}': a logger needs log_step_start or "
                f"log_step_complete, got {logger!r:.80}"
            )
        self._loggers.append(logger)
        return self

    def with_max_parallel_steps(self, n: int | None) -> WorkflowBuilder:
        """At most ``n`` steps in flight at once (int from 1 to ``2**31 - 1``; ``None``:
        unbounded).

        Raises:
            WorkflowDefinitionError: ``n`` is not such an int or ``None``.
        """
        check_count(n, "max_parallel_steps", owner=self._owner, allow_none=True)
        self._max_parallel_steps = n
        return self

    def with_continue_on_error(self, enabled: bool = True) -> WorkflowBuilder:
        """A failed step no longer blocks its dependents and the run ends ``COMPLETED`` with
        the failures in ``result.errors`` (default when called: ``True``); see
        :class:`~batten.Workflow`'s ``continue_on_error``."""
        self._continue_on_error = bool(enabled)
        return self

    def with_max_total_retries(self, n: int | None) -> WorkflowBuilder:
        """Retries allowed across the whole run, all steps together (int from 0 to
        ``2**31 - 1``; ``None``: no run-wide cap); see :class:`~batten.Workflow`'s
        ``max_total_retries``.

        Raises:
            WorkflowDefinitionError: ``n`` is not such an int or ``None``.
        """
        check_count(n, "max_total_retries", owner=self._owner, minimum=0, allow_none=True)
        self._max_total_retries = n
        return self

    # -- build -------------------------------------------------------------------------------

    def build(self, title: str | None = None, team: str | None = None) -> Any:
        """Makes the workflow (seeds 000 and 003).

        Args:
            title: the workflow's name (JarvisCore's ``title``; default: the builder's name).
            team: the team that owns it (JarvisCore); recorded on the :class:`DagWorkflow`.
                Only for a builder used with ``step()``.

        Returns:
            A :class:`DagWorkflow` if ``step()`` was used, else a :class:`~batten.Workflow`.

        A builder made without a ``workflow_id`` (JarvisCore's ``WorkflowBuilder()``) must
        have steps; one made with an id may build an empty :class:`~batten.Workflow`, to which
        steps are added later with ``workflow.add_step`` (seed 000's logger example).

        Raises:
            WorkflowDefinitionError: no step was added to a builder made without an id, a
                ``depends_on`` names no step, or ``team`` is given to a builder not used with
                ``step()``. Cycles and unregistered names are reported when the workflow
                is run (or by ``workflow.validate()``), since names may be registered on the
                engine that runs it.
        """
        if not self._steps and not self._named:
            raise WorkflowDefinitionError(
                f"workflow '{self.workflow_id}' has no steps: add one with step() or add_step() "
                "before build()"
            )
        for what, value in (("title", title), ("team", team)):
            if value is not None and not isinstance(value, str):
                raise WorkflowDefinitionError(f"{what} must be a str, got {type(value).__name__}")
        if team is not None and not self._dag:
            raise WorkflowDefinitionError(
                "build(team=...) is for a JarvisCore-style builder (steps added with step())"
            )
        for step in self._steps:
            unknown = [d for d in self._deps[step.step_id] if d not in self._deps]
            if unknown:
                raise WorkflowDefinitionError(
                    f"step '{step.step_id}' depends on unknown step(s) "
                    f"{', '.join(map(repr, unknown))}"
                )
        name = title if title is not None else self.name
        workflow = Workflow(
            self.workflow_id,
            name,
            self._description,
            max_parallel_steps=self._max_parallel_steps,
            continue_on_error=self._continue_on_error,
            max_total_retries=self._max_total_retries,
        )
        for step in self._steps:
            workflow.add_step(step, depends_on=list(self._deps[step.step_id]))
        workflow._workflow_handler = self._error_handler
        for cb in self._step_callbacks:
            workflow.on_step_completed(cb)
        for done in self._completion_callbacks:
            workflow.on_workflow_completed(done)
        for logger in self._loggers:
            workflow.add_logger(logger)
        if self._dag:
            return DagWorkflow(workflow, title=workflow.name, team=team)
        return workflow

    def __repr__(self) -> str:
        return f"WorkflowBuilder({self.workflow_id!r}, steps={len(self._steps)})"


def _dep_list(step_id: str, depends_on: Any) -> list[str]:
    if isinstance(depends_on, list | tuple) and all(isinstance(d, str) for d in depends_on):
        return list(depends_on)
    raise WorkflowDefinitionError(
        f"step '{step_id}': depends_on must be a list of step ids, got {depends_on!r}"
    )


#: JarvisCore caps each ``{x.result}`` substitution at this many characters (seed 003).
RESULT_CAP_CHARS = 500


def _dag_text(value: Any) -> str:
    """One ``{x.result}`` substitution, JarvisCore's way (seed 003)."""
    if isinstance(value, Mapping):
        for key in ("output", "result"):
            if key in value:
                value = value[key]
                break
    text = value if isinstance(value, str) else str(value)
    return text[:RESULT_CAP_CHARS]


def _dag_message(step_id: str, task: str) -> Callable[[WorkflowContext], str]:
    """The input function of a ``step()`` whose task holds ``{x.result}`` references."""

    def message(context: Any) -> str:  # Any: the stub's StateMap is not a typing Mapping
        return ref_pattern().sub(
            lambda m: _dag_text(lookup(context.results, step_id, m.group(1), m.group(2))), task
        )

    return message


def _agent_label(agent: Any) -> str:
    if isinstance(agent, str):
        return agent
    return _name_of(agent) or type(agent).__name__


class DagWorkflow(WorkflowHolderKind):
    """A JarvisCore workflow (seed 003): what ``WorkflowBuilder().step(...).build()`` returns.

    Holds the :class:`~batten.Workflow` it runs (``.workflow``; add callbacks or run it with a
    :class:`~batten.WorkflowEngine` there) and adds JarvisCore's ``register`` and ``execute``.

    Attributes:
        workflow: the underlying :class:`~batten.Workflow`.
        workflow_id: its id (str).
        title: its name (str).
        team: the owning team given to ``build`` (str or ``None``).
    """

    def __init__(self, workflow: Workflow, *, title: str, team: str | None = None) -> None:
        self.workflow = workflow
        self.title = title
        self.team = team
        self._store: Any = None

    @property
    def workflow_id(self) -> str:
        """The workflow's id (str)."""
        return self.workflow.workflow_id

    @property
    def steps(self) -> list[Step]:
        """The steps, in declaration order (a copy of the list; each has ``.step_id``)."""
        return self.workflow.steps

    async def register(self, store: Any = None) -> str:
        """JarvisCore's ``register`` (seed 003): records the DAG and returns the workflow id.

        Args:
            store: a :class:`~batten.Store` or a store URL (``"redis://host:6379/0"``,
                ``"sqlite:///runs.db"``): the DAG (title, team, steps with their agents and
                ``depends_on``) is written there, and later ``execute`` calls without a
                ``redis_store`` run durably in it, writing each step's status as it changes
                so other processes see progress. ``None`` (default): in memory only, as
                JarvisCore without Redis.

        Raises:
            TypeError: ``store`` is neither a Store nor a URL.
            StoreURLError, StoreUnavailableError: the store cannot be opened.
        """
        st = _open_store(store)
        if st is not None:
            definition = {
                "workflow_id": self.workflow_id,
                "title": self.title,
                "team": self.team,
                "steps": [
                    {
                        "step_id": s.step_id,
                        "agent": _agent_label(s.agent) if isinstance(s, AgentStep) else None,
                        "depends_on": list(deps),
                    }
                    for s, deps in zip(self.workflow._steps, self.workflow._deps, strict=True)
                ],
            }
            st._native.put_workflow(self.workflow_id, definition)
            self._store = st
        return self.workflow_id

    async def execute(
        self,
        mesh: WorkflowEngine | None = None,
        redis_store: Any = None,
        timeout_per_step: float | None = 300,
        context: WorkflowContext | Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Runs the DAG; JarvisCore's ``execute`` (seed 003).

        Args:
            mesh: the :class:`~batten.WorkflowEngine` whose registry resolves agent roles (and
                whose retry default and ``get_workflow_status`` apply), or ``None`` (default)
                for the process-wide registry (``@batten.agent``).
            redis_store: a :class:`~batten.Store` or URL to run durably in: the run and each
                step's status changes are written as they happen (``batten.run_history``
                shows them from any process). Default: the store given to ``register``, if
                any; else in memory.
            timeout_per_step: seconds (> 0, at most 365 days) each attempt of a step without its own
                ``with_timeout`` may take before it ends ``"timeout"``; default 300. ``None``:
                no such bound. The step objects are not changed: the run uses copies.
            context: the initial :class:`~batten.WorkflowContext`, a dict of variables, or
                ``None``.

        Returns:
            One dict per step that ran, in declaration order: ``{"step_id", "agent"`` (the role
            name, or the agent's name), ``"status"`` (``"success"``, ``"failure"`` or
            ``"timeout"``), ``"output"`` (``None`` unless success), ``"error"`` (the message,
            or ``None``), ``"elapsed_ms"`` (float milliseconds)``}``. Steps blocked by a failed
            dependency never ran and are left out; independent steps still run.

        Raises:
            WorkflowDefinitionError: an agent role is not registered (before any step runs), a
                cycle, or a bad ``timeout_per_step``.
            TypeError: ``mesh`` is not a WorkflowEngine or ``None``, or a bad ``context``.
        """
        store = _open_store(redis_store) or self._store
        if mesh is not None and not isinstance(mesh, WorkflowEngine):
            raise TypeError(
                f"mesh must be a batten.WorkflowEngine or None, got {type(mesh).__name__}"
            )
        workflow = self._with_step_timeout(timeout_per_step)
        if store is not None:
            if workflow is self.workflow:
                workflow = copy.copy(workflow)
            workflow._store = store
        ctx = _context_for(self.workflow_id, context)
        if mesh is not None:
            result = await mesh._run(workflow, ctx)
        else:
            result = await workflow.execute(ctx)
        by_id = {s.step_id: s for s in result.steps}
        out: list[dict[str, Any]] = []
        for step in workflow.steps:
            r = by_id.get(step.step_id)
            status = _DAG_STATUS.get(r.status) if r is not None else None
            if r is None or status is None:
                continue
            agent = step.agent if isinstance(step, AgentStep) else None
            out.append(
                {
                    "step_id": r.step_id,
                    "agent": _agent_label(agent),
                    "status": status,
                    "output": r.output,
                    "error": r.error,
                    "elapsed_ms": r.execution_time_ms,
                }
            )
        return out

    def _with_step_timeout(self, seconds: float | None) -> Workflow:
        """The workflow to run: ``self.workflow`` itself, or a shallow copy whose steps without
        a timeout are copies bounded to ``seconds`` (callbacks, loggers and handlers shared)."""
        if seconds is None:
            return self.workflow
        check_seconds(seconds, "timeout_per_step", owner=f"workflow '{self.workflow_id}'")
        steps = self.workflow._steps
        if all(s.timeout is not None for s in steps):
            return self.workflow
        run = copy.copy(self.workflow)
        run._steps = [
            s if s.timeout is not None else copy.copy(s).with_timeout(seconds) for s in steps
        ]
        run._plans = {}
        return run

    def __repr__(self) -> str:
        return (
            f"DagWorkflow({self.workflow_id!r}, title={self.title!r}, team={self.team!r}, "
            f"steps={len(self.workflow._steps)})"
        )
