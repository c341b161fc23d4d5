"""The event loops batten runs on (private, layer ``batten._runtime``): the error recorded for
an async step that used another loop's asyncio object (:func:`foreign_loop_error`, called by
the native engine), the per-thread
``asyncio.Runner`` behind ``Workflow.run`` (:func:`thread_runner`, :func:`close_runners`), and
the helper thread ``Workflow.run`` uses under a running loop (:func:`run_on_helper_thread`).

Under a running loop (a Jupyter cell) ``run`` cannot block that loop's thread on itself, so the
workflow runs on a helper thread's own loop while the caller's loop is blocked. Sharing asyncio
objects between the two loops cannot be made to work soundly (the caller's loop cannot run
while its thread waits, and re-entering it as ``nest_asyncio`` does breaks asyncio's
invariants), so the engine's step driver (``_core``'s ``Driver``, the coroutine each async step's
Task runs) asks :func:`foreign_loop_error` about each ``RuntimeError`` a step raises, and records
an :class:`~batten.errors.EventLoopMismatchError` that says to ``await workflow.execute(...)``
instead when asyncio's "bound to a different event loop" error was raised there.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import functools
import importlib
import re
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from batten.errors import EventLoopMismatchError

__all__ = [
    "close_runners",
    "foreign_loop_error",
    "run_on",
    "run_on_helper_thread",
    "thread_runner",
]

#: asyncio's messages for an object used from a loop other than its own: a lock, event,
#: condition, semaphore or queue (``mixins._LoopBoundMixin``: "... is bound to a different event
#: loop"), a future awaited by a task of another loop ("Task ... got Future ... attached to a
#: different loop"), and anyio/httpx's equivalents. A pattern, not a compiled one: it is only
#: searched when a step raises ``RuntimeError`` on the helper thread (``re`` caches it then).
_FOREIGN_LOOP = r"different (?:event )?loop"

#: The C module behind ``signal`` (see :func:`run_on`).
_signal: Any = importlib.import_module("_signal")

#: Set on ``run_on_helper_thread``'s thread while it runs a workflow.
_helper = threading.local()


def _on_helper_thread() -> bool:
    return getattr(_helper, "active", False)


def _foreign(exc: RuntimeError) -> bool:
    return re.search(_FOREIGN_LOOP, str(exc), re.IGNORECASE) is not None


def _foreign_loop_error(exc: RuntimeError) -> EventLoopMismatchError:
    """The error recorded for ``exc`` when a step met an object of the caller's loop."""
    error = EventLoopMismatchError(
        f"{exc} -- Workflow.run() was called inside a running event loop (a notebook cell), so "
        "the workflow ran on a helper thread's own loop, and this step used an asyncio object "
        "(a lock, event, queue, or an httpx/aiohttp client) created on the calling loop; "
        "use `result = await workflow.execute(context)` there instead, which runs the steps on "
        "that loop"
    )
    error.__cause__ = exc
    error.__traceback__ = exc.__traceback__
    return error


def foreign_loop_error(exc: BaseException) -> EventLoopMismatchError | None:
    """The error to record for ``exc``, raised by an async step: an
    :class:`~batten.errors.EventLoopMismatchError` when ``exc`` is asyncio's "bound to a
    different event loop" ``RuntimeError`` and the step ran on ``Workflow.run``'s helper thread
    (see :func:`run_on_helper_thread`), else ``None`` (``exc`` is recorded as it is).

    Args:
        exc: the exception the step's coroutine raised.
    """
    if isinstance(exc, RuntimeError) and _on_helper_thread() and _foreign(exc):
        return _foreign_loop_error(exc)
    return None


_runners = threading.local()
_all_runners: list[asyncio.Runner] = []
_runners_lock = threading.Lock()


def run_on(runner: asyncio.Runner, coro: Any, context: contextvars.Context | None) -> Any:
    """``runner.run(coro, context=context)``, with its Ctrl-C handler installed through
    ``_signal``: the same behaviour (a first Ctrl-C cancels the main task, then
    ``KeyboardInterrupt`` is raised), without the cost below.

    NOTE: ``Runner.run`` sets and restores its SIGINT handler (a ``functools.partial`` holding
    the main task) with ``signal.signal`` / ``signal.getsignal``, which try to turn the handler
    into a ``signal.Handlers`` enum member; the failed lookup formats the partial's repr (the
    task's and its coroutine's): ~28 µs a call on 2 cores, a fifth of a 3-step ``run()``
    (issue 18's W5). This is CPython 3.11-3.13's ``Runner.run`` line for line, except that it
    calls the C functions of ``_signal``, which take and return the handler as it is; with
    any internal missing (another Python), it is ``Runner.run`` itself.
    """

    internals = ("_lazy_init", "_on_sigint", "_loop", "_context", "_interrupt_count")
    if not all(hasattr(runner, name) for name in internals) or not asyncio.iscoroutine(coro):
        return runner.run(coro, context=context)
    if asyncio._get_running_loop() is not None:
        raise RuntimeError("Runner.run() cannot be called from a running event loop")
    me: Any = runner  # asyncio.Runner's internals, which typeshed does not declare
    me._lazy_init()
    loop = me._loop
    assert loop is not None
    task = loop.create_task(coro, context=me._context if context is None else context)
    sigint_handler: Any = None
    if (
        threading.current_thread() is threading.main_thread()
        and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler
    ):
        sigint_handler = functools.partial(me._on_sigint, main_task=task)
        try:
            _signal.signal(_signal.SIGINT, sigint_handler)
        except ValueError:  # no signals in this interpreter (gh-91880)
            sigint_handler = None
    me._interrupt_count = 0
    try:
        return loop.run_until_complete(task)
    except asyncio.CancelledError:
        if me._interrupt_count > 0:
            uncancel = getattr(task, "uncancel", None)
            if uncancel is not None and uncancel() == 0:
                raise KeyboardInterrupt()  # noqa: B904 (as Runner.run does)
        raise
    finally:
        if sigint_handler is not None and _signal.getsignal(_signal.SIGINT) is sigint_handler:
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)


def thread_runner() -> asyncio.Runner:
    """This thread's ``asyncio.Runner`` for ``Workflow.run`` (created on first use)."""
    runner: asyncio.Runner | None = getattr(_runners, "runner", None)
    if runner is None:
        runner = asyncio.Runner()
        _runners.runner = runner
        with _runners_lock:
            _all_runners.append(runner)
    return runner


def close_runners() -> None:
    """Closes every ``Workflow.run`` loop; registered with ``atexit`` when this module is first
    imported, after ``batten`` registered ``_core._shutdown``, so it runs first (loops close
    before the engine's threads are joined)."""
    with _runners_lock:
        runners, _all_runners[:] = list(_all_runners), []
    for runner in runners:
        try:
            runner.close()
        except Exception:  # a runner closed elsewhere, or one whose loop is still running
            pass


def run_on_helper_thread(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Runs ``make()`` with ``asyncio.run`` on a new thread (named ``batten-run``) and returns its
    result or raises its exception; the caller's contextvars are carried over. For
    ``Workflow.run`` under a running loop: while it runs, an async step's "bound to a different
    event loop" ``RuntimeError`` is recorded as an :class:`~batten.errors.EventLoopMismatchError`
    (see :func:`foreign_loop_error`).

    Args:
        make: builds the coroutine to run (called on the helper thread).

    Raises:
        BaseException: whatever the coroutine raised.
    """
    box: list[Any] = []

    def target() -> None:
        _helper.active = True
        try:
            box.append(asyncio.run(make()))
        except BaseException as exc:
            box.append(exc)
        finally:
            _helper.active = False

    caller = contextvars.copy_context()
    thread = threading.Thread(target=caller.run, args=(target,), name="batten-run")
    thread.start()
    thread.join()
    outcome = box[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


# After `batten._core._shutdown` (registered by `batten/__init__.py`, which always runs before this
# module): atexit calls the last registered first, so loops close before threads are joined.
atexit.register(close_runners)
