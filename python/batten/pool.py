"""Agent pools (seed 002's "Resource Pooling"): a bounded set of agent instances shared by the
steps that use them.

``AgentPool(factory, size)`` stands wherever an agent (or tool) does: ``AgentStep("plan",
pool)``, ``MapStep`` over an ``AgentStep`` of it, ``Registry(agents={"planner": pool})``, a
workflow file naming it through ``registry=``. Each call takes an idle instance, waiting while
all ``size`` are busy, calls it, and gives it back; an instance whose call raised one of
``replace_on`` is dropped and a new one is made by ``factory`` when next needed. Seed 002 keeps
three instances per agent and always hands out the first one ("implement round-robin or
least-recently-used selection"); here the instances are handed out first come, first served
(waiters in arrival order), and at most one call uses an instance at a time, so agents that keep
per-call state (a conversation, a client session) are never shared by two calls.

Layer: below ``batten.steps`` (whose agent resolution binds a pool to each step that uses it),
above the leaves (``batten.adapters``, ``batten._internal``, ``batten.errors``).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from batten._internal.checks import check_callable, check_count, check_seconds
from batten.errors import StepTimeoutError, WorkflowDefinitionError

__all__ = ["AgentPool", "PoolStats"]

#: What a resolver gives for one instance and role: ``(fn, single_input, is_async,
#: wants_context)`` -- the step layer's own resolution, adapters included.
Resolved = tuple[Callable[..., Any], bool, bool, bool]
Resolver = Callable[[Any, str, str], Resolved]

#: A granted "slot" with no instance yet: the caller makes one with the factory.
_CREATE = object()

#: Every live pool, weakly held: OpenTelemetry's observable instruments read their ``stats()``
#: (``batten._runtime.telemetry``, only once a meter provider is configured).
LIVE: weakref.WeakSet[AgentPool] = weakref.WeakSet()
#: ``hook(pool, seconds)`` called after each wait for an instance, or ``None``: set by
#: ``batten._runtime.telemetry`` when a meter provider is configured (the wait histogram).
WAIT_HOOK: list[Callable[[AgentPool, float], None] | None] = [None]


def _report_wait(pool: AgentPool, seconds: float) -> None:
    hook = WAIT_HOOK[0]
    if hook is not None:
        try:
            hook(pool, seconds)
        except Exception:  # telemetry never breaks a call
            pass


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of an :class:`AgentPool`'s counters (``pool.stats()``).

    The gauges (``size``, ``instances``, ``busy``, ``idle``, ``waiting``) are values now; the
    counters (``calls``, ``waits``, ``wait_seconds``, ``created``, ``replaced``) only grow over
    the pool's life. With an OpenTelemetry meter provider configured, batten reports them for
    every live pool (by ``batten.pool.name``): ``size``, ``busy`` and ``waiting`` as observable
    gauges ``batten.agent_pool.size`` / ``.busy`` / ``.waiting``, ``calls``, ``waits`` and
    ``replaced`` as observable counters ``batten.agent_pool.calls`` / ``.waits`` /
    ``.replacements``, and each wait's seconds in the histogram ``batten.agent_pool.wait``
    (see the README's "Tracing and metrics").

    Attributes:
        size: the most instances the pool holds at once (int, as given).
        instances: instances alive now, busy or idle, plus those being made (int).
        busy: calls holding an instance now (int), at most ``size``.
        idle: instances made and not in use (int).
        waiting: calls waiting now for an instance (int).
        calls: calls that were given an instance (int).
        waits: calls that found every instance busy and waited, however the wait ended
            (given an instance, timed out, cancelled) (int).
        wait_seconds: the seconds those waits took, summed (float, monotonic clock).
        created: instances the factory made (int), the replacements included.
        replaced: instances dropped because their call raised one of ``replace_on`` (int).
    """

    size: int
    instances: int
    busy: int
    idle: int
    waiting: int
    calls: int
    waits: int
    wait_seconds: float
    created: int
    replaced: int


class _Slot:
    """One instance and its call, per role, as the step layer resolved it."""

    __slots__ = ("calls", "instance")

    def __init__(self, instance: Any) -> None:
        self.instance = instance
        self.calls: dict[str, Resolved] = {}

    def resolved(self, role: str, step_id: str, resolve: Resolver) -> Resolved:
        found = self.calls.get(role)
        if found is None:
            found = self.calls[role] = resolve(self.instance, role, step_id)
        return found


class _Waiter:
    """A call waiting for an instance: a sync caller's event, or an async caller's future."""

    __slots__ = ("event", "future", "granted", "loop", "token")

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None, future: asyncio.Future[None] | None
    ) -> None:
        self.loop = loop
        self.future = future
        self.event = threading.Event() if loop is None else None
        self.granted = False
        self.token: Any = None

    def grant(self, token: Any) -> bool:
        """Hands ``token`` (a slot or ``_CREATE``) over; ``False`` when the waiter's loop is
        closed (its coroutine is gone, so the token goes to the next waiter)."""
        if self.event is not None:
            self.token, self.granted = token, True
            self.event.set()
            return True
        assert self.loop is not None
        try:
            self.loop.call_soon_threadsafe(_wake, self.future)
        except RuntimeError:  # the loop is closed
            return False
        self.token, self.granted = token, True
        return True


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class AgentPool:
    """A bounded pool of agent instances that stands wherever one agent does (seed 002's
    "Resource Pooling"; as the connection pools of SQLAlchemy's ``QueuePool`` and asyncpg:
    check out, use, check in, discard on error).

    Each call through the pool takes an idle instance, or waits until one is given back while
    ``size`` are busy (first come, first served), calls it as a step calls an agent (a plain
    sync or async callable, an object with ``arun``/``ainvoke``/``run``/``invoke``/``execute``,
    or any framework agent that ``batten.adapters`` runs: LangChain, OpenAI Agents SDK, JAF,
    pydantic-ai), and gives it back. A sync agent's call waits on its worker thread; an async
    agent's call waits on the event loop without blocking it. The wait is bounded by the step's
    ``with_timeout`` (seconds, per attempt; an async wait is cancelled by the engine at the
    timeout, a sync wait gives up at it) and by ``acquire_timeout``. A sync call that the run
    abandons for another reason (the run's own ``timeout``, a cancel) cannot be told so: it
    waits until an instance is free or its step's bound passes, then runs and gives the
    instance back; give pooled sync steps a timeout (or ``acquire_timeout``) to bound that.

    Instances are made lazily: the first when a workflow that uses the pool is first compiled
    (``execute``/``run``/``validate``; its call tells whether the pool's calls are sync or
    async), the others only when a call finds every instance busy and fewer than ``size``
    exist. The factory runs on the calling thread (the event loop's for async agents), so it
    should be quick. The instances' calls must all be sync or all async.

    Args:
        factory: ``factory() -> agent``, a sync callable making one instance.
        size: the most instances at once (int from 1 to ``2**31 - 1``); also the most calls
            running at once.
        replace_on: exception classes (a class or a tuple of them); an instance whose call
            raised one is dropped (never used again) and the factory makes another when one is
            next needed. Default ``(Exception,)``: an instance that failed is not trusted again.
            ``()`` keeps every instance; add ``asyncio.CancelledError`` to also drop one whose
            call was cancelled (a timeout, by default kept).
        acquire_timeout: the most seconds a call waits for an instance (> 0, at most 365 days),
            on top of the step's own timeout; ``None`` (default): the step's timeout only.
        name: the pool's name (str), the default name when it is registered
            (``Registry(agents=[pool])``) and the name drawn in graphs; default ``None``.

    Raises:
        WorkflowDefinitionError: ``factory`` is not callable or is an ``async def`` (the
            message names ``factory``), ``size`` is not an int from 1, ``replace_on`` is not an
            exception class or a tuple of them, ``acquire_timeout`` is not a positive number of
            seconds, ``name`` is not a str.

    A call waiting past the bound raises :class:`~batten.StepTimeoutError` (the step's retry
    policy may retry it); an exception from ``factory`` or from the instance's call propagates
    unchanged and fails the attempt as usual.
    """

    def __init__(
        self,
        factory: Callable[[], Any],
        size: int,
        *,
        replace_on: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        acquire_timeout: float | None = None,
        name: str | None = None,
    ) -> None:
        owner = "AgentPool"
        check_callable(factory, "factory", owner=owner)
        if inspect.iscoroutinefunction(factory):
            raise WorkflowDefinitionError(
                f"{owner}: factory must be a sync callable returning an agent, got the async "
                f"function {getattr(factory, '__qualname__', factory)!r}"
            )
        check_count(size, "size", owner=owner)
        if isinstance(replace_on, type):
            replace_on = (replace_on,)
        if not isinstance(replace_on, tuple) or not all(
            isinstance(c, type) and issubclass(c, BaseException) for c in replace_on
        ):
            raise WorkflowDefinitionError(
                f"{owner}: replace_on must be an exception class or a tuple of them, got "
                f"{replace_on!r:.80}"
            )
        check_seconds(acquire_timeout, "acquire_timeout", owner=owner, allow_none=True)
        if name is not None and not isinstance(name, str):
            raise WorkflowDefinitionError(f"{owner}: name must be a str, got {name!r:.80}")
        self.factory = factory
        self.size: int = size
        self.replace_on: tuple[type[BaseException], ...] = replace_on
        self.acquire_timeout: float | None = (
            None if acquire_timeout is None else float(acquire_timeout)
        )
        self.name = name
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._idle: collections.deque[_Slot] = collections.deque()
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._count = 0  # instances alive or being made
        self._busy = 0  # slots handed out (instances in a call, or being made)
        self._calls = 0
        self._waits = 0
        self._wait_seconds = 0.0
        self._created = 0
        self._replaced = 0
        #: ``{role: (is_async, single_input)}`` of the instances' calls, learned from one.
        self._shapes: dict[str, tuple[bool, bool]] = {}
        #: Every instance alive (busy or idle).
        self._alive: set[_Slot] = set()
        LIVE.add(self)

    # -- public --------------------------------------------------------------------------

    def stats(self) -> PoolStats:
        """The pool's counters now (see :class:`PoolStats`); cheap, thread-safe."""
        with self._lock:
            return PoolStats(
                size=self.size,
                instances=self._count,
                busy=self._busy,
                idle=len(self._idle),
                waiting=len(self._waiters),
                calls=self._calls,
                waits=self._waits,
                wait_seconds=self._wait_seconds,
                created=self._created,
                replaced=self._replaced,
            )

    def __repr__(self) -> str:
        s = self.stats()
        label = f"{self.name!r}, " if self.name else ""
        return f"AgentPool({label}size={s.size}, busy={s.busy}, idle={s.idle})"

    # -- taking and giving back ---------------------------------------------------------

    def _take(self, waiter: _Waiter) -> Any:
        """An idle slot, ``_CREATE`` (room for one more instance), or ``None`` after queueing
        ``waiter``. Caller holds no lock."""
        with self._lock:
            if self._idle:  # idle instances imply no waiters: a release hands over directly
                self._busy += 1
                return self._idle.popleft()
            if self._count < self.size:
                self._count += 1
                self._busy += 1
                return _CREATE
            self._waiters.append(waiter)
            return None

    def _give_back_locked(self, token: Any) -> None:
        """Gives a slot (or, for a dropped instance, its room: ``_CREATE``) to the first
        waiter, else back to the pool. Holds ``self._lock``."""
        while self._waiters:
            if self._waiters.popleft().grant(token):
                return
        self._busy -= 1
        if token is _CREATE:
            self._count -= 1
        else:
            self._idle.append(token)

    def _give_back(self, token: Any) -> None:
        with self._lock:
            self._give_back_locked(token)

    def _waited(self, started: float) -> None:
        seconds = time.monotonic() - started
        with self._lock:
            self._waits += 1
            self._wait_seconds += seconds
        _report_wait(self, seconds)

    def _gave_up(self, waiter: _Waiter, started: float) -> bool:
        """After a wait ended without the wake-up: ``True`` when the waiter was granted a
        slot anyway (keep it), else it leaves the queue. Counts the wait."""
        seconds = time.monotonic() - started
        with self._lock:
            self._waits += 1
            self._wait_seconds += seconds
            granted = waiter.granted
            if not granted:
                self._waiters.remove(waiter)
        _report_wait(self, seconds)
        return granted

    def _timeout_error(self, step_id: str, seconds: float | None) -> StepTimeoutError:
        label = f"'{self.name}' " if self.name else ""
        return StepTimeoutError(
            f"step '{step_id}': no instance of agent pool {label}(size {self.size}) was free "
            f"within {seconds} s"
        )

    def _made(self, token: Any, step_id: str, count: bool = True) -> _Slot:
        """The slot for ``token``: itself, or a new instance from the factory (its room is
        given back if the factory fails)."""
        if token is not _CREATE:
            return token  # type: ignore[no-any-return]
        try:
            instance = self.factory()
            if inspect.isawaitable(instance):
                close = getattr(instance, "close", None)
                if callable(close):
                    close()
                raise WorkflowDefinitionError(
                    f"step '{step_id}': AgentPool factory returned an awaitable; it must be a "
                    "sync callable returning the agent itself"
                )
        except BaseException:
            self._give_back(_CREATE)
            raise
        slot = _Slot(instance)
        with self._lock:
            self._created += 1
            self._calls += count
            self._alive.add(slot)
        return slot

    def _counted(self, token: Any, step_id: str, count: bool = True) -> _Slot:
        if token is _CREATE:
            return self._made(token, step_id, count)
        with self._lock:
            self._calls += count
        return token  # type: ignore[no-any-return]

    def _acquire_sync(self, step_id: str, seconds: float | None, *, count: bool = True) -> _Slot:
        waiter = _Waiter(None, None)
        token = self._take(waiter)
        if token is None:
            started = time.monotonic()
            assert waiter.event is not None
            woke = waiter.event.wait(seconds)
            if woke:
                self._waited(started)
            elif not self._gave_up(waiter, started):
                raise self._timeout_error(step_id, seconds)
            token = waiter.token
        return self._counted(token, step_id, count)

    async def _acquire_async(self, step_id: str) -> _Slot:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop, loop.create_future())
        token = self._take(waiter)
        if token is None:
            started = time.monotonic()
            assert waiter.future is not None
            try:
                if self.acquire_timeout is None:
                    await waiter.future
                else:
                    async with asyncio.timeout(self.acquire_timeout):
                        await waiter.future
            except BaseException as exc:
                # Cancelled (the step's timeout, the run's end) or past acquire_timeout: leave
                # the queue, or give back what was granted meanwhile.
                if self._gave_up(waiter, started):
                    self._give_back(waiter.token)
                if isinstance(exc, TimeoutError):
                    raise self._timeout_error(step_id, self.acquire_timeout) from None
                raise
            self._waited(started)
            token = waiter.token
        return self._counted(token, step_id)

    def _release(self, slot: _Slot, exc: BaseException | None, *, drop: bool = False) -> None:
        """Gives ``slot`` back after a call that raised ``exc`` (or ``None``); drops the
        instance when ``exc`` is one of ``replace_on`` (or ``drop``)."""
        with self._lock:
            if drop or (exc is not None and isinstance(exc, self.replace_on)):
                self._replaced += not drop
                self._alive.discard(slot)
                self._give_back_locked(_CREATE)
            else:
                self._give_back_locked(slot)

    # -- the step layer's hook ------------------------------------------------------------

    def _shape(self, role: str, step_id: str, resolve: Resolver) -> tuple[bool, bool]:
        """``(is_async, single_input)`` of the instances' calls as ``role``, learned from one
        instance: any alive (resolving does not call it), else the first, made here and left
        idle. Never waits for a busy instance (the caller may be the loop those calls need)."""
        with self._probe_lock:
            shape = self._shapes.get(role)
            if shape is not None:
                return shape
            with self._lock:
                alive = next(iter(self._alive), None)
            if alive is not None:
                _fn, single, is_async, _wants = alive.resolved(role, step_id, resolve)
            else:
                slot = self._acquire_sync(step_id, 0.0, count=False)
                try:
                    _fn, single, is_async, _wants = slot.resolved(role, step_id, resolve)
                except BaseException:
                    self._release(slot, None, drop=True)
                    raise
                self._release(slot, None)
            shape = self._shapes[role] = (is_async, single)
            return shape

    def _batten_bind(
        self, role: str, step_id: str, timeout: float | None, resolve: Resolver
    ) -> tuple[Callable[..., Any], bool]:
        """``(callable, single_input)`` for step ``step_id`` using this pool as its ``role``:
        called by the step layer when the step is compiled (``timeout``: the step's
        per-attempt seconds, or ``None``).

        Raises:
            WorkflowDefinitionError: an instance the step layer cannot run, or a factory that
                returned an awaitable. An exception from ``factory`` propagates.
        """
        is_async, single = self._shape(role, step_id, resolve)
        bounds = [s for s in (timeout, self.acquire_timeout) if s is not None]
        wait_for = min(bounds) if bounds else None
        pool = self

        def checked(slot: _Slot) -> Resolved:
            found = slot.resolved(role, step_id, resolve)
            if found[2] != is_async:
                raise WorkflowDefinitionError(
                    f"step '{step_id}': AgentPool factory made an instance whose call is "
                    f"{'async' if found[2] else 'sync'} after one whose call was "
                    f"{'async' if is_async else 'sync'}; a pool's instances must all be one kind"
                )
            return found

        if is_async:

            async def call_async(*args: Any, context: Any = None, **kwargs: Any) -> Any:
                slot = await pool._acquire_async(step_id)
                try:
                    fn, _single, _a, wants = checked(slot)
                    out = await (
                        fn(*args, context=context, **kwargs) if wants else fn(*args, **kwargs)
                    )
                except BaseException as exc:
                    pool._release(slot, exc)
                    raise
                pool._release(slot, None)
                return out

            return call_async, single

        def call_sync(*args: Any, context: Any = None, **kwargs: Any) -> Any:
            slot = pool._acquire_sync(step_id, wait_for)
            try:
                fn, _single, _a, wants = checked(slot)
                out = fn(*args, context=context, **kwargs) if wants else fn(*args, **kwargs)
            except BaseException as exc:
                pool._release(slot, exc)
                raise
            pool._release(slot, None)
            return out

        return call_sync, single
