"""Module-level callables for the process-isolation tests: a worker process imports them by
reference (pickle), so they cannot live inside a test function."""

from __future__ import annotations

import os
import time
from pathlib import Path


def sleep_after_writing_pid(pid_file: str, seconds: float) -> str:
    """Writes this process's pid to ``pid_file`` (atomically: a kill mid-write leaves no
    empty file), then sleeps ``seconds``."""
    tmp = Path(f"{pid_file}.tmp")
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, pid_file)
    time.sleep(seconds)
    return "finished"  # pragma: no cover - killed before


def sleep(seconds: float) -> None:
    """Sleeps ``seconds``."""
    time.sleep(seconds)


def raise_value_error(message: str) -> None:
    """Raises ``ValueError(message)``."""
    raise ValueError(message)


def fail_until(counter_file: str, failures: int) -> str:
    """Raises ``ValueError`` the first ``failures`` calls (counted in ``counter_file``)."""
    path = Path(counter_file)
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n < failures:
        raise ValueError(f"failure {n + 1}")
    return f"succeeded after {n} failures"


def echo(**kwargs: object) -> dict[str, object]:
    """Returns its keyword arguments and the worker's pid."""
    return {"got": kwargs, "pid": os.getpid()}


def pid() -> int:
    """This process's pid."""
    return os.getpid()


def noop() -> None:
    """Does nothing (a round trip)."""
