"""The PostgreSQL store from Python (issue 17): URLs and their errors, bounded failures, and a
server stopped and restarted under a running run (``pg_ctl stop`` / ``start``). The shared
durable-runs suite runs against PostgreSQL through ``store_url`` (test_durable.py), the lease
acceptance tests through test_leases.py, runs moving between hosts in test_cross_host.py.
Needs a real PostgreSQL server (tests/pg_server.py); skipped where it cannot start."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import batten
import pytest
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
    assert time.monotonic() - started < 4
    assert "secret" not in str(caught.value) and "10.255.255.1" in str(caught.value)


def test_a_server_stopped_mid_run_fails_the_run_cleanly_and_it_resumes_after_restart(
    postgres_server: Any, postgres_store_url: str, tmp_path: Path
) -> None:
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
