"""A local Ray cluster for the tests and the Ray benchmark: a head node (no CPUs: it schedules
nothing) and worker nodes, each a separate ``ray start --block`` process in its own session, so
a node is killed with its whole process group (raylet, agents, workers) and nothing outlives
the fixture.

Why it starts the way it does (a clean clone's CI run on a loaded 2-core machine had worker
nodes miss Ray's registration wait on every attempt):

- **One temp dir per node** (``--temp-dir``, all under one short ``/tmp/btray-*`` dir: Ray's
  socket paths must stay under ~107 bytes). Nodes sharing a temp dir share its ``sockets/``
  dir, where each new node picks the next free name for its object store's socket; two nodes
  starting at once can pick the same one, and the loser's raylet aborts (``bind: Address
  already in use``) while its ``ray start`` waits out the registration wait for nothing.
- **Nodes start one at a time**: a node is up when its ``ray start`` reports it (it has waited
  for the node to register with the GCS); only then does the next one start, so a loaded
  machine is not asked to start three raylets and their agents at once.
- **A longer registration wait**: ``RAY_raylet_start_wait_time_s`` (Ray's own config, the
  bound on waiting for the node to appear in the GCS; Ray's ``ray start`` otherwise gives up
  after 30 s) is raised to :data:`REGISTRATION_WAIT_S`; a node that still fails is restarted
  (at most twice), all within the caller's overall ``timeout``.
- Nothing the tests do not use: no dashboard, no log monitor, no drain on SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent / "python"

#: Seconds a starting node may take to register with the GCS (Ray's default: 30 s in
#: ``ray start``); a loaded CI machine can take longer to start a raylet and its agents.
REGISTRATION_WAIT_S = 90
#: Times a node that failed to start is started again.
RESTARTS = 2
#: What ``ray start`` prints once its node is registered (and what it prints when not).
_STARTED = "Ray runtime started."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    node_id: str = ""
    started_in: float = 0.0  # seconds from `ray start` to the node registered
    attempts: int = 1

    def kill(self) -> None:
        """SIGKILL the node's process group (``ray start``, its raylet and its workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Cluster:
    address: str
    temp_dir: str
    head: Node
    workers: dict[str, Node] = field(default_factory=dict)

    def timings(self) -> dict[str, float]:
        """Seconds each node took to start (``ray start`` to registered)."""
        return {n.name: round(n.started_in, 1) for n in [self.head, *self.workers.values()]}

    def stop(self) -> None:
        for node in [*self.workers.values(), self.head]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for node in [*self.workers.values(), self.head]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            node.kill()
        # Anything a node daemonized out of its group and left behind: processes whose
        # command line names this cluster's temp dir (ours alone), killed by pid.
        for pid in _pids_naming(self.temp_dir):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _pids_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(int(entry.name))
    return found


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(PYTHON_DIR), str(HERE), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["RAY_AUTH_MODE"] = "disabled"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_raylet_start_wait_time_s"] = str(REGISTRATION_WAIT_S)
    # `ray start --block` drains its node for up to 30 s on SIGTERM (for Ray Serve); a test
    # node has nothing to drain, so its SIGTERM stops it at once.
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    return env


def _ray_cmd() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


@dataclass(frozen=True)
class Placement:
    """Where a node runs: its address (``--node-ip-address``) and the command prefix that puts
    its ``ray start`` there (e.g. ``ip netns exec <ns>``; none: this machine's own network)."""

    ip: str = "127.0.0.1"
    prefix: tuple[str, ...] = ()


LOCAL = Placement()


def _start(name: str, args: list[str], base: Path, where: Placement = LOCAL) -> Node:
    """``ray start --block`` for node ``name`` with its own temp dir under ``base``, at
    ``where``."""
    temp = base / name
    temp.mkdir(exist_ok=True)
    log = base / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                *where.prefix,
                *(_ray_cmd(), "start", "--block", "--disable-usage-stats"),
                f"--temp-dir={temp}",
                "--object-store-memory=100000000",
                f"--node-ip-address={where.ip}",
                "--include-log-monitor=false",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--metrics-export-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}",
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,
        )
    return Node(name, proc, log)


def _wait_started(node: Node, deadline: float) -> bool:
    """Waits (until ``deadline``) for ``node``'s ``ray start`` to report it registered; False
    when it exited or the time ran out."""
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        if _STARTED in node.tail(1_000_000):
            node.started_in = time.monotonic() - t0
            return True
        if node.proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def _start_node(
    name: str, args: list[str], base: Path, deadline: float, where: Placement = LOCAL
) -> Node:
    """Starts node ``name`` and waits for it, restarting it at most :data:`RESTARTS` times.
    Raises ``RuntimeError`` (the node's log tail) when it never comes up."""
    for attempt in range(1, RESTARTS + 2):
        node = _start(name, args, base, where)
        node.attempts = attempt
        t0 = time.monotonic()
        if _wait_started(node, min(deadline, t0 + REGISTRATION_WAIT_S + 30)):
            node.started_in = time.monotonic() - t0
            return node
        node.kill()
        if time.monotonic() >= deadline:
            break
    raise RuntimeError(f"ray node {name} did not start ({attempt} attempts): {node.tail()}")


def start_cluster(
    workers: dict[str, int],
    *,
    timeout: float = 240.0,
    connect: Any = None,
    places: dict[str, Placement] | None = None,
    driver: bool = True,
) -> Cluster:
    """Starts a head and then, one at a time, one worker node per ``{name: num_cpus}`` (each
    with the custom resource ``{name: 1}``), connects this process as a driver (``ray.init``)
    and waits until every node is alive, all within ``timeout`` seconds. Raises
    ``RuntimeError`` (after stopping whatever started) when the cluster does not come up.

    ``places`` puts nodes (``"head"`` or a worker's name) elsewhere than this machine's own
    network (:class:`Placement`: e.g. a network namespace of their own); with ``driver=False``
    this process does not connect (the driver runs elsewhere, e.g. in a namespace of its own,
    and the worker nodes' ids are left empty): the cluster is up once every ``ray start`` has
    reported its node registered with the GCS."""
    import ray

    places = places or {}
    base = Path(tempfile.mkdtemp(prefix="btray-", dir="/tmp"))
    port = free_port()
    address = f"{places.get('head', LOCAL).ip}:{port}"
    deadline = time.monotonic() + timeout
    cluster: Cluster | None = None
    try:
        head = _start_node(
            "head",
            [
                "--head",
                f"--port={port}",
                "--num-cpus=0",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
            ],
            base,
            deadline,
            places.get("head", LOCAL),
        )
        cluster = Cluster(address, str(base), head)
        for name, cpus in workers.items():
            cluster.workers[name] = _start_node(
                name,
                [f"--address={address}", f"--num-cpus={cpus}", f'--resources={{"{name}": 1}}'],
                base,
                deadline,
                places.get(name, LOCAL),
            )
        if not driver:
            return cluster
        os.environ["RAY_AUTH_MODE"] = "disabled"
        ray.init(address=address, log_to_driver=False, **(connect or {}))
        while True:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            for n in alive:
                for name in workers:
                    if name in n.get("Resources", {}):
                        cluster.workers[name].node_id = n["NodeID"]
            if all(w.node_id for w in cluster.workers.values()):
                return cluster
            if time.monotonic() > deadline:
                raise RuntimeError(f"ray nodes not alive in {timeout} s: {alive}")
            time.sleep(0.5)
    except BaseException:
        with contextlib.suppress(Exception):
            ray.shutdown()
        if cluster is not None:
            cluster.stop()
        else:
            for pid in _pids_naming(str(base)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(base, ignore_errors=True)
        raise


@contextlib.contextmanager
def running_cluster(workers: dict[str, int], **kwargs: Any) -> Iterator[Cluster]:
    """:func:`start_cluster`, shut down (driver and every node) on exit."""
    import ray

    cluster = start_cluster(workers, **kwargs)
    try:
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        cluster.stop()
