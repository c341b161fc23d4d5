"""Measures, once (not a test; issue 17's benchmark note): the checkpoint cost per step of W1 (a
200-step chain of a trivial sync tool) with a SQLite, Redis and PostgreSQL store, next to W1
without a store; how long a ``cancel`` takes to reach a running executor (its in-flight step
cancelled) and to stop the run, through each store (the executor looks at the store every
``batten.durable.POLL_INTERVAL`` = 0.1 s, and a PostgreSQL store also wakes it at once by
LISTEN/NOTIFY); and how long an approval takes to continue a run
waiting for it (``approve`` + ``resume`` until the run completes).

The cancel is written at a random instant of the poll period (0.1 s + uniform 0..0.1 s after the
run's first step starts): at a fixed instant every sample would land at the same point of the
poll cycle (with the store's open time deciding where), which once made SQLite and Redis look
~10 ms and PostgreSQL ~110 ms, all of it poll phase.

Usage: ``python tests/measure_store_costs.py [--redis URL] [--postgres URL] [--quick] [--json]``;
without a URL it starts a throwaway server (redis-server on a free port; PostgreSQL via
tests/pg_server.py, or ``BATTEN_TEST_POSTGRES_URL``); a server that cannot start is reported as
skipped. Prints one line per note (``--json``: machine-readable, for tests/benchmarks/run.py);
numbers are medians over ``REPS`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import batten
import pg_server
from batten import HumanApprovalStep, ToolStep, Workflow, WorkflowContext

STEPS = 200
REPS = 7
CANCELS = 15


def inc(context: Mapping[str, int]) -> dict[str, int]:
    return {"counter": context["counter"] + 1}


def chain(store: str | None) -> Workflow:
    wf = Workflow("w1", "w1")
    for i in range(STEPS):
        wf.add_step(ToolStep(f"s{i}", inc))
    return wf.with_store(batten.Store(store)) if store else wf


def w1_seconds(store: str | None) -> float:
    wf = chain(store)
    times = []
    for _ in range(REPS + 1):
        started = time.perf_counter()
        result = asyncio.run(wf.execute(WorkflowContext("w1", variables={"counter": 0})))
        times.append(time.perf_counter() - started)
        assert result.context["counter"] == STEPS, result.status
    return statistics.median(times[1:])


_STARTED = threading.Event()
#: When the in-flight step was cancelled, per cancel: the instant the cancel reached the executor.
_CANCELLED: list[float] = []
#: Seconds from ``batten.cancel`` returning to the in-flight step's cancellation, per sample of
#: :func:`cancel_latency` that had a step in flight (negative: the push beat the call's return).
REACHED: list[float] = []


async def _tick(context: Mapping[str, int]) -> dict[str, int]:
    _STARTED.set()
    try:
        await asyncio.sleep(0.002)
    except asyncio.CancelledError:
        _CANCELLED.append(time.perf_counter())
        raise
    return {}


def cancel_latency(store: str) -> list[float]:
    """Seconds from ``batten.cancel`` returning to ``execute`` returning, per sample: the
    cancel is written once the run's steps are going, after a random part of the poll period."""
    wf = Workflow("ticks", "ticks").with_store(batten.Store(store))
    for i in range(2000):
        wf.add_step(ToolStep(f"t{i}", _tick))
    samples = []
    REACHED.clear()
    for _ in range(CANCELS):
        run_id = "cancel-" + uuid.uuid4().hex[:8]
        _CANCELLED.clear()
        stamp: list[float] = []
        delay = 0.1 + random.uniform(0.0, batten.durable.POLL_INTERVAL)
        _STARTED.clear()

        def canceller(
            run_id: str = run_id, stamp: list[float] = stamp, delay: float = delay
        ) -> None:
            if not _STARTED.wait(60):
                return
            time.sleep(delay)
            batten.cancel(run_id, store=store)
            stamp.append(time.perf_counter())

        thread = threading.Thread(target=canceller)
        thread.start()
        result = asyncio.run(wf.execute(WorkflowContext("ticks"), run_id=run_id))
        ended = time.perf_counter()
        thread.join()
        assert result.status == batten.WorkflowStatus.CANCELLED, result.status
        samples.append(ended - stamp[0])
        if _CANCELLED:
            REACHED.append(_CANCELLED[0] - stamp[0])
    return samples


APPROVALS = 10


def approval_latency(store: str) -> list[float]:
    """Seconds from ``batten.approve`` being called on a run ``WAITING_APPROVAL`` to the run's
    resume (one trivial step after the approval) returning ``COMPLETED``, per sample: the path
    of ``batten approve``, which records the decision and continues the run."""
    opened = batten.Store(store)
    wf = Workflow("gate", "gate").with_store(opened)
    wf.add_step(HumanApprovalStep("review", "ship it?"))
    wf.add_step(ToolStep("after", inc))
    samples = []
    for _ in range(APPROVALS):
        run_id = "approve-" + uuid.uuid4().hex[:8]
        ctx = WorkflowContext("gate", variables={"counter": 0})
        first = asyncio.run(wf.execute(ctx, run_id=run_id))
        assert first.status == batten.WorkflowStatus.WAITING_APPROVAL, first.status
        started = time.perf_counter()
        batten.approve(run_id, "review", store=store)
        result = asyncio.run(wf.resume(run_id))
        samples.append(time.perf_counter() - started)
        assert result.status == batten.WorkflowStatus.COMPLETED, (result.status, result.error)
    return samples


def start_redis(workdir: str) -> tuple[str, subprocess.Popen[bytes]]:
    """A throwaway redis-server on a free local port (as tests/conftest.py's ``redis_url``
    fixture starts it). ``RuntimeError`` when it is not installed or does not answer."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return f"redis://127.0.0.1:{port}/0", proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=10)
                raise RuntimeError(f"redis-server did not start on port {port}") from None
            time.sleep(0.05)


#: The marker of a machine-readable line (``--json``), as tests/benchmarks/_harness.py's.
MARKER = "@@store-note "


def note(name: str, value: float | None, unit: str, goal: str, reason: str = "") -> dict[str, Any]:
    """One measured (or skipped: ``value`` None, ``reason`` why) line of the report."""
    return {"name": name, "value": value, "unit": unit, "goal": goal, "reason": reason}


def measure(redis_url: str | None, pg_url: str | None, workdir: str) -> Iterator[dict[str, Any]]:
    """The notes, store by store; a store given as ``None`` is skipped (its reason is filled in
    by the caller)."""
    stores = {
        "sqlite": f"sqlite:///{workdir}/runs.db",
        "redis": redis_url,
        "postgres": pg_url,
    }
    base = w1_seconds(None)
    yield note(f"W1 ({STEPS} steps), no store", base * 1e6 / STEPS, "µs/step", "note")
    for name, url in stores.items():
        if url is None:
            continue
        t = w1_seconds(url)
        yield note(f"W1 checkpoint cost, {name} store", (t - base) * 1e6 / STEPS, "µs/step", "note")
    for name, url in stores.items():
        if url is None:
            continue
        s = sorted(cancel_latency(url))
        r = sorted(REACHED)
        goal = "≤ 100 ms (issue 17)" if name == "postgres" else "note (0.1 s poll)"
        if r:
            median, worst = statistics.median(r) * 1e3, r[-1] * 1e3
            yield note(f"cancel -> executor obeys, {name}, median", median, "ms", goal)
            yield note(f"cancel -> executor obeys, {name}, max of {len(r)}", worst, "ms", goal)
        yield note(
            f"cancel -> run stopped, {name}, median", statistics.median(s) * 1e3, "ms", "note"
        )
        yield note(f"cancel -> run stopped, {name}, max of {len(s)}", s[-1] * 1e3, "ms", "note")
    for name, url in stores.items():
        if url is None:
            continue
        s = sorted(approval_latency(url))
        yield note(
            f"approve -> resumed run completed, {name}, median",
            statistics.median(s) * 1e3,
            "ms",
            "note",
        )


def main() -> None:
    global STEPS, REPS, CANCELS, APPROVALS
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", help="a running Redis server's URL (default: start one)")
    parser.add_argument(
        "--postgres", help="a running PostgreSQL database's URL (default: start one)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it runs")
    parser.add_argument("--json", action="store_true", help=f"lines of JSON after {MARKER!r}")
    args = parser.parse_args()
    if args.quick:
        STEPS, REPS, CANCELS, APPROVALS = 20, 1, 3, 2
    workdir = tempfile.mkdtemp(prefix="batten-measure-")
    redis_proc = server = None
    skipped: list[dict[str, Any]] = []
    try:
        redis_url = args.redis
        if redis_url is None:
            try:
                redis_url, redis_proc = start_redis(workdir)
            except (RuntimeError, OSError) as exc:
                skipped.append(note("redis store", None, "", "", f"skipped: {exc}"))
        pg_url = args.postgres or os.environ.get("BATTEN_TEST_POSTGRES_URL") or None
        if pg_url is None:
            try:
                server = pg_server.create()
                pg_url = server.url
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                skipped.append(note("postgres store", None, "", "", f"skipped: {exc}"))
        for line in [*skipped, *measure(redis_url, pg_url, workdir)]:
            if args.json:
                print(MARKER + json.dumps(line), flush=True)
            elif line["value"] is None:
                print(f"{line['name']}: {line['reason']}", flush=True)
            else:
                print(
                    f"{line['name']}: {line['value']:8.1f} {line['unit']} ({line['goal']})",
                    flush=True,
                )
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
        if server is not None:
            pg_server.destroy(server)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
