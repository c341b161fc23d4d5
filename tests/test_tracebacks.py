"""Tracebacks of failed steps (issue 19: each step's error "with type and traceback text"): the
engine keeps ``traceback.format_exception``'s text of a failed attempt (bounded to 8 KiB, the tail
kept) on ``StepResult.metadata["traceback"]`` and in the store's ``failed`` / ``retrying`` events
(``StepRecord.traceback``), which ``batten status --json`` shows; timeouts and successes keep
none."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import batten
import pytest
from batten import RetryPolicy, StepStatus, ToolStep, Workflow
from batten.cli import main


def _inner_helper_that_raises(n: int) -> None:
    raise ConnectionError(f"bad value {n}")


def _failing_tool() -> None:
    _inner_helper_that_raises(7)


def _deep_tool() -> None:
    """Raises a chain of 100 exceptions: far more than 8 KiB of traceback text."""
    error: Exception | None = None
    for i in range(100):
        try:
            raise LookupError(f"link {i}") from error
        except LookupError as exc:
            error = exc
    assert error is not None
    raise error


def _failing_workflow() -> Workflow:
    wf = Workflow("tb", name="Tracebacks")
    wf.add_step(ToolStep("ok", lambda: 1))
    wf.add_step(
        ToolStep("boom", _failing_tool).with_retry(
            policy=RetryPolicy(max_attempts=2, initial_interval=0.01)
        ),
        depends_on=["ok"],
    )
    return wf


def test_a_failed_step_result_carries_its_traceback() -> None:
    result = _failing_workflow().run()
    assert result.status == batten.WorkflowStatus.FAILED
    boom = result.step("boom")
    assert boom.status == StepStatus.FAILED
    tb = boom.metadata["traceback"]
    assert tb.startswith("Traceback (most recent call last):")
    assert "_inner_helper_that_raises" in tb and "_failing_tool" in tb
    assert tb.rstrip().endswith("ConnectionError: bad value 7")
    ok = result.step("ok")
    assert "traceback" not in ok.metadata


def test_a_long_traceback_keeps_its_tail_within_8_kib() -> None:
    wf = Workflow("deep").add_step(ToolStep("deep", _deep_tool))
    result = wf.run()
    tb = result.step("deep").metadata["traceback"]
    assert len(tb.encode()) <= 8 * 1024 + 4
    assert tb.startswith("...\n") and tb.rstrip().endswith("LookupError: link 99")


def test_a_timeout_keeps_no_traceback() -> None:
    async def slow() -> None:
        await asyncio.sleep(5)

    wf = Workflow("slow").add_step(ToolStep("slow", slow).with_timeout(0.05))
    step = wf.run().step("slow")
    assert step.status == StepStatus.TIMEOUT
    assert "traceback" not in step.metadata


def test_the_store_history_and_batten_status_json_show_it(tmp_path: Path, capsys) -> None:
    url = "sqlite:///" + str(tmp_path / "runs.db")
    result = asyncio.run(_failing_workflow().execute(store=url))
    assert result.status == batten.WorkflowStatus.FAILED
    history = batten.Store(url).history(result.run_id)
    boom = [r for r in history if r.step_id == "boom"]
    retrying = [r for r in boom if r.status == StepStatus.RETRYING]
    failed = [r for r in boom if r.status == StepStatus.FAILED]
    assert len(retrying) == 1 and len(failed) == 1
    for r in failed:
        assert r.traceback is not None and "_inner_helper_that_raises" in r.traceback
        assert r.traceback.rstrip().endswith("ConnectionError: bad value 7")
    # A retried attempt keeps its error type and message but no traceback text: formatting it
    # cost 5x a retried attempt (benchmark W4); the failure that ends the step has it.
    assert retrying[0].traceback is None and retrying[0].error == "bad value 7"
    assert retrying[0].detail["delay_s"] >= 0  # the retry's delay is still there
    assert all(r.traceback is None for r in history if r.step_id == "ok")

    assert main(["status", result.run_id, "--store", url, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    steps = {s["step_id"]: s for s in doc["steps"]}
    assert steps["boom"]["error_type"] == "ConnectionError"
    assert "_inner_helper_that_raises" in steps["boom"]["traceback"]
    assert steps["ok"]["traceback"] is None


def test_an_isolated_step_traceback_includes_the_worker_side(tmp_path: Path) -> None:
    import isolated_tools

    wf = Workflow("iso").add_step(
        ToolStep(
            "iso", isolated_tools.raise_value_error, {"message": "from the worker"}
        ).with_isolation("process")
    )
    step = wf.run().step("iso")
    assert step.status == StepStatus.FAILED
    tb = step.metadata["traceback"]
    # concurrent.futures chains the worker's own traceback text (_RemoteTraceback).
    assert "raise_value_error" in tb and "ValueError: from the worker" in tb


@pytest.mark.parametrize("status", ["retrying", "failed"])
def test_records_without_a_traceback_read_as_none(status: str) -> None:
    rec = batten.StepRecord(1, "s", StepStatus(status), 1, 0.0, None, "E", "m", None, None)
    assert rec.traceback is None
    assert (
        batten.StepRecord(1, "s", StepStatus(status), 1, 0.0, None, "E", "m", None, {}).traceback
        is None
    )
