"""Traffic controls for LLM and tool calls: :class:`RateLimit` and :class:`CircuitBreaker`.

Both are enforced natively by the scheduler before a step's attempt starts (``src/engine/
limits.rs``) and are shared by every step, in every run of the process, that holds the same
object. Attach one to a step (``step.with_rate_limit(limit)``), or to an agent or tool so every
step using it gets it (``limit.attach(agent)``; a registered name works too).
"""

from __future__ import annotations

import threading
from typing import Any

from batten._core import Breaker, RateLimiter
from batten._internal.checks import check_count, check_rate, check_seconds
from batten._internal.epoch import bump_epoch
from batten.errors import WorkflowDefinitionError

__all__ = ["CircuitBreaker", "RateLimit", "controls_for"]

_LIMITS: dict[str, RateLimit] = {}
_LOCK = threading.Lock()
#: Controls attached to agents/tools: ``id(target) -> (target, controls)``; names by name.
_ATTACHED: dict[Any, tuple[Any, list[_Attachable]]] = {}


def _key_of(target: Any) -> Any:
    return target if isinstance(target, str) else ("id", id(target))


class _Attachable:
    _native: Any

    def attach(self, *targets: Any) -> Any:
        """Applies this control to every step whose agent or tool is one of ``targets`` (the
        object itself, or its registered name). Returns ``self``."""
        with _LOCK:
            for t in targets:
                key = _key_of(t)
                _, controls = _ATTACHED.setdefault(key, (t, []))
                if self not in controls:
                    controls.append(self)
        bump_epoch()  # compiled plans pick the new control up
        return self


class RateLimit(_Attachable):
    """Limits how fast and how many steps using ``key`` start: the quotas LLM providers
    enforce. Steps over the limit wait before they start; they never fail for it.

    Args:
        key: the limit's name; every ``RateLimit`` made with the same key in this process is
            the same limit (its arguments must then match).
        requests_per_second: starts at most this often (float, > 0, at least one start in 365
            days): starts are spaced ``1/requests_per_second`` seconds apart, so no one-second
            window holds more than that many (GCRA without burst, as ``aiolimiter`` does with
            ``max_rate=1``).
        tokens_per_minute: a token budget (float, > 0, at least one token in 365 days)
            refilled continuously; a step starts only while it is positive, and a finished
            step's ``metadata["usage"]["total_tokens"]`` (reported by the agent adapters) is
            taken from it.
        max_concurrency: at most this many attempts (int from 1 to ``2**31 - 1``) hold the
            limit at once.

    ``None`` (the default) leaves that dimension unlimited.

    Raises:
        WorkflowDefinitionError: a value out of range, or ``key`` reused with other values.
    """

    key: str
    _args: tuple[float | None, float | None, int | None]

    def __new__(
        cls,
        key: str,
        requests_per_second: float | None = None,
        tokens_per_minute: float | None = None,
        max_concurrency: int | None = None,
    ) -> RateLimit:
        if not isinstance(key, str) or not key:
            raise WorkflowDefinitionError(f"RateLimit: key must be a non-empty str, got {key!r}")
        owner = f"RateLimit({key!r})"
        check_rate(
            requests_per_second, "requests_per_second", owner=owner, per_seconds=1, allow_none=True
        )
        check_rate(
            tokens_per_minute, "tokens_per_minute", owner=owner, per_seconds=60, allow_none=True
        )
        check_count(max_concurrency, "max_concurrency", owner=owner, allow_none=True)
        args = (requests_per_second, tokens_per_minute, max_concurrency)
        with _LOCK:
            existing = _LIMITS.get(key)
            if existing is not None:
                if existing._args != args:
                    raise WorkflowDefinitionError(
                        f"{owner} exists with requests_per_second, tokens_per_minute, "
                        f"max_concurrency = {existing._args}; got {args}"
                    )
                return existing
            self = super().__new__(cls)
            self.key = key
            self._args = args
            self._native = RateLimiter(key, *args)
            _LIMITS[key] = self
            return self

    def __init__(
        self,
        key: str,
        requests_per_second: float | None = None,
        tokens_per_minute: float | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        pass  # set up once, by __new__ (one object per key)

    @property
    def requests_per_second(self) -> float | None:
        """Starts per second allowed, or ``None``."""
        return self._args[0]

    @property
    def tokens_per_minute(self) -> float | None:
        """Tokens per minute allowed, or ``None``."""
        return self._args[1]

    @property
    def max_concurrency(self) -> int | None:
        """Attempts allowed at once, or ``None``."""
        return self._args[2]

    def __repr__(self) -> str:
        rps, tpm, conc = self._args
        return (
            f"RateLimit({self.key!r}, requests_per_second={rps}, tokens_per_minute={tpm}, "
            f"max_concurrency={conc})"
        )


class CircuitBreaker(_Attachable):
    """Stops calling an agent or tool that keeps failing (seed 001's fault tolerance, as
    Hystrix, resilience4j and pybreaker do).

    Closed: calls go through and consecutive failed attempts are counted; at
    ``failure_threshold`` the circuit opens. Open: steps fail fast with
    :class:`~batten.errors.CircuitOpenError` (or, with ``wait=True``, wait) until
    ``recovery_timeout`` seconds have passed. Half-open: ``half_open_max_calls`` trial calls go
    through; a success closes the circuit, a failure opens it again. Transitions are stream
    events (:class:`~batten.CircuitStateChanged`) and ``batten`` log records.

    Args:
        failure_threshold: consecutive failed attempts (int from 1 to ``2**31 - 1``, default
            5) that open it.
        recovery_timeout: seconds (float > 0, at most 365 days, default 30) it stays open.
        half_open_max_calls: trial calls (int from 1 to ``2**31 - 1``, default 1) when
            half-open.
        wait: steps wait for the circuit instead of failing (default ``False``).
        key: a name for logs and events (default ``"circuit-<n>"``).

    One breaker object is one circuit, shared by every step holding it.

    Raises:
        WorkflowDefinitionError: a value out of range.
    """

    _count = 0

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        *,
        wait: bool = False,
        key: str | None = None,
    ) -> None:
        if key is None:
            CircuitBreaker._count += 1
            key = f"circuit-{CircuitBreaker._count}"
        owner = f"CircuitBreaker({key!r})"
        check_count(failure_threshold, "failure_threshold", owner=owner)
        check_seconds(recovery_timeout, "recovery_timeout", owner=owner)
        check_count(half_open_max_calls, "half_open_max_calls", owner=owner)
        self.key = key
        self.failure_threshold = failure_threshold
        self.recovery_timeout = float(recovery_timeout)
        self.half_open_max_calls = half_open_max_calls
        self.wait = bool(wait)
        self._native = Breaker(
            key, failure_threshold, self.recovery_timeout, half_open_max_calls, self.wait
        )

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"`` now."""
        return str(self._native.state)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker({self.key!r}, failure_threshold={self.failure_threshold}, "
            f"recovery_timeout={self.recovery_timeout}, state={self.state!r})"
        )


def controls_for(step: Any, targets: tuple[Any, ...] = ()) -> tuple[list[Any], list[Any]] | None:
    """The native ``(rate_limiters, breakers)`` of ``step``: its own and those attached to
    its agent or tool (``targets``: the object and/or its name); ``None`` when it has none."""
    found: list[Any] = list(getattr(step, "traffic", ()) or ())
    if _ATTACHED:
        for t in targets:
            if t is None:
                continue
            entry = _ATTACHED.get(_key_of(t))
            if entry is not None:
                found.extend(c for c in entry[1] if c not in found)
    if not found:
        return None
    limiters = [c._native for c in found if isinstance(c, RateLimit)]
    breakers = [c._native for c in found if isinstance(c, CircuitBreaker)]
    return limiters, breakers
