"""Durable runs: checkpoints, resume, idempotency keys, serializers, pause and cancel, status and
history, caching, and bad input. Tests taking ``store_url`` form the shared store suite and run
against the memory, SQLite, Redis and PostgreSQL stores (a real redis-server and PostgreSQL
server, see conftest.py)."""

from __future__ import annotations

import asyncio
import os
import pickle
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any

import batten
import pytest
from batten import (
    AgentStep,
    ParallelStep,
    StepStatus,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowStatus,
)


@pytest.fixture
def store(store_url: str) -> batten.Store:
    """The store under test, opened once (a memory store lives as long as its object)."""
    return batten.Store(store_url)


def _chain(wf_id: str, calls: list[str], n: int = 3, store: Any = None) -> Workflow:
    wf = Workflow(wf_id)
    if store is not None:
        wf.with_store(store)
    for i in range(n):

        def step(context: Any, i: int = i) -> dict[str, int]:
            calls.append(f"s{i}")
            return {f"v{i}": context.variables.get(f"v{i - 1}", 0) + 1}

        wf.add_step(ToolStep(f"s{i}", step))
    return wf


# ---- the shared store suite -------------------------------------------------------------


def test_a_durable_run_records_the_run_and_every_status_change(store: batten.Store) -> None:
    calls: list[str] = []
    wf = _chain("chain", calls, store=store)
    ctx = WorkflowContext("chain", {"user": "ada"}, {"seed": 1})
    result = asyncio.run(wf.execute(ctx))

    assert result.status == WorkflowStatus.COMPLETED
    info = batten.get_workflow_status(result.run_id, store=store)
    assert info.status == WorkflowStatus.COMPLETED
    assert info.workflow_id == "chain" and info.version == "1.0.0"
    assert info.input["variables"] == {"seed": 1}
    assert info.input["user_context"] == {"user": "ada"}
    assert info.result == {"v2": 3}
    history = batten.run_history(result.run_id, store=store)
    assert [(h.step_id, h.status) for h in history] == [
        ("s0", StepStatus.RUNNING),
        ("s0", StepStatus.COMPLETED),
        ("s1", StepStatus.RUNNING),
        ("s1", StepStatus.COMPLETED),
        ("s2", StepStatus.RUNNING),
        ("s2", StepStatus.COMPLETED),
    ]
    assert [h.seq for h in history] == [1, 2, 3, 4, 5, 6]
    assert history[1].output == {"v0": 1} and history[1].duration_ms is not None


def test_resume_restores_completed_steps_and_runs_the_rest(store: batten.Store) -> None:
    calls: list[str] = []
    gate = {"open": False}
    wf = Workflow("gated").with_store(store)
    wf.add_step(ToolStep("a", lambda: calls.append("a") or {"x": 20}))
    wf.add_step(batten.HumanApprovalStep("gate", "go?"))

    def b(context: Any) -> int:
        calls.append("b")
        assert gate["open"]
        return int(context.variables["x"]) + int(context.results["a"]["x"]) + 2

    wf.add_step(ToolStep("b", b))
    first = asyncio.run(wf.execute())
    assert first.status == WorkflowStatus.WAITING_APPROVAL
    assert first.step("gate").status == StepStatus.WAITING_APPROVAL
    assert first.step("b").status == StepStatus.BLOCKED
    assert first.errors == []
    assert batten.get_workflow_status(first.run_id, store=store).status == (
        WorkflowStatus.WAITING_APPROVAL
    )

    gate["open"] = True
    batten.approve(first.run_id, "gate", by="ops", comment="fine", store=store)
    second = asyncio.run(wf.resume(first.run_id))
    assert second.status == WorkflowStatus.COMPLETED
    assert second.final_output == 42
    assert calls == ["a", "b"], "a completed before: restored, not run again"
    assert second.step("a").metadata == {"restored": True}
    assert second.step("gate").output["approved"] is True
    assert second.step("gate").output["by"] == "ops"
    assert second.context.variables["x"] == 20, "restored outputs merge into the state"

    again = asyncio.run(wf.resume(first.run_id))
    assert again.status == WorkflowStatus.COMPLETED and again.final_output == 42
    assert calls == ["a", "b"], "resuming a finished run returns its result"


def test_parallel_approvals_are_decided_in_any_order(store: batten.Store) -> None:
    wf = Workflow("two-gates").with_store(store)
    wf.add_step(ToolStep("start", lambda: 1))
    wf.add_step(batten.HumanApprovalStep("legal", "legal ok?", approvers=["lee"]), ["start"])
    wf.add_step(batten.HumanApprovalStep("money", "budget ok?"), ["start"])
    wf.add_step(ToolStep("ship", lambda context: sorted(context.results)), ["legal", "money"])
    r = asyncio.run(wf.execute())
    assert r.status == WorkflowStatus.WAITING_APPROVAL
    assert {s.step_id for s in r.steps if s.status == StepStatus.WAITING_APPROVAL} == {
        "legal",
        "money",
    }

    batten.approve(r.run_id, "money", store=store)
    r2 = asyncio.run(wf.resume(r.run_id))
    assert r2.status == WorkflowStatus.WAITING_APPROVAL
    assert r2.step("money").status == StepStatus.COMPLETED
    assert r2.step("legal").status == StepStatus.WAITING_APPROVAL

    with pytest.raises(batten.ApprovalError, match="lee"):
        batten.approve(r.run_id, "legal", by="mallory", store=store)
    batten.approve(r.run_id, "legal", by="lee", store=store)
    with pytest.raises(batten.ApprovalError, match="already has a decision"):
        batten.approve(r.run_id, "legal", by="lee", store=store)
    r3 = asyncio.run(wf.resume(r.run_id))
    assert r3.status == WorkflowStatus.COMPLETED
    assert r3.final_output == ["legal", "money", "start"]
    history = batten.run_history(r.run_id, store=store)
    decisions = [h.detail for h in history if h.detail and h.detail.get("decision")]
    assert [(d["by"], d["approved"]) for d in decisions] == [(None, True), ("lee", True)]


def test_a_rejection_fails_the_step_so_fallbacks_and_compensation_apply(
    store: batten.Store,
) -> None:
    undone: list[str] = []
    wf = Workflow("reject").with_store(store)
    wf.add_step(
        ToolStep("book", lambda: "booked").with_compensation(
            ToolStep("unbook", lambda: undone.append("unbook"))
        )
    )
    wf.add_step(batten.HumanApprovalStep("sign", "sign off?"))
    r = asyncio.run(wf.execute())
    batten.reject(r.run_id, "sign", by="boss", comment="too pricey", store=store)
    r2 = asyncio.run(wf.resume(r.run_id))
    assert r2.step("sign").status == StepStatus.FAILED
    assert r2.step("sign").error_type == "ApprovalRejectedError"
    assert "too pricey" in (r2.step("sign").error or "")
    assert r2.status == WorkflowStatus.COMPENSATED
    assert undone == ["unbook"]

    wf2 = Workflow("reject-fallback").with_store(store)
    wf2.add_step(
        batten.HumanApprovalStep("sign", "sign off?").with_fallback(
            ToolStep("auto", lambda: "auto-approved")
        )
    )
    r = asyncio.run(wf2.execute())
    assert r.status == WorkflowStatus.WAITING_APPROVAL, "waiting is not a failure to recover"
    batten.reject(r.run_id, "sign", store=store)
    r2 = asyncio.run(wf2.resume(r.run_id))
    assert r2.status == WorkflowStatus.COMPLETED
    assert r2.final_output == "auto-approved"


def test_an_approval_that_times_out_ends_the_step_timeout(store: batten.Store) -> None:
    wf = Workflow("late").with_store(store)
    wf.add_step(batten.HumanApprovalStep("ok", "ok?").with_timeout(0.2))
    r = asyncio.run(wf.execute())
    assert r.status == WorkflowStatus.WAITING_APPROVAL
    time.sleep(0.3)
    with pytest.raises(batten.ApprovalError, match="timed out"):
        batten.approve(r.run_id, "ok", store=store)
    r2 = asyncio.run(wf.resume(r.run_id))
    assert r2.step("ok").status == StepStatus.TIMEOUT
    assert r2.status == WorkflowStatus.FAILED


def test_a_long_steps_start_is_stored_while_it_runs(store: batten.Store) -> None:
    """A step's start is written lazily (the next checkpoint carries it), but within a bounded
    delay by the process's ticker thread when no checkpoint comes: after many short runs armed
    and cancelled that deadline, a step that waits shows as running in the store while it waits."""
    short = Workflow("short").with_store(store)
    short.add_step(ToolStep("a", lambda context: {"a": 1}))
    seen: list[str] = []

    async def waits(context: Any) -> dict[str, bool]:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            history = store.history("long")
            if any(h.step_id == "w" and h.status == StepStatus.RUNNING for h in history):
                seen.append("running")
                break
            await asyncio.sleep(0.01)
        return {"waited": True}

    long = Workflow("long").with_store(store)
    long.add_step(ToolStep("w", waits))

    async def main() -> WorkflowStatus:
        for _ in range(50):
            assert (await short.execute()).status == WorkflowStatus.COMPLETED
        return (await long.execute(run_id="long")).status

    assert asyncio.run(asyncio.wait_for(main(), 60.0)) == WorkflowStatus.COMPLETED
    assert seen == ["running"]


def test_pause_lets_running_steps_finish_and_resume_continues(store: batten.Store) -> None:
    ran: list[str] = []

    async def slow(context: Any) -> str:
        await asyncio.sleep(0.3)
        ran.append(context.step_id)
        return context.step_id

    wf = Workflow("pausable").with_store(store)
    for i in range(3):
        wf.add_step(ToolStep(f"s{i}", slow))

    async def main() -> Any:
        task = asyncio.create_task(wf.execute(run_id="pause-me"))
        await asyncio.sleep(0.1)
        batten.pause("pause-me", store=store)
        return await task

    r = asyncio.run(main())
    assert r.status == WorkflowStatus.PAUSED
    assert r.step("s0").status == StepStatus.COMPLETED, "the running step finished"
    assert ran == ["s0"]
    assert batten.get_workflow_status("pause-me", store=store).status == WorkflowStatus.PAUSED
    assert [i.run_id for i in batten.list_runs(store=store, status="paused")] == ["pause-me"]

    r2 = asyncio.run(wf.resume("pause-me"))
    assert r2.status == WorkflowStatus.COMPLETED
    assert ran == ["s0", "s1", "s2"]


def test_cancel_stops_running_steps(store: batten.Store) -> None:
    cleaned: list[str] = []

    started_long = threading.Event()

    async def long(context: Any) -> None:
        started_long.set()
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append(context.step_id)

    wf = Workflow("cancellable").with_store(store)
    wf.add_step(ToolStep("long", long))
    wf.add_step(ToolStep("after", lambda: "never"))

    async def main() -> Any:
        task = asyncio.create_task(wf.execute(run_id="cancel-me"))
        # Cancel once "long" is running (a fixed sleep might cancel before it started).
        deadline = time.monotonic() + 30
        while not started_long.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        batten.cancel("cancel-me", store=store)
        return await asyncio.wait_for(task, 10)

    started = time.monotonic()
    r = asyncio.run(main())
    assert time.monotonic() - started < 15  # not cancelled, "long" would sleep 30 s
    assert r.status == WorkflowStatus.CANCELLED
    assert cleaned == ["long"]
    assert batten.get_workflow_status("cancel-me", store=store).status == WorkflowStatus.CANCELLED
    again = asyncio.run(wf.resume("cancel-me"))
    assert again.status == WorkflowStatus.CANCELLED


def test_step_caching_reuses_outputs_within_the_ttl(store: batten.Store) -> None:
    calls: list[str] = []

    def fetch(context: Any) -> dict[str, Any]:
        calls.append(context.variables["city"])
        return {"forecast": f"sun in {context.variables['city']}"}

    step = ToolStep("fetch", fetch).with_cache(ttl=0.5, key=lambda c: c.variables["city"])
    wf = Workflow("cached").with_store(store)
    wf.add_step(step)

    def run(city: str) -> Any:
        return asyncio.run(wf.execute(WorkflowContext("cached", variables={"city": city})))

    first = run("Oslo")
    second = run("Oslo")
    third = run("Rome")
    assert calls == ["Oslo", "Rome"]
    assert second.step("fetch").metadata == {"cached": True}
    assert second.final_output == first.final_output == {"forecast": "sun in Oslo"}
    assert "cached" not in third.step("fetch").metadata
    time.sleep(0.6)
    run("Oslo")
    assert calls == ["Oslo", "Rome", "Oslo"], "expired after the ttl"


def test_register_records_the_dag_and_execute_writes_step_statuses(store: batten.Store) -> None:
    @batten.agent(name="durable_researcher")
    def researcher(task: str) -> str:
        return f"notes on {task}"

    dag = (
        batten.WorkflowBuilder()
        .step("research", "durable_researcher", "tides")
        .step("report", "durable_researcher", "{research.result}", depends_on=["research"])
        .build(title="Tides")
    )
    wid = asyncio.run(dag.register(store))
    assert wid == dag.workflow_id
    assert store._native.get_workflow(wid)["steps"] == [
        {"step_id": "research", "agent": "durable_researcher", "depends_on": []},
        {"step_id": "report", "agent": "durable_researcher", "depends_on": ["research"]},
    ]
    results = asyncio.run(dag.execute())
    assert [r["status"] for r in results] == ["success", "success"]
    runs = batten.list_runs(store=store, workflow_id=wid)
    assert len(runs) == 1 and runs[0].status == WorkflowStatus.COMPLETED
    statuses = [(h.step_id, h.status) for h in batten.run_history(runs[0].run_id, store=store)]
    assert statuses[-1] == ("report", StepStatus.COMPLETED)


def test_engine_with_a_store_resumes_by_run_id(store: batten.Store) -> None:
    engine = batten.WorkflowEngine(store=store)
    wf = Workflow("eng")
    wf.add_step(ToolStep("a", lambda: 1))
    wf.add_step(batten.HumanApprovalStep("ok", "ok?"))
    wf.add_step(ToolStep("b", lambda context: context.results["a"] + 1))
    r = asyncio.run(engine.execute_workflow(wf))
    assert r.status == WorkflowStatus.WAITING_APPROVAL
    assert engine.get_workflow_status(r.run_id)["status"] == WorkflowStatus.WAITING_APPROVAL
    batten.approve(r.run_id, "ok", store=store)
    r2 = asyncio.run(engine.resume(r.run_id))
    assert r2.status == WorkflowStatus.COMPLETED and r2.final_output == 2

    other = batten.WorkflowEngine(store=store)  # a fresh engine knows the run from the store
    assert other.get_workflow_status(r.run_id)["status"] == WorkflowStatus.COMPLETED


def test_nested_steps_are_checkpointed_under_their_parent(store: batten.Store) -> None:
    keys: list[str] = []

    def branch(context: Any) -> str:
        keys.append(context.idempotency_key)
        return context.step_id

    par = ParallelStep("fan", [ToolStep("x", branch), ToolStep("y", branch)])
    wf = Workflow("nested").with_store(store)
    wf.add_step(par)
    wf.add_step(batten.HumanApprovalStep("ok", "ok?"))
    r = asyncio.run(wf.execute())
    assert sorted(keys) == [f"{r.run_id}:fan/x", f"{r.run_id}:fan/y"]
    paths = {h.step_id for h in batten.run_history(r.run_id, store=store)}
    assert {"fan", "fan/x", "fan/y", "ok"} <= paths
    batten.approve(r.run_id, "ok", store=store)
    r2 = asyncio.run(wf.resume(r.run_id))
    assert r2.status == WorkflowStatus.COMPLETED
    assert r2.step("fan").output == ["x", "y"]
    assert len(keys) == 2, "the completed composite was restored whole"


# ---- outputs and serializers ------------------------------------------------------------


class Point:
    def __init__(self, x: int) -> None:
        self.x = x


def test_a_non_json_output_fails_the_step_naming_it_and_the_type(tmp_path: Any) -> None:
    wf = Workflow("nojson").with_store(batten.SqliteStore(tmp_path / "r.db"))
    wf.add_step(ToolStep("make", lambda: Point(1)))
    wf.add_step(ToolStep("use", lambda: "never"))
    r = asyncio.run(wf.execute())
    assert r.status == WorkflowStatus.FAILED
    assert r.step("make").error_type == "TypeError"
    assert "step 'make'" in (r.step("make").error or "")
    assert "Point" in (r.step("make").error or "")
    assert r.step("make").attempts == 1, "not retried: it would fail the same way"
    assert r.step("use").status == StepStatus.BLOCKED


def test_a_serializer_stores_and_restores_other_outputs(tmp_path: Any) -> None:
    store = batten.SqliteStore(tmp_path / "r.db")
    made: list[int] = []
    wf = Workflow("pickled").with_store(store, serializer=pickle)
    wf.add_step(ToolStep("make", lambda: made.append(1) or Point(7)))
    wf.add_step(batten.HumanApprovalStep("ok", "ok?"))
    wf.add_step(ToolStep("use", lambda context: context.results["make"].x * 6))
    r = asyncio.run(wf.execute())
    batten.approve(r.run_id, "ok", store=store)
    r2 = asyncio.run(wf.resume(r.run_id))
    assert r2.final_output == 42 and made == [1]
    assert isinstance(r2.step("make").output, Point)


def test_batch_durability_writes_everything_by_the_end(tmp_path: Any) -> None:
    store = batten.SqliteStore(tmp_path / "r.db")
    calls: list[str] = []
    wf = _chain("batched", calls, n=300)
    wf.with_store(store, durability="batch")
    r = asyncio.run(wf.execute())
    assert r.status == WorkflowStatus.COMPLETED
    history = store.history(r.run_id)
    assert len(history) == 600
    assert history[-1].output == {"v299": 300}


def test_the_store_grows_linearly_with_the_work(tmp_path: Any) -> None:
    path = tmp_path / "r.db"
    store = batten.SqliteStore(path)
    wf = _chain("big", [], n=1000).with_store(store)
    r = asyncio.run(wf.execute())
    assert r.status == WorkflowStatus.COMPLETED
    del store
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (page,) = db.execute("PRAGMA page_size").fetchone()
    size = pages * page
    # 2,000 events with a one-key dict each: ~100-200 bytes a row. The whole state again per
    # step (1,000 growing dicts) would be ~1,000 x 1,000 x 12 bytes = 12 MB.
    assert size < 2000 * 300 + 64 * 1024, size


# ---- across processes -------------------------------------------------------------------

_PAUSER = """
import sys, time, batten
url, run_id, what = sys.argv[1:4]
store = batten.Store(url)
deadline = time.time() + 20
while time.time() < deadline:
    try:
        store.get_run(run_id)
        break
    except batten.RunNotFoundError:
        time.sleep(0.02)
time.sleep(0.3)
getattr(batten, what)(run_id, store=store)
"""


@pytest.mark.parametrize("what", ["pause", "cancel"])
def test_pause_and_cancel_from_another_process_are_honoured(tmp_path: Any, what: str) -> None:
    url = "sqlite:///" + str(tmp_path / "r.db")
    store = batten.Store(url)
    ran: list[str] = []

    async def slow(context: Any) -> str:
        await asyncio.sleep(0.25)
        ran.append(context.step_id)
        return context.step_id

    wf = Workflow("remote").with_store(store)
    for i in range(12):
        wf.add_step(ToolStep(f"s{i}", slow))
    proc = subprocess.Popen([sys.executable, "-c", _PAUSER, url, "r1", what])
    r = asyncio.run(wf.execute(run_id="r1"))
    assert proc.wait(timeout=30) == 0
    want = WorkflowStatus.PAUSED if what == "pause" else WorkflowStatus.CANCELLED
    assert r.status == want
    assert 0 < len(ran) < 12
    assert batten.Store(url).get_run("r1").status == want


def test_another_process_sees_step_progress(tmp_path: Any) -> None:
    url = "sqlite:///" + str(tmp_path / "r.db")
    seen: list[list[str]] = []
    reader = batten.Store(url)

    def watch(context: Any) -> None:
        # What another process reading the store sees while this step runs.
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, batten; s = batten.Store(sys.argv[1]); "
                "print(','.join(f'{h.step_id}={h.status}' for h in s.history(sys.argv[2])))",
                url,
                context.run_id,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        seen.append(out.stdout.strip().split(","))

    wf = Workflow("progress").with_store(reader)
    wf.add_step(ToolStep("first", lambda: 1))
    wf.add_step(ToolStep("watch", watch))
    asyncio.run(wf.execute())
    assert seen == [["first=running", "first=completed", "watch=running"]]


# ---- bad input --------------------------------------------------------------------------


def test_an_unknown_store_scheme_is_a_clear_error() -> None:
    with pytest.raises(batten.StoreURLError, match=r"'mysql'.*postgresql://"):
        batten.Store("mysql://localhost/db")
    with pytest.raises(batten.StoreURLError):
        Workflow("x").with_store("runs.db")
    with pytest.raises(TypeError, match=r"batten\.Store or a URL"):
        Workflow("x").with_store(42)


def test_an_unreachable_redis_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(batten.StoreUnavailableError, match=r"127\.0\.0\.1:1"):
        batten.Store("redis://127.0.0.1:1/0")
    assert time.monotonic() - started < 5


def test_an_unknown_run_id_is_a_clear_error(store: batten.Store) -> None:
    wf = _chain("c", [], store=store)
    with pytest.raises(batten.RunNotFoundError, match="nope"):
        asyncio.run(wf.resume("nope"))
    with pytest.raises(batten.RunNotFoundError):
        batten.approve("nope", "x", store=store)
    with pytest.raises(batten.RunNotFoundError):
        batten.get_workflow_status("nope", store=store)
    with pytest.raises(KeyError):  # RunNotFoundError is a KeyError too
        batten.pause("nope", store=store)


def test_approving_a_step_that_is_not_waiting_is_refused(store: batten.Store) -> None:
    wf = _chain("c", [], store=store)
    r = asyncio.run(wf.execute())
    with pytest.raises(batten.ApprovalError, match="not waiting"):
        batten.approve(r.run_id, "s1", store=store)
    with pytest.raises(batten.ApprovalError, match="not waiting"):
        batten.reject(r.run_id, "no-such-step", store=store)


@pytest.mark.parametrize("control", ["pause", "cancel"])
def test_pausing_or_cancelling_a_run_that_has_ended_is_refused_and_records_nothing(
    store: batten.Store, control: str
) -> None:
    """A cancel request left on a failed run made its later ``resume(retry_failed=True)`` end
    at once with the old failure instead of running the failed step again."""
    broken = [True]

    def flaky() -> str:
        if broken[0]:
            raise ValueError("still broken")
        return "fixed"

    wf = Workflow("flaky").with_store(store)
    wf.add_step(ToolStep("s", flaky))
    failed = asyncio.run(wf.execute())
    assert failed.status == WorkflowStatus.FAILED
    with pytest.raises(batten.RunEndedError, match="is failed: it has ended") as info:
        getattr(batten, control)(failed.run_id, store=store)
    assert (info.value.run_id, info.value.status) == (failed.run_id, "failed")
    assert store._native.control(failed.run_id) is None
    broken[0] = False
    again = asyncio.run(wf.resume(failed.run_id, retry_failed=True))
    assert again.status == WorkflowStatus.COMPLETED
    assert again.final_output == "fixed"
    with pytest.raises(batten.RunEndedError, match="is completed"):
        getattr(batten, control)(failed.run_id, store=store)


def test_a_run_id_already_in_the_store_is_refused(store: batten.Store) -> None:
    wf = _chain("c", [], store=store)
    asyncio.run(wf.execute(run_id="same"))
    with pytest.raises(batten.StoreError, match="same"):
        asyncio.run(wf.execute(run_id="same"))
    assert batten.get_workflow_status("same", store=store).status == WorkflowStatus.COMPLETED


def test_resuming_with_another_workflow_is_refused(store: batten.Store) -> None:
    r = asyncio.run(_chain("c", [], store=store).execute())
    with pytest.raises(batten.WorkflowDefinitionError, match="belongs to workflow 'c'"):
        asyncio.run(_chain("d", [], store=store).resume(r.run_id))


def test_resuming_with_another_version_of_the_workflow_is_refused(store: batten.Store) -> None:
    r = asyncio.run(_chain("c", [], store=store).execute())
    newer = _chain("c", [], store=store)
    newer.version = "2.0.0"
    with pytest.raises(batten.WorkflowDefinitionError, match=r"version '1\.0\.0'"):
        asyncio.run(newer.resume(r.run_id))


def test_an_approval_step_without_a_store_fails_naming_the_step() -> None:
    wf = Workflow("nostore")
    wf.add_step(batten.HumanApprovalStep("ok", "ok?"))
    r = asyncio.run(wf.execute())
    assert r.status == WorkflowStatus.FAILED
    assert r.step("ok").error_type == "WorkflowDefinitionError"
    assert "step 'ok'" in (r.step("ok").error or "") and "store" in (r.step("ok").error or "")


def test_a_store_of_another_schema_version_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "r.db"
    batten.SqliteStore(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(batten.SchemaVersionError, match="99"):
        batten.SqliteStore(path)


#: A SQLite store as batten wrote schema version 2 (runs with AUTOINCREMENT and two created_at
#: indexes): run "old" of the 3-step chain "c" interrupted after s0 (its process died holding no
#: lease), run "done" of it completed.
SCHEMA_2_FILE = """
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '2');
CREATE TABLE runs (
    key INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE,
    workflow_id TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, input TEXT NOT NULL, error TEXT,
    result TEXT, lease_token INTEGER NOT NULL DEFAULT 0, lease_owner TEXT,
    lease_heartbeat REAL, lease_expires REAL
);
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_workflow ON runs (workflow_id, created_at);
CREATE TABLE events (
    id INTEGER PRIMARY KEY, step_id TEXT NOT NULL, status TEXT NOT NULL,
    attempt INTEGER NOT NULL, at REAL NOT NULL, duration_ms REAL, error_type TEXT, error TEXT,
    output TEXT, delta TEXT, detail TEXT
);
CREATE VIEW run_events AS
    SELECT runs.run_id AS run_id, events.id & 0xFFFFFFFF AS seq, events.*
    FROM events JOIN runs ON runs.key = events.id >> 32;
CREATE TABLE controls (run_id TEXT PRIMARY KEY NOT NULL, control TEXT NOT NULL);
CREATE TABLE decisions (
    run_id TEXT NOT NULL, step_id TEXT NOT NULL, approved INTEGER NOT NULL, decided_by TEXT,
    comment TEXT, at REAL NOT NULL, PRIMARY KEY (run_id, step_id)
);
CREATE TABLE cache (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE workflows (workflow_id TEXT PRIMARY KEY NOT NULL, definition TEXT NOT NULL);
INSERT INTO runs (run_id, workflow_id, name, version, status, created_at, updated_at, input,
                  result, lease_token)
    VALUES ('done', 'c', 'c', '1.0.0', 'completed', 1700000000.0, 1700000001.0,
            '{"metadata":{},"user_context":{},"variables":{"seed":1},"workflow_id":"c"}',
            '{"v2":3}', 1);
INSERT INTO runs (run_id, workflow_id, name, version, status, created_at, updated_at, input,
                  lease_token)
    VALUES ('old', 'c', 'c', '1.0.0', 'running', 1700000002.0, 1700000002.0,
            '{"metadata":{},"user_context":{"user":"ada"},"variables":{"seed":1},"workflow_id":"c"}',
            1);
INSERT INTO events (id, step_id, status, attempt, at, duration_ms, output) VALUES
    (4294967297, 's0', 'running', 1, 1700000000.1, NULL, NULL),
    (4294967298, 's0', 'completed', 1, 1700000000.2, 0.3, '{"v0":1}'),
    (8589934593, 's0', 'running', 1, 1700000002.1, NULL, NULL),
    (8589934594, 's0', 'completed', 1, 1700000002.2, 0.3, '{"v0":1}'),
    (8589934595, 's1', 'running', 1, 1700000002.3, NULL, NULL);
"""


def test_a_schema_2_file_is_upgraded_in_place_and_its_interrupted_run_resumes(
    tmp_path: Any,
) -> None:
    path = tmp_path / "r.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_2_FILE)
    db.close()
    calls: list[str] = []
    wf = _chain("c", calls, store=f"sqlite:///{path}")
    assert batten.get_workflow_status("old", store=f"sqlite:///{path}").status == "interrupted"
    r = asyncio.run(wf.resume("old"))
    assert r.status == WorkflowStatus.COMPLETED
    assert calls == ["s1", "s2"]  # s0 restored from the old file, s1 run again
    assert r.context.variables["v2"] == 3 and r.context.user_context == {"user": "ada"}
    history = [(h.step_id, h.status) for h in batten.Store(f"sqlite:///{path}").history("old")]
    assert history[:3] == [("s0", "running"), ("s0", "completed"), ("s1", "running")]
    assert history[-1] == ("s2", "completed") and len(history) == 7
    assert batten.get_workflow_status("done", store=f"sqlite:///{path}").result == {"v2": 3}
    assert [h.seq for h in batten.Store(f"sqlite:///{path}").history("done")] == [1, 2]
    # A new run after the upgrade gets a key of its own, and the file is at version 3.
    assert asyncio.run(wf.execute(run_id="new")).status == WorkflowStatus.COMPLETED
    assert len(batten.Store(f"sqlite:///{path}").history("new")) == 6
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "3",
        )
        (runs_sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()
    db.close()
    assert "AUTOINCREMENT" not in runs_sql


def test_a_corrupt_row_is_reported_and_nothing_else_is_lost(tmp_path: Any) -> None:
    path = tmp_path / "r.db"
    store = batten.SqliteStore(path)
    r = asyncio.run(_chain("c", [], store=store).execute(run_id="bad"))
    assert r.status == WorkflowStatus.COMPLETED
    with sqlite3.connect(path) as db:
        (key,) = db.execute("SELECT id FROM run_events WHERE run_id = 'bad' AND seq = 2").fetchone()
        db.execute("UPDATE events SET output = '{not json' WHERE id = ?", (key,))
    with pytest.raises(batten.CorruptRecordError, match=r"run 'bad' event 2"):
        store.history("bad")
    with pytest.raises(batten.CorruptRecordError):
        asyncio.run(_chain("c", [], store=store).resume("bad"))
    assert store.get_run("bad").status == WorkflowStatus.COMPLETED, "the run record is intact"


def test_a_context_that_is_not_json_is_refused_before_anything_runs(tmp_path: Any) -> None:
    store = batten.SqliteStore(tmp_path / "r.db")
    calls: list[str] = []
    wf = _chain("c", calls, store=store)
    with pytest.raises(TypeError, match="input context"):
        asyncio.run(wf.execute(WorkflowContext("c", variables={"p": Point(1)})))
    assert calls == [] and store.list_runs() == []


def test_a_bad_durability_is_a_definition_error() -> None:
    with pytest.raises(batten.WorkflowDefinitionError, match="durability"):
        Workflow("x").with_store("memory://", durability="often")


def test_agent_steps_checkpoint_too(tmp_path: Any) -> None:
    store = batten.SqliteStore(tmp_path / "r.db")
    wf = Workflow("agents").with_store(store)
    wf.add_step(AgentStep("greet", lambda msg: f"hi {msg}", "ada"))
    r = asyncio.run(wf.execute())
    assert store.history(r.run_id)[-1].output == "hi ada"
    assert os.path.getsize(tmp_path / "r.db") > 0


def test_streaming_a_workflow_with_a_store_is_durable(store: batten.Store) -> None:
    wf = _chain("streamed", [], store=store)

    async def main() -> Any:
        return [e async for e in wf.stream()]

    events = asyncio.run(main())
    run_id = events[-1].result.run_id
    assert batten.get_workflow_status(run_id, store=store).status == WorkflowStatus.COMPLETED
    assert len(batten.run_history(run_id, store=store)) == 6


_APPROVER = """
import sys, batten
batten.approve(sys.argv[2], "gate", by="ann", comment="from afar", store=sys.argv[1])
"""


def test_an_approval_from_another_process_releases_the_run(tmp_path: Any) -> None:
    url = "sqlite:///" + str(tmp_path / "r.db")
    wf = Workflow("remote-approval").with_store(url)
    wf.add_step(batten.HumanApprovalStep("gate", "ship it?"))
    wf.add_step(ToolStep("ship", lambda context: context.results["gate"]["comment"]))
    r = asyncio.run(wf.execute())
    subprocess.run([sys.executable, "-c", _APPROVER, url, r.run_id], check=True, timeout=60)
    resumed = asyncio.run(wf.resume(r.run_id))
    assert resumed.status == WorkflowStatus.COMPLETED
    assert resumed.final_output == "from afar"
    audit = [h.detail for h in batten.run_history(r.run_id, store=url) if h.detail]
    # the decision also records the deciding process's os_user and host (issue 15)
    decided = [
        {k: d[k] for k in ("approved", "by", "comment", "decision") if k in d} for d in audit
    ]
    assert {"approved": True, "by": "ann", "comment": "from afar", "decision": True} in decided


def test_approval_step_arguments_are_checked() -> None:
    step = batten.HumanApprovalStep("ok", "ok?", approvers=["a"], timeout=5)
    assert (step.approval_timeout, step.approvers, step.timeout) == (5.0, ["a"], None)
    with pytest.raises(batten.WorkflowDefinitionError, match="step 'ok': prompt"):
        batten.HumanApprovalStep("ok", 3)  # type: ignore[arg-type]
    with pytest.raises(batten.WorkflowDefinitionError, match="approvers"):
        batten.HumanApprovalStep("ok", "ok?", approvers="boss")
    with pytest.raises(batten.WorkflowDefinitionError, match="timeout"):
        batten.HumanApprovalStep("ok", "ok?", timeout=-1)
    with pytest.raises(batten.WorkflowDefinitionError, match="cache ttl"):
        ToolStep("t", lambda: 1).with_cache(ttl=0)


def test_approvals_in_parallel_step_branches_all_wait_and_resume_in_any_order(
    store: batten.Store,
) -> None:
    wf = Workflow("parallel-gates").with_store(store)
    wf.add_step(
        ParallelStep(
            "gates",
            [
                batten.HumanApprovalStep("legal", "legal ok?"),
                batten.HumanApprovalStep("money", "ok?"),
            ],
        )
    )
    wf.add_step(ToolStep("ship", lambda context: len(context.results["gates"])))
    r = asyncio.run(wf.execute())
    assert r.status == WorkflowStatus.WAITING_APPROVAL
    # fail_fast does not cancel a sibling branch for a pending approval: both reach theirs.
    assert StepStatus.CANCELLED not in [c.status for c in r.step("gates").children]
    waiting = {h.step_id for h in store.history(r.run_id) if h.status == "waiting_approval"}
    assert waiting == {"gates/legal", "gates/money"}
    batten.approve(r.run_id, "gates/money", store=store)
    assert asyncio.run(wf.resume(r.run_id)).status == WorkflowStatus.WAITING_APPROVAL
    batten.approve(r.run_id, "gates/legal", store=store)
    done = asyncio.run(wf.resume(r.run_id))
    assert done.status == WorkflowStatus.COMPLETED
    assert done.final_output == 2
