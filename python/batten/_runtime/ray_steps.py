"""Steps on a Ray cluster: a step's callable submitted as a Ray task (private, layer
``batten._runtime``; ``batten._runtime`` registers a guard with ``register_placement`` that
imports this module for the first step placed on Ray).

A step placed on Ray (``step.on_ray(...)``, or any agent/tool step of a workflow given a
``RayExecutor``) compiles into an async call that computes the step's input here (templates,
input and params functions), submits ``fn(*args, **kwargs)`` as one Ray task with Ray's own
retries off (``max_retries=0, retry_exceptions=False``: batten's policy is the only one) and
awaits its ``ObjectRef`` on the event loop (``await ref``: no thread blocks per step). So the
engine keeps what it owns -- scheduling, retries, timeouts, cancellation, rate limits and
breakers (applied before the call, hence before submission), checkpoints, events, spans.

- A timeout or cancellation cancels the awaiting asyncio task; its ``CancelledError`` calls
  ``ray.cancel(ref, force=True)``, which kills the worker process running the attempt.
- An exception raised by the callable reaches batten with its own type and message
  (``RayTaskError.cause``); a dead worker or node, or a lost result, is
  :class:`~batten.StepWorkerLostError`, a ``ConnectionError`` the default policy retries.
- The trace context of the step's attempt span travels with the task (a W3C carrier), so spans
  the callable makes nest under batten's step span.
- A step that declares ``context`` gets a copy (``WorkflowContext`` with the same workflow id,
  variables, user context and metadata; ``results`` are in the variables' dict outputs).

Ray is imported only here, and only when a workflow with a step on Ray is compiled.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from batten._internal.context import JOURNAL
from batten._internal.options import CompileOptions
from batten._internal.placement import RAY_EXTRA, RayExecutor, RayPlacement
from batten._runtime.compile import Compiler
from batten._runtime.telemetry import inject_carrier
from batten.errors import StepWorkerLostError, WorkflowDefinitionError
from batten.steps.base import Step, _Invocable
from batten.steps.protocol import CallSpec

__all__ = ["place_call", "place_item", "task_body"]

_NO_ITEM: tuple[Any, ...] = ()
_LOCK = threading.Lock()


def _ray(owner: str) -> Any:
    try:
        import ray
    except ImportError as exc:
        raise WorkflowDefinitionError(
            f"{owner} runs on Ray, but 'ray' cannot be imported ({exc}): {RAY_EXTRA}"
        ) from exc
    return ray


def _context_copy(context: Any) -> dict[str, Any]:
    """What the task rebuilds the step's ``WorkflowContext`` from (plain, picklable data)."""
    return {
        "workflow_id": context.workflow_id,
        "user_context": dict(context.user_context),
        "variables": dict(context.variables),
        "metadata": dict(context.metadata),
    }


def task_body(fn: Callable[..., Any], is_async: bool, keep: bool = False) -> Callable[..., Any]:
    """The body of the Ray tasks of one step: ``run_step(args, kwargs, context, carrier)``
    calls ``fn(*args, **kwargs)`` (with ``context=``, a ``WorkflowContext`` rebuilt from
    ``context``, when given), an async ``fn`` on an event loop of its own, under the trace
    context in ``carrier``.

    An argument that is a ``ray.ObjectRef`` (an ``on_ray(output="ref")`` step's output given
    as a whole argument value; also the values of a single dict argument) is replaced by its
    value, fetched here (Ray resolves only a task's top-level arguments). With ``keep`` the
    task has two returns, ``(None, output)``: the caller awaits the first and keeps the
    second's ref, so the output stays in the object store.

    A closure, so Ray exports it (and ``fn``) once per step rather than pickling ``fn`` with
    every task, and by value: a worker imports nothing of batten unless the step wants its
    context, and OpenTelemetry only for a non-empty carrier (worker processes Ray starts for a
    burst of tasks stay as cheap as a plain ``ray.remote`` function's).
    """

    def resolved_refs(
        args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``args`` and ``kwargs`` with each ``ray.ObjectRef`` among them (or among the
        values of a dict in ``args``, an ``invoke``-style tool's one argument) replaced by its
        value, all fetched by one ``ray.get`` from whichever nodes hold them. (Nested, so Ray
        pickles it by value with ``run_step``.)"""

        def is_ref(v: Any) -> bool:
            return type(v).__name__ == "ObjectRef" and type(v).__module__.startswith("ray")

        found = [v for v in args if is_ref(v)] + [v for v in kwargs.values() if is_ref(v)]
        found += [x for a in args if isinstance(a, dict) for x in a.values() if is_ref(x)]
        if not found:
            return args, kwargs
        import ray

        values = dict(zip(map(id, found), ray.get(found), strict=True))

        def swap(v: Any) -> Any:
            return values[id(v)] if is_ref(v) else v

        def swap_arg(a: Any) -> Any:
            return {k: swap(x) for k, x in a.items()} if isinstance(a, dict) else swap(a)

        return tuple(swap_arg(a) for a in args), {k: swap(v) for k, v in kwargs.items()}

    def run_step(
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        context: dict[str, Any] | None,
        carrier: dict[str, str],
    ) -> Any:
        if context is not None:
            from batten._core import WorkflowContext

            kwargs = {**kwargs, "context": WorkflowContext(**context)}
        args, kwargs = resolved_refs(args, kwargs)
        otel: Any = None
        token: Any = None
        if carrier:
            try:
                from opentelemetry import context as otel
                from opentelemetry.propagate import extract
            except ImportError:
                otel = None
            else:
                token = otel.attach(extract(dict(carrier)))
        try:
            if not is_async:
                out = fn(*args, **kwargs)
            else:
                import asyncio

                async def call() -> Any:
                    return await fn(*args, **kwargs)

                out = asyncio.run(call())
            return (None, out) if keep else out
        finally:
            if token is not None:
                otel.detach(token)

    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and name.isidentifier():
        run_step.__name__ = name
        run_step.__qualname__ = f"task_body.<locals>.{name}"
    return run_step


def _connect(ray: Any, executor: RayExecutor | None) -> None:
    """``ray.init`` with the executor's settings, unless Ray is initialized already."""
    if ray.is_initialized():
        return
    with _LOCK:
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"ignore_reinit_error": True}
        if executor is not None:
            kwargs.update(
                address=executor.address,
                runtime_env=executor.runtime_env,
                namespace=executor.namespace,
            )
        ray.init(**kwargs)


def _check_serializable(ray: Any, owner: str, *values: Any) -> None:
    try:
        ray.cloudpickle.dumps(values)
    except Exception as exc:
        raise WorkflowDefinitionError(
            f"{owner} runs on Ray, but Ray cannot serialize its callable or arguments: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _submitter(
    owner: str,
    fn: Callable[..., Any],
    is_async: bool,
    wants: bool,
    placement: RayPlacement | None,
    executor: RayExecutor | None,
) -> Callable[..., Any]:
    """``async submit(args, kwargs, context)``: one attempt as a Ray task, awaited."""
    ray = _ray(owner)
    options: dict[str, Any] = placement.options() if placement is not None else {}
    options.update(max_retries=0, retry_exceptions=False)
    keep = placement is not None and placement.output == "ref"
    if keep:
        options["num_returns"] = 2  # (None, output): the output's ref is never fetched here
    if executor is not None and executor.runtime_env and "runtime_env" in options:
        options["runtime_env"] = {**executor.runtime_env, **options["runtime_env"]}
    exceptions = ray.exceptions
    lost = (
        exceptions.WorkerCrashedError,
        exceptions.NodeDiedError,
        exceptions.ObjectLostError,
        exceptions.LocalRayletDiedError,
        exceptions.RaySystemError,
        exceptions.TaskUnschedulableError,
    )
    state: list[Any] = []

    async def submit(args: tuple[Any, ...], kwargs: dict[str, Any], context: Any) -> Any:
        if not state:
            _connect(ray, executor)
            state.append(ray.remote(**options)(task_body(fn, is_async, keep)))
        ctx = _context_copy(context) if wants else None
        ref = state[0].remote(args, kwargs, ctx, inject_carrier())
        try:
            if keep:
                ref, out = ref
                await ref  # done (or failed); the output stays where the task put it
                if JOURNAL.get() is not None:
                    # A durable run's checkpoint must hold the output itself: a ref lives only
                    # as long as this process (its owner), so a resumed run could not use it.
                    return await out
                return out
            return await ref
        except asyncio.CancelledError:
            # A timeout or a cancelled run: kill the worker process running the attempt.
            ray.cancel(ref, force=True)
            raise
        except exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, BaseException) and not isinstance(cause, lost):
                raise cause from None  # the callable's own exception, type and message kept
            raise StepWorkerLostError(f"{owner}: its Ray task was lost: {err}") from err
        except (*lost, exceptions.TaskCancelledError) as err:
            raise StepWorkerLostError(
                f"{owner}: its Ray worker was lost: {type(err).__name__}: {err}"
            ) from err

    return submit


def _placed(step: Any, opts: CompileOptions) -> tuple[RayPlacement | None, bool]:
    placement = getattr(step, "placement", None)
    return placement, placement is not None or opts.executor is not None


def place_call(step: Step, opts: CompileOptions, spec: CallSpec) -> CallSpec:
    """``step``'s call as a Ray task when it is placed on Ray (``on_ray``, or the workflow's
    ``RayExecutor`` for an agent or tool step); else ``spec`` unchanged.

    A process-isolated step (``with_isolation("process")``) stays in a local worker process
    under a workflow's ``RayExecutor``.

    Raises:
        WorkflowDefinitionError: ``on_ray`` on a step that runs other steps or that is also
            process-isolated, ``ray`` missing, or a callable (or static arguments) Ray cannot
            serialize.
    """
    placement, on_ray = _placed(step, opts)
    if not on_ray:
        return spec
    owner = f"step '{step.step_id}'"
    if getattr(step, "isolation", "thread") == "process":
        if placement is not None:
            raise WorkflowDefinitionError(
                f'{owner}: on_ray and with_isolation("process") both move the call out of '
                "this process; choose one (a Ray task already runs in a worker process that "
                "its timeout kills)"
            )
        return spec  # an isolated step stays in a local worker process under a RayExecutor
    if not isinstance(step, _Invocable):
        if placement is not None:
            raise WorkflowDefinitionError(
                f"{owner}: on_ray places agent and tool steps (for a MapStep, call it on the "
                f"inner step); a {type(step).__name__} runs the steps it holds"
            )
        inner = getattr(step, "step", None)
        if hasattr(step, "item_arg") and inner is not None and not isinstance(inner, Step):
            _check_serializable(_ray(owner), owner, inner)  # a map over a plain callable
        return spec
    fn, is_async, wants, prepare, static = step._remote_call(Compiler(opts))
    ray = _ray(owner)
    _check_serializable(ray, owner, fn, static)
    submit = _submitter(owner, fn, is_async, wants, placement, opts.executor)

    async def call_on_ray(context: Any) -> Any:
        args, kwargs = prepare(context)
        return await submit(args, kwargs, context)

    _invoke, _a, _w, refs = spec
    return call_on_ray, True, True, refs


def place_item(
    item_step: Any,
    opts: CompileOptions,
    item_arg: str,
    fn: Callable[..., Any],
    is_async: bool,
    wants: bool,
) -> tuple[Callable[..., Any], bool, bool]:
    """A ``MapStep`` item's call ``fn(item, context=)`` as a Ray task when its inner step is
    placed on Ray (or the workflow has a ``RayExecutor``); else as it was."""
    placement, on_ray = _placed(item_step, opts)
    if not on_ray:
        return fn, is_async, wants
    if isinstance(item_step, _Invocable):
        owner = f"step '{item_step.step_id}'"
        target, t_async, t_wants, prepare, _static = item_step._remote_call(
            Compiler(opts), item_arg
        )
    elif isinstance(item_step, Step):
        return fn, is_async, wants  # a composite inner step runs its own steps
    else:  # a plain callable: fn(item[, context=])
        owner = f"map item callable {getattr(item_step, '__name__', item_step)!r}"
        target, t_async, t_wants = fn, is_async, wants

        def prepare(context: Any, *item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
            return item, {}

    _check_serializable(_ray(owner), owner, target)
    submit = _submitter(owner, target, t_async, t_wants, placement, opts.executor)

    async def item_on_ray(item: Any, context: Any) -> Any:
        args, kwargs = prepare(context, item)
        return await submit(args, kwargs, context)

    return item_on_ray, True, True
