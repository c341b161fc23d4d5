"""Benchmarks of steps on Ray (issue 17; a note, not a test): run ``python tests/ray_bench.py``.

1. Per-step overhead: a fan-out of N no-op steps through batten on Ray (a ``MapStep`` whose
   items are Ray tasks) against the same tasks submitted with plain ``ray.remote`` and awaited
   with ``asyncio.gather(*refs)``. Goal: batten <= 1.2x plain.
2. Scaling: M CPU-bound steps of ~50 ms pure-Python work on one worker CPU against two.
   Goal: >= 1.7x faster with two.

Each starts its own local cluster (tests/ray_cluster.py): a head with no CPUs and worker nodes
of one CPU each. Reports medians of ``--repeat`` runs after a warm-up (workers started), one JSON
line per benchmark; ``{"skipped": reason}`` instead when Ray is not installed or the cluster does
not start (tests/benchmarks/run.py's ``ray`` group shows it as skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path[:0] = [
    str(Path(__file__).resolve().parent),
    str(Path(__file__).resolve().parents[1] / "python"),
]

from batten import MapStep, ToolStep, Workflow  # noqa: E402
from ray_cluster import running_cluster  # noqa: E402


class ClusterUnavailable(Exception):
    """Ray is not installed, or the local cluster did not start."""


@contextlib.contextmanager
def cluster(workers: dict[str, int]) -> Iterator[None]:
    """``running_cluster(workers)``, its start's failure as :class:`ClusterUnavailable`."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ClusterUnavailable("ray is not installed (pip install 'batten[ray]')") from None
    started = contextlib.ExitStack()
    try:
        started.enter_context(running_cluster(workers))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        raise ClusterUnavailable(f"the local Ray cluster did not start: {exc}") from exc
    with started:
        yield


def noop(item: int) -> int:
    return item


def cpu_50ms(item: int) -> int:
    end = time.process_time() + 0.05
    x = 0
    while time.process_time() < end:
        x += 1
    return item


def _batten(fn: Any, n: int, num_cpus: float) -> float:
    wf = Workflow("bench")
    wf.add_step(MapStep("m", list(range(n)), ToolStep("s", fn).on_ray(num_cpus=num_cpus)))
    t = time.perf_counter()
    result = wf.run()
    elapsed = time.perf_counter() - t
    assert result.is_success, result.error
    return elapsed


def _plain(fn: Any, n: int, num_cpus: float) -> float:
    import ray

    remote = ray.remote(max_retries=0, retry_exceptions=False)(fn).options(num_cpus=num_cpus)

    async def main() -> list[Any]:
        return await asyncio.gather(*(remote.remote(i) for i in range(n)))

    t = time.perf_counter()
    out = asyncio.run(main())
    elapsed = time.perf_counter() - t
    assert len(out) == n
    return elapsed


def _median(f: Any, repeat: int) -> float:
    return statistics.median(f() for _ in range(repeat))


def overhead(n: int, repeat: int) -> dict[str, Any]:
    with cluster({"node_a": 1, "node_b": 1}):
        # warm-up: start the worker processes, import batten in them
        _plain(noop, 50, 0.1)
        _batten(noop, 50, 0.1)
        plain = _median(lambda: _plain(noop, n, 0.1), repeat)
        ours = _median(lambda: _batten(noop, n, 0.1), repeat)
    return {
        "workload": f"fan-out of {n} no-op steps",
        "plain_ray_s": round(plain, 3),
        "batten_s": round(ours, 3),
        "ratio": round(ours / plain, 2),
        "goal": "<= 1.2",
    }


def scaling(m: int, repeat: int) -> dict[str, Any]:
    times = {}
    for workers in (1, 2):
        nodes = {f"node_{i}": 1 for i in range(workers)}
        with cluster(nodes):
            _batten(cpu_50ms, 4, 1)  # warm-up
            times[workers] = _median(lambda: _batten(cpu_50ms, m, 1), repeat)
    return {
        "workload": f"{m} CPU-bound steps of ~50 ms",
        "one_cpu_s": round(times[1], 3),
        "two_cpus_s": round(times[2], 3),
        "speedup": round(times[1] / times[2], 2),
        "goal": ">= 1.7",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="no-op steps (default 1000)")
    parser.add_argument("--m", type=int, default=200, help="CPU-bound steps (default 200)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("overhead", "scaling"), help="run one benchmark")
    args = parser.parse_args()
    try:
        if args.only in (None, "overhead"):
            print(json.dumps(overhead(args.n, args.repeat)), flush=True)
        if args.only in (None, "scaling"):
            print(json.dumps(scaling(args.m, args.repeat)), flush=True)
    except ClusterUnavailable as exc:
        print(json.dumps({"skipped": str(exc)}), flush=True)


if __name__ == "__main__":
    main()
