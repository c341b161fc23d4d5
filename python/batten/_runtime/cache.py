"""Step result caching (seed 002's ``CachedWorkflow``): ``Step.with_cache(ttl, key)``.

A cached step's call is wrapped: the key is computed from the step's context, a live entry in
the run's store (or, without one, a store private to this process) is returned as the output
with ``metadata["cached"] = True``, and a fresh JSON output is stored with its expiry.

Layer ``batten._runtime``: ``batten._runtime`` registers a guard into compilation
(``register_call_wrapper``) that imports this module for the first step with ``with_cache``;
compiling never imports it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from batten._core import Nested
from batten._core import Store as NativeStore
from batten._internal.context import JOURNAL
from batten._internal.options import CompileOptions
from batten.steps.base import Step
from batten.steps.protocol import CallSpec

_log = logging.getLogger("batten.cache")
_LOCAL: list[Any] = []


def _store() -> Any:
    journal = JOURNAL.get()
    if journal is not None:
        return journal.store
    if not _LOCAL:
        _LOCAL.append(NativeStore("memory://"))
    return _LOCAL[0]


def _default_key(context: Any) -> Any:
    return {"variables": dict(context.variables), "results": dict(context.results)}


def _cache_key(workflow_id: str, step_id: str, key: Any) -> str:
    # NOTE: imported on first use: hashlib (OpenSSL) is ~3 ms of `import batten`, which every
    # run pays while only cached steps need it; json ~1 ms.
    import hashlib
    import json

    text = json.dumps(key, sort_keys=True, default=repr)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"{workflow_id}/{step_id}/{digest}"


def cached_call(
    step_id: str,
    workflow_id: str,
    invoke: Callable[..., Any],
    is_async: bool,
    wants_context: bool,
    ttl: float,
    key_fn: Callable[[Any], Any] | None,
) -> Callable[..., Any]:
    """``invoke`` wrapped with the cache; the wrapper always takes ``context``."""

    def lookup(context: Any) -> tuple[str, bool, Any]:
        key = _cache_key(workflow_id, step_id, (key_fn or _default_key)(context))
        found, value = _store().cache_get(key, time.time())
        return key, found, value

    def remember(key: str, output: Any) -> None:
        if isinstance(output, Nested):  # an adapter's output with its metadata
            output = output.output
        try:
            _store().cache_put(key, output, time.time() + ttl)
        except TypeError:
            _log.debug("step %r: output is not JSON; not cached", step_id)

    if is_async:

        async def cached_async(context: Any) -> Any:
            key, found, value = lookup(context)
            if found:
                return Nested(value, metadata={"cached": True})
            out = await (invoke(context=context) if wants_context else invoke())
            remember(key, out)
            return out

        return cached_async

    def cached_sync(context: Any) -> Any:
        key, found, value = lookup(context)
        if found:
            return Nested(value, metadata={"cached": True})
        out = invoke(context=context) if wants_context else invoke()
        remember(key, out)
        return out

    return cached_sync


def _cached_spec(step: Step, opts: CompileOptions, spec: CallSpec) -> CallSpec:
    """``spec`` with its call wrapped by the cache when ``step`` has ``with_cache``."""
    if step.cache is None:
        return spec
    invoke, is_async, wants_context, refs = spec
    ttl, key_fn = step.cache
    invoke = cached_call(
        step.step_id, opts.workflow_id, invoke, is_async, wants_context, ttl, key_fn
    )
    return invoke, is_async, True, refs
