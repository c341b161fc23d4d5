"""DBOS Transact: the durable workloads as ``@DBOS.workflow()`` functions calling ``@DBOS.step()``s.

DBOS (3.x) checkpoints each step's output to its system database before the workflow goes on;
here that database is SQLite (``system_database_url="sqlite:///..."``, no Postgres), a file in a
fresh temporary directory. Two variants: "as shipped" (DBOS's own settings: SQLite's rollback
journal, ``synchronous=FULL``) and "WAL" (the same file put in WAL mode with
``synchronous=NORMAL`` on every connection, as batten's store and the floor run).

D2's steps are ``async def`` steps started together with ``asyncio.gather`` in an async workflow.
D3's recovery is DBOS's own: ``DBOS.launch()`` in the new process finds the pending workflow
and runs it on from its last checkpointed step; it is timed from configuring DBOS to
``DBOS.retrieve_workflow(id).get_result()`` (polling every 1 ms). DBOS recovers by re-enqueueing
the run on its internal queue, which its queue thread polls about once a second, so D3 for DBOS
is about a second whatever the store's speed. Only D1-D4 are written for DBOS.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _harness import Runner, Sizes, Suite, d3_step, expect, triangle
from dbos import DBOS, SetWorkflowID

logging.getLogger("dbos").setLevel(logging.WARNING)

WAL = {"on": False}  # whether new SQLite connections get WAL + synchronous=NORMAL


@sa.event.listens_for(sa.engine.Engine, "connect")
def _pragmas(dbapi_conn: Any, _record: Any) -> None:
    if WAL["on"]:
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")


VARIANTS = {"as shipped": False, "WAL": True}
_launched = {"db": ""}


def launch(path: Path, variant: str) -> None:
    """Configure DBOS on the SQLite file `path` (with `variant`'s settings) and launch it; a DBOS
    already launched in this process on another file is destroyed first."""
    if _launched["db"] == str(path):
        return
    if _launched["db"]:
        DBOS.destroy(destroy_registry=False)
    WAL["on"] = VARIANTS[variant]
    DBOS(
        config={
            "name": "bench",
            "system_database_url": f"sqlite:///{path}",
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    _launched["db"] = str(path)


def new_db(variant: str) -> None:
    launch(Path(tempfile.mkdtemp(prefix="bench-dbos-")) / "dbos.sqlite", variant)


@DBOS.step()
def inc(counter: int) -> int:
    return counter + 1


@DBOS.workflow()
def chain(n: int) -> int:
    counter = 0
    for _ in range(n):
        counter = inc(counter)
    return counter


@DBOS.step()
async def sleeper(i: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return i


@DBOS.step()
def total(outputs: list[int]) -> int:
    return sum(outputs)


@DBOS.workflow()
async def fan_out(n: int, delay: float) -> int:
    outputs = await asyncio.gather(*(sleeper(i, delay) for i in range(n)))
    return total(list(outputs))


@DBOS.step()
def d3_inc(directory: str, i: int, counter: int, sizes: dict[str, int]) -> int:
    d3_step(Path(directory), i, Sizes(**sizes))
    return counter + 1


@DBOS.workflow()
def d3_chain(directory: str, sizes: dict[str, int]) -> int:
    counter = 0
    for i in range(sizes["d3_steps"]):
        counter = d3_inc(directory, i, counter, sizes)
    return counter


suite = Suite("dbos")


def _register(variant: str) -> None:
    @suite.workload("D1", variant)
    def d1(s: Sizes) -> Runner:
        new_db(variant)

        def run() -> None:
            expect(chain(s.d1_steps), s.d1_steps)

        return run

    @suite.workload("D2", variant)
    def d2(s: Sizes) -> Runner:
        new_db(variant)

        async def run() -> None:
            expect(await fan_out(s.d2_fanout, s.d2_sleep), triangle(s.d2_fanout))

        return run

    @suite.recovery(variant)
    def d3(phase: str, directory: Path, s: Sizes) -> float | None:
        sizes = {"d3_steps": s.d3_steps, "d3_kill_at": s.d3_kill_at}
        start = time.perf_counter()
        launch(directory / "dbos.sqlite", variant)
        if phase == "crash":
            with SetWorkflowID("d3"):
                d3_chain(str(directory), sizes)
            raise AssertionError("the run survived its SIGKILL")
        # launch() recovers the run on a thread of its own; poll for its end every 1 ms (the
        # default, 1 s, would time the polling rather than the recovery)
        result = DBOS.retrieve_workflow("d3").get_result(polling_interval_sec=0.001)
        seconds = time.perf_counter() - start
        expect(result, s.d3_steps)
        return seconds

    @suite.workload("D4", variant)
    def d4(s: Sizes) -> Runner:
        new_db(variant)

        def run() -> None:
            for _ in range(s.d4_runs):
                expect(chain(3), 3)

        return run


for _variant in VARIANTS:
    _register(_variant)


if __name__ == "__main__":
    suite.main()
