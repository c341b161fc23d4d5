"""A durable workflow of N sequential steps run as a subprocess by ``test_leases.py`` (not a
test): who executes a run, and what a process that lost its lease does.

Usage: ``python lease_workflow.py MODE STORE_URL RUN_ID LOG_PATH STEPS WORK LEASE HEARTBEAT``:
MODE ``start`` (execute a new run), ``resume`` (refused while another process holds the run)
or ``resume-wait`` (waits for it); STEPS steps ``s1..sN``, each working WORK seconds; the
workflow's lease is LEASE seconds, renewed every HEARTBEAT seconds.

Each step appends ``start <idempotency_key> <pid>`` to LOG_PATH, works (``asyncio.sleep``),
then appends ``done <idempotency_key> <pid>`` (its side effect; one ``write`` on an
``O_APPEND`` descriptor each).

Prints one JSON line and exits: ``{"status": <run status>}`` (0 when completed, else 1);
``{"status": "leased", "host", "pid", "heartbeat_age", "expires_at"}`` on ``RunLeasedError``
(3); ``{"status": "lease_lost", "message"}`` on ``LeaseLostError`` (4).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import batten
from batten import ToolStep, Workflow, WorkflowContext

LOG_PATH = ""


def append(line: str) -> None:
    fd = os.open(LOG_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def make_step(step_id: str, work: float) -> Any:
    async def fn(context: Any) -> dict[str, int]:
        key = context.idempotency_key
        append(f"start {key} {os.getpid()}")
        await asyncio.sleep(work)
        append(f"done {key} {os.getpid()}")
        return {step_id: 1}

    return fn


def build(url: str, steps: int, work: float, lease: float, heartbeat: float) -> Workflow:
    wf = Workflow("leased").with_store(
        batten.Store(url), lease_seconds=lease, heartbeat_seconds=heartbeat
    )
    for i in range(1, steps + 1):
        wf.add_step(ToolStep(f"s{i}", make_step(f"s{i}", work)))
    return wf


async def main(mode: str, url: str, run_id: str, wf: Workflow) -> int:
    try:
        if mode == "start":
            result = await wf.execute(WorkflowContext("leased"), run_id=run_id)
        elif mode in ("resume", "resume-wait"):
            result = await wf.resume(run_id, wait=mode == "resume-wait", wait_timeout=60)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    except batten.RunLeasedError as exc:
        doc = {
            "status": "leased",
            "host": exc.host,
            "pid": exc.pid,
            "heartbeat_age": exc.heartbeat_age,
            "expires_at": exc.expires_at,
            "message": str(exc),
        }
        print(json.dumps(doc), flush=True)
        return 3
    except batten.LeaseLostError as exc:
        print(json.dumps({"status": "lease_lost", "message": str(exc)}), flush=True)
        return 4
    status = batten.WorkflowStatus(result.status)
    print(json.dumps({"status": status.value}), flush=True)
    return 0 if status == batten.WorkflowStatus.COMPLETED else 1


if __name__ == "__main__":
    if len(sys.argv) != 9:
        raise SystemExit(__doc__)
    _mode, _url, _run_id, LOG_PATH, _steps, _work, _lease, _hb = sys.argv[1:]
    _wf = build(_url, int(_steps), float(_work), float(_lease), float(_hb))
    sys.exit(asyncio.run(main(_mode, _url, _run_id, _wf)))
