"""``Workflow.fork`` / ``fork_async``: a new run from a step of a recorded one, reusing the outputs
of every step that is not the chosen step or downstream of it, on SQLite and Redis stores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import batten
import pytest
from ui_workflows import FLAKY, flaky_workflow


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "runs.db")
    return str(request.getfixturevalue("redis_store_url"))


@pytest.fixture(autouse=True)
def _reset() -> None:
    FLAKY["fail"], FLAKY["calls"] = True, []


def test_fork_runs_the_step_and_its_dependents_only(url: str) -> None:
    wf = flaky_workflow()
    origin = asyncio.run(wf.execute(store=url))
    assert origin.status == batten.WorkflowStatus.FAILED
    FLAKY["fail"], FLAKY["calls"] = False, []
    fork = wf.fork(origin.run_id, "fetch", store=url)
    assert fork.status == batten.WorkflowStatus.COMPLETED, fork.error
    assert fork.run_id != origin.run_id and fork.final_output == "ok"
    assert sorted(FLAKY["calls"]) == ["fetch", "report"]  # load and side were reused
    info = batten.get_workflow_status(fork.run_id, store=url)
    assert info.input["metadata"]["batten.forked_from"] == {
        "run_id": origin.run_id,
        "step": "fetch",
    }
    # The origin is left as it was.
    assert batten.get_workflow_status(origin.run_id, store=url).status == "failed"


def test_fork_from_the_first_step_runs_everything_again(url: str) -> None:
    FLAKY["fail"] = False
    wf = flaky_workflow()
    origin = asyncio.run(wf.execute(store=url))
    FLAKY["calls"] = []
    fork = asyncio.run(wf.fork_async(origin.run_id, "load", store=url))
    assert fork.status == batten.WorkflowStatus.COMPLETED
    assert sorted(FLAKY["calls"]) == ["fetch", "load", "report", "side"]


def test_an_unknown_step_is_refused_before_anything_is_recorded(url: str) -> None:
    wf = flaky_workflow()
    origin = asyncio.run(wf.execute(store=url))
    with pytest.raises(batten.UnknownStepError, match="'nope'") as info:
        wf.fork(origin.run_id, "nope", store=url)
    assert info.value.step_id == "nope" and info.value.known == ["load", "fetch", "side", "report"]
    assert [r.run_id for r in batten.list_runs(store=url)] == [origin.run_id]
    with pytest.raises(batten.RunNotFoundError):
        wf.fork("missing", "fetch", store=url)


def test_a_fork_by_another_workflow_is_refused(url: str) -> None:
    origin = asyncio.run(flaky_workflow().execute(store=url))
    other = batten.Workflow("other").add_step(batten.ToolStep("fetch", lambda: 1))
    with pytest.raises(batten.WorkflowDefinitionError, match="belongs to workflow 'flaky'"):
        other.fork(origin.run_id, "fetch", store=url)


def _gated_workflow(calls: list[str]) -> batten.Workflow:
    """prepare -> review (approval) -> publish, and prepare -> other beside the gate."""

    def prepare() -> int:
        calls.append("prepare")
        return 1

    def publish() -> str:
        calls.append("publish")
        return "published"

    def other() -> str:
        calls.append("other")
        return "other"

    wf = batten.Workflow("gated")
    wf.add_step(batten.ToolStep("prepare", prepare))
    wf.add_step(batten.HumanApprovalStep("review", "Ship it?"), depends_on=["prepare"])
    wf.add_step(batten.ToolStep("publish", publish), depends_on=["review"])
    wf.add_step(batten.ToolStep("other", other), depends_on=["prepare"])
    return wf


def test_a_fork_keeps_the_decision_of_a_kept_approval(url: str) -> None:
    """Approved in the origin but not yet continued there: a fork from a sibling step does not
    ask again (the decision is copied), and its own resume runs publish."""
    calls: list[str] = []
    wf = _gated_workflow(calls)
    origin = asyncio.run(wf.execute(store=url))
    assert origin.status == batten.WorkflowStatus.WAITING_APPROVAL
    batten.approve(origin.run_id, "review", by="ann", comment="fine", store=url)
    calls.clear()
    fork = wf.fork(origin.run_id, "other", store=url)
    assert fork.status == batten.WorkflowStatus.COMPLETED, (fork.status, fork.error)
    assert sorted(calls) == ["other", "publish"]  # prepare was reused, review not asked again
    (decision,) = batten.Store(url)._native.decisions(fork.run_id)
    assert decision["step_id"] == "review" and decision["by"] == "ann" and decision["approved"]
    assert decision["comment"] == "fine"


def test_a_fork_from_the_approval_asks_again(url: str) -> None:
    calls: list[str] = []
    wf = _gated_workflow(calls)
    origin = asyncio.run(wf.execute(store=url))
    batten.approve(origin.run_id, "review", by="ann", store=url)
    fork = wf.fork(origin.run_id, "review", store=url)
    assert fork.status == batten.WorkflowStatus.WAITING_APPROVAL
    assert batten.Store(url)._native.decisions(fork.run_id) == []
