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


def trace_to_file(spans_file: str, inits_file: str) -> None:
    """A worker-process initializer: sets an OpenTelemetry SDK tracer provider that writes each
    span as a JSON line to ``spans_file`` (synchronously: workers are killed at exit), and
    appends this process's pid to ``inits_file``. Worker processes are shared by the tests of
    one session, so a provider set by an earlier test's initializer is replaced."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.util._once import Once
    from telemetry_durable import JsonLinesExporter

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(spans_file)))
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    trace.set_tracer_provider(provider)
    with open(inits_file, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")


def traced_work(n: int) -> int:
    """Makes a span ``user work {n}`` (the user's own span, in the worker); returns the pid."""
    from opentelemetry import trace

    with trace.get_tracer("user").start_as_current_span(f"user work {n}") as span:
        span.set_attribute("n", n)
        return os.getpid()
