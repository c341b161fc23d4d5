"""A run's lifecycle (private, layer ``batten._runtime``): start or resume a run, compensate a
failed one, run the fallback workflow, record a durable run's end, and build its result.

``Workflow.execute`` / ``resume`` / ``stream``, ``WorkflowEngine`` and the ``batten`` command
all run workflows through these functions (never through ``Workflow``'s underscored methods):
:func:`begin_durable` records a durable run before anything runs, :func:`execute` runs a
workflow to its result, :func:`resume` continues a durable run from its store.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from batten._core import StepResult, WorkflowContext
from batten._internal.checks import check_run_options
from batten._internal.context import EventSink
from batten._internal.options import CompileOptions
from batten._internal.status import StepStatus, WorkflowStatus
from batten._runtime import telemetry
from batten._runtime.compile import compile_plan, compiled
from batten._runtime.inputs import with_input_defaults
from batten._runtime.run import Interrupt, Outcome, run_plan
from batten._runtime.subscribers import notify_completed, subscriber
from batten.errors import WorkflowDefinitionError
from batten.result import WorkflowResult
from batten.steps.base import Step

if TYPE_CHECKING:
    from batten._runtime.durable import DurableRun

__all__ = ["COMPENSATION_FAILED", "Interrupt", "begin_durable", "execute", "resume"]

#: Joins a failed run's error and its failed compensation's (``retry_failed`` reads it).
COMPENSATION_FAILED = "; compensation failed: "


def begin_durable(
    workflow: Any, context: WorkflowContext | None, store: Any, run_id: str | None
) -> tuple[WorkflowContext | None, Any]:
    """Records a durable run of ``workflow`` before anything runs.

    Args:
        workflow: the ``Workflow``.
        context: the initial ``WorkflowContext`` or ``None`` (an empty one).
        store: a ``Store``, a URL, or ``None`` for the workflow's ``with_store`` store.
        run_id: the new run's id, or ``None`` (a uuid4 hex).

    Returns:
        ``(context, DurableRun)`` when the run is durable (a store given or set), else
        ``(context, None)`` with nothing recorded.

    Raises:
        WorkflowDefinitionError: the workflow is malformed (checked first).
        WorkflowConfigError: a required declared input is missing from ``context`` (the
            defaults of the others are filled in first, see :mod:`batten._runtime.inputs`).
        TypeError: ``context`` is not a WorkflowContext, or cannot be stored as JSON.
        StoreError: the run cannot be recorded (e.g. ``run_id`` exists).
    """
    st = workflow._store if store is None else store
    if st is None and run_id is None:
        return context, None
    # Durable runs' code (and batten.store) loads on the first durable run: a run without a
    # store never imports it (issue 13's M benchmark counts every eager module).
    from batten._runtime.durable import DurableRun, require_store

    plan = compiled(workflow)  # a malformed workflow is reported before anything is recorded
    context = with_input_defaults(workflow, context)  # recorded with the defaults filled in
    if context is None:
        context = WorkflowContext(workflow.workflow_id)
    elif not isinstance(context, WorkflowContext):
        raise TypeError(f"context must be a batten.WorkflowContext, got {type(context).__name__}")
    store_obj = require_store(st)
    # A traced run's span starts here, so its trace context is stored with the run and a
    # resume (in any process) joins the same trace.
    tel = telemetry.start_run(workflow)
    try:
        durable = DurableRun.begin(
            workflow,
            context,
            store_obj,
            run_id,
            workflow._serializer,
            workflow._durability,
            tel.carrier() if tel is not None else None,
        )
    except BaseException:
        if tel is not None:
            tel.abandon()
        raise
    durable.telemetry = tel
    durable.plan = plan
    return context, durable


async def resume(
    workflow: Any,
    run_id: str,
    *,
    store: Any,
    timeout: float | None,
    max_concurrency: int | None,
    base: CompileOptions | None,
    on_event: EventSink | None = None,
    retry_failed: bool = False,
    interrupt: Interrupt | None = None,
    wait: bool = False,
    wait_timeout: float | None = None,
) -> WorkflowResult:
    """Continues durable run ``run_id`` of ``workflow`` from its store (``Workflow.resume``
    documents the behaviour); a run that has ended (and is not retried) returns its stored
    result without running.

    Args:
        workflow: the ``Workflow`` the run belongs to.
        run_id: the run's id.
        store: a ``Store``, a URL or ``None`` (the workflow's, else ``BATTEN_STORE``).
        timeout: seconds for this stretch of the run, or ``None``.
        max_concurrency: steps in flight at most, or ``None``.
        base: a ``WorkflowEngine``'s compile options, or ``None``.
        on_event: an engine event sink (``batten resume`` draws progress with it).
        retry_failed: also continue a run that ended ``FAILED`` (default ``False``).
        interrupt: an :class:`Interrupt` that stops the run (``batten resume`` on a signal).
        wait: wait for a live owner of the run to finish instead of raising
            ``RunLeasedError``.
        wait_timeout: seconds to wait at most (a number >= 0, or ``None``: no bound).

    Raises:
        RunNotFoundError, WorkflowDefinitionError, CorruptRecordError, SchemaVersionError,
        StoreUnavailableError, RunLeasedError: as ``Workflow.resume``.
    """
    from batten._runtime.durable import DurableRun, claim_run, require_store

    check_run_options(timeout, max_concurrency)
    if wait_timeout is not None and (
        isinstance(wait_timeout, bool)
        or not isinstance(wait_timeout, (int, float))
        or not 0 <= wait_timeout < 10**9
    ):
        raise WorkflowDefinitionError(
            f"wait_timeout must be a number of seconds >= 0 or None, got {wait_timeout!r}"
        )
    st = require_store(workflow._store if store is None else store)
    compiled(workflow, base)
    # The checks before the claim, so a run of another workflow is refused without waiting.
    DurableRun.belongs(workflow, st, run_id)
    token = await claim_run(
        st, run_id, lease_seconds=workflow._lease_seconds, wait=wait, wait_timeout=wait_timeout
    )
    try:
        durable, context, info = DurableRun.reopen(
            workflow, st, run_id, workflow._serializer, workflow._durability, token
        )
    except BaseException:
        st._native.release(run_id, token)
        raise
    try:
        return await _resume_claimed(
            workflow,
            durable,
            context,
            info,
            timeout,
            max_concurrency,
            base,
            on_event,
            retry_failed,
            interrupt,
        )
    finally:
        durable.release()


async def _resume_claimed(
    workflow: Any,
    durable: DurableRun,
    context: WorkflowContext,
    info: Any,
    timeout: float | None,
    max_concurrency: int | None,
    base: CompileOptions | None,
    on_event: EventSink | None,
    retry_failed: bool,
    interrupt: Interrupt | None,
) -> WorkflowResult:
    """``resume`` once this process holds the run's lease."""
    from batten._runtime.durable import is_finished, stored_result

    st = durable.store
    run_id = durable.run_id
    native = st._native
    control = native.control(run_id)
    retrying = retry_failed and info.status == WorkflowStatus.FAILED
    if retrying and COMPENSATION_FAILED in (info.error or ""):
        raise WorkflowDefinitionError(
            f"run '{run_id}' cannot be continued: its compensations ran (and one failed), "
            "so its completed steps were undone; start a new run"
        )
    if (is_finished(info.status) and not retrying) or control == "cancel":
        if not is_finished(info.status):
            durable.journal.finish_status(WorkflowStatus.CANCELLED.value, time.time())
            info = st.get_run(run_id)
        return stored_result(info, st.history(run_id), context, len(workflow._steps))
    restored = with_input_defaults(workflow, context)  # a run recorded before it declared them
    assert restored is not None
    context = restored
    if control is not None:  # a pause obeyed now: cleared (no write when there is none)
        native.set_control(run_id, None)
    durable.journal.finish_status(WorkflowStatus.RUNNING.value, time.time())
    return await execute(
        workflow,
        context,
        timeout=timeout,
        max_concurrency=max_concurrency,
        on_event=on_event,
        base=base,
        durable=durable,
        interrupt=interrupt,
    )


async def execute(
    workflow: Any,
    context: WorkflowContext | None,
    *,
    timeout: float | None,
    max_concurrency: int | None,
    on_event: EventSink | None,
    base: CompileOptions | None,
    durable: Any = None,
    interrupt: Interrupt | None = None,
) -> WorkflowResult:
    """Runs ``workflow`` on the running loop from ``context`` and returns its result:
    compensations after a failure, then the fallback workflow, then (durable) the run's end
    recorded, then the completion callbacks.

    Args:
        workflow: the ``Workflow``.
        context: the initial ``WorkflowContext`` or ``None`` (an empty one).
        timeout: seconds for the whole run (> 0, at most 365 days) or ``None``.
        max_concurrency: steps in flight at most (int from 1) or ``None``.
        on_event: an engine event sink, or ``None``.
        base: a ``WorkflowEngine``'s compile options, or ``None``.
        durable: the ``DurableRun`` from :func:`begin_durable` / a resume, or ``None``; its
            lease is released when this returns or raises.
        interrupt: an :class:`Interrupt`; once requested, the run is cancelled and ends
            ``INTERRUPTED`` (recorded so in the store when durable), not ``CANCELLED``.

    A durable run whose awaiting task is cancelled, or that a ``KeyboardInterrupt`` reaches,
    is recorded ``INTERRUPTED`` (resumable; its unfinished steps run again on resume) before
    the exception propagates, so the store never shows a dead run as ``running``.

    Raises:
        LeaseLostError: (durable) another process took the run over while it ran here.
        WorkflowDefinitionError: the workflow is malformed, or a bad ``timeout`` /
            ``max_concurrency``.
        WorkflowConfigError: a required declared input is missing from ``context``.
        TypeError: ``context`` is not a WorkflowContext.
    """
    if durable is None:
        return await _observed(
            workflow, context, timeout, max_concurrency, on_event, base, None, interrupt
        )
    # The lease is released however the execution ends here (completed, failed, paused,
    # waiting, cancelled, interrupted, an exception), so the next claimant need not wait.
    try:
        return await _observed(
            workflow, context, timeout, max_concurrency, on_event, base, durable, interrupt
        )
    finally:
        durable.release()


async def _observed(
    workflow: Any,
    context: WorkflowContext | None,
    timeout: float | None,
    max_concurrency: int | None,
    on_event: EventSink | None,
    base: CompileOptions | None,
    durable: Any,
    interrupt: Interrupt | None,
) -> WorkflowResult:
    """``execute``'s body: compile, fill the context, and run it observed by telemetry when
    OpenTelemetry is configured."""
    check_run_options(timeout, max_concurrency)
    plan = durable.plan if durable is not None and base is None else None
    if plan is not None:
        durable.plan = None  # compiled by begin_durable a moment ago: once
    else:
        plan = compiled(workflow, base)
    context = with_input_defaults(workflow, context)
    if context is None:
        context = WorkflowContext(workflow.workflow_id)
    elif not isinstance(context, WorkflowContext):
        raise TypeError(f"context must be a batten.WorkflowContext, got {type(context).__name__}")
    listening = bool(
        workflow._step_callbacks or workflow._loggers or workflow._completion_callbacks
    )
    if listening:
        on_event = subscriber(workflow, on_event)
    tel = _observe(workflow, durable)
    if tel is None:
        return await _execute(
            workflow,
            plan,
            context,
            timeout,
            max_concurrency,
            on_event,
            base,
            durable,
            listening,
            interrupt=interrupt,
        )
    tel.set_run_id(durable.run_id if durable is not None else None)
    tel.enter()
    try:
        result = await _execute(
            workflow,
            plan,
            context,
            timeout,
            max_concurrency,
            tel.sink(on_event),
            base,
            durable,
            listening,
            tel,
            interrupt,
        )
    except BaseException as exc:
        tel.finish(WorkflowStatus.CANCELLED.value, f"{type(exc).__name__}: {exc}", None)
        raise
    finally:
        tel.exit()
    return result


def _observe(workflow: Any, durable: Any) -> telemetry.RunTelemetry | None:
    """The run's observation (``None`` when OpenTelemetry is not configured): begun with the
    durable run, or (a resume) joining the trace stored with it."""
    if durable is not None and durable.telemetry is not None:
        tel: telemetry.RunTelemetry = durable.telemetry
        durable.telemetry = None  # one stretch: a later resume of this object starts anew
        return tel
    if durable is None:
        return telemetry.start_run(workflow)
    if not telemetry.compile_key():
        return None  # not observed: the store is not read
    return telemetry.start_run(
        workflow, durable.trace, durable.trace_end(), durable.attempts_so_far()
    )


async def _execute(
    workflow: Any,
    plan: Any,
    context: WorkflowContext,
    timeout: float | None,
    max_concurrency: int | None,
    on_event: EventSink | None,
    base: CompileOptions | None,
    durable: Any,
    listening: bool,
    tel: telemetry.RunTelemetry | None = None,
    interrupt: Interrupt | None = None,
) -> WorkflowResult:
    try:
        out = await run_plan(
            plan,
            context,
            timeout=timeout,
            max_concurrency=max_concurrency,
            on_event=on_event,
            journal=durable.journal if durable is not None else None,
            on_run=durable.on_run if durable is not None else None,
            interrupt=interrupt,
        )
    except BaseException as exc:
        if durable is not None:
            durable.record_interrupted(f"interrupted: {type(exc).__name__}")
        raise
    status = WorkflowStatus(out.status)
    steps, error = out.steps, out.error
    if durable is not None:
        # Taken over while it ran (e.g. this process was stopped past its lease): the
        # successor's history stands; nothing more is written or run here.
        durable.check_lease()
        status, steps, error = durable.finish(out, status)
    if (
        interrupt is not None
        and interrupt.reason is not None
        and status == WorkflowStatus.CANCELLED
        and (durable is None or durable.control_seen != "cancel")
    ):
        # Cancelled by the interrupt, not by a `cancel` request: resumable.
        status, error = WorkflowStatus.INTERRUPTED, interrupt.reason
    if status == WorkflowStatus.FAILED:
        status, steps, error = await _compensate(workflow, out, base, on_event)
    final_output = out.final_output
    failed = status in (WorkflowStatus.FAILED, WorkflowStatus.COMPENSATED)
    if failed and workflow.fallback_workflow is not None:
        status, steps, error, final_output = await _run_fallback(
            workflow, context, steps, error, base, on_event
        )
    if durable is not None:
        durable.record_end(status, error, final_output)
        if tel is not None:
            durable.record_trace_end(tel.carrier())
    if tel is not None:
        tel.finish(status.value, error, out.run_id)
    result = WorkflowResult(
        workflow_id=workflow.workflow_id,
        run_id=out.run_id,
        status=status,
        steps=steps,
        final_output=final_output,
        error=error,
        total_execution_time_ms=out.elapsed_ms,
        context=out.context,
        total_steps=len(workflow._steps),
    )
    if listening:
        await notify_completed(workflow._completion_callbacks, result, workflow._loggers)
    return result


async def _run_fallback(
    workflow: Any,
    context: WorkflowContext,
    steps: list[StepResult],
    error: str | None,
    base: CompileOptions | None,
    on_event: EventSink | None,
) -> tuple[WorkflowStatus, list[StepResult], str | None, Any]:
    """Runs the fallback workflow from the run's initial ``context`` (see
    ``with_fallback_workflow``); returns the run's ``(status, steps, error, output)``."""
    fallback = workflow.fallback_workflow
    assert fallback is not None
    plan = compiled(fallback, base, nested=True)
    sink: EventSink | None = None
    if on_event is not None:
        parent = on_event

        def sink(kind: str, step_id: str, attempt: int, payload: Any) -> None:
            parent(kind, f"fallback_workflow/{step_id}", attempt, payload)

    out = await run_plan(plan, context, on_event=sink)
    ok = out.status == WorkflowStatus.COMPLETED.value
    record = StepResult(
        step_id="fallback_workflow",
        status=StepStatus.COMPLETED.value if ok else StepStatus.FAILED.value,
        output=out.final_output if ok else None,
        error=None if ok else out.error,
        error_type=None if ok else "FallbackWorkflowFailed",
        attempts=1,
        execution_time_ms=out.elapsed_ms,
        metadata={"workflow_id": fallback.workflow_id, "cause": error},
        children=list(out.steps),
    )
    if ok:
        return WorkflowStatus.COMPLETED, [*steps, record], None, out.final_output
    both = f"{error}; fallback workflow '{fallback.workflow_id}' failed: {out.error}"
    return WorkflowStatus.FAILED, [*steps, record], both, None


async def _compensate(
    workflow: Any, out: Outcome, base: CompileOptions | None, on_event: EventSink | None
) -> tuple[WorkflowStatus, list[StepResult], str | None]:
    """Runs the compensations of the completed steps in reverse completion order (saga).

    Returns the run's status (``COMPENSATED`` when every compensation completed, else
    ``FAILED``), its step results with the compensations' appended, and its error.
    """
    by_id = {s.step_id: s for s in workflow._steps}
    comps: list[Step] = []
    for r in reversed(out.steps):
        comp = by_id[r.step_id].compensation if r.step_id in by_id else None
        if r.status == StepStatus.COMPLETED and comp is not None:
            comps.append(comp)
    if not comps:
        return WorkflowStatus.FAILED, out.steps, out.error
    deps: list[list[str]] = [[]] + [[c.step_id] for c in comps[:-1]]
    opts = base or workflow._default_options
    # Best effort, as a saga: a failed compensation does not stop the ones after it.
    plan = compile_plan(
        f"{workflow.workflow_id}:compensation",
        comps,
        deps,
        opts,
        nested=True,
        continue_on_error=True,
    )
    comp_out = await run_plan(plan, out.context, on_event=on_event)
    ok = all(s.status == StepStatus.COMPLETED for s in comp_out.steps)
    error = out.error if ok else f"{out.error}{COMPENSATION_FAILED}{comp_out.error}"
    status = WorkflowStatus.COMPENSATED if ok else WorkflowStatus.FAILED
    return status, [*out.steps, *comp_out.steps], error
