"""Acceptance (issue 17): runs that move between hosts, against PostgreSQL and against Redis.

Each "host" is a separate process with its own ``BATTEN_HOST_ID`` (the host its lease names),
sharing only the store: host A starts a run and is SIGKILLed mid-run; host B resumes it once A's
lease (2 s) expires, and runs until the approval step; host C approves and the run completes;
``batten status`` from a fourth process shows the same truth at every stage. Every step's side
effect happens once, except the one step in flight when A was killed (at most twice). Real
processes, a real PostgreSQL server and a real redis-server (skipped where they cannot start).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import batten
import pytest

SCRIPT = Path(__file__).with_name("host_workflow.py")
WAIT_S = 60.0

pytestmark = pytest.mark.slow


def host(name: str, mode: str, url: str, run_id: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), mode, url, run_id, str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BATTEN_HOST_ID": name},
    )


def finish(proc: subprocess.Popen[str]) -> dict[str, str]:
    try:
        out, err = proc.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"host did not end in {WAIT_S}s:\n{out}\n{err}") from None
    assert proc.returncode == 0, (out, err)
    doc: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return doc


def status(url: str, run_id: str, tmp_path: Path) -> str:
    """``batten status RUN --store URL`` from another process (host D)."""
    exe = Path(sys.executable).with_name("batten")
    done = subprocess.run(
        [str(exe), "status", run_id, "--store", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        env={**os.environ, "BATTEN_HOST_ID": "host-d"},
    )
    # Exit 3: the run waits for an approval (batten status's documented code).
    assert done.returncode in (0, 3), done
    return done.stdout


def read_log(log: Path) -> list[tuple[str, str, str, int, float]]:
    """``(kind, step, host, pid, time)`` of each complete line."""
    if not log.exists():
        return []
    out = []
    for raw in log.read_text().split("\n")[:-1]:
        kind, step, name, pid, at = raw.split(" ")
        out.append((kind, step, name, int(pid), float(at)))
    return out


def wait_for(check, what: str, timeout: float = WAIT_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout}s: {what}")
        time.sleep(0.01)


def move_between_hosts(url: str, tmp_path: Path) -> None:
    run_id = "moving-" + uuid.uuid4().hex[:8]
    log = tmp_path / f"{run_id}.log"
    a = host("host-a", "start", url, run_id, log)
    try:
        wait_for(lambda: any(k == "done" and s == "s2" for k, s, *_ in read_log(log)), "A's s2")
        a.send_signal(signal.SIGKILL)
        a.communicate(timeout=WAIT_S)
        killed_at = time.time()
    finally:
        a.kill()
        a.communicate()
    # From another host, A's lease is taken at its word until it expires: running, owned by A.
    shown = status(url, run_id, tmp_path)
    assert f"run {run_id}: running" in shown and "executed by host-a" in shown, shown

    b = host("host-b", "resume", url, run_id, log)
    assert finish(b) == {"status": "waiting_approval"}
    lines = read_log(log)
    b_lines = [ln for ln in lines if ln[2] == "host-b"]
    assert b_lines, lines
    # B waited for A's lease (2 s, renewed every 0.5 s) to expire: at least 1.5 s after its
    # last heartbeat, so well over 1 s after the kill.
    assert min(at for *_, at in b_lines) > killed_at + 1.0, (killed_at, b_lines)
    assert {s for k, s, *_ in b_lines if k == "done"} >= {"s3", "s4"}, b_lines
    shown = status(url, run_id, tmp_path)
    assert f"run {run_id}: waiting" in shown, shown

    c = host("host-c", "approve", url, run_id, log)
    assert finish(c) == {"status": "completed"}
    shown = status(url, run_id, tmp_path)
    assert f"run {run_id}: completed" in shown, shown

    lines = read_log(log)
    done = Counter(s for k, s, *_ in lines if k == "done")
    assert set(done) == {"s1", "s2", "s3", "s4", "after"}, lines
    in_flight = [s for s, n in done.items() if n > 1]
    assert len(in_flight) <= 1 and all(done[s] <= 2 for s in done), done
    by_host = {s: {h for k, s2, h, *_ in lines if k == "done" and s2 == s} for s in done}
    # s1 was checkpointed before s2 started; s2 may be the step in flight at the kill (its
    # effect done, its checkpoint not yet written), which B then runs again.
    assert by_host["s1"] == {"host-a"} and "host-a" in by_host["s2"], by_host
    assert by_host["s4"] == {"host-b"} and by_host["after"] == {"host-c"}, by_host
    # Every process reads the same record: completed, lease released, the decision by carol.
    info = batten.get_workflow_status(run_id, store=url)
    assert info.status == batten.WorkflowStatus.COMPLETED and info.lease is None
    decisions = [
        r.detail for r in batten.Store(url).history(run_id) if r.detail and r.detail.get("decision")
    ]
    assert [(d["by"], d["host"]) for d in decisions] == [("carol", "host-c")], decisions


def test_a_run_moves_between_hosts_on_postgres(postgres_store_url: str, tmp_path: Path) -> None:
    move_between_hosts(postgres_store_url, tmp_path)


def test_a_run_moves_between_hosts_on_redis(redis_store_url: str, tmp_path: Path) -> None:
    move_between_hosts(redis_store_url, tmp_path)
