"""The event loops batten runs on (private, layer ``batten._runtime``): the coroutine every
async step runs inside (:func:`drive`, called by the native engine), and the per-thread
``asyncio.Runner`` behind ``Workflow.run`` (:func:`thread_runner`, :func:`close_runners`).

``drive``:

NOTE: reporting the outcome from inside the task's last step, instead of through
``Task.add_done_callback``, saves one event-loop iteration per async step (the done-callback is
scheduled with ``call_soon``); measured on W1a (1,000 chained ``async def`` steps) that is
~4 µs of ~20 µs a step. The engine still adds a done-callback on the rare paths where a task may
be cancelled before it ever starts (a step's deadline, cancelling the run), because then this
coroutine's body never runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["close_runners", "drive", "thread_runner"]


async def drive(awaitable: Awaitable[Any], report: Callable[[bool, Any, bool], None]) -> None:
    """Awaits ``awaitable`` and calls ``report(ok, value_or_exception, cancelled)`` once."""
    try:
        result = await awaitable
    except asyncio.CancelledError as exc:
        report(False, exc, True)
        raise
    except BaseException as exc:
        report(False, exc, False)
        if not isinstance(exc, Exception):
            raise
    else:
        report(True, result, False)


_runners = threading.local()
_all_runners: list[asyncio.Runner] = []
_runners_lock = threading.Lock()


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
    """Closes every ``Workflow.run`` loop; ``batten`` registers it with ``atexit``."""
    with _runners_lock:
        runners, _all_runners[:] = list(_all_runners), []
    for runner in runners:
        try:
            runner.close()
        except Exception:  # a runner closed elsewhere, or one whose loop is still running
            pass
