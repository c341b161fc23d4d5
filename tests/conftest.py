"""Shared fixtures for weft's test-suite.

The tests use real asyncio (``asyncio.run``), real threads and real ``time.sleep``; there is no
pytest-asyncio. Helpers are exposed as fixtures (not importable functions) because pytest may load
more than one module named ``conftest``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest


def _execute(workflow: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``await workflow.execute(*args, **kwargs)`` on a fresh event loop."""
    return asyncio.run(workflow.execute(*args, **kwargs))


@pytest.fixture
def execute() -> Callable[..., Any]:
    """``execute(wf, ...)`` awaits ``wf.execute(...)`` on a fresh event loop; returns the result."""
    return _execute


class InFlight:
    """Counts how many steps are inside a block at once (thread-safe) and the maximum reached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.maximum = 0

    def __enter__(self) -> InFlight:
        with self._lock:
            self.current += 1
            self.maximum = max(self.maximum, self.current)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.current -= 1


@pytest.fixture
def in_flight() -> InFlight:
    """A fresh :class:`InFlight` counter."""
    return InFlight()


class Clock:
    """Records named events with ``time.perf_counter`` offsets from the clock's creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, name: str) -> None:
        with self._lock:
            self.marks[name] = time.perf_counter() - self.start

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


@pytest.fixture
def clock() -> Clock:
    """A :class:`Clock` started when the test asks for it."""
    return Clock()
