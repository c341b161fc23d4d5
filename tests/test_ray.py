"""Steps on a Ray cluster (``RayExecutor``, ``step.on_ray``), against a real local cluster: a
head node and two worker nodes (one CPU each, custom resources ``node_a`` / ``node_b``), each a
separate ``ray start`` process group started by the fixture (tests/ray_cluster.py).

Skipped (reported as skipped) when ``ray`` is not installed or the cluster cannot start; a
failure when ``BATTEN_REQUIRE_SERVICES`` names ``ray`` (as ``.ci/run`` sets it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import batten
import pytest
from batten import (
    MapStep,
    RayExecutor,
    RetryPolicy,
    StepStatus,
    StepWorkerLostError,
    ToolStep,
    Workflow,
    WorkflowDefinitionError,
    WorkflowStatus,
)

HERE = Path(__file__).resolve().parent
PY_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(HERE.parent / "python"), str(HERE)]),
}

pytestmark = pytest.mark.timeout(300)


def _required() -> bool:
    need = os.environ.get("BATTEN_REQUIRE_SERVICES", "").split(",")
    return "ray" in (s.strip() for s in need)


def _unavailable(why: str) -> None:
    if _required():
        pytest.fail(f"BATTEN_REQUIRE_SERVICES names ray, but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def cluster():
    try:
        import ray  # noqa: F401
    except ImportError:
        _unavailable("ray is not installed (pip install 'batten[ray]')")
    from ray_cluster import running_cluster

    started = time.monotonic()
    try:
        ctx = running_cluster({"node_a": 1, "node_b": 1})
        c = ctx.__enter__()
    except RuntimeError as exc:
        _unavailable(f"a local Ray cluster cannot start here: {exc}")
    # shown with -s: how long the cluster took to start, in all and per node (ray start to
    # registered), and how many attempts each worker node needed
    attempts = {n: w.attempts for n, w in c.workers.items()}
    print(f"\nray cluster up in {time.monotonic() - started:.1f} s: {c.timings()} {attempts}")
    try:
        yield c
    finally:
        ctx.__exit__(None, None, None)
    from ray_cluster import _pids_naming

    left = _pids_naming(c.temp_dir)
    assert not left, f"processes of the test cluster outlived it: {left}"


# -- step bodies (module level: Ray imports them by reference on the workers) -----------------


def burn(item: int, seconds: float = 0.3) -> list[Any]:
    """CPU-bound work for ``seconds``; returns [item, node id, worker pid] (JSON, so that a
    durable run can checkpoint it)."""
    import ray

    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1
    return [item, ray.get_runtime_context().get_node_id(), os.getpid()]


def marked_burn(item: int, marks: str, seconds: float, kill_node: str, kill_pgid: int) -> list[Any]:
    """``burn``, writing ``start-<item>-<node>`` first and ``done-<item>-<node>`` after; the
    first item on node ``kill_node`` kills that node halfway: SIGKILL to ``kill_pgid``, the
    process group of its ``ray start`` (raylet and agents), then to its own worker process
    (Ray puts each worker in a group of its own)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    Path(marks, f"start-{item}-{node}-{os.getpid()}").touch()
    if node == kill_node:
        burn(item, seconds / 2)
        try:
            os.close(os.open(Path(marks, "killed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os.killpg(kill_pgid, signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
    out = burn(item, seconds)
    Path(marks, f"done-{item}-{node}-{os.getpid()}").touch()
    return out


def sleeper(pid_file: str, seconds: float = 120.0) -> str:
    """Writes its worker's pid, then sleeps (a sync step that overstays its timeout)."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "woke up"


async def async_node(x: int) -> tuple[int, str]:
    import ray

    await asyncio.sleep(0.01)
    return x * 2, ray.get_runtime_context().get_node_id()


def fails(reason: str) -> None:
    raise LookupError(f"no such thing: {reason}")


def user_span() -> dict[str, str]:
    """Makes a span with the SDK in the worker; returns its trace id and parent span id."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()  # the worker's own (no exporter needed to read ids)
    with provider.get_tracer("user").start_as_current_span("user-work") as span:
        parent = span.parent
        return {
            "trace_id": format(span.get_span_context().trace_id, "032x"),
            "parent_span_id": format(parent.span_id, "016x") if parent else "",
        }


def _load_blob(data: bytes, marks: str) -> Blob:
    with open(marks, "a") as f:  # one line per process that deserialized a Blob
        f.write(f"{os.getpid()}\n")
    return Blob(data, marks)


class Blob:
    """Bytes that note, in the file ``marks``, the pid of every process that deserializes
    them (so a test sees where a step's output travelled)."""

    def __init__(self, data: bytes, marks: str) -> None:
        self.data = data
        self.marks = marks

    def __reduce__(self) -> tuple[Any, ...]:
        return _load_blob, (self.data, self.marks)


def make_blob(marks: str, size: int) -> Blob:
    return Blob(os.urandom(1024) * (size // 1024), marks)


def blob_size(blob: Blob) -> list[Any]:
    import ray

    return [len(blob.data), ray.get_runtime_context().get_node_id(), os.getpid()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


# -- without a cluster -----------------------------------------------------------------------


def test_import_batten_does_not_import_ray():
    code = "import sys, batten; print('ray' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=PY_ENV, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_missing_ray_names_the_extra():
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError("No module named 'ray'")
sys.meta_path.insert(0, Block())
import batten
for make in (lambda: batten.RayExecutor(), lambda: batten.ToolStep("t", print).on_ray()):
    try:
        make()
    except batten.WorkflowDefinitionError as e:
        print("ERR", e)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], env=PY_ENV, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2, out.stdout
    assert "batten[ray]" in lines[0] and "RayExecutor" in lines[0]
    assert "batten[ray]" in lines[1] and "step 't'" in lines[1]


def test_bad_placement_values_are_definition_errors():
    pytest.importorskip("ray")
    with pytest.raises(WorkflowDefinitionError, match=r"step 's'.*num_cpus"):
        ToolStep("s", print).on_ray(num_cpus=-1)
    with pytest.raises(WorkflowDefinitionError, match="memory"):
        ToolStep("s", print).on_ray(memory=1.5)
    with pytest.raises(WorkflowDefinitionError, match="resources"):
        ToolStep("s", print).on_ray(resources=["node_a"])
    with pytest.raises(WorkflowDefinitionError, match=r"step 's'.*output must be one of"):
        ToolStep("s", print).on_ray(output="object_ref")
    assert ToolStep("s", print).on_ray(output="ref").placement.output == "ref"
    with pytest.raises(WorkflowDefinitionError, match="executor must be"):
        Workflow("w", executor="ray")
    with pytest.raises(WorkflowDefinitionError, match="address"):
        RayExecutor(address="")


def test_unserializable_callable_is_a_definition_error_before_anything_runs():
    pytest.importorskip("ray")
    lock = threading.Lock()
    ran = []

    def first():
        ran.append(1)

    def holds_lock():
        with lock:
            return 1

    wf = Workflow("w")
    wf.add_step(ToolStep("first", first))
    wf.add_step(ToolStep("locked", holds_lock).on_ray())
    with pytest.raises(WorkflowDefinitionError, match=r"step 'locked'.*serialize"):
        wf.run()
    assert ran == []  # nothing ran: found when compiling, Ray never contacted


FLOW = """
name: on-ray
executor: {executor}
steps:
  - id: where
    kind: tool
    tool: test_ray:burn
    args: {{item: 7, seconds: 0.01}}
    ray: {{num_cpus: 1, resources: {{node_a: 1}}, memory: 1000000}}
"""


def test_workflow_file_executor_and_step_placement(tmp_path):
    pytest.importorskip("ray")
    f = tmp_path / "flow.yaml"
    f.write_text(FLOW.format(executor="{kind: ray, address: auto, namespace: ns}"))
    wf = batten.load_workflow(f)
    assert isinstance(wf.executor, RayExecutor)
    assert (wf.executor.address, wf.executor.namespace) == ("auto", "ns")
    placement = next(s for s in wf.steps if s.step_id == "where").placement
    assert placement.options() == {"num_cpus": 1, "memory": 1000000, "resources": {"node_a": 1}}
    f.write_text(FLOW.format(executor="ray").replace("num_cpus: 1", "num_cpus: -1"))
    with pytest.raises(batten.WorkflowConfigError, match="num_cpus"):
        batten.load_workflow(f)
    f.write_text(FLOW.format(executor="dask"))
    with pytest.raises(batten.WorkflowConfigError, match="executor"):
        batten.load_workflow(f)


# -- on the cluster --------------------------------------------------------------------------


def test_map_of_cpu_bound_steps_spreads_over_both_workers(cluster):
    wf = Workflow("spread")
    wf.add_step(MapStep("m", list(range(8)), ToolStep("burn", burn).on_ray(num_cpus=1)))
    result = wf.run(timeout=120)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    out = result.step("m").output
    assert sorted(o[0] for o in out) == list(range(8))
    nodes = {o[1] for o in out}
    assert nodes == {cluster.workers["node_a"].node_id, cluster.workers["node_b"].node_id}
    assert os.getpid() not in {o[2] for o in out}  # none ran in this process


def test_workflow_executor_runs_sync_and_async_steps_pinned_by_resources(cluster):
    node_b = cluster.workers["node_b"].node_id
    wf = Workflow("pinned", executor=RayExecutor(address=cluster.address))
    wf.add_step(
        ToolStep("sync", burn, {"item": 1, "seconds": 0.01}).on_ray(resources={"node_b": 1})
    )
    wf.add_step(ToolStep("async", async_node, {"x": 21}).on_ray(resources={"node_b": 0.5}))
    wf.add_step(ToolStep("fails", fails, {"reason": "{async.result}"}))
    result = wf.run(timeout=120)
    assert result.step("sync").output[1] == node_b
    assert result.step("async").output == [42, node_b] or result.step("async").output == (
        42,
        node_b,
    )
    failed = result.step("fails")
    assert failed.status == StepStatus.FAILED
    # the callable's own exception, type and message kept (not a RayTaskError)
    assert failed.error_type == "LookupError"
    assert failed.error.startswith("no such thing: ")


def test_sync_step_past_its_timeout_is_killed(cluster, tmp_path):
    pid_file = tmp_path / "pid"
    wf = Workflow("timeout")
    wf.add_step(ToolStep("sleepy", sleeper, {"pid_file": str(pid_file)}).on_ray().with_timeout(4))
    started = time.monotonic()
    result = wf.run(timeout=120)
    assert result.step("sleepy").status == StepStatus.TIMEOUT
    assert time.monotonic() - started < 90
    pid = int(pid_file.read_text())
    assert pid != os.getpid()
    _wait_for(lambda: not _pid_alive(pid), 30, f"Ray worker pid {pid} to be killed")


def test_cancelling_the_run_cancels_the_ray_tasks(cluster, tmp_path):
    pid_file = tmp_path / "pid"
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    wf = Workflow("cancel").with_store(db)
    wf.add_step(ToolStep("sleepy", sleeper, {"pid_file": str(pid_file)}).on_ray())

    async def main():
        run = asyncio.create_task(wf.execute(run_id="cancel-run"))
        deadline = time.monotonic() + 90
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the step never started on Ray"
            assert not run.done(), run.result()
            await asyncio.sleep(0.1)
        batten.cancel("cancel-run", store=db)
        return await asyncio.wait_for(run, 60)

    result = asyncio.run(main())
    assert result.status == WorkflowStatus.CANCELLED
    pid = int(pid_file.read_text())
    _wait_for(lambda: not _pid_alive(pid), 30, f"Ray worker pid {pid} to be killed")


def test_user_span_nests_under_the_step_span(cluster):
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    wf = Workflow("traced")
    wf.add_step(ToolStep("spanned", user_span).on_ray())
    old = trace._TRACER_PROVIDER  # the global provider is set once per process: swap it
    trace._TRACER_PROVIDER = provider
    try:
        with tracer.start_as_current_span("caller"):
            result = wf.run(timeout=120)
    finally:
        trace._TRACER_PROVIDER = old
    assert result.status == WorkflowStatus.COMPLETED, result.error
    spans = {s.name: s for s in exporter.get_finished_spans()}
    step_span = spans["execute_tool user_span"]
    got = result.step("spanned").output
    assert got["trace_id"] == format(step_span.context.trace_id, "032x")
    assert got["parent_span_id"] == format(step_span.context.span_id, "016x")


def test_cli_executor_flag_runs_steps_on_the_cluster(cluster, tmp_path):
    f = tmp_path / "flow.yaml"
    f.write_text(FLOW.format(executor="ray"))
    db = tmp_path / "runs.db"
    out = subprocess.run(
        [
            *(sys.executable, "-m", "batten", "run", str(f)),
            *("--executor", f"ray={cluster.address}"),
            *("--store", f"sqlite:///{db}", "--json", "--quiet"),
        ],
        env={**PY_ENV, "RAY_AUTH_MODE": "disabled"},
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    assert cluster.workers["node_a"].node_id in out.stdout


def test_a_ref_output_goes_from_node_to_node_without_the_driver(cluster, tmp_path):
    """A 50 MiB output made on node_a with ``output="ref"`` is consumed on node_b: the run
    holds its ObjectRef, the consumer gets the value, and only the consumer's worker ever
    deserialized it (not this process, the driver)."""
    import ray

    marks = tmp_path / "marks"
    marks.touch()
    size = 50 * 2**20
    wf = Workflow("by-ref")
    wf.add_step(
        ToolStep("make", make_blob, {"marks": str(marks), "size": size}).on_ray(
            resources={"node_a": 1}, output="ref"
        )
    )
    wf.add_step(
        ToolStep("size", blob_size, {"blob": "{make.result}"}).on_ray(resources={"node_b": 1})
    )
    result = wf.run(timeout=120)
    assert result.status == WorkflowStatus.COMPLETED, result.error
    got_size, node, consumer_pid = result.step("size").output
    assert (got_size, node) == (size, cluster.workers["node_b"].node_id)
    ref = result.step("make").output
    assert isinstance(ref, ray.ObjectRef)
    assert marks.read_text().split() == [str(consumer_pid)]  # never deserialized here
    # the ref is usable from the driver too, and then (and only then) the driver holds it
    assert len(ray.get(ref, timeout=60).data) == size
    assert marks.read_text().split() == [str(consumer_pid), str(os.getpid())]


def test_a_ref_output_in_a_durable_run_is_checkpointed_as_its_value(cluster, tmp_path):
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    wf = Workflow("by-ref-durable").with_store(db)
    wf.add_step(ToolStep("make", burn, {"item": 3, "seconds": 0.01}).on_ray(output="ref"))
    wf.add_step(ToolStep("echo", lambda v: v, {"v": "{make.result}"}))
    result = asyncio.run(wf.execute(run_id="ref-run", timeout=120))
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert result.step("make").output[0] == 3  # the value, as the checkpoint holds it
    assert result.step("echo").output == result.step("make").output
    history = batten.run_history("ref-run", store=db)
    done = [r for r in history if r.step_id == "make" and r.status == StepStatus.COMPLETED]
    assert len(done) == 1 and done[0].output[0] == 3


def test_worker_node_killed_mid_map_is_retried_once_per_item(cluster, tmp_path):
    """node_b dies mid-map: the first item that starts there SIGKILLs its node's process group
    (``ray start``, the raylet, its workers) halfway through. The items it ran fail with
    StepWorkerLostError, batten retries them on node_a, and the checkpoint holds every item
    completed exactly once. (The kill is done by the item itself, so it lands mid-step however
    the machine schedules the test's threads.) Runs last among the cluster tests (module
    order): node_b is gone afterwards."""
    marks = tmp_path / "marks"
    marks.mkdir()
    db = tmp_path / "runs.db"
    items = list(range(6))
    node_b = cluster.workers["node_b"]
    args = {
        "marks": str(marks),
        "seconds": 1.5,
        "kill_node": node_b.node_id,
        "kill_pgid": node_b.proc.pid,
    }
    inner = (
        ToolStep("work", marked_burn, args)
        .on_ray(num_cpus=1)
        .with_retry(max_attempts=6, policy=RetryPolicy(initial_interval=0.5))
    )
    wf = Workflow("killed").with_store(f"sqlite:///{db}")
    wf.add_step(MapStep("m", items, inner))
    result = asyncio.run(wf.execute(run_id="killed-run", timeout=200))
    assert (marks / "killed").exists(), "no item ever started on node_b"
    node_b.proc.wait(30)  # the node's `ray start` process is really gone
    assert result.status == WorkflowStatus.COMPLETED, result.error
    assert sorted(o[0] for o in result.step("m").output) == items
    assert {o[1] for o in result.step("m").output} == {cluster.workers["node_a"].node_id}
    # the item that was on node_b when it died was retried after a StepWorkerLostError
    history = batten.run_history("killed-run", store=f"sqlite:///{db}")
    retried = [r for r in history if r.status == StepStatus.RETRYING]
    assert retried and all(r.error_type == StepWorkerLostError.__name__ for r in retried), [
        (r.step_id, r.status, r.attempt, r.error_type, r.error) for r in history
    ]
    completed = Counter(r.step_id for r in history if r.status == StepStatus.COMPLETED)
    item_ids = [k for k in completed if k.startswith("m/")]
    assert len(item_ids) == len(items), completed
    assert all(completed[k] == 1 for k in item_ids), completed
    assert completed["m"] == 1
    assert not [p.name for p in marks.glob("done-*") if node_b.node_id in p.name]


def test_a_step_both_on_ray_and_process_isolated_is_a_definition_error():
    # Merging issue 17's placement with issue 14's isolation: both move the call out of the
    # process, so a step asking for both is refused before anything runs.
    from batten import ToolStep, Workflow, WorkflowDefinitionError
    from isolated_tools import echo  # a module-level (picklable) tool

    wf = Workflow("both", "both")
    wf.add_step(ToolStep("s", echo, {"x": 1}).with_isolation("process").on_ray(num_cpus=1))
    with pytest.raises(WorkflowDefinitionError, match="choose one"):
        wf.validate()
