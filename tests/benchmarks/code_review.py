"""Benchmark: examples/code_review on a real package, batten against plain asyncio.

batten: ``batten run examples/code_review/workflow.yaml --yes`` (in-process, default SQLite store,
progress off). Baseline, in the same process and run: the same analyser coroutines over the
same files with the same concurrency (2 per analyser, the three analysers at once) under
``asyncio.gather`` and a semaphore, then the same collect/review/report functions -- what a
hand-written script would do, without checkpoints, retries or timeouts.

Usage: ``python tests/benchmarks/code_review.py [--target DIR] [--rounds N]`` (``make
bench-review``); the default target is the standard library's ``idlelib`` (125 files).
Prints each round, the medians and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "code_review"


async def plain(target: str, out_dir: str) -> dict[str, Any]:
    sys.path.insert(0, str(EXAMPLE))
    import review_report
    import review_tools
    import reviewers

    files = review_tools.discover_files(target)
    limits = {name: asyncio.Semaphore(2) for name in ("ruff", "radon", "bandit")}

    async def one(name: str, path: str) -> Any:
        async with limits[name]:
            return await getattr(review_tools, f"run_{name}")(target, path)

    results = await asyncio.gather(
        *(asyncio.gather(*(one(n, f) for f in files)) for n in ("ruff", "radon", "bandit"))
    )
    summary = review_tools.collect(files, *[list(r) for r in results])

    class Ctx(dict[str, Any]):
        """The two things the reviewers read of a batten context."""

        results: ClassVar[dict[str, Any]] = {"collect": summary}

    ctx = Ctx(security_threshold=1)
    if reviewers.needs_security_review(ctx):
        review = await reviewers.local_security_review(summary["digest"], context=ctx)
    else:
        review = await reviewers.local_summary_review(summary["digest"], context=ctx)
    report: dict[str, Any] = review_report.write_report(summary, review, out_dir, target)
    return report


def batten_run(target: str) -> int:
    from batten.cli import main

    return main(["run", str(EXAMPLE / "workflow.yaml"), "--input", f"target={target}", "--yes",
                 "-q"])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(sysconfig.get_paths()["stdlib"]) / "idlelib"
    parser.add_argument("--target", default=str(default))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ["BATTEN_REVIEWER"] = "local"
    target = str(Path(args.target).resolve())
    files = sum(1 for _ in Path(target).rglob("*.py"))
    print(f"code review of {target} ({files} .py files), {os.cpu_count()} CPUs")
    timings: dict[str, list[float]] = {"batten": [], "plain asyncio": []}
    for i in range(args.rounds):
        for name in ("batten", "plain asyncio"):  # alternate, so drift hits both
            work = tempfile.mkdtemp(prefix="batten-bench-review-")
            cwd = os.getcwd()
            os.chdir(work)
            try:
                started = time.perf_counter()
                if name == "batten":
                    code = batten_run(target)
                    assert code == 0, f"batten run exited {code}"
                else:
                    asyncio.run(plain(target, "review-report"))
                took = time.perf_counter() - started
            finally:
                os.chdir(cwd)
                shutil.rmtree(work, ignore_errors=True)
            timings[name].append(took)
            print(f"  round {i + 1}: {name:<13} {took:6.2f} s", flush=True)
    w, p = (statistics.median(timings[k]) for k in ("batten", "plain asyncio"))
    print(f"median: batten {w:.2f} s, plain asyncio {p:.2f} s, ratio {w / p:.3f}")
    print(f"goal: under 60 s for ~100 files: {'met' if w < 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
