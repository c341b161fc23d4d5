"""The runtime (private, layer ``batten._runtime``): how a workflow runs, below the public
facades (``batten.workflow``, ``batten.durable``, ``batten.events``) and above the step model.

- :mod:`.compile`: steps into native plans (the step model's ``CompileContext``), and the
  plan cache;
- :mod:`.run`: starting a plan and waiting for its outcome;
- :mod:`.recovery`, :mod:`.isolation` and :mod:`.cache`: wrappers around a step's call,
  registered into compile;
- :mod:`.durable`: a durable run's executing side (journal, pause/cancel watch, its end);
- :mod:`.lifecycle`: execute, resume, compensate, fallback workflow;
- :mod:`.subscribers` and :mod:`.streaming`: delivering a run's events;
- :mod:`.telemetry`: OpenTelemetry spans and metrics of runs (registered into compile);
- :mod:`.ray_steps`: steps placed on a Ray cluster (registered into compile);
- :mod:`.loops`: the coroutine async steps run in and the per-thread loops of ``Workflow.run``.

Importing this package registers the recovery, isolation, cache, Ray and telemetry wrappers
with the compiler (compile never imports them: the arrows point one way). Telemetry is
imported here; the other four are registered as guards that import their module the first
time a step uses the feature (a fallback or error handler, ``with_isolation("process")``,
``with_cache``, ``on_ray`` or a ``RayExecutor``): a workflow without them never loads them
(issue 18: ~1 ms of ``from batten import Workflow``). Each guard is a cheap superset of its
module's own test (which still runs), and the registration order is the one importing the
modules gave: call wrappers isolation (innermost), cache, telemetry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from batten._runtime import compile

if TYPE_CHECKING:
    from collections.abc import Callable

    from batten._internal.options import CompileOptions
    from batten.steps.base import Step
    from batten.steps.protocol import CallSpec

__all__ = ["compile", "telemetry"]


def _module(name: str) -> Any:
    return importlib.import_module(f"batten._runtime.{name}")


def _cached_spec(step: Step, opts: CompileOptions, spec: CallSpec) -> CallSpec:
    if step.cache is None:
        return spec
    wrapped: CallSpec = _module("cache")._cached_spec(step, opts, spec)
    return wrapped


def _isolated_spec(step: Step, opts: CompileOptions, spec: CallSpec) -> CallSpec:
    if step.isolation != "process":
        return spec
    wrapped: CallSpec = _module("isolation")._isolated_spec(step, opts, spec)
    return wrapped


def _on_ray(step: Any, opts: CompileOptions) -> bool:
    return getattr(step, "placement", None) is not None or opts.executor is not None


def _place_call(step: Step, opts: CompileOptions, spec: CallSpec) -> CallSpec:
    if not _on_ray(step, opts):
        return spec
    placed: CallSpec = _module("ray_steps").place_call(step, opts, spec)
    return placed


def _place_item(
    item_step: Any,
    opts: CompileOptions,
    item_arg: str,
    fn: Callable[..., Any],
    is_async: bool,
    wants: bool,
) -> tuple[Callable[..., Any], bool, bool]:
    if not _on_ray(item_step, opts):
        return fn, is_async, wants
    placed: tuple[Callable[..., Any], bool, bool] = _module("ray_steps").place_item(
        item_step, opts, item_arg, fn, is_async, wants
    )
    return placed


def _takeover(step: Step, opts: CompileOptions) -> Callable[..., Any] | None:
    if (
        step.fallback is None
        and not opts.error_handlers.get(step.step_id)
        and opts.workflow_handler is None
    ):
        return None
    invoke: Callable[..., Any] | None = _module("recovery")._takeover(step, opts)
    return invoke


# Each hook's `wanted` (see compile.Wanted) is the hook's own test, asked of a plan's steps at
# once: false promises the hook returns each of them unchanged.
compile.register_call_wrapper(
    _cached_spec, wanted=lambda steps, opts: any(s.cache is not None for s in steps)
)
from batten._runtime import telemetry  # noqa: E402 - registers its wrappers after the cache's

compile.register_call_wrapper(
    _isolated_spec,
    innermost=True,
    wanted=lambda steps, opts: any(s.isolation == "process" for s in steps),
)
compile.register_placement(
    _place_call,
    _place_item,
    wanted=lambda steps, opts: (
        opts.executor is not None or any(getattr(s, "placement", None) is not None for s in steps)
    ),
)
compile.register_takeover(
    _takeover,
    wanted=lambda steps, opts: (
        opts.workflow_handler is not None
        or bool(opts.error_handlers)
        or any(s.fallback is not None for s in steps)
    ),
)
