"""``Workflow``: a DAG of steps (its runs' results are ``batten.result.WorkflowResult``).

A public facade (layer beside ``batten.durable`` and ``batten.events``): the definition DSL
lives here; ``execute``, ``resume``, ``stream`` and ``run`` hand the workflow to the runtime's
lifecycle (:mod:`batten._runtime.lifecycle`), which compiles it (the plan cache is
:func:`batten._runtime.compile.compiled`) and runs it. Two imports happen on first use, each
for a reason given where it is made: ``batten.config`` (a layer above, for
:meth:`Workflow.from_config`) and ``batten.display`` (notebook views, kept out of
``import batten``).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from batten._core import StepResult, WorkflowContext
from batten._internal.checks import check_callable, check_count, check_lease, check_run_options
from batten._internal.epoch import bump_epoch
from batten._internal.kinds import WorkflowKind
from batten._internal.options import CompileOptions, StepErrorHandler
from batten._internal.owner import DEFAULT_HEARTBEAT_SECONDS, DEFAULT_LEASE_SECONDS
from batten._internal.placement import RayExecutor
from batten._runtime import lifecycle
from batten._runtime.compile import compiled
from batten._runtime.loops import run_on, run_on_helper_thread, thread_runner
from batten.errors import WorkflowDefinitionError
from batten.result import WorkflowResult
from batten.steps import Step

if TYPE_CHECKING:
    from pathlib import Path

    from batten.events import WorkflowEvent
    from batten.registry import Registry

__all__ = ["Workflow", "WorkflowResult"]

#: The dependencies of every step that has none (shared, never mutated).
_NO_DEPS: tuple[str, ...] = ()


def _check_executor(executor: Any, owner: str) -> None:
    if executor is not None and not isinstance(executor, RayExecutor):
        raise WorkflowDefinitionError(
            f"{owner}: executor must be a batten.RayExecutor or None, got {executor!r:.80}"
        )


class Workflow(WorkflowKind):
    """A DAG of steps, run by the native engine (JAF's ``Workflow``).

    Args:
        workflow_id: the workflow's id (str).
        name: a human-readable name.
        description: free text.
        max_parallel_steps: at most this many steps in flight at once (an int from 1 to
            ``2**31 - 1``; ``None``: unbounded), as seed 001's
            ``WorkflowConfiguration.max_parallel_steps``.
        continue_on_error: a failed step no longer blocks its dependents (they run without its
            output) and the run ends ``COMPLETED`` with the failures in ``result.errors``
            (seed 002's ``error_handling.continue_on_error``; default ``False``: a failure
            blocks its dependents and fails the run).
        max_total_retries: retries allowed across the whole run, all steps together (seed
            002's ``error_handling.max_total_retries``; an int from 0 to ``2**31 - 1``); once
            spent, a failing step fails at once. ``None`` (default): each step's own policy
            only.
        version: the workflow's version string (seed 002), default ``"1.0.0"``.
        executor: where agent and tool steps run: ``None`` (default, this process) or a
            :class:`~batten.RayExecutor` (each step a Ray task on its cluster, placed by its
            ``on_ray`` settings if any; see :meth:`with_executor`).

    Attributes set by a workflow file (:meth:`from_config`, :func:`batten.load_workflow`):
    ``inputs`` (``{name: {"type", "default", "required", "description"}}``, the declared
    inputs; ``{}`` otherwise), ``source`` (the file's absolute path, or ``None``) and
    ``output_options`` (seed 002's ``output`` section, ``{}`` otherwise). ``fallback_workflow``
    is the workflow run when a run fails (:meth:`with_fallback_workflow`; default ``None``).

    Steps start as soon as all their dependencies have completed (no waves), a failed step
    blocks only its dependents, and sync steps run on batten's worker threads while async steps
    run as tasks on the caller's event loop.

    Raises:
        WorkflowDefinitionError: ``max_parallel_steps`` or ``max_total_retries`` is not such an
            int or ``None``, or ``executor`` is not a ``RayExecutor`` or ``None``.
    """

    def __init__(
        self,
        workflow_id: str,
        name: str | None = None,
        description: str = "",
        *,
        max_parallel_steps: int | None = None,
        continue_on_error: bool = False,
        max_total_retries: int | None = None,
        version: str = "1.0.0",
        executor: Any = None,
    ) -> None:
        owner = f"workflow '{workflow_id}'"
        _check_executor(executor, owner)
        check_count(max_parallel_steps, "max_parallel_steps", owner=owner, allow_none=True)
        check_count(max_total_retries, "max_total_retries", owner=owner, minimum=0, allow_none=True)
        self.workflow_id = workflow_id
        self.name = name if name is not None else workflow_id
        self.description = description
        self.version = version
        self.max_parallel_steps = max_parallel_steps
        self.continue_on_error = bool(continue_on_error)
        self.max_total_retries = max_total_retries
        self.inputs: dict[str, dict[str, Any]] = {}
        self.source: str | None = None
        self.output_options: dict[str, Any] = {}
        self.fallback_workflow: Workflow | None = None
        self._store: Any = None
        self._serializer: Any = None
        self._durability: str = "sync"
        self._lease_seconds: float = DEFAULT_LEASE_SECONDS
        self._heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
        self._steps: list[Step] = []
        self._deps: list[Sequence[str]] = []  # a step with none shares one empty tuple
        self._error_handlers: dict[str, list[StepErrorHandler]] = {}
        self._workflow_handler: Any = None
        #: Subscribers (see ``batten.events``): ``fn(step_result)`` per finished step,
        #: ``fn(workflow_result)`` per finished run, and ``WorkflowLogger`` objects.
        self._step_callbacks: list[Callable[[StepResult], Any]] = []
        self._completion_callbacks: list[Callable[[WorkflowResult], Any]] = []
        self._loggers: list[Any] = []
        self._plans: dict[tuple[Any, ...], Any] = {}
        self._default_options = CompileOptions(workflow_id=workflow_id, executor=executor)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        base_dir: str | Path | None = None,
        registry: Registry | None = None,
    ) -> Workflow:
        """A workflow from a config dict: batten's format 1 (the JSON Schema
        ``batten/config/workflow.schema.json``; ``name``, ``inputs``, ``steps`` with ``id``,
        ``kind``, ``tool``/``agent`` as ``module:attribute`` or a registered name, ``args``,
        ``message``, ``depends_on``, ``retry``, ``timeout``, ``condition``, map / parallel /
        condition / approval / loop blocks) or seed 002's ``WORKFLOW_CONFIG`` (``phases``
        with ``agent``, ``timeout``, ``retries``, ``depends_on``; ``error_handling``;
        ``output``), loaded unchanged. :func:`batten.load_workflow` reads the same from a YAML
        or JSON file.

        Args:
            config: the document (dict).
            base_dir: a directory put first on ``sys.path`` while importing
                ``module:attribute`` references (default: none).
            registry: where agent and tool names are looked up (default: the process-wide
                registry of ``@batten.agent`` / ``@batten.tool``). Names found in a registry
                passed here are replaced by the objects registered there, so the workflow runs
                them whatever the process-wide registry holds.

        Raises:
            WorkflowConfigError: the config breaks the schema, names something that cannot be
                imported or is not registered, or describes an invalid graph; the message
                names the field (``steps[2].retry.max_attempts``).
            TypeError: ``config`` is not a mapping.
        """
        # Sanctioned upward import (pyproject's import-linter contract lists it): config builds
        # Workflows, so it sits above this module; it also loads PyYAML and jsonschema, which
        # `import batten` must not.
        from batten.config import workflow_from_config

        return workflow_from_config(config, base_dir=base_dir, registry=registry)

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
                f"add_step expects a batten step (AgentStep, ToolStep, ...), got {step!r:.80}"
            )
        deps: Sequence[str]
        if depends_on is None:
            deps = [self._steps[-1].step_id] if self._steps else _NO_DEPS
        elif isinstance(depends_on, list | tuple) and all(isinstance(d, str) for d in depends_on):
            # NOTE: one shared empty tuple, not a new empty list per step: ~0.5 MB of a 10,000
            # step fan-out (benchmark M).
            deps = list(depends_on) if depends_on else _NO_DEPS
        else:
            raise WorkflowDefinitionError(
                f"step '{step.step_id}': depends_on must be a list of step ids, got {depends_on!r}"
            )
        self._steps.append(step)
        self._deps.append(deps)
        self._plans.clear()
        bump_epoch()
        return self

    def add_error_handler(self, step_id: str, handler: StepErrorHandler) -> Workflow:
        """Recovers step ``step_id`` when it fails after its retries (JAF's
        ``add_error_handler``).

        ``handler(step_result, context)`` gets the failed :class:`~batten.StepResult` and the
        step's :class:`~batten.WorkflowContext` and returns a recovery step (run at once; its
        output stands in for the failed step's, and the step ends ``COMPLETED`` with
        ``metadata["recovered_by"]``) or ``None`` (the step stays failed). Several handlers
        for one step are asked in the order added; a step's own ``with_fallback`` comes first.
        A handler that raises, or returns something else, fails the step with that error.
        Returns the workflow.

        Raises:
            WorkflowDefinitionError: ``handler`` is not callable (an unknown ``step_id`` is
                reported when the workflow is compiled).
        """
        check_callable(handler, "an error handler", owner=f"step '{step_id}'")
        self._error_handlers.setdefault(step_id, []).append(handler)
        self._plans.clear()
        bump_epoch()
        return self

    def on_step_completed(self, callback: Callable[[StepResult], Any]) -> Workflow:
        """Calls ``callback(step_result)`` (sync or async) as each step of each run finishes
        (completed, failed, timed out, skipped, blocked or cancelled), on the event loop's
        thread (JAF's ``with_step_callback``). A callback that raises is logged on the
        ``batten`` logger and does not affect the run. Returns the workflow.

        Raises:
            WorkflowDefinitionError: ``callback`` is not callable.
        """
        check_callable(callback, "on_step_completed's callback", owner=self._owner)
        self._step_callbacks.append(callback)
        return self

    def on_workflow_completed(self, callback: Callable[[WorkflowResult], Any]) -> Workflow:
        """Calls ``callback(workflow_result)`` (sync or async) when a run ends, before
        ``execute`` returns (JAF's ``with_completion_callback``). A callback that raises is
        logged and does not change the result. Returns the workflow.

        Raises:
            WorkflowDefinitionError: ``callback`` is not callable.
        """
        check_callable(callback, "on_workflow_completed's callback", owner=self._owner)
        self._completion_callbacks.append(callback)
        return self

    @property
    def _owner(self) -> str:
        """How argument errors name this workflow."""
        return f"workflow '{self.workflow_id}'"

    def add_logger(self, logger: Any) -> Workflow:
        """Attaches a :class:`~batten.WorkflowLogger` (JAF's ``with_logger``): its
        ``log_step_start(step_name, state)`` runs as each step starts and
        ``log_step_complete(step_name, result, duration_ms)`` as each ends,
        ``log_step_retry(step_name, attempt, delay, error)`` before each retry and
        ``log_workflow_complete(result)`` when the run ends. Returns the workflow.

        Raises:
            WorkflowDefinitionError: ``logger`` has neither hook.
        """
        if not (hasattr(logger, "log_step_start") or hasattr(logger, "log_step_complete")):
            raise WorkflowDefinitionError(
                f"workflow '{self.workflow_id}': a logger needs log_step_start or "
                f"log_step_complete, got {logger!r:.80}"
            )
        self._loggers.append(logger)
        return self

    def with_fallback_workflow(self, workflow: Workflow | None) -> Workflow:
        """Runs ``workflow`` when a run of this one fails (seed 002's
        ``error_handling.fallback_workflow``). Returns this workflow.

        After a run ends ``FAILED`` (or ``COMPENSATED``: compensations run first), the fallback
        workflow runs from the run's initial context (its inputs). Its outcome becomes the
        run's: ``COMPLETED`` with the fallback's ``final_output`` (the run's error cleared), or
        ``FAILED`` with both errors. The result's steps end with one ``"fallback_workflow"``
        step whose ``children`` are the fallback's steps and whose ``metadata`` holds
        ``workflow_id`` and ``cause`` (the error it replaced). Its events are reported as
        ``"fallback_workflow/<step>"``. In a durable run the fallback's steps are not
        checkpointed one by one (as compensations): a crash during it re-runs the failed
        steps on resume, then the fallback if they fail again. ``None`` removes it.

        Raises:
            WorkflowDefinitionError: ``workflow`` is not a Workflow, or is this workflow.
        """
        if workflow is not None and not isinstance(workflow, Workflow):
            raise WorkflowDefinitionError(
                f"workflow '{self.workflow_id}': the fallback workflow must be a batten.Workflow, "
                f"got {type(workflow).__name__}"
            )
        if workflow is self:
            raise WorkflowDefinitionError(
                f"workflow '{self.workflow_id}' cannot be its own fallback workflow"
            )
        self.fallback_workflow = workflow
        return self

    def validate(self) -> None:
        """Checks the workflow without running it.

        Raises:
            WorkflowDefinitionError: duplicate step ids, an unknown ``depends_on``, a cycle
                (the message lists it, e.g. ``a -> b -> a``), a ``{x.result}`` reference naming
                no step of the workflow or a step that is not an ancestor, or a workflow that
                contains itself through ``SubWorkflowStep`` (``workflow 'a' contains itself:
                a -> b -> a``) or a composite step among its own inner steps.
        """
        compiled(self)

    @property
    def executor(self) -> Any:
        """Where agent and tool steps run: ``None`` (this process) or a ``RayExecutor``."""
        return self._default_options.executor

    def with_executor(self, executor: Any) -> Workflow:
        """Runs this workflow's agent and tool steps on ``executor``: a
        :class:`~batten.RayExecutor` (each step a Ray task, placed by its ``on_ray`` settings
        if any), or ``None`` for this process, as Prefect's ``task_runner``. Retries,
        timeouts, cancellation, rate limits, checkpoints, events and spans stay batten's.
        Returns the workflow.

        Raises:
            WorkflowDefinitionError: ``executor`` is not a ``RayExecutor`` or ``None``.
        """
        _check_executor(executor, f"workflow '{self.workflow_id}'")
        self._default_options = CompileOptions(workflow_id=self.workflow_id, executor=executor)
        self._plans.clear()
        bump_epoch()
        return self

    def with_store(
        self,
        store: Any,
        *,
        serializer: Any = None,
        durability: str = "sync",
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS,
    ) -> Workflow:
        """Makes this workflow's runs durable: each is recorded in ``store`` and every step is
        checkpointed as it changes status, so ``resume(run_id)`` finishes a run whose process
        died (DESIGN §4 "Durability"). Returns the workflow.

        Args:
            store: a :class:`~batten.Store` or a URL (``"sqlite:///runs.db"``,
                ``"redis://host:6379/0"``, ``"memory://"``); ``None`` turns durability off.
            serializer: stores outputs that are not JSON, e.g. the ``pickle`` module (any
                object with ``dumps(obj) -> bytes`` and ``loads(bytes)``). Default ``None``: a
                step returning something JSON cannot hold fails with a ``TypeError`` naming
                the step and the type.
            durability: ``"sync"`` (default): each checkpoint is written before the next step
                starts. ``"batch"``: checkpoints are buffered and written every 256 events and
                at the run's end (a crash re-runs the steps still buffered). Measured (issue
                18, 2 cores): a chain of sync steps costs ~14 µs/step with ``"batch"`` against
                ~25-45 µs/step with ``"sync"``, but a 50-step chain SIGKILLed in step 25 lost
                all 24 completed checkpoints under ``"batch"`` (48 events, under the 256 that
                trigger a write) and its recovery re-ran all 24 steps; under ``"sync"`` it
                re-ran none. Choose ``"batch"`` only for steps that are cheap and safe to run
                again.
            lease_seconds: how long (seconds, default 30) the lease on a run executing in this
                process lasts without a heartbeat. A run is executed by one process at a time
                (DESIGN §4 "Ownership"): another process's ``resume`` is refused
                (``RunLeasedError``) while the lease is live, and takes the run over once it
                expires, or at once on this host when the owner's pid is gone.
            heartbeat_seconds: seconds between two renewals of the lease (default 10; less
                than ``lease_seconds``), on one heartbeat thread per process, as Temporal's activity
                heartbeats. A process stopped past its lease (SIGSTOP, a debugger) that a
                successor took over finds its writes refused and raises ``LeaseLostError``.

        Raises:
            TypeError: ``store`` is neither a Store nor a str.
            StoreURLError, StoreUnavailableError, SchemaVersionError: the store cannot be
                opened.
            WorkflowDefinitionError: an unknown ``durability``; ``lease_seconds`` or
                ``heartbeat_seconds`` not a number > 0, or ``heartbeat_seconds >=
                lease_seconds``.
        """
        from batten._runtime.durable import check_durability  # on first use, as in lifecycle
        from batten.store import open_store

        check_durability(durability)
        check_lease(lease_seconds, heartbeat_seconds)
        self._lease_seconds = float(lease_seconds)
        self._heartbeat_seconds = float(heartbeat_seconds)
        self._store = open_store(store)
        self._serializer = serializer
        self._durability = durability
        return self

    async def execute(
        self,
        context: WorkflowContext | None = None,
        *,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        store: Any = None,
        run_id: str | None = None,
    ) -> WorkflowResult:
        """Runs the workflow on the running event loop and returns its result.

        Args:
            context: the initial state (default: an empty ``WorkflowContext(workflow_id)``).
            timeout: seconds for the whole run (> 0, at most 365 days; default ``None``: no
                bound); at the deadline running steps are cancelled (async) or abandoned
                (sync) and end ``TIMEOUT``, unstarted ones ``CANCELLED``, and the run ends
                ``FAILED``.
            max_concurrency: at most this many steps in flight (an int from 1 to
                ``2**31 - 1``; default ``None``: unbounded; the smaller of it and
                ``max_parallel_steps`` applies).
            store: makes this run durable in this store (object or URL), overriding
                ``with_store``'s; ``None`` (default): the workflow's store, if any.
            run_id: the durable run's id (default: a new uuid4 hex); must be new to the store.

        Step failures never raise: they are recorded on the result. Cancelling the task that
        awaits ``execute`` cancels every running step and waits for their tasks to unwind
        before re-raising ``CancelledError``; a durable run is then recorded ``INTERRUPTED``
        (as on ``KeyboardInterrupt``), and ``resume(run_id)`` continues it, re-running the
        steps that had not completed. A durable run may also end ``PAUSED``
        (``batten.pause``) or ``WAITING_APPROVAL`` (a :class:`~batten.HumanApprovalStep`); resume
        it with ``resume(result.run_id)``.

        A workflow that declares ``inputs`` (built by :meth:`from_config` or
        :func:`batten.load_workflow`) runs with each declared input missing from ``context``'s
        variables set to its default (seed 002's ``requirements`` defaults to ``""``), as
        ``batten run`` does.

        Raises:
            WorkflowDefinitionError: the workflow is malformed (before any step runs), or a
                bad ``timeout`` / ``max_concurrency`` (before the run is recorded).
            WorkflowConfigError: a declared input that is required and has no default is
                missing from ``context`` (the message names it; before anything runs).
            TypeError: ``context`` is not a WorkflowContext, or (durable run) the context
                cannot be stored as JSON.
            StoreError: (durable run) the run cannot be recorded, e.g. ``run_id`` exists.
            LeaseLostError: (durable run) another process took the run over while it ran
                here (this process was stopped past its lease); nothing more was written.
        """
        check_run_options(timeout, max_concurrency)
        context, durable = lifecycle.begin_durable(self, context, store, run_id)
        return await lifecycle.execute(
            self,
            context,
            timeout=timeout,
            max_concurrency=max_concurrency,
            on_event=None,
            base=None,
            durable=durable,
        )

    async def resume(
        self,
        run_id: str,
        *,
        store: Any = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
        retry_failed: bool = False,
        wait: bool = False,
        wait_timeout: float | None = None,
    ) -> WorkflowResult:
        """Continues durable run ``run_id`` from its store (Temporal's and DBOS's recovery).

        Completed steps are not run again: their outputs and state deltas are restored. Steps
        that were running when the run's process died run again with the same
        ``context.idempotency_key``, so side-effecting tools can de-duplicate. Approval steps
        see their decisions. A run that already finished (completed, failed, cancelled,
        compensated) is not run again: its stored result is returned.

        Args:
            run_id: the run's id (``WorkflowResult.run_id`` of the run that started it).
            store: the store holding it (object or URL); default: the workflow's
                ``with_store`` store, else the ``BATTEN_STORE`` environment variable.
            timeout, max_concurrency: as ``execute``, for this stretch of the run.
            retry_failed: also continue a run that ended ``FAILED`` (after its cause was
                fixed, as Prefect's flow-run retry): its completed steps are restored and the
                failed and blocked ones run again. Default ``False``: a failed run's stored
                result is returned. Compensated and cancelled runs are never continued, nor a
                failed run whose compensations ran (``WorkflowDefinitionError``).
            wait: when another live process executes the run (holds its lease), wait until
                it ends or its lease expires, polling every 0.5 s at most, instead of raising
                ``RunLeasedError`` (default ``False``). A run it finished is then returned as
                stored, without running anything.
            wait_timeout: seconds to wait at most (default ``None``: no bound); then
                ``RunLeasedError``.

        The run is claimed first (its lease, see ``with_store``), atomically in the store: of
        several processes resuming one run at once, exactly one executes it. On this host a
        lease whose owner's pid is gone is taken over at once; elsewhere after it expires.

        Raises:
            RunNotFoundError: no such run in the store.
            RunLeasedError: a live process executes the run (``wait`` false, or
                ``wait_timeout`` passed); it names the owner's host and pid, its heartbeat
                age and when the lease expires.
            WorkflowDefinitionError: the run belongs to another workflow or another
                ``version`` of this one (bump ``version`` when the steps change), or this
                workflow is malformed.
            CorruptRecordError, SchemaVersionError, StoreUnavailableError: the store cannot
                be read.
        """
        return await lifecycle.resume(
            self,
            run_id,
            store=store,
            timeout=timeout,
            max_concurrency=max_concurrency,
            base=None,
            retry_failed=retry_failed,
            wait=wait,
            wait_timeout=wait_timeout,
        )

    def stream(
        self,
        context: WorkflowContext | None = None,
        *,
        timeout: float | None = None,
        max_concurrency: int | None = None,
    ) -> AsyncGenerator[WorkflowEvent, None]:
        """Runs the workflow on the running event loop, yielding its events as the engine emits
        them and last a :class:`~batten.RunFinished` with the result (seed 002's streamed phase
        events); same arguments as ``execute``. See :func:`batten.events.stream` for the events,
        their order, and leaving early (``async with contextlib.aclosing(wf.stream()) as
        events:``).

        Raises:
            WorkflowDefinitionError, TypeError: as ``execute``, from the first ``__anext__``.
        """
        # NOTE: imported on first use: the event classes it builds cost ~15 ms of `import batten`.
        from batten._runtime import streaming

        return streaming.stream(self, context, timeout=timeout, max_concurrency=max_concurrency)

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
        over. In async code prefer ``await workflow.execute(...)``: a step there that uses an
        asyncio object of the calling loop (an ``asyncio.Lock`` or ``Event`` a waiter has bound to
        it, an ``httpx.AsyncClient`` with open connections) fails with
        :class:`~batten.EventLoopMismatchError` (not retried), whose message says so.

        Raises:
            WorkflowDefinitionError, TypeError: as ``execute``.
        """
        kwargs: dict[str, Any] = {"timeout": timeout, "max_concurrency": max_concurrency}
        return _run_sync(lambda: self.execute(context, **kwargs))

    async def fork_async(
        self,
        run_id: str,
        from_step: str,
        *,
        store: Any = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
    ) -> WorkflowResult:
        """Forks durable run ``run_id`` from ``from_step`` on the running event loop: a new run
        that reuses the recorded outputs of every step except ``from_step`` and the steps that
        depend on it (directly or transitively), and runs those again (as Temporal's reset and
        LangGraph's fork from a checkpoint). The origin run is left as it is.

        The new run's input is the origin's, with ``metadata["batten.forked_from"] ==
        {"run_id": run_id, "step": from_step}`` (``batten status`` and the dashboard show it);
        its id is ``result.run_id``. Use it after fixing a step's cause, or to try a step again
        with the same upstream outputs.

        Args:
            run_id: the origin run's id (any status).
            from_step: a top-level step id of this workflow.
            store: the store holding the origin (object or URL); the fork is recorded there.
                Default: the workflow's ``with_store`` store, else ``BATTEN_STORE``.
            timeout, max_concurrency: as ``execute``, for the new run.

        Raises:
            UnknownStepError: ``from_step`` is not a top-level step (names it and the known
                ones; nothing is recorded).
            RunNotFoundError: no run ``run_id`` in the store.
            WorkflowDefinitionError: the run belongs to another workflow or ``version``, or
                this workflow is malformed, or a bad ``timeout`` / ``max_concurrency``.
        """
        from batten._runtime.durable import require_store
        from batten._runtime.fork import seed_fork

        check_run_options(timeout, max_concurrency)
        st = require_store(self._store if store is None else store)
        compiled(self)
        new_id = seed_fork(self, st, run_id, from_step)
        return await lifecycle.resume(
            self, new_id, store=st, timeout=timeout, max_concurrency=max_concurrency, base=None
        )

    def fork(
        self,
        run_id: str,
        from_step: str,
        *,
        store: Any = None,
        timeout: float | None = None,
        max_concurrency: int | None = None,
    ) -> WorkflowResult:
        """:meth:`fork_async` from synchronous code (as ``run`` is ``execute``'s): forks run
        ``run_id`` from ``from_step``, runs the new run to its end and returns its result.
        Same arguments and errors as :meth:`fork_async`."""
        return _run_sync(
            lambda: self.fork_async(
                run_id, from_step, store=store, timeout=timeout, max_concurrency=max_concurrency
            )
        )

    def to_mermaid(self, *, direction: str = "TD") -> str:
        """This workflow as a Mermaid ``flowchart`` (see :func:`batten.display.to_mermaid`);
        ``batten graph FILE`` prints it.

        Args:
            direction: ``"TD"`` (default), ``"LR"``, ``"BT"`` or ``"RL"``.

        Raises:
            ValueError: an unknown ``direction``.
        """
        # NOTE: imported on first use, keeping `import batten` free of display (test_process).
        from batten.display import to_mermaid

        return to_mermaid(self, direction=direction)

    def _repr_html_(self) -> str:
        """Jupyter's HTML view: the graph, drawn by Mermaid (see
        :func:`batten.display.workflow_html`)."""
        # NOTE: imported on first use, keeping `import batten` free of display (test_process).
        from batten.display import workflow_html

        return workflow_html(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """Jupyter's MIME bundle: ``repr``, HTML and a markdown ``mermaid`` block."""
        # NOTE: imported on first use, keeping `import batten` free of display (test_process).
        from batten.display import workflow_mimebundle

        return workflow_mimebundle(self)

    def __repr__(self) -> str:
        return f"Workflow({self.workflow_id!r}, {self.name!r}, steps={len(self._steps)})"


def _run_sync(make: Callable[[], Any]) -> WorkflowResult:
    """Runs the coroutine ``make()`` returns to completion from synchronous code (see
    ``Workflow.run``): on this thread's runner, or under a running loop on a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        # Runner.run defaults to the context captured when the runner was made; pass the
        # caller's current one so contextvars set since then reach the steps.
        done: WorkflowResult = run_on(thread_runner(), make(), contextvars.copy_context())
        return done
    outcome = run_on_helper_thread(make)
    assert isinstance(outcome, WorkflowResult)
    return outcome
