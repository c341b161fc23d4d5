"""Opening an existing SQLite store (issue 18's D3 opens it again to resume a run): it takes no
write lock, and starts no checkpoint thread until the WAL needs one."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from batten import SqliteStore, ToolStep, Workflow, WorkflowContext
from batten.errors import StoreError


def _store_file(tmp_path: Path) -> Path:
    path = tmp_path / "runs.db"
    SqliteStore(str(path))  # creates the schema
    return path


def test_an_existing_store_opens_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    path = _store_file(tmp_path)
    # Another process: POSIX locks do not conflict within one process, so a holder here would
    # not block batten's connection at all.
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        began = time.monotonic()
        store = SqliteStore(str(path))  # must not wait for the lock (busy timeout: 5 s)
        opened_in = time.monotonic() - began
        assert store.list_runs() == []
        assert opened_in < 2.5, f"opening waited {opened_in:.1f}s for the write lock"
    finally:
        holder.kill()
        holder.communicate(timeout=30)  # reaps it and closes its pipes


_HOLD_LOCK = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.read()  # held until killed
    """
)


def test_a_file_that_is_not_a_batten_store_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema"):
        SqliteStore(str(path))


_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from batten import SqliteStore, ToolStep, Workflow, WorkflowContext

    def threads():
        names = []
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    names.append(f.read().strip())
            except OSError:
                pass
        return names

    def inc(context):
        return {"n": context["n"] + 1}

    store = SqliteStore(sys.argv[1])
    workflow = Workflow("w", "w").with_store(store)
    for i in range(3):
        workflow.add_step(ToolStep(f"s{i}", inc))
    result = asyncio.run(workflow.execute(WorkflowContext("w", variables={"n": 0})))
    assert result.context["n"] == 3, result
    print(sum(name.startswith("batten-sqlite") for name in threads()))
    """
)


def test_opening_and_a_small_run_start_no_checkpoint_thread(tmp_path: Path) -> None:
    path = _store_file(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "0", out.stdout + out.stderr


def test_runs_are_still_recorded_after_the_lazy_open(tmp_path: Path) -> None:
    import asyncio

    path = _store_file(tmp_path)

    def inc(context: dict[str, int]) -> dict[str, int]:
        return {"n": context["n"] + 1}

    workflow = Workflow("w", "w").with_store(SqliteStore(str(path)))
    workflow.add_step(ToolStep("a", inc))
    result = asyncio.run(workflow.execute(WorkflowContext("w", variables={"n": 0})))
    assert SqliteStore(str(path)).get_run(result.run_id).status == "completed"
