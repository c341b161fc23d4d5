"""Shared pieces of the benchmark suite (DESIGN.md §5).

Each ``bench_<system>.py`` module registers one builder per workload on a :class:`Suite`. A builder
takes the :class:`Sizes` of the run, builds whatever the system needs (untimed) and returns a
*runner*: a sync or async callable with no arguments that performs the workload once and checks its
result. ``run.py`` starts every module as a worker process (``python bench_x.py --workloads W1``);
the worker times its runners with :func:`measure` and prints one JSON record per (workload,
variant) on a line starting with :data:`MARKER`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import random
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

MARKER = "@@bench "

Runner = Callable[[], Any]
"""Runs a workload once; sync, or async (then it is awaited on one event loop per process)."""

Builder = Callable[["Sizes"], Runner]


@dataclass(frozen=True)
class Sizes:
    """How big each workload is."""

    w1_steps: int = 1000
    w2_fanout: int = 10_000
    w2_sleep: float = 0.05
    w3_nodes: int = 500
    w4_steps: int = 100
    w5_runs: int = 1000
    w6_items: int = 10_000


FULL = Sizes()
QUICK = Sizes(w1_steps=100, w2_fanout=500, w3_nodes=100, w4_steps=20, w5_runs=100, w6_items=500)


@dataclass(frozen=True)
class Goal:
    """batten's goal for a workload: an absolute bound, or a bound on the ratio to plain asyncio.

    ``design_asyncio`` is DESIGN.md §5's plain-asyncio figure for the workload (same unit). An
    absolute goal is also judged scaled to this machine: ``limit * asyncio_here / design_asyncio``,
    since DESIGN's figures come from a faster interpreter than some machines run.
    """

    limit: float
    relative: bool = False
    design_asyncio: float | None = None

    def text(self, unit: str) -> str:
        return f"≤ {self.limit:g}x plain asyncio" if self.relative else f"≤ {self.limit:g} {unit}"

    def met(self, value: float, baseline: float | None) -> bool | None:
        if not self.relative:
            return value <= self.limit
        return None if not baseline else value / baseline <= self.limit

    def scaled_limit(self, baseline: float | None) -> float | None:
        """The absolute limit scaled by this machine's plain asyncio against DESIGN's."""
        if self.relative or not baseline or not self.design_asyncio:
            return None
        return self.limit * baseline / self.design_asyncio


@dataclass(frozen=True)
class Workload:
    """How a workload is reported: its unit, how a runner's seconds convert to it, its goal."""

    wid: str
    title: str
    unit: str
    scale: Callable[[Sizes], float]  # seconds per runner call -> unit
    goal: Goal
    reps: int = 7  # repetitions in a full run (each a median of several runner calls)
    fresh_process_per_rep: bool = False  # M and I: one process per repetition
    baseline: str = ""  # the plain asyncio variant ratios are taken against ("" = its first)


WORKLOADS: dict[str, Workload] = {
    w.wid: w
    for w in (
        Workload(
            "W1",
            "chain of N sync no-op steps, counter in state",
            "µs/step",
            lambda s: 1e6 / s.w1_steps,
            Goal(2, design_asyncio=0.1),
        ),
        Workload(
            "W1a",
            "chain of N async no-op steps, counter in state",
            "µs/step",
            lambda s: 1e6 / s.w1_steps,
            Goal(8, design_asyncio=5),
        ),
        Workload(
            "W2",
            "fan-out to N async steps (asyncio.sleep), then sum",
            "s",
            lambda s: 1.0,
            Goal(1.15, relative=True),
            reps=5,
        ),
        Workload(
            "W3",
            "random DAG of N sync no-op nodes, ≤3 deps each, seed 42",
            "ms",
            lambda s: 1e3,
            Goal(1, design_asyncio=4.4),
            baseline="tasks",
        ),
        Workload(
            "W4",
            "N independent steps failing twice then succeeding, zero backoff",
            "µs/step",
            lambda s: 1e6 / s.w4_steps,
            Goal(10, design_asyncio=22),
        ),
        Workload(
            "W5",
            "pre-built 3-step workflow (sync steps) run N times",
            "µs/run",
            lambda s: 1e6 / s.w5_runs,
            Goal(15, design_asyncio=15),
        ),
        Workload(
            "W6",
            "map over N items computed at run time (async asyncio.sleep each), then sum",
            "s",
            lambda s: 1.0,
            Goal(1.15, relative=True),
            reps=5,
        ),
        Workload(
            "C",
            "W1 with every step checkpointed to a SQLite store (sync: before the next step "
            "starts; batch: buffered)",
            "µs/step",
            lambda s: 1e6 / s.w1_steps,
            # DESIGN §5: <= 20 µs/step added to W1 (whose goal is 2).
            Goal(22),
        ),
        Workload(
            "M",
            "peak RSS of a fresh process running W2 once",
            "MB",
            lambda s: 1.0,
            Goal(1.3, relative=True),
            reps=5,
            fresh_process_per_rep=True,
        ),
        Workload(
            "I",
            "import time in a fresh process, minus `python -c pass`",
            "s",
            lambda s: 1.0,
            Goal(0.05, design_asyncio=0.03),
            reps=5,
            fresh_process_per_rep=True,
        ),
    )
}


def repetitions(wid: str, quick: bool) -> int:
    """How many repetitions a workload gets: fewer in a quick run, one if each needs a process."""
    workload = WORKLOADS[wid]
    if not quick:
        return workload.reps
    return 1 if workload.fresh_process_per_rep else 2


# ---- shared workload material -------------------------------------------------------------------


def random_dag(nodes: int, seed: int = 42) -> list[list[int]]:
    """W3's graph: node i depends on up to 3 distinct earlier nodes; index order is topological."""
    rng = random.Random(seed)
    return [rng.sample(range(i), rng.randint(0, min(3, i))) for i in range(nodes)]


class Tally:
    """A no-op step that records its calls, so a run can prove every step ran exactly once."""

    def __init__(self) -> None:
        self.calls: list[None] = []  # list.append is atomic, so steps on threads are fine too

    def noop(self, *_: object) -> None:
        self.calls.append(None)

    def take(self) -> int:
        n = len(self.calls)
        self.calls.clear()
        return n


def flaky(failures: int = 2) -> Callable[..., str]:
    """W4's step: raises RuntimeError `failures` times, then succeeds; repeats that cycle."""
    calls = 0

    def step(*_: object) -> str:
        nonlocal calls
        calls += 1
        if calls % (failures + 1):
            raise RuntimeError(f"transient failure {calls}")
        return "ok"

    return step


def expect(actual: object, expected: object) -> None:
    """Check a run's result (not an ``assert``: the checks must survive ``python -O``)."""
    if actual != expected:
        raise AssertionError(f"expected {expected!r}, got {actual!r}")


def triangle(n: int) -> int:
    """0 + 1 + ... + (n - 1): what W2's sum step must return."""
    return n * (n - 1) // 2


# ---- timing -------------------------------------------------------------------------------------


async def _timed_async(runner: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await runner()
    return time.perf_counter() - start


def _timed_sync(runner: Runner) -> float:
    start = time.perf_counter()
    runner()
    return time.perf_counter() - start


@contextlib.contextmanager
def _timer(runner: Runner) -> Iterator[Callable[[], float]]:
    """Yield a function that runs `runner` once and returns its seconds.

    Async runners all run on one event loop (created outside the timed region); sync runners run
    with no event loop at all, as a script would call them.
    """
    if inspect.iscoroutinefunction(runner):
        with asyncio.Runner() as loop:
            yield lambda: loop.run(_timed_async(runner))
    else:
        yield lambda: _timed_sync(runner)


def measure(runner: Runner, reps: int, warmup: int = 1, target: float = 0.25) -> list[float]:
    """Seconds per runner call: one value per repetition, each the median of enough calls to
    fill about `target` seconds (sized from the warm-up call)."""
    with _timer(runner) as once:
        first = [once() for _ in range(max(warmup, 1))][-1]
        inner = max(1, min(10_000, round(target / max(first, 1e-9))))
        return [statistics.median(once() for _ in range(inner)) for _ in range(reps)]


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- the registry and the worker ----------------------------------------------------------------


class NotApplicable(Exception):
    """Raised by a builder when the system cannot express the workload; the message says why."""


@dataclass
class Record:
    """One (system, workload, variant) result as the worker reports it."""

    system: str
    workload: str
    variant: str = ""
    status: str = "ok"  # ok | n/a | error
    values: list[float] = field(default_factory=list)  # one per repetition, in the workload's unit
    reason: str = ""
    build_s: float = 0.0  # untimed setup (building/compiling the workflow), for information


@dataclass
class Suite:
    """The workloads one system implements: ``@suite.workload("W1")`` registers a builder."""

    system: str
    builders: dict[str, dict[str, Builder]] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)

    def workload(self, wid: str, variant: str = "") -> Callable[[Builder], Builder]:
        """Register a builder for `wid`; the first variant registered is the system's main one."""

        def register(builder: Builder) -> Builder:
            self.builders.setdefault(wid, {})[variant] = builder
            return builder

        return register

    def cannot(self, wid: str, reason: str) -> None:
        """Record that this system cannot express `wid`, and why."""
        self.not_applicable[wid] = reason

    def main(self, argv: list[str] | None = None) -> None:
        """Worker entry point: run the requested workloads and print one record each."""
        parser = argparse.ArgumentParser(description=f"benchmark worker for {self.system}")
        parser.add_argument("--workloads", required=True, help="comma-separated ids, e.g. W1,W5")
        parser.add_argument("--reps", type=int, default=0, help="repetitions (0: the default)")
        parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
        args = parser.parse_args(argv)
        sizes = QUICK if args.quick else FULL
        for wid in args.workloads.split(","):
            reps = args.reps or repetitions(wid, args.quick)
            for record in self._run(wid, sizes, reps, args.quick):
                print(MARKER + json.dumps(asdict(record)), flush=True)

    def _run(self, wid: str, sizes: Sizes, reps: int, quick: bool) -> Iterator[Record]:
        if wid in self.not_applicable:
            yield Record(self.system, wid, status="n/a", reason=self.not_applicable[wid])
            return
        if wid == "M":  # one W2 run in this (fresh) process, then its peak RSS
            builders = dict(list(self.builders.get("W2", {}).items())[:1])
        else:
            builders = self.builders.get(wid, {})
        if not builders:
            yield Record(self.system, wid, status="n/a", reason="not implemented")
            return
        workload = WORKLOADS[wid]
        for variant, builder in builders.items():
            record = Record(self.system, wid, variant if wid != "M" else "")
            try:
                start = time.perf_counter()
                runner = builder(sizes)
                record.build_s = time.perf_counter() - start
                if wid == "M":
                    measure(runner, reps=0, warmup=1)
                    record.values = [peak_rss_mb()]
                else:
                    seconds = measure(runner, reps, target=0.02 if quick else 0.25)
                    record.values = [t * workload.scale(sizes) for t in seconds]
            except NotApplicable as exc:
                record.status, record.reason = "n/a", str(exc)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                record.status, record.reason = "error", f"{type(exc).__name__}: {exc}"
            yield record
