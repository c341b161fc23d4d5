"""What a checkpoint keeps, and what crosses the native boundary: values that cannot be stored
exactly fail their step with a TypeError (or go through the workflow's serializer), however
deep they nest; store records a batten never writes are CorruptRecordErrors naming the run; and
no value reaching the engine ends in a Rust panic, an OverflowError or a crash. Real SQLite
files, real subprocesses for what used to kill the interpreter."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import batten
import pytest
from batten import (
    MapStep,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowDefinitionError,
    WorkflowStatus,
)
from batten.store import MAX_JSON_DEPTH


def nested(levels: int) -> list[Any]:
    """``levels`` lists nested in one another (``nested(2) == [[]]``), built without recursion."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a fresh interpreter (a crash there cannot take the test run down)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


# ---- deep values never crash the interpreter ---------------------------------------------

_DEEP_OUTPUT = """
import sys, batten
from batten import ToolStep, Workflow
levels, kind = int(sys.argv[1]), sys.argv[2]
def deep():
    value = []
    for _ in range(levels - 1):
        value = [value]
    return value
async def deep_async():
    return deep()
wf = Workflow("deep").with_store(batten.SqliteStore(sys.argv[3]))
wf.add_step(ToolStep("make", deep if kind == "sync" else deep_async))
result = wf.run()
step = result.step("make")
print(result.status, step.error_type, step.error)
"""


@pytest.mark.parametrize(("levels", "kind"), [(3_000, "sync"), (100_000, "async")])
def test_a_deeply_nested_output_fails_its_step_instead_of_crashing(
    levels: int, kind: str, db: Path
) -> None:
    done = run_python(_DEEP_OUTPUT, str(levels), kind, str(db))
    assert done.returncode == 0, done.stderr[-2000:]
    status, error_type, error = done.stdout.split(" ", 2)
    assert (status, error_type) == ("failed", "TypeError")
    assert "step 'make'" in error and f"deeper than {MAX_JSON_DEPTH} levels" in error


def test_deeply_nested_initial_variables_are_refused_instead_of_crashing(db: Path) -> None:
    done = run_python(
        """
        import sys, batten
        from batten import ToolStep, Workflow, WorkflowContext
        value = []
        for _ in range(100_000):
            value = [value]
        wf = Workflow("deep").with_store(batten.SqliteStore(sys.argv[1]))
        wf.add_step(ToolStep("a", lambda: print("ran")))
        try:
            wf.run(WorkflowContext("deep", variables={"tree": value}))
        except TypeError as exc:
            print("TypeError", exc)
        """,
        str(db),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("TypeError workflow 'deep': the run's input context")
    assert f"deeper than {MAX_JSON_DEPTH} levels" in done.stdout
    assert "ran" not in done.stdout


# ---- one depth limit for the writer and the reader -----------------------------------------


def test_an_output_at_the_depth_limit_is_restored_equal_on_resume(db: Path) -> None:
    store = batten.SqliteStore(db)
    seen: list[Any] = []
    failing = [True]

    def use(context: Any) -> None:
        if failing[0]:
            raise ConnectionError("down")
        seen.append(context.results["make"])

    wf = Workflow("limit").with_store(store)
    wf.add_step(ToolStep("make", lambda: nested(MAX_JSON_DEPTH)))
    wf.add_step(ToolStep("use", use))
    first = wf.run()
    assert first.status == WorkflowStatus.FAILED
    failing[0] = False
    second = asyncio.run(wf.resume(first.run_id, retry_failed=True))
    assert second.status == WorkflowStatus.COMPLETED
    assert seen == [nested(MAX_JSON_DEPTH)]
    assert second.step("make").metadata.get("restored") is True


def test_an_output_one_level_past_the_limit_fails_its_step_naming_it_and_the_depth(
    db: Path,
) -> None:
    store = batten.SqliteStore(db)
    wf = Workflow("past").with_store(store)
    wf.add_step(ToolStep("make", lambda: {"tree": nested(MAX_JSON_DEPTH)}))
    result = wf.run()
    step = result.step("make")
    assert (result.status, step.error_type) == (WorkflowStatus.FAILED, "TypeError")
    assert "step 'make'" in (step.error or "")
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in (step.error or "")
    assert "['tree']" in (step.error or "")
    assert [r.run_id for r in store.list_runs()] == [result.run_id], "still listed"
    assert batten.run_history(result.run_id, store=store)[-1].error_type == "TypeError"


def test_a_too_deep_output_goes_through_the_serializer_when_there_is_one(db: Path) -> None:
    store = batten.SqliteStore(db)
    wf = Workflow("pickled").with_store(store, serializer=pickle)
    wf.add_step(ToolStep("make", lambda: nested(MAX_JSON_DEPTH + 50)))
    result = wf.run()
    assert result.status == WorkflowStatus.COMPLETED
    assert batten.get_workflow_status(result.run_id, store=store).status == "completed"


def _corrupt_result(db: Path, run_id: str) -> None:
    """Writes, as an older batten could, a result serde_json cannot read back (128 levels)."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET result = ? WHERE run_id = ?", ("[" * 128 + "]" * 128, run_id))


def _three_runs(store: batten.Store) -> list[str]:
    wf = Workflow("three").with_store(store)
    wf.add_step(ToolStep("a", lambda: 1))
    return [wf.run().run_id for _ in range(3)]


def test_one_unreadable_run_leaves_list_runs_listing_the_others_and_warns(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = batten.SqliteStore(db)
    ids = _three_runs(store)
    _corrupt_result(db, ids[1])
    with caplog.at_level(logging.WARNING, logger="batten.store"):
        listed = batten.list_runs(store=store)
    assert sorted(r.run_id for r in listed) == sorted([ids[0], ids[2]])
    assert any(ids[1] in r.getMessage() for r in caplog.records), caplog.text


def test_an_unreadable_run_is_a_corrupt_record_error_naming_it(db: Path) -> None:
    store = batten.SqliteStore(db)
    ids = _three_runs(store)
    _corrupt_result(db, ids[1])
    with pytest.raises(batten.CorruptRecordError, match=f"run '{ids[1]}' result"):
        batten.get_workflow_status(ids[1], store=store)


def test_batten_runs_lists_the_other_runs_and_names_the_unreadable_one(db: Path) -> None:
    store = batten.SqliteStore(db)
    ids = _three_runs(store)
    _corrupt_result(db, ids[1])
    env = {**os.environ, "BATTEN_STORE": "sqlite:///" + str(db)}
    done = subprocess.run(
        [sys.executable, "-m", "batten", "runs"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert ids[0] in done.stdout and ids[2] in done.stdout
    assert ids[1] not in done.stdout and ids[1] in done.stderr


# ---- values a checkpoint would silently change ---------------------------------------------

_CHANGED_BY_JSON = {
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "set": {1, 2},
    "frozenset": frozenset({"a"}),
    "tuple": (1, 2),
    "nested set": {"tags": [{"x"}]},
    "int key": {"scores": {1: "one"}},
    "wider than 64 bits": 2**70,
}


@pytest.mark.parametrize("value", list(_CHANGED_BY_JSON.values()), ids=list(_CHANGED_BY_JSON))
def test_a_value_json_would_change_fails_its_step_with_a_type_error(value: Any, db: Path) -> None:
    ran: list[str] = []
    wf = Workflow("changed").with_store(batten.SqliteStore(db))
    wf.add_step(ToolStep("make", lambda: value))
    wf.add_step(ToolStep("use", lambda: ran.append("use")))
    result = wf.run()
    step = result.step("make")
    assert (result.status, step.error_type) == (WorkflowStatus.FAILED, "TypeError")
    assert "step 'make'" in (step.error or "") and "cannot be checkpointed" in (step.error or "")
    assert ran == [], "nothing after it saw a changed value"


def test_the_type_error_says_where_the_value_is_and_why(db: Path) -> None:
    wf = Workflow("where").with_store(batten.SqliteStore(db))
    wf.add_step(ToolStep("make", lambda: {"stats": [1.0, float("nan")]}))
    error = wf.run().step("make").error or ""
    assert "['stats'][1] is float('nan')" in error and "None" in error


def _resume_sees(db: Path, value: Any, serializer: Any) -> Any:
    """The value step ``use`` sees as ``make``'s output after a resume restored ``make``."""
    seen: list[Any] = []
    failing = [True]

    def use(context: Any) -> None:
        if failing[0]:
            raise ConnectionError("down")
        seen.append(context.results["make"])

    wf = Workflow("seen").with_store(batten.SqliteStore(db), serializer=serializer)
    wf.add_step(ToolStep("make", lambda: value))
    wf.add_step(ToolStep("use", use))
    first = wf.run()
    assert first.status == WorkflowStatus.FAILED, first.error
    failing[0] = False
    second = asyncio.run(wf.resume(first.run_id, retry_failed=True))
    assert second.status == WorkflowStatus.COMPLETED, second.error
    assert second.step("make").metadata.get("restored") is True
    return seen[0]


@pytest.mark.parametrize(
    "value",
    [float("inf"), {1, 2}, (1, "a"), {"k": (1, 2)}, {3: "int key"}],
    ids=["inf", "set", "tuple", "tuple in dict", "int key"],
)
def test_with_a_serializer_a_resumed_run_sees_exactly_what_the_step_returned(
    value: Any, db: Path
) -> None:
    restored = _resume_sees(db, value, pickle)
    assert restored == value and type(restored) is type(value)


def test_with_a_serializer_nan_is_restored_as_nan(db: Path) -> None:
    restored = _resume_sees(db, float("nan"), pickle)
    assert isinstance(restored, float) and restored != restored


def test_json_values_and_their_subclasses_are_restored_equal(db: Path) -> None:
    value = {
        "ordered": collections.OrderedDict(b=1, a=2),
        "mixed": [None, True, -(2**63), 2**64 - 1, 0.1, -0.0, "é"],
    }
    assert _resume_sees(db, value, None) == value


def test_a_dict_shaped_like_a_serialized_output_is_not_mistaken_for_one(db: Path) -> None:
    wf = Workflow("reserved").with_store(batten.SqliteStore(db))
    wf.add_step(ToolStep("make", lambda: {"__batten_serialized__": "gASVBAAAAAAAAACMAXiULg=="}))
    step = wf.run().step("make")
    assert step.error_type == "TypeError" and "reserves" in (step.error or "")


def test_initial_variables_that_json_would_change_are_refused_before_anything_runs(
    db: Path,
) -> None:
    store = batten.SqliteStore(db)
    ran: list[str] = []
    wf = Workflow("ctx").with_store(store)
    wf.add_step(ToolStep("a", lambda: ran.append("a")))
    with pytest.raises(TypeError, match=r"input context.*\['variables'\]\['limit'\]"):
        wf.run(WorkflowContext("ctx", variables={"limit": float("inf")}))
    assert ran == [] and store.list_runs() == []


# ---- store records no batten writes ----------------------------------------------------------


def _set_run_status(db: Path, run_id: str, status: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE runs SET status = ? WHERE run_id = ?", (status, run_id))


def _set_event_status(db: Path, run_id: str, seq: int, status: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE events SET status = ? WHERE id = "
            "(SELECT id FROM run_events WHERE run_id = ? AND seq = ?)",
            (status, run_id, seq),
        )


def _two_steps(store: batten.Store, ran: list[str] | None = None) -> Workflow:
    ran = [] if ran is None else ran
    wf = Workflow("statuses").with_store(store)
    wf.add_step(ToolStep("a", lambda: ran.append("a")))
    wf.add_step(ToolStep("b", lambda: ran.append("b")))
    return wf


def _two_step_run(store: batten.Store) -> tuple[Workflow, str]:
    wf = _two_steps(store)
    return wf, wf.run().run_id


def test_a_run_with_an_unknown_status_is_a_corrupt_record_naming_it(db: Path) -> None:
    store = batten.SqliteStore(db)
    wf, run_id = _two_step_run(store)
    _set_run_status(db, run_id, "bogus")
    with pytest.raises(batten.CorruptRecordError, match=f"run '{run_id}'.*'bogus'"):
        batten.get_workflow_status(run_id, store=store)
    with pytest.raises(batten.CorruptRecordError, match=f"run '{run_id}'.*'bogus'"):
        asyncio.run(wf.resume(run_id))


def test_a_run_with_an_unknown_status_is_left_out_of_list_runs(db: Path) -> None:
    store = batten.SqliteStore(db)
    _wf, bad = _two_step_run(store)
    _wf, good = _two_step_run(store)
    _set_run_status(db, bad, "bogus")
    assert [r.run_id for r in batten.list_runs(store=store)] == [good]


def test_an_event_with_an_unknown_status_is_a_corrupt_record_naming_the_run_and_event(
    db: Path,
) -> None:
    store = batten.SqliteStore(db)
    _wf, run_id = _two_step_run(store)
    _set_event_status(db, run_id, 2, "bogus")
    with pytest.raises(
        batten.CorruptRecordError, match=f"run '{run_id}' event 2 \\(step 'a'\\).*'bogus'"
    ):
        batten.run_history(run_id, store=store)


def test_resuming_a_run_whose_history_has_an_unknown_status_is_a_corrupt_record(
    db: Path,
) -> None:
    store = batten.SqliteStore(db)
    _wf, run_id = _two_step_run(store)
    _set_run_status(db, run_id, "running")  # as if its process had died
    _set_event_status(db, run_id, 2, "bogus")
    ran: list[str] = []
    with pytest.raises(batten.CorruptRecordError, match=f"run '{run_id}' event 2 \\(step 'a'\\)"):
        asyncio.run(_two_steps(store, ran).resume(run_id))
    assert ran == [], "a step whose record is unreadable is neither restored nor re-run"


def test_a_step_id_with_a_lone_surrogate_is_a_definition_error_before_anything_runs() -> None:
    ran: list[str] = []
    wf = Workflow("ids")
    wf.add_step(ToolStep("first", lambda: ran.append("first")))
    wf.add_step(ToolStep("bad\ud800", lambda: ran.append("bad")))
    with pytest.raises(batten.WorkflowDefinitionError, match=r"'bad\\ud800'.*lone surrogate"):
        wf.run()
    assert ran == []


def test_a_rate_limited_step_id_with_a_lone_surrogate_is_a_definition_error_naming_it() -> None:
    wf = Workflow("ids")
    limit = batten.RateLimit("surrogate-ids", requests_per_second=100)
    wf.add_step(ToolStep("bad\udfff", lambda: 1).with_rate_limit(limit))
    with pytest.raises(batten.WorkflowDefinitionError, match=r"'bad\\udfff'.*lone surrogate"):
        wf.run()


def test_a_context_workflow_id_with_a_lone_surrogate_is_a_definition_error() -> None:
    with pytest.raises(batten.WorkflowDefinitionError, match=r"'w\\ud800'.*lone surrogate"):
        WorkflowContext("w\ud800")


# ---- no panic, overflow or crash from a value reaching the engine ----------------------------


def _refused_with_a_batten_error(build_and_run: Any) -> BaseException | str:
    """What refusing the value looked like: the ``BattenError`` raised, or the ``BattenError``
    type a step failed with. Anything else (a PanicException is a BaseException) fails."""
    try:
        result = build_and_run()
    except batten.BattenError as exc:
        return exc
    failed = [s for s in result.steps if s.is_failure]
    assert failed, f"accepted: {result.status}"
    assert failed[0].error_type in {"WorkflowDefinitionError"}, failed[0].error
    return failed[0].error_type


def test_a_timeout_too_large_for_a_duration_is_refused_not_a_panic() -> None:
    def go() -> Any:
        wf = Workflow("t")
        wf.add_step(ToolStep("a", lambda: 1).with_timeout(2e19))
        return wf.run()

    _refused_with_a_batten_error(go)


def test_max_concurrency_beyond_any_machine_int_is_refused_not_an_overflow() -> None:
    def go() -> Any:
        wf = Workflow("c")
        wf.add_step(ToolStep("a", lambda: 1))
        return wf.run(max_concurrency=10**20)

    _refused_with_a_batten_error(go)


def test_a_map_step_max_concurrency_beyond_any_machine_int_is_refused_not_an_overflow() -> None:
    def go() -> Any:
        wf = Workflow("m")
        wf.add_step(MapStep("each", [1, 2], lambda item: item, max_concurrency=10**20))
        return wf.run()

    _refused_with_a_batten_error(go)


@pytest.mark.parametrize(
    "make",
    [
        lambda: batten.CircuitBreaker(recovery_timeout=1e300),
        lambda: batten.CircuitBreaker(failure_threshold=10**20),
        lambda: batten.RateLimit("huge-concurrency", max_concurrency=10**20),
    ],
    ids=["recovery_timeout", "failure_threshold", "max_concurrency"],
)
def test_traffic_controls_out_of_range_are_refused_not_a_panic(make: Any) -> None:
    with pytest.raises(batten.BattenError):
        make()


def test_a_rate_too_small_for_a_duration_is_refused_before_anything_runs() -> None:
    """A start interval past what a ``Duration`` holds panicked in the engine; the API now
    refuses it (the engine also saturates: ``src/engine/limits.rs``'s tests)."""
    with pytest.raises(WorkflowDefinitionError, match="requests_per_second"):
        batten.RateLimit("vanishing", requests_per_second=1e-320)


def test_a_retry_delay_too_large_for_a_duration_is_refused_before_anything_runs() -> None:
    ran: list[str] = []
    with pytest.raises(WorkflowDefinitionError, match="initial_interval"):
        policy = batten.RetryPolicy(initial_interval=1e300, max_interval=1e300, jitter=0.0)
        Workflow("later").add_step(
            ToolStep("a", lambda: ran.append("a")).with_retry(max_attempts=3, policy=policy)
        ).run()
    assert ran == []
