"""A 20-step durable workflow run as a subprocess by ``test_crash_resume.py`` (not a test).

Usage: ``python crash_workflow.py MODE STORE_URL RUN_ID LOG_PATH`` with MODE ``start``
(``execute`` a new run with id RUN_ID), ``resume`` (``resume`` run RUN_ID) or ``resume-race``
(``resume``, one of several started at once: prints ``{"status": "leased"}`` and exits 3 when
another process holds the run).

The workflow: ``s01..s05`` sequential, a fan-out ``p1..p8`` depending on ``s05``, a join ``j``
depending on all of them, then ``t1..t6`` sequential (20 steps). Each step

1. appends ``start <idempotency_key> <pid>`` to LOG_PATH (one ``write`` on an ``O_APPEND``
   descriptor, then ``fsync``);
2. does some "work" (a short sleep; half the steps are ``async def``);
3. performs its side effect the way a side-effecting tool de-duplicates by idempotency key:
   in one transaction of its own SQLite store (``LOG_PATH + ".effects.db"``, table
   ``effects(key TEXT PRIMARY KEY, pid INT)``) it does ``INSERT OR IGNORE``, and only if the
   row was inserted appends ``done <key> <pid>`` to LOG_PATH (fsynced *before* the commit, so
   every committed effect has its ``done`` line; a kill between the two leaves a ``done``
   line whose pid is not the committed row's, which the test tells apart), then works a
   little more (so a kill often lands after the effect, before the step's checkpoint);
4. returns a small dict computed from its upstream outputs (read through
   ``context.variables`` and ``context.results``), merged into the run's variables.

Prints one JSON line ``{"status": ..., "final_output": ...}`` and exits 0 when the run
completed, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
from typing import Any

import batten
from batten import ToolStep, Workflow, WorkflowContext

WORK_S = 0.02
SEQ_A = [f"s0{i}" for i in range(1, 6)]
FAN = [f"p{i}" for i in range(1, 9)]
JOIN = "j"
SEQ_B = [f"t{i}" for i in range(1, 7)]
STEPS = [*SEQ_A, *FAN, JOIN, *SEQ_B]
assert len(STEPS) == 20

LOG_PATH = ""


def _append(line: str) -> None:
    fd = os.open(LOG_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _effect(key: str) -> None:
    """The tool's side effect, de-duplicated by ``key`` in the tool's own store."""
    pid = os.getpid()
    conn = sqlite3.connect(LOG_PATH + ".effects.db", timeout=60, isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS effects(key TEXT PRIMARY KEY, pid INT)")
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute("INSERT OR IGNORE INTO effects(key, pid) VALUES (?, ?)", (key, pid))
            if cur.rowcount == 1:
                _append(f"done {key} {pid}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


def _compute(step_id: str, context: Any) -> dict[str, int]:
    """The step's output from its upstream outputs (restored ones included after a resume)."""
    v = context.variables
    if step_id == "s01":
        return {"s01": 1}
    if step_id in SEQ_A:
        prev = SEQ_A[SEQ_A.index(step_id) - 1]
        return {step_id: v[prev] * 3 + int(step_id[1:])}
    if step_id in FAN:
        # through context.results: the outputs of this step's dependencies
        return {step_id: context.results["s05"]["s05"] * 10 + int(step_id[1:])}
    if step_id == JOIN:
        return {JOIN: sum(context.results[p][p] for p in FAN) + sum(v[p] for p in FAN)}
    i = SEQ_B.index(step_id)
    prev = JOIN if i == 0 else SEQ_B[i - 1]
    out = {step_id: v[prev] * 2 + i + 1}
    if step_id == SEQ_B[-1]:
        out["total"] = sum(v[s] for s in STEPS[:-1]) + out[step_id]
    return out


def _sync_step(step_id: str) -> Any:
    def fn(context: Any) -> dict[str, int]:
        key = context.idempotency_key
        _append(f"start {key} {os.getpid()}")
        time.sleep(WORK_S)
        _effect(key)
        time.sleep(WORK_S)  # more work after the effect
        return _compute(step_id, context)

    return fn


def _async_step(step_id: str) -> Any:
    async def fn(context: Any) -> dict[str, int]:
        key = context.idempotency_key
        _append(f"start {key} {os.getpid()}")
        await asyncio.sleep(WORK_S)
        _effect(key)
        await asyncio.sleep(WORK_S)  # more work after the effect
        return _compute(step_id, context)

    return fn


def build(store_url: str) -> Workflow:
    wf = Workflow("crash").with_store(batten.Store(store_url))
    for n, step_id in enumerate(STEPS):
        make = _async_step if n % 2 else _sync_step
        step = ToolStep(step_id, make(step_id))
        if step_id in FAN:
            wf.add_step(step, depends_on=[SEQ_A[-1]])
        elif step_id == JOIN:
            wf.add_step(step, depends_on=list(FAN))
        else:
            wf.add_step(step)  # after the previous step
    return wf


async def main(mode: str, store_url: str, run_id: str) -> int:
    wf = build(store_url)
    if mode == "start":
        result = await wf.execute(WorkflowContext("crash"), run_id=run_id)
    elif mode == "resume":
        result = await wf.resume(run_id)
    elif mode == "resume-race":
        try:
            result = await wf.resume(run_id)
        except batten.RunLeasedError as exc:
            print(json.dumps({"status": "leased", "pid": exc.pid}), flush=True)
            return 3
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    status = batten.WorkflowStatus(result.status)
    print(json.dumps({"status": status.value, "final_output": result.final_output}), flush=True)
    return 0 if status == batten.WorkflowStatus.COMPLETED else 1


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    _mode, _url, _run_id, LOG_PATH = sys.argv[1:]
    sys.exit(asyncio.run(main(_mode, _url, _run_id)))
