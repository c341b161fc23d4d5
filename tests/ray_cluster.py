"""A local Ray cluster for the tests and the Ray benchmark: a head node (no CPUs: it schedules
nothing) and worker nodes, each a separate ``ray start --block`` process in its own session, so
a node is killed with its whole process group (raylet, workers) and nothing outlives the
fixture. Ray's session files live in a short temp dir (``--temp-dir``; Ray's socket paths must
stay under ~107 bytes)."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    node_id: str = ""

    def kill(self) -> None:
        """SIGKILL the node's process group (``ray start``, its raylet and its workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@dataclass
class Cluster:
    address: str
    temp_dir: str
    head: Node
    workers: dict[str, Node] = field(default_factory=dict)

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
    return env


def _ray_cmd() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [_ray_cmd(), "start", "--block", "--disable-usage-stats", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,
        )


def _common(temp_dir: str) -> list[str]:
    return [
        f"--temp-dir={temp_dir}",
        "--object-store-memory=100000000",
        "--node-ip-address=127.0.0.1",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]


def start_cluster(
    workers: dict[str, int], *, timeout: float = 150.0, connect: Any = None
) -> Cluster:
    """Starts a head and one worker node per ``{name: num_cpus}`` (each with the custom
    resource ``{name: 1}``), connects this process as a driver (``ray.init``) and waits,
    at most ``timeout`` seconds, until every node is alive. Raises ``RuntimeError`` (after
    stopping whatever started) when the cluster does not come up."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="btray-", dir="/tmp")
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = Node(
        "head",
        _start(
            [
                "--head",
                f"--port={port}",
                "--num-cpus=0",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
                *_common(temp_dir),
            ],
            Path(temp_dir) / "head.log",
        ),
    )
    cluster = Cluster(address, temp_dir, head)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if head.proc.poll() is not None:
                raise RuntimeError(
                    "ray head exited: " + (Path(temp_dir) / "head.log").read_text()[-2000:]
                )
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("ray head did not listen in time")
            time.sleep(0.5)

        def start_worker(name: str) -> None:
            proc = _start(
                [
                    f"--address={address}",
                    f"--num-cpus={workers[name]}",
                    f'--resources={{"{name}": 1}}',
                    *_common(temp_dir),
                ],
                Path(temp_dir) / f"{name}.log",
            )
            cluster.workers[name] = Node(name, proc)

        for name in workers:
            start_worker(name)
        restarts = 2  # on a loaded machine a raylet can miss Ray's fixed 30 s startup wait
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
            for w in list(cluster.workers.values()):
                if w.proc.poll() is not None:
                    log = (Path(temp_dir) / f"{w.name}.log").read_text()[-2000:]
                    if restarts == 0:
                        raise RuntimeError(f"ray worker {w.name} exited: {log}")
                    restarts -= 1
                    w.kill()
                    start_worker(w.name)
            if time.monotonic() > deadline:
                raise RuntimeError(f"ray nodes not alive in {timeout} s: {alive}")
            time.sleep(0.5)
    except BaseException:
        with contextlib.suppress(Exception):
            ray.shutdown()
        cluster.stop()
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
