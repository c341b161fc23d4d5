"""Process isolation for sync steps (private, layer ``batten._runtime``):
``Step.with_isolation("process")``.

An isolated step's call runs in a worker process of the standard library's
``concurrent.futures.ProcessPoolExecutor`` (``forkserver`` start method on Linux, ``spawn``
elsewhere). To the engine it is an *async* step whose coroutine awaits the process's future
(``asyncio.wrap_future``), so no thread is blocked per isolated call, and its timeout is the
engine's own async timeout: the engine cancels the coroutine, which then kills the worker
process (SIGTERM, then SIGKILL after :data:`KILL_GRACE_SECONDS`) and raises
:class:`ProcessKilled`, which the engine records as the step's ``TIMEOUT`` with
``metadata["killed"] = True``. Retries, rate limits, breakers, checkpoints and events wrap this
call exactly as they wrap an in-process one.

Each worker is a one-process ``ProcessPoolExecutor`` (a "slot"): a stdlib pool cannot kill the
process running one given task, and a pool whose worker is killed is broken for good
(``BrokenProcessPool``). One process per executor makes the process to kill known (its pid is
learned once, when the slot starts, and held as a pidfd on Linux so a signal never reaches a
recycled pid) and confines the breakage to that slot, which is dropped and replaced by the next
call. Idle slots are kept for reuse, up to :data:`MAX_IDLE`. NOTE: pebble's ``ProcessPool``
kills a worker per task timeout too, but it would be a new dependency doing what ~150 lines over
the stdlib do here, and loky's executor kills its whole pool on a timeout (no per-task kill).

At interpreter exit, ``concurrent.futures`` joins every executor's worker processes, which would
wait for a running call; this module's exit hook (registered to run before that join) kills
them first, so the interpreter exits without waiting.

Tracing: when the run is traced, the call is sent with the step span's W3C trace context
(:func:`batten._runtime.telemetry.inject_carrier`) and runs in the worker inside it
(``attached_carrier``), so the callable's own spans nest under the step's span; the worker needs
a tracer provider of its own, set by the step's ``with_isolation(..., initializer=...)``, which
runs once per worker process before its first call of that step.

``batten._runtime`` registers a guard into compilation (``register_call_wrapper(innermost=True)``)
that imports this module for the first step with ``with_isolation("process")``; compiling never
imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import queue
    from concurrent.futures import Future

from batten._internal.options import CompileOptions
from batten._runtime.compile import Compiler
from batten._runtime.telemetry import attached_carrier, inject_carrier
from batten.errors import WorkflowDefinitionError
from batten.steps.base import Step
from batten.steps.protocol import CallSpec

__all__ = ["KILL_GRACE_SECONDS", "MAX_IDLE", "ProcessKilled", "call_in_process"]

#: Seconds between SIGTERM and SIGKILL when a timed-out worker process is killed.
KILL_GRACE_SECONDS = 1.0
#: Idle worker processes kept for reuse (at least 4, else one per CPU); more are started on
#: demand and stopped when a call checks one back in beyond this many.
MAX_IDLE = max(4, os.cpu_count() or 4)


class ProcessKilled(asyncio.CancelledError):
    """An isolated step's worker process was killed because its attempt was cancelled (its
    timeout, or its run was stopped). The engine reads ``batten_killed`` into the step's
    ``metadata["killed"]``."""

    batten_killed = True


_lock = threading.Lock()
_init_lock = threading.Lock()
_idle: list[_Slot] = []
_live: set[_Slot] = set()
#: Killed workers the reaper has not yet sent SIGKILL.
_dying: set[_Slot] = set()
_mp_context: Any = None
#: ``(due, slot)`` kills to escalate to SIGKILL, in due order (the grace is constant).
_reaper_queue: queue.SimpleQueue[tuple[float, _Slot]] | None = None
_reaper: list[threading.Thread] = []
#: Set at interpreter exit: no new worker starts.
_closing = False


def _context() -> Any:
    """The multiprocessing context workers start in; the first call also registers the exit
    hook. NOTE: multiprocessing and concurrent.futures.process are imported here, on first
    use, not with batten: they added ~13 ms to ``import batten``."""
    global _mp_context
    with _init_lock:
        if _mp_context is not None:
            return _mp_context
        import concurrent.futures.process  # noqa: F401 - its exit hook must be registered first
        import multiprocessing

        # NOTE: `threading._register_atexit` (what concurrent.futures itself uses) runs before
        # the interpreter joins non-daemon threads and before `atexit` handlers; hooks run
        # last-registered first, so this one runs before concurrent.futures' own
        # `_python_exit`, which joins the workers (waiting for a running call).
        threading._register_atexit(_shutdown_workers)  # type: ignore[attr-defined]
        if sys.platform.startswith("linux"):
            # NOTE: the forkserver imports the main module and batten once, and every worker
            # forks from it with both loaded: a worker then starts in ~15-50 ms (median 18)
            # instead of importing them again (~0.1-0.3 s each; a `python -m pytest` main
            # imports pytest), which a step's timeout would otherwise pay for.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["__main__", "batten"])
        else:
            context = multiprocessing.get_context("spawn")
        _mp_context = context
        return context


class _Slot:
    """One worker process, as a one-process ``ProcessPoolExecutor``. It starts at once: its
    first task learns the worker's pid."""

    __slots__ = ("executor", "pid", "pidfd", "ready")

    def __init__(self) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.executor = ProcessPoolExecutor(max_workers=1, mp_context=_context())
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.ready: Future[int] = self.executor.submit(os.getpid)
        self.ready.add_done_callback(self._started)

    def _started(self, ready: Future[int]) -> None:
        """Learns the worker's pid (and pidfd); called by ``ready``'s done-callback and by a
        call that finds ``ready`` done before its callback ran."""
        if ready.cancelled() or ready.exception() is not None:
            return
        with _lock:
            if self.pid is not None:
                return
            self.pid = ready.result()
            if hasattr(os, "pidfd_open"):
                with contextlib.suppress(OSError):
                    self.pidfd = os.pidfd_open(self.pid)

    def signal(self, sig: int) -> bool:
        """Sends ``sig`` to the worker; False if it is already gone."""
        import signal

        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, sig)
            elif self.pid is not None:
                os.kill(self.pid, sig)
            else:
                return False
        except (ProcessLookupError, OSError):
            return False
        return True

    def kill(self) -> bool:
        """SIGTERM now, SIGKILL after the grace (by the reaper thread); the slot is dropped and
        a replacement started, so the next call finds a warm worker. True if the process was
        signalled."""
        import signal

        sent = self.signal(signal.SIGTERM)
        self.discard()
        if sent:
            with _lock:
                _dying.add(self)
            _start_reaper().put((time.monotonic() + KILL_GRACE_SECONDS, self))
        else:
            self.close_fd()
        _replenish()
        return sent

    def discard(self) -> None:
        with _lock:
            _live.discard(self)
        self.executor.shutdown(wait=False, cancel_futures=True)

    def close_fd(self) -> None:
        fd, self.pidfd = self.pidfd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _reap(kills: queue.SimpleQueue[tuple[float, _Slot]]) -> None:
    import signal

    while True:
        due, slot = kills.get()
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        with _lock:
            _dying.discard(slot)
        slot.signal(signal.SIGKILL)
        slot.close_fd()


def _start_reaper() -> queue.SimpleQueue[tuple[float, _Slot]]:
    """The reaper thread's queue of kills to escalate (the thread starts on first use)."""
    global _reaper_queue
    with _lock:
        if _reaper_queue is None:
            import queue

            _reaper_queue = queue.SimpleQueue()
            t = threading.Thread(
                target=_reap, args=(_reaper_queue,), name="batten-isolation-reaper", daemon=True
            )
            t.start()
            _reaper.append(t)
        return _reaper_queue


def _replenish() -> None:
    """Starts a worker in place of a killed one, so the next call finds it warm (the idle list
    may exceed ``MAX_IDLE`` until calls check workers back in)."""
    with _lock:
        if _closing:
            return
    slot = _Slot()
    with _lock:
        _live.add(slot)
        _idle.append(slot)


def _checkout() -> _Slot:
    """An idle worker, a started one first; else a new one."""
    with _lock:
        for i in range(len(_idle) - 1, -1, -1):
            if _idle[i].ready.done():
                return _idle.pop(i)
        if _idle:
            return _idle.pop()
    slot = _Slot()
    with _lock:
        _live.add(slot)
    return slot


def _checkin(slot: _Slot) -> None:
    with _lock:
        if len(_idle) < MAX_IDLE and slot in _live:
            _idle.append(slot)
            return
    slot.discard()
    slot.close_fd()


async def call_in_process(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``fn(*args, **kwargs)`` in a worker process; its value or its exception (same type and
    message), both by pickle.

    Raises:
        ProcessKilled: the call was cancelled (its step's timeout) and its process killed.
        concurrent.futures.process.BrokenProcessPool: the worker process died during the call
            (a crash, ``os._exit``, a signal from elsewhere).
        Exception: whatever ``fn`` raised, or the pickling error of an argument or output.
    """
    slot = _checkout()
    started = False
    try:
        if not slot.ready.done():
            # Shielded: a cancelled wait leaves the worker starting, for the next call.
            await asyncio.shield(asyncio.wrap_future(slot.ready))
        slot.ready.result()  # a worker that could not start raises here
        slot._started(slot.ready)
        started = True
        future = slot.executor.submit(fn, *args, **kwargs)
        result = await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        if not started:  # cancelled while its worker started: nothing of it ran
            _checkin(slot)
            raise
        if slot.kill():
            raise ProcessKilled("the step's worker process was killed") from None
        raise
    except BaseException as exc:
        from concurrent.futures.process import BrokenProcessPool

        if isinstance(exc, BrokenProcessPool):  # the worker died: drop it
            slot.discard()
            slot.close_fd()
        else:
            _checkin(slot)
        raise
    _checkin(slot)
    return result


def _shutdown_workers() -> None:
    """At interpreter exit, before ``concurrent.futures`` joins its worker processes: kill them,
    and those still in their SIGTERM grace (a running call would hold the exit until it
    returned)."""
    global _closing
    with _lock:
        _closing = True
        slots = [*_live, *_dying]
        _live.clear()
        _idle.clear()
    import signal

    for slot in slots:
        slot.signal(signal.SIGKILL)
        slot.executor.shutdown(wait=False, cancel_futures=True)
        slot.close_fd()


#: In a worker process: the initializers (pickled) that already ran there.
_initialized: set[bytes] = set()


def _call_in_worker(
    initializer: bytes | None,
    carrier: dict[str, str],
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Runs in the worker process: the pickled ``initializer``, once per process (a failed one
    is tried again by the next call), then ``fn(*args, **kwargs)`` inside the parent step's trace
    context (``carrier``, a W3C carrier from :func:`inject_carrier`; ``{}`` untraced)."""
    if initializer is not None and initializer not in _initialized:
        import pickle

        pickle.loads(initializer)()
        _initialized.add(initializer)
    if not carrier:
        return fn(*args, **kwargs)
    with attached_carrier(carrier):
        return fn(*args, **kwargs)


def _picklable(what: str, value: Any, where: str) -> None:
    import pickle

    try:
        pickle.dumps(value)
    except Exception as exc:
        raise WorkflowDefinitionError(
            f"{where}: with_isolation('process') sends {what} to a worker process by pickle, "
            f"but it cannot be pickled ({type(exc).__name__}: {exc}); use a module-level "
            "function (not a lambda or a closure) and picklable arguments"
        ) from None


def _isolated_spec(step: Step, opts: CompileOptions, spec: CallSpec) -> CallSpec:
    """``spec`` as an async call into a worker process when ``step`` has
    ``with_isolation("process")``.

    Raises:
        WorkflowDefinitionError: the step is not an agent or tool step, its callable is async
            or takes ``context``, or its callable or definition-time arguments cannot be
            pickled.
    """
    if step.isolation != "process":
        return spec
    where = f"step '{step.step_id}'"
    remote_call = getattr(step, "_remote_call", None)
    if remote_call is None or step._is_composite:
        raise WorkflowDefinitionError(
            f"{where}: with_isolation('process') applies to AgentStep and ToolStep, not "
            f"{type(step).__name__}"
        )
    fn, is_async, wants_context, arguments, static = remote_call(Compiler(opts))
    if is_async:
        raise WorkflowDefinitionError(
            f"{where}: with_isolation('process') is for sync callables; this one is async "
            "(an async step is already cancelled at its timeout)"
        )
    if wants_context:
        raise WorkflowDefinitionError(
            f"{where}: with_isolation('process') cannot pass `context` to a worker process; "
            "compute what the callable needs from the context with with_params_function or "
            "with_input_function instead"
        )
    _picklable("its callable", fn, where)
    initializer: bytes | None = None
    if step.isolation_initializer is not None:
        _picklable("its initializer", step.isolation_initializer, where)
        import pickle

        initializer = pickle.dumps(step.isolation_initializer)
    if static is not None:
        _picklable("its arguments", static, where)
    refs = spec[3]

    async def invoke_in_process(context: Any) -> Any:
        args, kwargs = arguments(context)
        # The step's attempt span is current here (telemetry wraps this call): carry it over.
        carrier = inject_carrier()
        if carrier or initializer is not None:
            return await call_in_process(
                _call_in_worker, (initializer, carrier, fn, args, kwargs), {}
            )
        return await call_in_process(fn, args, kwargs)

    return invoke_in_process, True, True, refs
