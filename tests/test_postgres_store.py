"""The PostgreSQL store from Python (issue 17): URLs and their errors, bounded failures, and a
server stopped and restarted under a running run (``pg_ctl stop`` / ``start``). The shared
durable-runs suite runs against PostgreSQL through ``store_url`` (test_durable.py), the lease
acceptance tests through test_leases.py, runs moving between hosts in test_cross_host.py.
Needs a real PostgreSQL server (tests/pg_server.py); skipped where it cannot start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import batten
import pytest
from batten import ToolStep, Workflow, WorkflowContext
from test_leases import finish, lease_script, log_lines, wait_until


def test_a_postgres_url_opens_and_the_class_checks_its_scheme(postgres_store_url: str) -> None:
    store = batten.PostgresStore(postgres_store_url)
    assert store.url == postgres_store_url
    assert store.list_runs() == []
    with pytest.raises(batten.StoreURLError, match="postgresql://"):
        batten.PostgresStore("redis://127.0.0.1:6379/0")


def test_bad_postgres_urls_are_store_url_errors_naming_the_problem() -> None:
    with pytest.raises(batten.StoreURLError, match="statement_timeout"):
        batten.Store("postgresql://u:pw@127.0.0.1/db?statement_timeout=soon")
    with pytest.raises(batten.StoreURLError) as caught:
        batten.Store("postgresql://u:pw@127.0.0.1:notaport/db")
    assert "pw" not in str(caught.value)


def test_a_server_that_does_not_answer_is_unavailable_within_the_connect_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(batten.StoreUnavailableError) as caught:
        # A private address nothing answers on: the TCP connect hangs until the timeout.
        batten.Store("postgresql://u:secret@10.255.255.1:5432/db?connect_timeout=1")
    assert time.monotonic() - started < 10  # 1 s timeout; a hung connect lasts minutes
    assert "secret" not in str(caught.value) and "10.255.255.1" in str(caught.value)


def test_a_server_stopped_mid_run_fails_the_run_cleanly_and_it_resumes_after_restart(
    postgres_server: Any, postgres_store_url: str, tmp_path: Path
) -> None:
    if not postgres_server.restartable:
        pytest.skip("BATTEN_TEST_POSTGRES_URL: the tests do not stop a server they did not start")
    url = postgres_store_url + "?connect_timeout=1&statement_timeout=2"
    log = tmp_path / "effects.log"
    run_id = "restart-" + uuid.uuid4().hex[:8]
    opts: dict[str, Any] = {"steps": 6, "work": 0.5, "lease": 5.0, "heartbeat": 1.0}
    first = lease_script("start", url, run_id, log, **opts)
    try:
        wait_until(lambda: any(k == "done" and s == "s2" for k, s, _ in log_lines(log)), what="s2")
        postgres_server.stop()
        started = time.monotonic()
        try:
            out, err = first.communicate(timeout=30)
        finally:
            postgres_server.start()
    finally:
        first.kill()
        first.communicate()
    # The run's process did not hang on the dead server: it failed its checkpoint and ended.
    assert time.monotonic() - started < 20
    assert first.returncode != 0, (out, err)
    assert "StoreUnavailableError" in err or "cannot reach the store" in err, err
    before = {s for k, s, _ in log_lines(log) if k == "done"}
    resumed = lease_script("resume-wait", url, run_id, log, **opts)
    code, doc, err = finish(resumed)
    assert code == 0 and doc["status"] == "completed", (doc, err)
    done = Counter(s for k, s, _ in log_lines(log) if k == "done")
    assert set(done) == {f"s{i}" for i in range(1, 7)}, done
    # A step done before the stop whose checkpoint was written is not run again; at most the
    # step whose checkpoint failed runs twice.
    assert sum(n - 1 for n in done.values()) <= 1, done
    assert {"s1"} <= before
    info = batten.get_workflow_status(run_id, store=url)
    assert info.status == batten.WorkflowStatus.COMPLETED


def test_cancel_stops_a_running_postgres_run_every_time(postgres_store_url: str) -> None:
    """Cancel reaches the executor through the 0.1 s poll. Twenty in a row: a cancel once
    deadlocked (the store's driver logged through Python while the cancelling thread held the
    GIL waiting for that store call); the pytest timeout bounds a hang."""
    import measure_store_costs

    measure_store_costs.CANCELS = 20
    samples = sorted(measure_store_costs.cancel_latency(postgres_store_url))
    # Poll every 0.1 s plus one store round trip; a wide margin for a loaded machine.
    assert samples[len(samples) // 2] < 0.5, samples


# Pushed controls (LISTEN/NOTIFY). The executor's poll is made an hour long, so only the push
# can deliver a control within the bound: these tests fail if the NOTIFY path is broken.
PUSH_BOUND_S = 10.0  # wide for a loaded machine, and still a 360th of the hour-long poll


def _in_another_process(url: str, code: str) -> float:
    """Runs ``code`` (with ``batten`` imported and ``url`` bound) in a new Python process;
    returns the ``time.monotonic()`` at which that process had written (printed just before it
    exits; CLOCK_MONOTONIC is shared by the processes of one machine)."""
    script = f"import sys, time, batten\nurl = {url!r}\n{code}\nprint(time.monotonic())\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip().splitlines()[-1])


def _running_run(
    url: str, monkeypatch: pytest.MonkeyPatch, control: Callable[[str], str]
) -> tuple[batten.WorkflowResult, float]:
    """Starts a run of 3,000 chained 10 ms async steps (over 30 s) on ``url``, writes
    ``control(run_id)`` (Python code) from another process once the steps run, and returns the
    run's result and the seconds from that write to ``execute`` returning."""
    from batten._runtime import durable

    monkeypatch.setattr(durable, "POLL_INTERVAL", 3600.0)
    started = threading.Event()

    async def tick(context: Any) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(0.01)
        return {}

    wf = Workflow("push", "push").with_store(batten.Store(url))
    for i in range(3000):
        wf.add_step(ToolStep(f"t{i}", tick))
    run_id = "push-" + uuid.uuid4().hex[:8]
    written: list[float] = []

    def writer() -> None:
        if started.wait(20):
            time.sleep(0.3)  # past the listener's first LISTEN
            written.append(_in_another_process(url, control(run_id)))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = asyncio.run(
            asyncio.wait_for(wf.execute(WorkflowContext("push"), run_id=run_id), 25)
        )
        ended = time.monotonic()
    finally:
        thread.join(60)
    assert written, "the steps never started"
    return result, ended - written[0]


def test_a_cancel_from_another_process_reaches_a_running_run_by_notify(
    postgres_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, latency = _running_run(
        postgres_store_url, monkeypatch, lambda run_id: f"batten.cancel({run_id!r}, store=url)"
    )
    assert result.status == batten.WorkflowStatus.CANCELLED, (result.status, result.error)
    assert latency < PUSH_BOUND_S, latency


def test_a_pause_from_another_process_reaches_a_running_run_by_notify(
    postgres_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, latency = _running_run(
        postgres_store_url, monkeypatch, lambda run_id: f"batten.pause({run_id!r}, store=url)"
    )
    assert result.status == batten.WorkflowStatus.PAUSED, (result.status, result.error)
    assert latency < PUSH_BOUND_S, latency


def test_a_decision_or_control_from_another_process_wakes_the_store_watch(
    postgres_store_url: str,
) -> None:
    """``_core.Store.watch`` at the store level: NOTIFY of ``decide`` and ``set_control``
    written by another process, for the watched run only, and nothing after ``close``."""
    store = batten.Store(postgres_store_url)
    native = store._native
    ids = ["watched-" + uuid.uuid4().hex[:8], "other-" + uuid.uuid4().hex[:8]]
    for run_id in ids:
        native.create_run(run_id, "w", "w", "1", "waiting_approval", {}, time.time())
    woken = threading.Event()
    watch = native.watch(ids[0], woken.set)
    assert watch is not None
    # The listening connection's first LISTEN wakes every watcher once ("look now").
    assert woken.wait(10)
    time.sleep(0.2)
    woken.clear()
    written = _in_another_process(
        postgres_store_url, f"batten.Store(url)._native.decide({ids[0]!r}, 'review', True)"
    )
    assert woken.wait(10)
    assert time.monotonic() - written < PUSH_BOUND_S
    woken.clear()
    _in_another_process(
        postgres_store_url, f"batten.Store(url)._native.set_control({ids[1]!r}, 'cancel')"
    )
    assert not woken.wait(0.5), "woken by another run's control"
    _in_another_process(
        postgres_store_url, f"batten.Store(url)._native.set_control({ids[0]!r}, 'pause')"
    )
    assert woken.wait(10)
    watch.close()
    woken.clear()
    _in_another_process(
        postgres_store_url, f"batten.Store(url)._native.set_control({ids[0]!r}, 'cancel')"
    )
    assert not woken.wait(0.5), "woken after close"


def test_the_watch_listens_again_after_the_server_restarts(
    postgres_server: Any, postgres_store_url: str
) -> None:
    if not postgres_server.restartable:
        pytest.skip("BATTEN_TEST_POSTGRES_URL: the tests do not stop a server they did not start")
    store = batten.Store(postgres_store_url + "?connect_timeout=1&statement_timeout=2")
    native = store._native
    run_id = "relisten-" + uuid.uuid4().hex[:8]
    native.create_run(run_id, "w", "w", "1", "running", {}, time.time())
    woken = threading.Event()
    watch = native.watch(run_id, woken.set)
    assert woken.wait(10)
    postgres_server.stop()
    woken.clear()
    postgres_server.start()
    # Listening again, it wakes its watchers for what may have been written meanwhile.
    assert woken.wait(20), "no wake after the restart: the listener did not reconnect"
    time.sleep(0.2)
    woken.clear()
    _in_another_process(
        postgres_store_url, f"batten.Store(url)._native.set_control({run_id!r}, 'cancel')"
    )
    assert woken.wait(10), "the NOTIFY after the restart did not arrive"
    watch.close()


def test_stores_without_a_push_channel_watch_nothing(tmp_path: Path) -> None:
    for url in ("memory://", "sqlite:///" + str(tmp_path / "runs.db")):
        assert batten.Store(url)._native.watch("r", lambda: None) is None
