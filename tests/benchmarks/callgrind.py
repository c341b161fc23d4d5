"""Instruction counts per step / per run of batten's in-process workloads (issue 18), under
callgrind: load-independent, so they can be compared on a shared machine where wall times drift.

    python tests/benchmarks/callgrind.py W1 W3 W5i    # runs valgrind itself, prints a table
    python tests/benchmarks/callgrind.py --inner W1 5  # one measured process (under valgrind)

Each workload is ``bench_batten``'s own runner. For a count ``n`` the script runs it once
(warm-up: plans compiled, the adaptive inline rule settled, caches filled), then ``n`` more
times; callgrind measures the process twice, with ``n`` and ``3 n`` runs, and the difference
over ``2 n`` runs (times steps per run) is what one run (step) costs, start-up cancelled out.
Build the extension in release mode first (``cargo build --release --features
pyo3/extension-module``, copied over ``python/batten/_core*.so``): a debug build's counts say
little.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: (runs per measured unit n, units per run, unit name) per workload.
PLAN = {
    "W1": (4, 1000, "instr/step"),
    "W1a": (4, 1000, "instr/step"),
    "W3": (4, 1, "instr/run"),
    "W4": (4, 100, "instr/step"),
    "W5": (4, 1000, "instr/run"),  # one W5 runner call is w5_runs runs
    # W5 with its steps forced onto the loop thread (`with_inline(True)`): under valgrind a call
    # takes ~50x its wall time, so the adaptive rule's 1 ms bound sends some of W5's calls back
    # to the workers, and its count swings with the thread hops; W5i counts the same run as a
    # warm service runs it.
    "W5i": (4, 1000, "instr/run"),
}


def w5_inline(s: Any) -> Any:
    """W5's runner with every step `with_inline(True)`."""
    import bench_batten
    from batten import ToolStep, Workflow

    workflow = Workflow("w5", "w5")
    for i in range(3):
        workflow.add_step(ToolStep(f"s{i}", bench_batten.inc).with_inline(True))

    async def run() -> None:
        for _ in range(s.w5_runs):
            result = await workflow.execute(bench_batten.counter_context("w5"))
            bench_batten.expect(bench_batten.completed(result, 3).context["counter"], 3)

    return run


def inner(workload: str, n: int) -> None:
    import bench_batten
    from _harness import Sizes

    if workload == "W5i":
        runner = w5_inline(Sizes())
    else:
        runner = next(iter(bench_batten.suite.builders[workload].values()))(Sizes())

    async def main() -> None:
        for i in range(1 + n):
            if i == 1:
                # Everything the warm-up left is moved out of the collector's sight: otherwise
                # a full collection (cost ~ all of the heap, imports included) lands in one
                # count and not the other, and the difference swings by ~20,000 a run.
                gc.collect()
                gc.freeze()
            out = runner()
            if asyncio.iscoroutine(out):
                await out

    # The warm-up settles the adaptive inline rule (MEASURED_CALLS calls per step) for W5/W3.
    asyncio.run(main())


def measure(workload: str) -> float:
    n, units, _ = PLAN[workload]
    totals = []
    for count in (n, 3 * n):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "cg.out")
            subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    sys.executable,
                    __file__,
                    "--inner",
                    workload,
                    str(count),
                ],
                check=True,
                capture_output=True,
                timeout=1800,
            )
            text = Path(out).read_text()
            m = re.search(r"^summary:\s+(\d+)", text, re.M) or re.search(
                r"^totals:\s+(\d+)", text, re.M
            )
            assert m, "no summary in callgrind output"
            totals.append(int(m.group(1)))
    return (totals[1] - totals[0]) / (2 * n * units)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inner"]:
        inner(sys.argv[2], int(sys.argv[3]))
    else:
        for w in sys.argv[1:]:
            print(f"{w}: {measure(w):,.0f} {PLAN[w][2]}", flush=True)
