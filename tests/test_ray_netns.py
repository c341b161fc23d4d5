"""Issue 17, more than one host on one machine: the Ray test cluster (tests/ray_cluster.py) with
every node, and the driver, in a network namespace of its own (tests/netns.py), so that the
traffic between them really crosses interfaces (veth pairs on a bridge, private addresses).

Needs root and ``ip netns``: skipped with the reason elsewhere, a failure where
``BATTEN_REQUIRE_SERVICES`` names ``netns``. The driver (the process running the batten
workflow) is this file run as a script inside the driver's namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ITEMS = 4  # per worker node
pytestmark = pytest.mark.timeout(300)


def burn_where(item: int, seconds: float = 0.3) -> list[Any]:
    """CPU-bound work for ``seconds``; returns [item, node id, node IP, worker pid]."""
    import ray

    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1
    ctx = ray.get_runtime_context()
    return [item, ctx.get_node_id(), ray.util.get_node_ip_address(), os.getpid()]


def _required(service: str) -> bool:
    need = os.environ.get("BATTEN_REQUIRE_SERVICES", "").split(",")
    return service in (s.strip() for s in need)


def _unavailable(service: str, why: str) -> None:
    if _required(service):
        pytest.fail(f"BATTEN_REQUIRE_SERVICES names {service}, but {why}")
    pytest.skip(why)


def _driver(address: str, ip: str, db: str, out: str) -> None:
    """The driver, run in its own namespace (address ``ip``) and attached to that namespace's
    own (CPU-less) Ray node, as a Ray driver always is: connects, waits (at most 60 s) for
    both worker nodes, runs a durable map of CPU-bound items pinned half on node_a and half
    on node_b, and writes what it saw to ``out`` (JSON)."""
    import asyncio

    import batten
    import ray
    from batten import MapStep, StepStatus, ToolStep, Workflow
    from test_ray_netns import burn_where  # by reference (importable on the nodes)

    ray.init(address=address, log_to_driver=False, _node_ip_address=ip)
    nodes: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while len(nodes) < 2 and time.monotonic() < deadline:
        for n in ray.nodes():
            for name in ("node_a", "node_b"):
                if n.get("Alive") and name in n.get("Resources", {}):
                    nodes[name] = n["NodeID"]
        time.sleep(0.2)
    wf = Workflow("netns-spread").with_store(db)
    for name in ("node_a", "node_b"):
        inner = ToolStep("burn", burn_where).on_ray(num_cpus=1, resources={name: 1})
        wf.add_step(MapStep(name, list(range(ITEMS)), inner))
    result = asyncio.run(wf.execute(run_id="netns-run", timeout=120))
    history = batten.run_history("netns-run", store=db)
    report = {
        "status": result.status.value,
        "error": result.error,
        "nodes": nodes,
        "driver_ip": ray.util.get_node_ip_address(),
        "outputs": {name: result.step(name).output for name in ("node_a", "node_b")},
        "completed": [r.step_id for r in history if r.status == StepStatus.COMPLETED],
    }
    Path(out).write_text(json.dumps(report))
    ray.shutdown()


@pytest.fixture
def netns_cluster(tmp_path):
    """Hub + head, node_a, node_b and driver namespaces, and the Ray cluster in them (the
    driver not connected); afterwards, no namespace and no process of theirs is left."""
    try:
        import ray  # noqa: F401
    except ImportError:
        _unavailable("ray", "ray is not installed (pip install 'batten[ray]')")
    import netns
    from ray_cluster import Placement, _pids_naming, start_cluster

    why = netns.unavailable_reason()
    if why is not None:
        _unavailable("netns", why)
    started = time.monotonic()
    with netns.private_network(["head", "node_a", "node_b", "driver"]) as net:
        places = {name: Placement(h.ip, tuple(h.exec_prefix())) for name, h in net.hosts.items()}
        try:
            # the driver's own node: a Ray driver attaches to a raylet on its host
            cluster = start_cluster(
                {"node_a": 1, "node_b": 1, "driver": 0}, places=places, driver=False, timeout=150
            )
        except RuntimeError as exc:
            _unavailable("netns", f"a Ray cluster in network namespaces cannot start: {exc}")
        print(f"\nnetns ray cluster up in {time.monotonic() - started:.1f} s: {cluster.timings()}")
        try:
            yield net, cluster
        finally:
            cluster.stop()
    left_ns = set(net.namespaces()) & netns.existing_namespaces()
    assert not left_ns, f"namespaces outlived the test: {left_ns}"
    left = _pids_naming(cluster.temp_dir)
    assert not left, f"processes of the test cluster outlived it: {left}"


def test_map_over_nodes_in_their_own_network_namespaces(netns_cluster, tmp_path):
    net, cluster = netns_cluster
    hosts = net.hosts
    before = {name: hosts[name].counters() for name in ("head", "node_a", "node_b", "driver")}
    out = tmp_path / "report.json"
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE.parent / "python"), str(HERE)]),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    t0 = time.monotonic()
    done = subprocess.run(
        [
            *hosts["driver"].exec_prefix(),
            *(sys.executable, __file__, cluster.address, hosts["driver"].ip, db, str(out)),
        ],
        env=env,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=180,
    )
    print(f"driver ran in {time.monotonic() - t0:.1f} s")
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    after = {name: hosts[name].counters() for name in before}
    report = json.loads(out.read_text())
    assert report["status"] == "completed", report
    assert report["driver_ip"] == hosts["driver"].ip
    assert set(report["nodes"]) == {"node_a", "node_b"}, report
    for name in ("node_a", "node_b"):
        items = report["outputs"][name]
        assert sorted(o[0] for o in items) == list(range(ITEMS))
        # ran on that node, at that node's namespace address, not in the driver
        assert {o[1] for o in items} == {report["nodes"][name]}, items
        assert {o[2] for o in items} == {hosts[name].ip}, items
    assert report["nodes"]["node_a"] != report["nodes"]["node_b"]
    # every item (and each map) completed exactly once in the checkpoint
    completed = report["completed"]
    item_ids = [s for s in completed if "/" in s]
    assert len(item_ids) == 2 * ITEMS and len(set(item_ids)) == 2 * ITEMS, completed
    assert completed.count("node_a") == 1 and completed.count("node_b") == 1, completed
    # the traffic crossed each namespace's veth, both ways
    for name, counts in after.items():
        for key in ("rx_bytes", "tx_bytes"):
            assert counts[key] > before[name][key], (name, key, before[name], counts)


if __name__ == "__main__":
    _driver(*sys.argv[1:5])
