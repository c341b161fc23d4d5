"""Plain asyncio: the yardsticks the workflow engines are compared against (DESIGN.md §5).

The "workflow" here is hand-written code: a list of functions called in a loop ("direct") or one
asyncio Task per step ("tasks"), with no scheduler, state merging or bookkeeping.

The durable workloads' "floor" is the same steps hand-written with the standard library's
``sqlite3``: one ``INSERT`` of the step's JSON output per step, in autocommit mode, on a WAL
database with ``synchronous=NORMAL`` (the settings a careful hand-written checkpoint would use).
Its D3 recovery opens the file, reads the run's last row and continues from there.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from _harness import (
    Runner,
    Sizes,
    Suite,
    Tally,
    d3_step,
    expect,
    flaky,
    random_dag,
    triangle,
)

suite = Suite("asyncio")

State = dict[str, int]


def inc(state: State) -> State:
    return {"counter": state["counter"] + 1}


async def ainc(state: State) -> State:
    return {"counter": state["counter"] + 1}


async def call(step: Callable[[State], State], state: State) -> State:
    """A sync step wrapped in a coroutine, so it can be its own Task."""
    return step(state)


async def sleeper(i: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return i


@suite.workload("W1", "direct")
def w1(s: Sizes) -> Runner:
    steps = [inc] * s.w1_steps

    def run() -> None:
        state = {"counter": 0}
        for step in steps:
            state = step(state)
        expect(state["counter"], s.w1_steps)

    return run


@suite.workload("W1", "tasks")
def w1_tasks(s: Sizes) -> Runner:
    """W1's yardstick (issue 18): each sync step wrapped in its own asyncio Task."""
    steps = [inc] * s.w1_steps

    async def run() -> None:
        state = {"counter": 0}
        for step in steps:
            state = await asyncio.create_task(call(step, state))
        expect(state["counter"], s.w1_steps)

    return run


@suite.workload("W1a", "tasks")
def w1a(s: Sizes) -> Runner:
    steps = [ainc] * s.w1_steps

    async def run() -> None:
        state = {"counter": 0}
        for step in steps:
            state = await asyncio.create_task(step(state))
        expect(state["counter"], s.w1_steps)

    return run


@suite.workload("W2", "gather")
def w2(s: Sizes) -> Runner:
    async def run() -> None:
        outputs = await asyncio.gather(*(sleeper(i, s.w2_sleep) for i in range(s.w2_fanout)))
        expect(sum(outputs), triangle(s.w2_fanout))

    return run


@suite.workload("W6", "gather")
def w6(s: Sizes) -> Runner:
    async def run() -> None:
        items = list(range(s.w6_items))
        outputs = await asyncio.gather(*(sleeper(i, s.w2_sleep) for i in items))
        expect(sum(outputs), triangle(s.w6_items))

    return run


@suite.workload("W3", "direct")
def w3_direct(s: Sizes) -> Runner:
    dag, tally = random_dag(s.w3_nodes), Tally()

    def run() -> None:
        for _deps in dag:  # index order is a topological order
            tally.noop()
        expect(tally.take(), s.w3_nodes)

    return run


@suite.workload("W3", "tasks")
def w3_tasks(s: Sizes) -> Runner:
    dag, tally = random_dag(s.w3_nodes), Tally()

    async def node(deps: list[asyncio.Task[None]]) -> None:
        for dep in deps:
            await dep
        tally.noop()

    async def run() -> None:
        tasks: list[asyncio.Task[None]] = []
        for deps in dag:
            tasks.append(asyncio.create_task(node([tasks[d] for d in deps])))
        await asyncio.gather(*tasks)
        expect(tally.take(), s.w3_nodes)

    return run


@suite.workload("W4", "tasks")
def w4(s: Sizes) -> Runner:
    steps = [flaky() for _ in range(s.w4_steps)]

    async def retrying(step: Callable[[], str], attempts: int = 3) -> str:
        for attempt in range(1, attempts + 1):
            try:
                return step()
            except RuntimeError:
                if attempt == attempts:
                    raise
                await asyncio.sleep(0)  # zero backoff, but still yield to the loop
        raise AssertionError("unreachable")

    async def run() -> None:
        outputs = await asyncio.gather(*(retrying(step) for step in steps))
        expect(outputs, ["ok"] * s.w4_steps)

    return run


@suite.workload("W5", "tasks")
def w5(s: Sizes) -> Runner:
    steps = (inc, inc, inc)

    async def run() -> None:
        for _ in range(s.w5_runs):
            state = {"counter": 0}
            for step in steps:
                state = await asyncio.create_task(call(step, state))
            expect(state["counter"], 3)

    return run


# ---- the floor for the durable workloads ---------------------------------------------------------


def floor_db(path: Path) -> sqlite3.Connection:
    """The floor's checkpoint table: autocommit (each INSERT its own transaction), WAL,
    synchronous=NORMAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS steps"
        " (run_id TEXT, step INTEGER, output TEXT, PRIMARY KEY (run_id, step))"
    )
    return conn


def new_db() -> sqlite3.Connection:
    return floor_db(Path(tempfile.mkdtemp(prefix="bench-floor-")) / "steps.db")


def checkpoint(conn: sqlite3.Connection, run_id: str, step: int, output: object) -> None:
    conn.execute("INSERT INTO steps VALUES (?, ?, ?)", (run_id, step, json.dumps(output)))


def durable_chain(conn: sqlite3.Connection, n: int, first: int = 0, state: int = 0) -> int:
    """Steps `first`..`n - 1` of a counter chain, one INSERT each; returns the counter."""
    run_id = uuid.uuid4().hex
    for i in range(first, n):
        state = inc({"counter": state})["counter"]
        checkpoint(conn, run_id, i, state)
    return state


@suite.workload("D1", "floor")
def d1(s: Sizes) -> Runner:
    conn = new_db()

    def run() -> None:
        expect(durable_chain(conn, s.d1_steps), s.d1_steps)

    return run


@suite.workload("D2", "floor")
def d2(s: Sizes) -> Runner:
    conn = new_db()

    async def run() -> None:
        run_id = uuid.uuid4().hex

        async def step(i: int) -> int:
            await asyncio.sleep(s.d2_sleep)
            checkpoint(conn, run_id, i, i)
            return i

        total = sum(await asyncio.gather(*(step(i) for i in range(s.d2_fanout))))
        checkpoint(conn, run_id, s.d2_fanout, total)
        expect(total, triangle(s.d2_fanout))

    return run


@suite.recovery("floor")
def d3(phase: str, directory: Path, s: Sizes) -> float | None:
    start = time.perf_counter()
    conn = floor_db(directory / "steps.db")
    first, state = 0, 0
    if phase == "recover":
        row = conn.execute(
            "SELECT step, output FROM steps WHERE run_id = 'd3' ORDER BY step DESC LIMIT 1"
        ).fetchone()
        first, state = row[0] + 1, json.loads(row[1])
    for i in range(first, s.d3_steps):
        d3_step(directory, i, s)
        state = inc({"counter": state})["counter"]
        checkpoint(conn, "d3", i, state)
    expect(state, s.d3_steps)
    return time.perf_counter() - start


@suite.workload("D4", "floor")
def d4(s: Sizes) -> Runner:
    conn = new_db()

    def run() -> None:
        for _ in range(s.d4_runs):
            expect(durable_chain(conn, 3), 3)

    return run


if __name__ == "__main__":
    suite.main()
