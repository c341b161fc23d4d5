"""Measures, once (not a test; issue 17's benchmark note): the checkpoint cost per step of W1 (a
200-step chain of a trivial sync tool) with a SQLite, Redis and PostgreSQL store, next to W1
without a store; and how long a ``cancel`` takes to stop a running executor through each store
(the executor polls the store every ``batten.durable.POLL_INTERVAL`` = 0.1 s).

Usage: ``python tests/measure_store_costs.py [--redis URL] [--postgres URL]``; without a URL
it starts a throwaway server (redis-server on a free port; PostgreSQL via tests/pg_server.py).
Prints a table; numbers are medians over ``REPS`` runs after one warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import batten
import pg_server
from batten import ToolStep, Workflow, WorkflowContext

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


async def _tick(context: Mapping[str, int]) -> dict[str, int]:
    await asyncio.sleep(0.002)
    return {}


def cancel_latency(store: str) -> list[float]:
    """Seconds from ``batten.cancel`` returning to ``execute`` returning, per sample."""
    wf = Workflow("ticks", "ticks").with_store(batten.Store(store))
    for i in range(2000):
        wf.add_step(ToolStep(f"t{i}", _tick))
    samples = []
    for _ in range(CANCELS):
        run_id = "cancel-" + uuid.uuid4().hex[:8]
        stamp: list[float] = []

        def canceller(run_id: str = run_id, stamp: list[float] = stamp) -> None:
            time.sleep(0.3)
            batten.cancel(run_id, store=store)
            stamp.append(time.perf_counter())

        thread = threading.Thread(target=canceller)
        thread.start()
        result = asyncio.run(wf.execute(WorkflowContext("ticks"), run_id=run_id))
        ended = time.perf_counter()
        thread.join()
        assert result.status == batten.WorkflowStatus.CANCELLED, result.status
        samples.append(ended - stamp[0])
    return samples


def start_redis(workdir: str) -> tuple[str, subprocess.Popen[bytes]]:
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
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return f"redis://127.0.0.1:{port}/0", proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis")
    parser.add_argument("--postgres")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="batten-measure-")
    redis_proc = server = None
    try:
        redis_url = args.redis
        if redis_url is None:
            redis_url, redis_proc = start_redis(workdir)
        pg_url = args.postgres
        if pg_url is None:
            server = pg_server.create()
            pg_url = server.url
        stores = {
            "sqlite": f"sqlite:///{workdir}/runs.db",
            "redis": redis_url,
            "postgres": pg_url,
        }
        base = w1_seconds(None)
        print(f"W1 ({STEPS} steps), no store: {base * 1e6 / STEPS:8.1f} µs/step")
        for name, url in stores.items():
            t = w1_seconds(url)
            print(
                f"W1 with a {name:8s} store: {t * 1e6 / STEPS:8.1f} µs/step "
                f"(checkpoint cost {(t - base) * 1e6 / STEPS:8.1f} µs/step)"
            )
        for name, url in stores.items():
            s = sorted(cancel_latency(url))
            print(
                f"cancel -> run stopped, {name:8s}: median {statistics.median(s) * 1e3:6.1f} ms, "
                f"max {s[-1] * 1e3:6.1f} ms ({len(s)} samples)"
            )
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
        if server is not None:
            pg_server.destroy(server)


if __name__ == "__main__":
    main()
