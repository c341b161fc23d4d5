"""Acceptance: crash-safe resume of durable runs.

A subprocess (``tests/crash_workflow.py``) runs a 20-step workflow (sequential steps, an 8-way
fan-out, a join, more sequential steps) with a durable store and is killed with SIGKILL at many
points: after the k-th step started (k = 1..20), right after the k-th side effect committed,
at fixed delays after the first step started, and once after the run finished. After each kill
``resume`` (another subprocess) completes the run, and the side-effect log written by the steps
shows every idempotency key done exactly once and no step that the store had recorded as
completed run again. The same test runs against SQLite and Redis.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import batten
import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("crash_workflow.py")

SEQ_A = [f"s0{i}" for i in range(1, 6)]
FAN = [f"p{i}" for i in range(1, 9)]
JOIN = "j"
SEQ_B = [f"t{i}" for i in range(1, 7)]
STEPS = [*SEQ_A, *FAN, JOIN, *SEQ_B]

#: (kind, value): "start" kills once the log holds ``value`` start lines; "done" once it holds
#: ``value`` done lines (usually before that effect's commit: a torn effect); "effect" once the
#: tool's store holds ``value`` committed effects (usually before that step's checkpoint: the
#: resume runs it again and the tool de-duplicates it by its key); "time" ``value`` seconds
#: after the first start line; "exit" after the run finished.
KILL_POINTS: list[tuple[str, float]] = [
    *(("start", k) for k in range(1, 21)),
    *(("done", k) for k in (6, 10, 14, 20)),
    *(("effect", k) for k in (3, 9, 12, 18)),
    *(("time", d) for d in (0.1, 0.2, 0.35)),
    ("exit", 0),
]
#: Of the mid-run kill points, at least this many must SIGKILL a live process per backend
#: (a loaded machine may let a late one finish first; ``start`` ones land mid-run anyway).
MIN_REAL_KILLS = 20

#: Kill points run this many at a time (each is a start and a resume subprocess).
WORKERS = 2
POLL_S = 0.003
WAIT_S = 30.0
RESUME_TIMEOUT_S = 120.0


def expected_output() -> dict[str, int]:
    """The workflow's final output, computed here independently of the script."""
    v: dict[str, int] = {"s01": 1}
    for i in range(2, 6):
        v[f"s0{i}"] = v[f"s0{i - 1}"] * 3 + i
    for i in range(1, 9):
        v[f"p{i}"] = v["s05"] * 10 + i
    v[JOIN] = 2 * sum(v[p] for p in FAN)
    prev = JOIN
    for i in range(1, 7):
        v[f"t{i}"] = v[prev] * 2 + i
        prev = f"t{i}"
    return {"t6": v["t6"], "total": sum(v.values())}


@dataclass
class LogLine:
    kind: str  # "start" or "done"
    step: str
    pid: int


def read_log(path: Path, run_id: str) -> list[LogLine]:
    """The complete lines of the side-effect log (a torn last line is ignored)."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")[:-1]  # the last element is "" or a partial line
    out = []
    for raw in lines:
        kind, key, pid = raw.split(" ")
        rid, step = key.split(":", 1)
        assert rid == run_id, f"log line with a foreign run id: {raw!r}"
        out.append(LogLine(kind, step, int(pid)))
    return out


def effects(log: Path) -> dict[str, int]:
    """The tool's committed effects: step id -> pid of the process that committed it."""
    db = Path(str(log) + ".effects.db")
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as conn:
        try:
            rows = conn.execute("SELECT key, pid FROM effects").fetchall()
        except sqlite3.OperationalError:  # killed before the table was created
            return {}
    return {key.split(":", 1)[1]: int(pid) for key, pid in rows}


def last_status(history: list[Any]) -> dict[str, batten.StepStatus]:
    last: dict[str, Any] = {}
    for rec in sorted(history, key=lambda r: r.seq):
        last[rec.step_id] = rec
    return {s: rec.status for s, rec in last.items()}


def run_script(mode: str, url: str, run_id: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), mode, url, run_id, str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_at(proc: subprocess.Popen[str], log: Path, run_id: str, kind: str, value: float) -> str:
    """Waits for the kill point, SIGKILLs ``proc`` and reaps it; returns what happened."""
    deadline = time.monotonic() + WAIT_S
    first_start: float | None = None
    while True:
        if proc.poll() is not None:
            break  # it finished (or crashed) before the kill point
        lines = read_log(log, run_id)
        starts = sum(1 for ln in lines if ln.kind == "start")
        dones = sum(1 for ln in lines if ln.kind == "done")
        if starts and first_start is None:
            first_start = time.monotonic()
        if kind == "start" and starts >= value:
            break
        if kind == "done" and dones >= value:
            break
        if kind == "effect" and len(effects(log)) >= value:
            break
        if kind == "time" and first_start is not None:
            time.sleep(max(0.0, first_start + value - time.monotonic()))
            break
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            raise AssertionError(f"kill point {kind}={value}: not reached in {WAIT_S}s")
        time.sleep(POLL_S)
    if kind != "exit" and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=WAIT_S)
    if proc.returncode == -signal.SIGKILL:
        return "killed"
    if proc.returncode == 0:
        return "finished"
    raise AssertionError(
        f"kill point {kind}={value}: the start process failed ({proc.returncode}):\n{out}\n{err}"
    )


def check_kill_point(url: str, workdir: Path, kind: str, value: float) -> tuple[str, str, int]:
    """One crash and resume; raises AssertionError on a violated guarantee. Returns whether
    the start process was killed, a description of where the kill landed, and how many steps
    the resume ran again whose effect the killed process had committed (de-duplicated)."""
    run_id = f"crash-{kind}-{value}-{uuid.uuid4().hex[:8]}".replace(".", "_")
    log = workdir / f"{run_id}.log"
    start = run_script("start", url, run_id, log)
    fate = kill_at(start, log, run_id, kind, value)
    start_pid = start.pid

    # The store as the crash left it.
    store = batten.Store(url)
    before = store.history(run_id)
    before_last = last_status(before)
    completed_before = {s for s, st in before_last.items() if st == batten.StepStatus.COMPLETED}
    in_flight = {s for s, st in before_last.items() if st == batten.StepStatus.RUNNING}
    max_seq_before = max((r.seq for r in before), default=0)
    run_before = store.get_run(run_id).status
    del store
    if fate == "finished" or run_before == batten.WorkflowStatus.COMPLETED:
        # (a kill may land after the run's end was recorded, before the process exited)
        assert run_before == batten.WorkflowStatus.COMPLETED, run_before
        assert completed_before == set(STEPS), completed_before
    else:
        # The killed process is gone (reaped): its run shows as interrupted, not running.
        assert run_before == batten.WorkflowStatus.INTERRUPTED, run_before

    resume = run_script("resume", url, run_id, log)
    try:
        out, err = resume.communicate(timeout=RESUME_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        resume.kill()
        out, err = resume.communicate()
        raise AssertionError(
            f"resume did not finish in {RESUME_TIMEOUT_S}s:\n{out}\n{err}"
        ) from None
    assert resume.returncode == 0, f"resume failed ({resume.returncode}):\n{out}\n{err}"
    resume_pid = resume.pid
    assert resume_pid != start_pid, "pid reused: the log cannot tell the processes apart"
    printed = json.loads(out.strip().splitlines()[-1])
    assert printed["status"] == batten.WorkflowStatus.COMPLETED.value, printed

    lines = read_log(log, run_id)
    committed = effects(log)
    for ln in lines:
        assert ln.pid in (start_pid, resume_pid), f"log line from an unknown pid: {ln}"
        assert ln.step in STEPS, f"log line for an unknown step: {ln}"

    # (a) Every idempotency key is done exactly once: the tool's store holds exactly the 20
    # keys (so resume re-ran interrupted steps with the same key) and each has exactly one
    # done line from the process that committed it. The only other done line allowed is one
    # torn effect: its line written, then the process killed before its commit. Effects are
    # serialised by the tool's write lock, held from the insert to the commit, so there is at
    # most one, it is the killed process's last done line, and the resume redid that effect.
    assert set(committed) == set(STEPS), (
        f"effects committed for {sorted(committed)}, expected the 20 steps' keys"
    )
    done = [ln for ln in lines if ln.kind == "done"]
    for step in STEPS:
        real = [ln for ln in done if ln.step == step and ln.pid == committed[step]]
        assert len(real) == 1, f"step {step}: {len(real)} done lines for its committed effect"
    torn = [ln for ln in done if ln.pid != committed[ln.step]]
    assert len(torn) <= 1, f"more than one done line without its effect: {torn}"
    if torn:
        ln = torn[0]
        assert fate == "killed" and ln.pid == start_pid, f"a torn effect not at the kill: {ln}"
        assert ln == [d for d in done if d.pid == start_pid][-1], (
            f"torn effect {ln} is not the killed process's last one"
        )
        assert committed[ln.step] == resume_pid, f"torn effect {ln} not redone by the resume"

    # (b) No step completed in the store before the resume ran again; exactly the others did,
    # once each (no retries are configured).
    starts_by = Counter((ln.step, ln.pid) for ln in lines if ln.kind == "start")
    assert all(n == 1 for n in starts_by.values()), (
        f"a step started twice by one process: {starts_by}"
    )
    rerun = {s for s, pid in starts_by if pid == resume_pid}
    assert not rerun & completed_before, (
        f"steps completed before the resume ran again: {sorted(rerun & completed_before)}"
    )
    assert rerun == set(STEPS) - completed_before, (
        f"resume ran {sorted(rerun)}; not completed before: {sorted(set(STEPS) - completed_before)}"
    )
    for step in completed_before:  # its effect happened before its checkpoint
        assert committed[step] == start_pid, f"step {step} completed without its effect"

    # (c) The store: the run and every step completed, completed steps not restarted.
    store = batten.Store(url)
    run = store.get_run(run_id)
    history = store.history(run_id)
    del store
    assert run.status == batten.WorkflowStatus.COMPLETED, run.status
    after_last = last_status(history)
    assert set(after_last) == set(STEPS), sorted(after_last)
    not_completed = {s: st for s, st in after_last.items() if st != batten.StepStatus.COMPLETED}
    assert not not_completed, f"steps whose last event is not COMPLETED: {not_completed}"
    restarted = {
        r.step_id
        for r in history
        if r.seq > max_seq_before
        and r.step_id in completed_before
        and r.status == batten.StepStatus.RUNNING
    }
    assert not restarted, f"completed steps restarted in the store: {sorted(restarted)}"

    # (d) The final output: computed from upstream outputs, restored ones included.
    want = expected_output()
    assert printed["final_output"] == want, (printed["final_output"], want)
    assert run.result == want, (run.result, want)

    deduped = {s for s in rerun if committed[s] == start_pid}
    where = (
        f"{len(completed_before):2d} completed, in flight {sorted(in_flight)}, "
        f"resume ran {len(rerun)}, torn effects {len(torn)}, de-duplicated {len(deduped)}"
    )
    return fate, where, len(deduped)


def crash_and_resume_everywhere(url_for: Callable[[int], str], workdir: Path) -> None:
    """Every kill point (``url_for(n)``: the store of the n-th), ``WORKERS`` at a time;
    reports them all."""

    def one(n: int) -> tuple[str, str, str, int]:
        kind, value = KILL_POINTS[n]
        label = f"{kind}={value}"
        try:
            fate, where, deduped = check_kill_point(url_for(n), workdir, kind, value)
        except AssertionError as exc:
            return label, "FAILED", str(exc), 0
        except Exception:  # e.g. a StoreError: report it with its kill point too
            return label, "FAILED", traceback.format_exc(), 0
        return label, fate, where, deduped

    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = list(pool.map(one, range(len(KILL_POINTS))))
    report = "\n".join(f"{label:10s} {fate:8s} {where}" for label, fate, where, _ in outcomes)
    print(report)
    failures = [f"kill point {lb}: {what}" for lb, fate, what, _ in outcomes if fate == "FAILED"]
    assert not failures, f"{len(failures)} kill point(s) failed:\n" + "\n\n".join(failures)
    # The "effect" kill points land after an effect committed and before its checkpoint
    # (the step works WORK_S = 20 ms more): at least one must have made the tool de-duplicate.
    assert sum(d for *_, d in outcomes) > 0, (
        f"no kill point made the resume run a step whose effect was committed:\n{report}"
    )
    kills = sum(fate == "killed" for _, fate, _, _ in outcomes)
    assert kills >= MIN_REAL_KILLS, f"only {kills} kill points killed a running process:\n{report}"


def test_crash_resume_sqlite(tmp_path: Path) -> None:
    # a fresh SQLite file per kill point
    crash_and_resume_everywhere(lambda n: f"sqlite:///{tmp_path}/runs{n}.db", tmp_path)


def test_crash_resume_redis(redis_store_url: str, tmp_path: Path) -> None:
    # one flushed Redis db; a fresh run id per kill point
    crash_and_resume_everywhere(lambda n: redis_store_url, tmp_path)
