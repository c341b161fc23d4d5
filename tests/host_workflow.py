"""A durable workflow run as one "host" by ``test_cross_host.py`` (not a test): the host is the
process's ``BATTEN_HOST_ID``, which the lease records as its owner's host.

Usage: ``python host_workflow.py MODE STORE_URL RUN_ID LOG_PATH`` with MODE ``start`` (execute a
new run), ``resume`` (wait for the run's lease to be free, then continue it) or ``approve``
(approve the ``sign`` step as ``carol``, then continue the run).

Steps ``s1..s4`` each append ``start <step> <host> <pid> <time>`` to LOG_PATH, work 0.3 s, then
append ``done ...`` (the side effect); then the approval step ``sign``; then ``after`` (logged
the same way). The lease is 2 s, renewed every 0.5 s, so a killed host's run is free 2 s later.

Prints one JSON line ``{"status": <run status>}`` and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import batten
from batten import HumanApprovalStep, ToolStep, Workflow, WorkflowContext

LEASE_S = 2.0
HEARTBEAT_S = 0.5
LOG_PATH = ""


def append(kind: str, step: str) -> None:
    host = os.environ.get("BATTEN_HOST_ID", "?")
    line = f"{kind} {step} {host} {os.getpid()} {time.time():.3f}\n"
    fd = os.open(LOG_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def make_step(step_id: str) -> Any:
    async def fn(context: Any) -> dict[str, int]:
        append("start", step_id)
        await asyncio.sleep(0.3)
        append("done", step_id)
        return {step_id: 1}

    return fn


def build(url: str) -> Workflow:
    wf = Workflow("moving").with_store(
        batten.Store(url), lease_seconds=LEASE_S, heartbeat_seconds=HEARTBEAT_S
    )
    previous = None
    for i in range(1, 5):
        step = ToolStep(f"s{i}", make_step(f"s{i}"))
        wf.add_step(step, depends_on=[previous] if previous else None)
        previous = f"s{i}"
    wf.add_step(HumanApprovalStep("sign", "Sign off?"), depends_on=["s4"])
    wf.add_step(ToolStep("after", make_step("after")), depends_on=["sign"])
    return wf


async def main(mode: str, url: str, run_id: str) -> int:
    wf = build(url)
    if mode == "start":
        result = await wf.execute(WorkflowContext("moving"), run_id=run_id)
    elif mode == "resume":
        result = await wf.resume(run_id, wait=True, wait_timeout=60)
    elif mode == "approve":
        batten.approve(run_id, "sign", by="carol", store=url)
        result = await wf.resume(run_id, wait=True, wait_timeout=60)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps({"status": batten.WorkflowStatus(result.status).value}), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    _mode, _url, _run_id, LOG_PATH = sys.argv[1:]
    sys.exit(asyncio.run(main(_mode, _url, _run_id)))
