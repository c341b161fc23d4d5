"""Prefect 3.x: the durable workloads as a ``@flow`` calling ``@task(persist_result=True)``s.

No Prefect server is configured (``PREFECT_API_URL`` unset), so each worker process starts
Prefect's ephemeral API server (a subprocess on SQLite, ``$PREFECT_HOME/prefect.db``, here a
fresh temporary directory); its start-up (~5-15 s) is not timed. Task results are persisted with
Prefect's default result storage (a file per result under ``$PREFECT_HOME/storage``); task-run
states reach the server as events, sent in the background. D1, D2 and D4 use
``cache_policy=NO_CACHE`` so that a repeated run does the work again.

D2's tasks are ``async def`` tasks started together with ``asyncio.gather`` in an async flow.
Prefect does not resume a crashed flow run in place: D3's recovery is Prefect's documented
idiom, running the flow again with ``cache_policy=INPUTS``, so that each task that completed
before the crash returns its persisted result instead of running. It is timed from the flow
call; the new process first starts its ephemeral server with a one-task flow (untimed).
D4 runs a twentieth of the others' flows a repetition (50, not 1,000; 1 in a quick run): a
flow run costs Prefect tens of ms or more.
Only D1-D4 are written for Prefect.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# a loaded machine takes longer than the default 20 s to start the server
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")

from _harness import Runner, Sizes, Suite, d3_step, expect, triangle
from prefect import flow, task
from prefect.cache_policies import INPUTS, NO_CACHE

D4_RUNS = 50


@task(persist_result=True, cache_policy=NO_CACHE)
def inc(counter: int) -> int:
    return counter + 1


@flow(persist_result=True)
def chain(n: int) -> int:
    counter = 0
    for _ in range(n):
        counter = inc(counter)
    return counter


@task(persist_result=True, cache_policy=NO_CACHE)
async def sleeper(i: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return i


@task(persist_result=True, cache_policy=NO_CACHE)
def total(outputs: list[int]) -> int:
    return sum(outputs)


@flow(persist_result=True)
async def fan_out(n: int, delay: float) -> int:
    outputs = await asyncio.gather(*(sleeper(i, delay) for i in range(n)))
    return total(list(outputs))


@task(persist_result=True, cache_policy=INPUTS)
def d3_inc(directory: str, i: int, counter: int, steps: int, kill_at: int) -> int:
    d3_step(Path(directory), i, Sizes(d3_steps=steps, d3_kill_at=kill_at))
    return counter + 1


@flow(persist_result=True)
def d3_chain(directory: str, steps: int, kill_at: int) -> int:
    counter = 0
    for i in range(steps):
        counter = d3_inc(directory, i, counter, steps, kill_at)
    return counter


suite = Suite("prefect")


@suite.workload("D1")
def d1(s: Sizes) -> Runner:
    expect(chain(1), 1)  # starts the ephemeral server

    def run() -> None:
        expect(chain(s.d1_steps), s.d1_steps)

    return run


@suite.workload("D2")
def d2(s: Sizes) -> Runner:
    expect(chain(1), 1)

    async def run() -> None:
        expect(await fan_out(s.d2_fanout, s.d2_sleep), triangle(s.d2_fanout))

    return run


@suite.recovery()
def d3(phase: str, directory: Path, s: Sizes) -> float | None:
    expect(chain(1), 1)  # starts the ephemeral server, untimed
    start = time.perf_counter()
    result = d3_chain(str(directory), s.d3_steps, s.d3_kill_at)
    seconds = time.perf_counter() - start
    if phase == "crash":
        raise AssertionError("the run survived its SIGKILL")
    expect(result, s.d3_steps)
    return seconds


@suite.workload("D4")
def d4(s: Sizes) -> Runner:
    expect(chain(1), 1)
    runs = max(1, min(D4_RUNS, s.d4_runs // 20))

    def run() -> None:
        for _ in range(runs):
            expect(chain(3), 3)

    if runs < s.d4_runs:
        run.count = runs  # type: ignore[attr-defined]
    return run


if __name__ == "__main__":
    suite.main()
