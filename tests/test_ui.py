"""The dashboard's JSON API (``batten.ui``) through Starlette's TestClient, against real SQLite
files, a real redis-server and a real PostgreSQL server: every endpoint, and the refusals (no
token, a non-approver, a fork from an unknown step, a non-loopback address without a token)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import batten
from batten.ui import DashboardConfigError, create_app
from starlette.testclient import TestClient
from ui_workflows import FLAKY, approval_workflow, flaky_workflow

TOKEN = "alice:s3cret"
AUTH = {"authorization": "Bearer s3cret"}


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The dashboard's store, per backend (issue 19: SQLite, Redis and PostgreSQL)."""
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "runs.db")
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_store_url"))
    return str(request.getfixturevalue("redis_store_url"))


@pytest.fixture(autouse=True)
def _flaky_fails() -> Iterator[None]:
    FLAKY["fail"], FLAKY["calls"] = True, []
    yield
    FLAKY["fail"] = True


def _client(url: str, **kw: Any) -> TestClient:
    wfs = {"reviewed": approval_workflow(kw.pop("approvers", None)), "flaky": flaky_workflow()}
    return TestClient(create_app(url, token=kw.pop("token", TOKEN), workflows=wfs, **kw))


def _wait_status(client: TestClient, run_id: str, status: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        doc = client.get(f"/api/runs/{run_id}").json()
        if doc["status"] == status:
            return doc
        assert time.monotonic() < deadline, f"run {run_id} stayed {doc['status']}, not {status}"
        time.sleep(0.05)


def _waiting_run(url: str, approvers: list[str] | None = None) -> str:
    result = asyncio.run(approval_workflow(approvers).execute(store=url))
    assert result.status == batten.WorkflowStatus.WAITING_APPROVAL
    return result.run_id


def _failed_run(url: str) -> str:
    result = asyncio.run(flaky_workflow().execute(store=url))
    assert result.status == batten.WorkflowStatus.FAILED
    return result.run_id


def test_runs_list_filters_and_paginates(url: str) -> None:
    ids = [_failed_run(url) for _ in range(3)] + [_waiting_run(url)]
    with _client(url) as c:
        page = c.get("/api/runs", params={"limit": 2}).json()
        assert [r["run_id"] for r in page["runs"]] == [ids[3], ids[2]]
        rest = c.get("/api/runs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        assert [r["run_id"] for r in rest["runs"]] == [ids[1], ids[0]]
        assert rest["next_cursor"] is None
        failed = c.get("/api/runs", params={"status": "failed"}).json()["runs"]
        assert {r["run_id"] for r in failed} == set(ids[:3])
        assert [r["run_id"] for r in c.get("/api/runs?workflow=reviewed").json()["runs"]] == [
            ids[3]
        ]
        assert [r["run_id"] for r in c.get(f"/api/runs?q={ids[1][:12]}").json()["runs"]] == [ids[1]]
        future = time.time() + 3600
        assert c.get(f"/api/runs?since={future}").json()["runs"] == []
        assert len(c.get(f"/api/runs?until={future}").json()["runs"]) == 4
        bad = c.get("/api/runs?limit=0")
        assert bad.status_code == 400 and "limit" in bad.json()["message"]


def test_run_and_history_show_steps_graph_and_errors(url: str) -> None:
    run_id = _failed_run(url)
    with _client(url) as c:
        doc = c.get(f"/api/runs/{run_id}").json()
        steps = {s["step_id"]: s for s in doc["steps"]}
        assert steps["fetch"]["status"] == "failed"
        assert steps["fetch"]["error_type"] == "ConnectionError"
        assert "upstream said no" in steps["fetch"]["error"]
        # The traceback text of the failure (issue 19), its raising frame and exception line.
        assert "in fetch" in steps["fetch"]["traceback"]
        assert steps["fetch"]["traceback"].rstrip().endswith("ConnectionError: upstream said no")
        assert steps["load"]["traceback"] is None
        assert steps["fetch"]["inputs"] == {"load": 41}
        assert steps["fetch"]["idempotency_key"] == f"{run_id}:fetch"
        assert steps["load"]["output"] == 41 and steps["load"]["attempts"] == 1
        assert 'data-step="fetch" data-status="failed"' in doc["graph_svg"]
        assert 'data-step="load" data-status="completed"' in doc["graph_svg"]
        assert doc["owner"] is None and doc["forked_from"] is None
        hist = c.get(f"/api/runs/{run_id}/history").json()["history"]
        assert [h["status"] for h in hist if h["step_id"] == "load"] == ["running", "completed"]
        missing = c.get("/api/runs/nope")
        assert missing.status_code == 404 and missing.json()["error"] == "RunNotFoundError"


def test_approve_records_the_token_name_and_the_run_completes(url: str) -> None:
    run_id = _waiting_run(url)
    with _client(url) as c:
        doc = c.get(f"/api/runs/{run_id}").json()
        assert doc["waiting"] == ["review"]
        r = c.post(f"/api/runs/{run_id}/approve", json={"step": "review", "comment": "lgtm"})
        assert r.status_code == 401  # no token
        r = c.post(
            f"/api/runs/{run_id}/approve",
            json={"step": "review", "comment": "lgtm"},
            headers={"authorization": "Bearer wrong"},
        )
        assert r.status_code == 401
        r = c.post(
            f"/api/runs/{run_id}/approve", json={"step": "review", "comment": "lgtm"}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        assert r.json()["by"] == "alice"
        done = _wait_status(c, run_id, "completed")
        decision = next(t for s in done["steps"] for t in s["timeline"] if t["kind"] == "decision")
        assert decision["by"] == "alice" and decision["comment"] == "lgtm"
        assert done["result"] == "published"


def test_a_token_cookie_set_by_query_authorises_later_requests(url: str) -> None:
    run_id = _waiting_run(url)
    with _client(url) as c:
        assert c.get("/?token=s3cret").status_code == 200
        r = c.post(f"/api/runs/{run_id}/reject", json={"step": "review", "comment": "no"})
        assert r.status_code == 200, r.text
        _wait_status(c, run_id, "failed")


def test_approval_by_someone_not_in_approvers_is_refused(url: str) -> None:
    run_id = _waiting_run(url, approvers=["bob"])
    with _client(url, approvers=["bob"]) as c:
        r = c.post(f"/api/runs/{run_id}/approve", json={"step": "review"}, headers=AUTH)
        assert r.status_code == 403
        assert r.json()["error"] == "ApprovalError" and "bob" in r.json()["message"]
        r = c.post(f"/api/runs/{run_id}/approve", json={}, headers=AUTH)
        assert r.status_code == 400 and "step" in r.json()["message"]
        assert c.get(f"/api/runs/{run_id}").json()["status"] == "waiting_approval"


def test_cancel_pause_and_resume(url: str) -> None:
    waiting = _waiting_run(url)
    failed = _failed_run(url)
    with _client(url) as c:
        assert c.post(f"/api/runs/{waiting}/pause", json={}, headers=AUTH).status_code == 200
        assert c.post(f"/api/runs/{waiting}/cancel", json={}, headers=AUTH).status_code == 200
        assert c.get(f"/api/runs/{waiting}").json()["status"] == "cancelled"
        again = c.post(f"/api/runs/{waiting}/cancel", json={}, headers=AUTH)
        assert again.status_code == 409 and again.json()["error"] == "RunEndedError"
        assert c.post(f"/api/runs/{waiting}/resume", json={}, headers=AUTH).status_code == 409
        FLAKY["fail"] = False
        assert c.post(f"/api/runs/{failed}/resume", json={}, headers=AUTH).status_code == 200
        _wait_status(c, failed, "completed")
        assert c.post(f"/api/runs/{failed}/pause", json={}).status_code == 401


def test_fork_reuses_earlier_outputs_and_links_its_origin(url: str) -> None:
    origin = _failed_run(url)
    FLAKY["fail"], FLAKY["calls"] = False, []
    with _client(url) as c:
        bad = c.post(f"/api/runs/{origin}/fork", json={"from_step": "nope"}, headers=AUTH)
        assert bad.status_code == 400
        assert bad.json()["error"] == "UnknownStepError" and "nope" in bad.json()["message"]
        r = c.post(f"/api/runs/{origin}/fork", json={"from_step": "fetch"}, headers=AUTH)
        assert r.status_code == 200, r.text
        new = r.json()["run_id"]
        doc = _wait_status(c, new, "completed")
        assert doc["forked_from"] == {"run_id": origin, "step": "fetch"}
        assert sorted(FLAKY["calls"]) == ["fetch", "report"]  # load and side were reused
        listed = c.get(f"/api/runs?q={new}").json()["runs"][0]
        assert listed["forked_from"]["run_id"] == origin


def test_start_a_registered_workflow_by_name(url: str) -> None:
    FLAKY["fail"] = False
    with _client(url) as c:
        assert "flaky" in c.get("/api/workflows").json()["workflows"]
        r = c.post("/api/workflows/flaky/runs", json={"inputs": {}}, headers=AUTH)
        assert r.status_code == 201, r.text
        _wait_status(c, r.json()["run_id"], "completed")
        r = c.post("/api/workflows/nope/runs", json={"inputs": {}}, headers=AUTH)
        assert r.status_code == 400 and "nope" in r.json()["message"]


def test_openapi_pages_and_static_files(tmp_path: Path) -> None:
    url = "sqlite:///" + str(tmp_path / "runs.db")
    with _client(url, token=None) as c:
        spec = c.get("/api/openapi.json").json()
        assert spec["openapi"].startswith("3.") and "/api/runs/{run_id}/fork" in spec["paths"]
        page = c.get("/").text
        assert "/static/app.js" in page and "http" not in page.split("<body", 1)[1]
        assert c.get("/static/app.js").status_code == 200
        assert c.get("/static/style.css").status_code == 200
        assert c.get("/static/../app.py").status_code == 404
        # Without a token, a cross-origin state change is refused (a page elsewhere posting).
        r = c.post("/api/runs/x/cancel", json={}, headers={"origin": "http://evil.example"})
        assert r.status_code == 403


def test_another_address_needs_a_token_and_then_reads_need_it(tmp_path: Path) -> None:
    url = "sqlite:///" + str(tmp_path / "runs.db")
    with pytest.raises(DashboardConfigError, match="token"):
        create_app(url, host="0.0.0.0")
    with pytest.raises(DashboardConfigError, match="trace_id"):
        create_app(url, trace_url="http://jaeger/trace/")
    with TestClient(create_app(url, host="0.0.0.0", token="s3cret")) as c:
        assert c.get("/api/runs").status_code == 401
        assert c.get("/api/runs", headers=AUTH).status_code == 200


def test_batten_run_waiting_for_approval_points_at_the_dashboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket
    import threading

    import uvicorn
    from batten.cli import main

    monkeypatch.chdir(tmp_path)
    Path("wf.yaml").write_text(
        "name: gated\nsteps:\n  - {id: gate, kind: approval, prompt: ok?}\n", encoding="utf-8"
    )
    url = "sqlite:///" + str(tmp_path / "runs.db")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("BATTEN_UI_URL", f"http://127.0.0.1:{port}")
    assert main(["run", "wf.yaml", "--store", url, "-q"]) == 3
    out = capsys.readouterr().out
    run_id = out.split()[1].rstrip(":")
    assert (
        f"in the browser: batten ui --store {url}, then open http://127.0.0.1:{port}/runs/" in out
    )
    srv = uvicorn.Server(
        uvicorn.Config(create_app(url), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not srv.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        assert main(["status", run_id, "--store", url]) == 3
        out = capsys.readouterr().out
        assert f"  in the browser: http://127.0.0.1:{port}/runs/{run_id}\n" in out
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_batten_ui_refuses_another_address_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from batten.cli import main

    url = "sqlite:///" + str(tmp_path / "runs.db")
    assert main(["ui", "--store", url, "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "DashboardConfigError" in err and "--token" in err


def test_start_a_workflow_file_by_name_and_continue_it_after_approval(tmp_path: Path) -> None:
    wf = tmp_path / "gated.yaml"
    wf.write_text(
        "name: gated\nsteps:\n  - {id: gate, kind: approval, prompt: ok?}\n", encoding="utf-8"
    )
    url = "sqlite:///" + str(tmp_path / "runs.db")
    with TestClient(create_app(url, token=TOKEN, workflows={"gated": str(wf)})) as c:
        r = c.post("/api/workflows/gated/runs", json={"inputs": {}}, headers=AUTH)
        assert r.status_code == 201, r.text
        run_id = r.json()["run_id"]
        _wait_status(c, run_id, "waiting_approval")
        # The run records its file, so a dashboard that was not told about it continues it.
    with TestClient(create_app(url, token=TOKEN)) as c:
        r = c.post(f"/api/runs/{run_id}/approve", json={"step": "gate"}, headers=AUTH)
        assert r.status_code == 200, r.text
        _wait_status(c, run_id, "completed")


def test_a_traced_run_links_to_the_trace_ui(tmp_path: Path) -> None:
    url = "sqlite:///" + str(tmp_path / "runs.db")
    store = batten.Store(url)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    store._native.create_run(
        "traced",
        "flaky",
        "Flaky fetch",
        "1.0.0",
        "failed",
        {
            "workflow_id": "flaky",
            "user_context": {},
            "variables": {},
            "metadata": {},
            "trace": {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        },
        time.time(),
    )
    app = create_app(url, trace_url="http://jaeger:16686/trace/{trace_id}")
    with TestClient(app) as c:
        doc = c.get("/api/runs/traced").json()
        assert doc["trace_id"] == trace_id
        assert doc["trace_url"] == f"http://jaeger:16686/trace/{trace_id}"


def test_resume_of_a_run_whose_lease_is_live_is_409_with_the_owner(tmp_path: Path) -> None:
    """The run executes in another live process (tests/lease_workflow.py): the dashboard's
    resume is refused (RunLeasedError) with that owner, and nothing runs twice."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import uuid

    import lease_workflow

    url = f"sqlite:///{tmp_path}/runs.db"
    log = tmp_path / "effects.log"
    run_id = "live-" + uuid.uuid4().hex[:8]
    script = Path(__file__).parent / "lease_workflow.py"
    argv = ["start", url, run_id, str(log), "3", "0.5", "30", "10"]
    proc = subprocess.Popen(
        [sys.executable, str(script), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and log.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None, "the run never started"
            time.sleep(0.02)
        wf = lease_workflow.build(url, 3, 0.5, 30.0, 10.0)
        with TestClient(create_app(url, token=TOKEN, workflows={"leased": wf})) as c:
            refused = c.post(f"/api/runs/{run_id}/resume", json={}, headers=AUTH)
            assert refused.status_code == 409, refused.text
            doc = refused.json()
            assert doc["error"] == "RunLeasedError"
            assert doc["owner"]["pid"] == proc.pid and doc["owner"]["host"] == socket.gethostname()
            assert 0 <= doc["owner"]["heartbeat_age"] < 15
            assert doc["owner"]["expires_at"] > time.time()
            assert f"pid {proc.pid}" in doc["message"]
            # The run's page shows the same owner, live.
            page = c.get(f"/api/runs/{run_id}").json()
            assert page["status"] == "running"
            assert page["owner"] == f"{socket.gethostname()} pid {proc.pid}"
            assert page["lease_expires_at"] > time.time() >= page["heartbeat_at"] - 1
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, (out, err)
        assert json.loads(out.strip().splitlines()[-1])["status"] == "completed"
    finally:
        proc.kill()
        proc.communicate()
    done = [ln.split() for ln in log.read_text().splitlines() if ln.startswith("done ")]
    assert sorted(key for _, key, _ in done) == sorted(f"{run_id}:s{i}" for i in (1, 2, 3))
    assert {int(pid) for _, _, pid in done} == {proc.pid} and proc.pid != os.getpid()
