"""``WorkflowEngine``: runs workflows with shared defaults and remembers how each run went.

JAF's ``engine.execute_workflow(workflow, context)`` (seed 000) and aigen's
``engine.execute(workflow, context, "Input prompt")`` / ``engine.get_workflow_status(id)``
(seed 004). The engine adds three things to ``Workflow.execute``: a registry of named tools and
agents consulted before the process-wide one, a default retry policy for steps that have none,
and a bounded in-memory record of recent runs.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from batten._core import WorkflowContext
from batten._internal.checks import MAX_COUNT, check_count, check_seconds
from batten._internal.options import CompileOptions
from batten._internal.status import StepStatus, WorkflowStatus
from batten._runtime import lifecycle
from batten.errors import RunNotFoundError, WorkflowDefinitionError
from batten.registry import Registry, global_registry
from batten.retry import RetryPolicy
from batten.workflow import Workflow, WorkflowResult

__all__ = ["WorkflowEngine"]

#: Runs remembered for ``get_workflow_status``; the oldest is forgotten first.
MAX_TRACKED_RUNS = 1000


@dataclass
class _RunRecord:
    """One run as ``get_workflow_status`` reports it (mutated while the run goes on)."""

    workflow_id: str
    total_steps: int
    started_at: float
    run_id: str | None = None
    status: WorkflowStatus = WorkflowStatus.RUNNING
    steps_completed: int | None = None
    error: str | None = None
    finished_at: float | None = None
    execution_time_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow_id": self.workflow_id,
            "status": self.status,
            "steps_completed": self.steps_completed,
            "total_steps": self.total_steps,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "execution_time_ms": self.execution_time_ms,
        }


def _context_for(
    workflow_id: str, context: WorkflowContext | Mapping[str, Any] | None, input: Any = None
) -> WorkflowContext | None:
    """A run's initial context from what the caller passed.

    ``None`` stays ``None`` (the workflow builds an empty one) unless there is an ``input``; a
    mapping becomes the variables; a ``WorkflowContext`` is used as is, or copied with
    ``variables["input"] = input`` when ``input`` is given (contexts are immutable).

    Raises:
        TypeError: ``context`` is none of those.
    """
    if input is None and (context is None or isinstance(context, WorkflowContext)):
        return context
    if context is None:
        return WorkflowContext(workflow_id, variables={"input": input})
    if isinstance(context, WorkflowContext):
        variables = {**context.variables.to_dict(), "input": input}
        return WorkflowContext(
            context.workflow_id,
            user_context=context.user_context,
            variables=variables,
            metadata=context.metadata,
        )
    if isinstance(context, Mapping):
        variables = dict(context) if input is None else {**context, "input": input}
        return WorkflowContext(workflow_id, variables=variables)
    raise TypeError(
        "context must be a batten.WorkflowContext, a dict of variables or None, "
        f"got {type(context).__name__}"
    )


class WorkflowEngine:
    """Runs workflows with an engine-level registry, retry default and concurrency limit
    (JAF's and aigen's ``WorkflowEngine``, seeds 000 and 004).

    Args:
        max_retries: retries (int from 0 to ``2**31 - 2``) after the first attempt for every
            step that has no ``with_retry`` of its own, as aigen's
            ``WorkflowEngine(max_retries=3)`` (3 retries, 4 attempts). ``None`` (default): such
            steps are not retried.
        retry_delay: seconds (float, 0 to 365 days) to wait before each of those retries, a
            fixed delay with ``RetryPolicy``'s default 10% jitter (aigen's ``retry_delay=5``).
            Default ``None``: 1 second. Requires ``max_retries``.
        max_parallel_steps: at most this many steps of one run in flight at once (int from 1
            to ``2**31 - 1``; ``None``, default: only the workflow's own limit applies).
        tools: named tools for ``ToolStep("name")`` steps, ``{name: tool}`` or an iterable of
            tools named by their ``name`` / ``__name__``; found before the process-wide
            ``@batten.tool`` ones, so an engine can override them.
        agents: the same for ``AgentStep`` agents and JarvisCore agent roles.
        store: makes every run durable in this checkpoint store (a :class:`~batten.Store` or a
            URL such as ``"sqlite:///runs.db"``); :meth:`resume` continues a run whose process
            died and :meth:`get_workflow_status` finds any run in the store. ``None``
            (default): runs live in memory.

    The engine remembers the last :data:`MAX_TRACKED_RUNS` (1000) runs for
    :meth:`get_workflow_status`. One engine may run many workflows at once, from one event loop
    or several threads.

    Raises:
        WorkflowDefinitionError: a value out of range, ``retry_delay`` without ``max_retries``,
            or a tool / agent without a usable name.
    """

    def __init__(
        self,
        max_retries: int | None = None,
        retry_delay: float | None = None,
        max_parallel_steps: int | None = None,
        tools: Mapping[str, Any] | Iterable[Any] | None = None,
        agents: Mapping[str, Any] | Iterable[Any] | None = None,
        store: Any = None,
    ) -> None:
        # One attempt more than the retries must still fit RetryPolicy.max_attempts.
        check_count(max_retries, "max_retries", minimum=0, maximum=MAX_COUNT - 1, allow_none=True)
        if retry_delay is not None:
            check_seconds(retry_delay, "retry_delay", allow_zero=True)
            if max_retries is None:
                raise WorkflowDefinitionError("retry_delay needs max_retries (how many retries)")
        check_count(max_parallel_steps, "max_parallel_steps", allow_none=True)
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.max_parallel_steps = max_parallel_steps
        #: Tools and agents by name: this engine's, then the process-wide registry.
        self.registry = Registry(tools=tools, agents=agents, parent=global_registry())
        policy = None
        if max_retries is not None:
            policy = RetryPolicy(
                max_attempts=max_retries + 1,
                initial_interval=1.0 if retry_delay is None else float(retry_delay),
                backoff_coefficient=1.0,
            )
        #: The retry policy given to steps without their own (``None``: no retries).
        self.default_retry_policy: RetryPolicy | None = policy
        # One options object for the engine's lifetime: workflows key their compiled plans on
        # it, so a workflow run again by the same engine is not recompiled.
        self._compile_options = CompileOptions(registry=self.registry, default_policy=policy)
        self._lock = threading.Lock()
        self._runs: OrderedDict[int, _RunRecord] = OrderedDict()
        self._by_run_id: dict[str, int] = {}
        self._keys = itertools.count()
        #: The engine's checkpoint store (``None``: runs are not durable).
        self.store = _open_store(store)
        #: The workflows this engine ran, by id, so ``resume(run_id)`` finds a run's workflow.
        self._workflows: dict[str, Workflow] = {}

    def _options(self) -> CompileOptions:
        """The compile options every workflow this engine runs is compiled with (private)."""
        return self._compile_options

    async def execute_workflow(
        self,
        workflow: Workflow,
        context: WorkflowContext | Mapping[str, Any] | None = None,
    ) -> WorkflowResult:
        """Runs ``workflow`` and returns its result (JAF's ``engine.execute_workflow``,
        seed 000).

        Args:
            workflow: a :class:`~batten.Workflow` (any subclass).
            context: the initial :class:`~batten.WorkflowContext`, a dict of variables, or
                ``None`` (default: empty).

        Named tools and agents resolve in this engine's registry first; steps without their
        own retry policy get the engine's. Step failures never raise: they are on the result.

        Raises:
            WorkflowDefinitionError: the workflow is malformed or names an unregistered tool or
                agent (before any step runs).
            TypeError: ``workflow`` is not a Workflow, or ``context`` is not one of the above.
        """
        return await self._run(workflow, _context_for(_id_of(workflow), context))

    async def execute(
        self,
        workflow: Workflow,
        context: WorkflowContext | Mapping[str, Any] | None = None,
        input: Any = None,
    ) -> WorkflowResult:
        """Runs ``workflow`` on ``input`` (aigen's ``engine.execute(workflow, context,
        "Input prompt")``, seed 004).

        Args:
            workflow: a :class:`~batten.Workflow`, e.g. a
                :class:`~batten.patterns.DeterministicWorkflow`.
            context: as :meth:`execute_workflow`.
            input: put in the run's variables as ``"input"`` (steps read it with
                ``context.get("input")``); ``None`` (default) adds nothing.

        ``result["result"]`` is the final output and ``result["workflow_id"]`` the id that
        :meth:`get_workflow_status` accepts.

        Raises:
            WorkflowDefinitionError, TypeError: as :meth:`execute_workflow`.
        """
        return await self._run(workflow, _context_for(_id_of(workflow), context, input))

    async def resume(self, run_id: str, workflow: Workflow | None = None) -> WorkflowResult:
        """Continues durable run ``run_id`` from the engine's store (see
        :meth:`Workflow.resume`): completed steps are restored, not run again.

        Args:
            run_id: the run's id.
            workflow: the workflow it runs; default: the one with the run's workflow id among
                those this engine has run.

        Raises:
            TypeError: the engine has no store.
            RunNotFoundError: no such run.
            KeyError: ``workflow`` not given and this engine never ran the run's workflow.
        """
        if self.store is None:
            raise TypeError("this WorkflowEngine has no store: WorkflowEngine(store=...)")
        if workflow is None:
            wid = self.store.get_run(run_id).workflow_id
            workflow = self._workflows.get(wid)
            if workflow is None:
                raise KeyError(
                    f"run {run_id!r} is of workflow {wid!r}, which this engine has not run; "
                    "pass workflow=..."
                )
        _id_of(workflow)
        return await self._run(workflow, None, resume=run_id)

    async def _run(
        self,
        workflow: Workflow,
        context: WorkflowContext | None,
        *,
        resume: str | None = None,
    ) -> WorkflowResult:
        """Runs (or resumes) ``workflow`` with this engine's options and records the run."""
        record = _RunRecord(workflow.workflow_id, len(workflow.steps), time.time())
        self._workflows[workflow.workflow_id] = workflow
        durable = None
        if resume is None and (self.store is not None or workflow._store is not None):
            st = workflow._store if workflow._store is not None else self.store
            context, durable = lifecycle.begin_durable(workflow, context, st, None)
        key = self._track(record)
        # NOTE: no live step count: subscribing to the run's events (on_event) so a running
        # run could report steps_completed took a 1,000-step sync chain from 2.9 to 6.6 ms (the
        # engine builds a context per step start for subscribers), for every engine run.
        try:
            if resume is not None:
                result = await lifecycle.resume(
                    workflow,
                    resume,
                    store=workflow._store or self.store,
                    timeout=None,
                    max_concurrency=self.max_parallel_steps,
                    base=self._compile_options,
                )
            else:
                result = await lifecycle.execute(
                    workflow,
                    context,
                    timeout=None,
                    max_concurrency=self.max_parallel_steps,
                    on_event=None,
                    base=self._compile_options,
                    durable=durable,
                )
        except asyncio.CancelledError:
            self._finish(key, record, None, WorkflowStatus.CANCELLED, "cancelled")
            raise
        except BaseException:
            # Raised before the run started (a malformed workflow or context): no run to report.
            self._forget(key)
            raise
        self._finish(key, record, result, result.status, result.error)
        return result

    def _track(self, record: _RunRecord) -> int:
        with self._lock:
            key = next(self._keys)
            self._runs[key] = record
            while len(self._runs) > MAX_TRACKED_RUNS:
                _, old = self._runs.popitem(last=False)
                if old.run_id is not None:
                    self._by_run_id.pop(old.run_id, None)
            return key

    def _forget(self, key: int) -> None:
        with self._lock:
            self._runs.pop(key, None)

    def _finish(
        self,
        key: int,
        record: _RunRecord,
        result: WorkflowResult | None,
        status: WorkflowStatus,
        error: str | None,
    ) -> None:
        now = time.time()
        with self._lock:
            record.status = status
            record.error = error
            record.finished_at = now
            if result is None:
                record.execution_time_ms = (now - record.started_at) * 1000.0
                return
            record.execution_time_ms = result.total_execution_time_ms
            # The workflow's own steps come first; compensations that ran are appended.
            own = result.steps[: result.total_steps]
            record.steps_completed = sum(s.status == StepStatus.COMPLETED for s in own)
            record.run_id = result.run_id
            if key in self._runs:  # not already evicted by 1000 newer runs
                self._by_run_id[result.run_id] = key

    def get_workflow_status(self, run_or_workflow_id: str) -> dict[str, Any]:
        """How a run is going or went (aigen's ``engine.get_workflow_status``, seed 004).

        Args:
            run_or_workflow_id: a run id (``result.run_id``) or a workflow id
                (``result["workflow_id"]``, meaning that workflow's latest run on this engine).
                A run is known by its workflow id as soon as it starts, by its run id once it
                has ended.

        Returns:
            A new dict: ``run_id`` (``None`` while running), ``workflow_id``, ``status``
            (:class:`~batten.WorkflowStatus`, ``RUNNING`` until the run ends), ``steps_completed``
            (the workflow's steps that completed; ``None`` while running), ``total_steps``,
            ``error``, ``started_at`` and ``finished_at`` (Unix time in seconds; ``finished_at``
            ``None`` while running) and ``execution_time_ms`` (``None`` while running).

        Raises:
            KeyError: no run of the last 1000 has that run id or workflow id (nor, with a
                store, is a run with that id in the store).
        """
        with self._lock:
            key = self._by_run_id.get(run_or_workflow_id)
            record = self._runs.get(key) if key is not None else None
            if record is None:
                record = next(
                    (
                        r
                        for r in reversed(self._runs.values())
                        if r.workflow_id == run_or_workflow_id
                    ),
                    None,
                )
            if record is not None:
                return record.as_dict()
        if self.store is not None:
            try:
                info = self.store.get_run(run_or_workflow_id)
            except RunNotFoundError:
                pass
            else:
                done = info.status not in (WorkflowStatus.RUNNING, WorkflowStatus.PENDING)
                return {
                    "run_id": info.run_id,
                    "workflow_id": info.workflow_id,
                    "status": info.status,
                    "steps_completed": None,
                    "total_steps": None,
                    "error": info.error,
                    "started_at": info.created_at,
                    "finished_at": info.updated_at if done else None,
                    "execution_time_ms": (
                        (info.updated_at - info.created_at) * 1000.0 if done else None
                    ),
                }
        raise KeyError(
            f"no run or workflow with id {run_or_workflow_id!r} among this engine's "
            f"last {MAX_TRACKED_RUNS} runs" + (" or in its store" if self.store else "")
        )

    def __repr__(self) -> str:
        return (
            f"WorkflowEngine(max_retries={self.max_retries}, retry_delay={self.retry_delay}, "
            f"max_parallel_steps={self.max_parallel_steps}, registry={self.registry!r})"
        )


def _id_of(workflow: Any) -> str:
    if not isinstance(workflow, Workflow):
        raise TypeError(
            f"expected a batten.Workflow, got {type(workflow).__name__} (for a DagWorkflow, "
            "call `await dag.execute(mesh=engine)`)"
        )
    return workflow.workflow_id


def _open_store(store: Any) -> Any:
    """``batten.store.open_store(store)`` (``None`` for ``None``), importing the stores on first
    use: a program that never names a store never loads them."""
    if store is None:
        return None
    from batten.store import open_store

    return open_store(store)
