"""Error recovery: fallbacks, error handlers, and saga compensation.

- ``step.with_fallback(other)`` and ``workflow.add_error_handler(step_id, handler)`` (JAF's
  ``handler(step_result, context) -> Step | None``) run a recovery step when a step has failed
  after its retries; the recovery's output stands in for the step's.
- ``WorkflowBuilder.with_error_handler(fn(error, step, state))`` (JAF's e-commerce example)
  decides per failure: ``{"action": "retry" | "fail" | "skip" | "fallback", ...}``.
- ``step.with_compensation(other)``: when a run fails, the compensations of the completed steps
  run in reverse completion order and the run ends ``COMPENSATED`` (seed 001's rollback).

Layer ``batten._runtime``: ``batten._runtime`` registers a guard into compilation
(``register_takeover``) that imports this module for the first step with a fallback or error
handler; compiling never imports it.

A step with a recovery runs as a small composite: the step itself is a one-step nested run (its
retries, timeout and conditions are the engine's), then at most one recovery run. The step's
result keeps both as ``children`` and says what happened in ``metadata``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from batten._core import Nested, StepResult, WorkflowContext
from batten._internal.checks import MAX_COUNT, check_count
from batten._internal.options import CompileOptions
from batten._internal.outcome import raise_failed, state_delta
from batten._internal.status import StepStatus
from batten._runtime.compile import compile_plan
from batten._runtime.run import Outcome, run_plan
from batten.steps.base import Step

__all__ = ["ACTIONS", "recovering_call"]

#: The actions a workflow-level error handler may return.
ACTIONS = ("retry", "fail", "skip", "fallback")


def _single(step: Step, opts: CompileOptions) -> Any:
    # The step alone, without its own recovery (which this wrapper provides).
    return compile_plan(opts.workflow_id, [step], [[]], opts, nested=True, recover=False)


def recovering_call(step: Step, opts: CompileOptions) -> Callable[..., Any]:
    """The async invoke of ``step`` wrapped with its fallback / error handlers (see module)."""
    plan = _single(step, opts)
    handlers = list(opts.error_handlers.get(step.step_id, ()))
    workflow_handler = opts.workflow_handler
    fallback = step.fallback
    step_id = step.step_id
    plain = opts.replace(error_handlers={}, workflow_handler=None)

    async def run_one(recovery: Step, context: WorkflowContext) -> Outcome:
        return await run_plan(_single(recovery, plain), context, event_prefix=step_id)

    async def invoke(context: WorkflowContext) -> Nested:
        children: list[StepResult] = []
        attempts = 0
        retries_left: int | None = None
        while True:
            out: Outcome = await run_plan(plan, context, event_prefix=step_id)
            first = out.steps[0]
            children.append(first)
            attempts += first.attempts
            if first.status in (StepStatus.COMPLETED, StepStatus.SKIPPED):
                # Transparent when nothing had to be recovered: the step's own metadata,
                # children and state delta (a wrapped ConditionalStep keeps its branch).
                meta = dict(first.metadata)
                if len(children) > 1:
                    meta["error_handler"] = "retry"
                return Nested(
                    first.output,
                    delta=state_delta(context, out.context),
                    children=list(first.children) if len(children) == 1 else children,
                    attempts=attempts,
                    metadata=meta,
                    skipped=first.status == StepStatus.SKIPPED,
                )
            if first.status == StepStatus.CANCELLED or first.error_type == "ApprovalPending":
                # A cancelled step, or an approval still waiting, is not a failure to recover.
                raise_failed(first, Nested(children=children, attempts=attempts), step_id)

            recovery: Step | None = None
            if fallback is not None:
                recovery = fallback
            for handler in handlers:
                if recovery is not None:
                    break
                recovery = _checked_step(step_id, handler(first, context))
            if recovery is None and workflow_handler is not None:
                exc = first.exception if first.exception is not None else RuntimeError(first.error)
                decision = _checked_decision(step_id, workflow_handler(exc, step, context))
                action = decision.get("action", "fail")
                if action == "retry":
                    if retries_left is None:
                        retries_left = _retry_budget(step_id, decision)
                    if retries_left > 0:
                        retries_left -= 1
                        continue
                elif action == "skip":
                    return Nested(
                        skipped=True,
                        children=children,
                        attempts=attempts,
                        metadata={"error_handler": "skip", "error": first.error},
                    )
                elif action == "fallback":
                    if "step" in decision:
                        recovery = _checked_step(step_id, decision["step"])
                    else:
                        return Nested(
                            decision.get("output"),
                            children=children,
                            attempts=attempts,
                            metadata={"error_handler": "fallback", "error": first.error},
                        )
            if recovery is None:
                raise_failed(first, Nested(children=children, attempts=attempts), step_id)
            rec_out = await run_one(recovery, context)
            rec = rec_out.steps[0]
            children.append(rec)
            if rec.status == StepStatus.COMPLETED:
                return Nested(
                    rec.output,
                    delta=state_delta(context, rec_out.context),
                    children=children,
                    attempts=attempts,
                    metadata={"recovered_by": rec.step_id, "error": first.error},
                )
            raise_failed(rec, Nested(children=children, attempts=attempts), step_id)

    return invoke


def _checked_step(step_id: str, value: Any) -> Step | None:
    if value is None or isinstance(value, Step):
        return value
    raise TypeError(
        f"step '{step_id}': an error handler must return a batten step or None, "
        f"got {type(value).__name__}"
    )


def _checked_decision(step_id: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {"action": "fail"}
    if not isinstance(value, Mapping) or value.get("action", "fail") not in ACTIONS:
        raise TypeError(
            f"step '{step_id}': the workflow error handler must return a dict whose 'action' is "
            f"one of {', '.join(ACTIONS)}; got {value!r:.100}"
        )
    return value


def _retry_budget(step_id: str, decision: Mapping[str, Any]) -> int:
    """The ``max_retries`` of a ``{"action": "retry"}`` decision (default 1).

    Raises:
        WorkflowDefinitionError: it is not an int (a bool is not) from 0 to ``MAX_COUNT - 1``,
            the bound of ``with_retry(max_retries=...)``; the message names the step.
    """
    n = decision.get("max_retries", 1)
    check_count(
        n,
        "the error handler's 'max_retries'",
        owner=f"step '{step_id}'",
        minimum=0,
        maximum=MAX_COUNT - 1,
    )
    return int(n)


def _needs_recovery(step: Step, opts: CompileOptions) -> bool:
    return (
        step.fallback is not None
        or bool(opts.error_handlers.get(step.step_id))
        # The workflow-wide handler decides for the step where an error happens, so it wraps
        # plain steps only: a composite's failure was already decided inside it.
        or (opts.workflow_handler is not None and not step._is_composite)
    )


def _takeover(step: Step, opts: CompileOptions) -> Callable[..., Any] | None:
    """``step``'s recovering call when it has a fallback or error handler, else ``None``."""
    return recovering_call(step, opts) if _needs_recovery(step, opts) else None
