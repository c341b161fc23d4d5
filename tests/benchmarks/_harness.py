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
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
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
    d1_steps: int = 200
    d2_fanout: int = 100
    d2_sleep: float = 0.01
    d3_steps: int = 50
    d3_kill_at: int = 25  # 1-based: the 25th step kills its process the first time it runs
    d4_runs: int = 1000
    iso_runs: int = 100


FULL = Sizes()
QUICK = Sizes(
    w1_steps=100,
    w2_fanout=500,
    w3_nodes=100,
    w4_steps=20,
    w5_runs=100,
    w6_items=500,
    d1_steps=20,
    d2_fanout=20,
    d3_steps=10,
    d3_kill_at=5,
    d4_runs=20,
    iso_runs=10,
)


@dataclass(frozen=True)
class Goal:
    """batten's goal for a workload (issue 18): at most `ratio` times the workload's yardstick,
    and (if `cap` is set) never more than `cap` in the workload's unit. A goal with neither is a
    note: the value is reported, not judged."""

    ratio: float | None = None
    cap: float | None = None

    def text(self) -> str:
        parts = [f"≤ {self.ratio:g}x"] if self.ratio is not None else []
        parts += [f"never > {self.cap:g}"] if self.cap is not None else []
        return " and ".join(parts) or "note"

    def met(self, value: float, baseline: float | None) -> bool | None:
        """Whether `value` meets the goal; None for a note, or a ratio without a baseline."""
        if self.ratio is None and self.cap is None:
            return None
        if self.cap is not None and value > self.cap:
            return False
        if self.ratio is not None:
            return None if not baseline else value / baseline <= self.ratio
        return True


@dataclass(frozen=True)
class Workload:
    """How a workload is reported: its unit, how a runner's seconds convert to it, its goal.

    ``scale(sizes)`` converts seconds per runner call to the unit. Where the unit is per item
    (µs/step, µs/run), ``count(sizes)`` is the number of items a runner call does; a runner may do
    fewer (a slow peer) and say so with a ``count`` attribute, and its value is scaled by that.
    """

    wid: str
    title: str
    unit: str
    scale: Callable[[Sizes], float]  # seconds per runner call -> unit
    goal: Goal
    reps: int = 7  # repetitions in a full run (each a median of several runner calls)
    fresh_process_per_rep: bool = False  # M and I: one process per repetition
    baseline: str = ""  # the plain asyncio variant ratios are taken against ("" = its first)
    yardstick: str = "plain asyncio"  # what the baseline is, in words
    count: Callable[[Sizes], int] | None = None
    quick_reps: int = 2  # repetitions in a quick run (without a fresh process per repetition)
    warmup: int = 1  # untimed runner calls before the repetitions
    ideal: Callable[[Sizes], float] | None = None  # the ideal value (W2, D2: the sleep), if any


def per(factor: float, count: Callable[[Sizes], int]) -> dict[str, Any]:
    """`scale` and `count` for a per-item unit: `factor` units a second over `count` items."""
    return {"scale": lambda s: factor / count(s), "count": count}


WORKLOADS: dict[str, Workload] = {
    w.wid: w
    for w in (
        Workload(
            "W1",
            "chain of N sync no-op steps, counter in state",
            "µs/step",
            goal=Goal(0.2),
            baseline="tasks",
            yardstick="asyncio Task per step",
            **per(1e6, lambda s: s.w1_steps),
        ),
        Workload(
            "W1a",
            "chain of N async no-op steps, counter in state",
            "µs/step",
            goal=Goal(0.6),
            yardstick="asyncio Task per step",
            **per(1e6, lambda s: s.w1_steps),
        ),
        Workload(
            "W2",
            "fan-out to N async steps (asyncio.sleep), then sum",
            "s",
            lambda s: 1.0,
            Goal(1.05),
            reps=5,
            yardstick="asyncio.gather",
            ideal=lambda s: s.w2_sleep,
        ),
        Workload(
            "W3",
            "random DAG of N sync no-op nodes, ≤3 deps each, seed 42",
            "ms",
            lambda s: 1e3,
            Goal(0.1),
            baseline="tasks",
            yardstick="asyncio Task per step",
        ),
        Workload(
            "W4",
            "N independent steps failing twice then succeeding, zero backoff",
            "µs/step",
            goal=Goal(0.3),
            yardstick="asyncio Task per step",
            **per(1e6, lambda s: s.w4_steps),
        ),
        Workload(
            "W5",
            "W5r: pre-built 3-step workflow (sync steps), built once, run N times",
            "µs/run",
            goal=Goal(1.0),
            yardstick="asyncio Task per step",
            **per(1e6, lambda s: s.w5_runs),
        ),
        Workload(
            "W6",
            "map over N items computed at run time (async asyncio.sleep each), then sum",
            "s",
            lambda s: 1.0,
            Goal(1.15),
            reps=5,
            yardstick="asyncio.gather",
            ideal=lambda s: s.w2_sleep,
        ),
        Workload(
            "C",
            "W1 (C): W1 with every step checkpointed to a SQLite store (sync: before the next "
            "step starts; batch: buffered); issue 14's lease heartbeat cost shows here",
            "µs/step",
            goal=Goal(),
            **per(1e6, lambda s: s.w1_steps),
        ),
        Workload(
            "ISO",
            "1-step workflow run N times: the step in-process vs isolated in a process "
            '(`with_isolation("process")`, issue 14)',
            "µs/run",
            goal=Goal(),
            **per(1e6, lambda s: s.iso_runs),
        ),
        Workload(
            "D1",
            "durable chain of N sync steps, each checkpointed before the next starts",
            "µs/step",
            goal=Goal(1.2),
            baseline="floor",
            yardstick="the floor",
            **per(1e6, lambda s: s.d1_steps),
        ),
        Workload(
            "D2",
            "durable fan-out of N `await asyncio.sleep(0.01)` steps, then a join",
            "ms",
            lambda s: 1e3,
            Goal(),
            reps=5,
            baseline="floor",
            yardstick="the floor",
            ideal=lambda s: s.d2_sleep * 1e3,
        ),
        Workload(
            "D3",
            "chain of N durable steps SIGKILLed in step K; recovery in a new process "
            "(open the store, find the run, finish it), side effects checked exactly once",
            "ms",
            lambda s: 1e3,
            Goal(2.0),
            reps=5,
            baseline="floor",
            yardstick="the floor",
            quick_reps=1,
            warmup=0,
        ),
        Workload(
            "D4",
            "pre-built durable 3-step workflow run N times",
            "µs/run",
            goal=Goal(2.0),
            baseline="floor",
            yardstick="the floor",
            **per(1e6, lambda s: s.d4_runs),
        ),
        Workload(
            "M",
            "peak RSS of a fresh process running W2 once",
            "MB",
            lambda s: 1.0,
            Goal(1.2),
            reps=5,
            fresh_process_per_rep=True,
        ),
        Workload(
            "I",
            "import time in a fresh process, minus `python -c pass`",
            "s",
            lambda s: 1.0,
            Goal(1.5, cap=0.05),
            reps=5,
            fresh_process_per_rep=True,
            yardstick="import asyncio",
        ),
    )
}


def repetitions(wid: str, quick: bool) -> int:
    """How many repetitions a workload gets: fewer in a quick run, one if each needs a process."""
    workload = WORKLOADS[wid]
    if not quick:
        return workload.reps
    return 1 if workload.fresh_process_per_rep else workload.quick_reps


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


def d3_step(directory: Path, i: int, s: Sizes) -> None:
    """D3's step `i` (0-based): records its side effect (one line in ``effects``), except that the
    ``s.d3_kill_at``-th step SIGKILLs its own process the first time it runs, before its effect.

    A recovery that re-ran a completed step would write its index twice; one that skipped a
    step would leave it out: :func:`crash_and_recover` checks every index appears exactly once.
    """
    marker = directory / "killed"
    if i == s.d3_kill_at - 1 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    with open(directory / "effects", "a") as effects:  # one small O_APPEND write: atomic
        effects.write(f"{i}\n")


def _effects(directory: Path) -> list[int]:
    path = directory / "effects"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


Recovery = Callable[[str, Path, "Sizes"], float | None]
"""D3 for one system: ``recovery(phase, directory, sizes)``. Phase ``"crash"`` starts the chain
(its step calls :func:`d3_step`, which kills the process); phase ``"recover"`` finishes that run
in a new process and returns the seconds from opening the store to the finished result."""


def crash_and_recover(script: str, system: str, variant: str, s: Sizes) -> Runner:
    """D3's runner: the crash phase in one fresh process, then the recover phase in another.

    Returns the recovery's own timing as :class:`Measured`; raises AssertionError unless the
    first process died by SIGKILL in step ``d3_kill_at`` and every step's side effect happened
    exactly once in all.
    """
    quick = ["--quick"] if s == QUICK else []

    def phase(name: str, directory: str) -> tuple[int, str, str]:
        """Run one phase in a new session; then kill whatever it left behind (a server it
        started, orphaned by the SIGKILL). Returns (exit code, stdout, stderr)."""
        cmd = [sys.executable, script, "--workloads", "D3", "--phase", name]
        cmd += ["--variant", variant, "--dir", directory, *quick]
        out, err = Path(directory) / f"{name}.out", Path(directory) / f"{name}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, start_new_session=True)
            try:
                code = proc.wait(timeout=600)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return code, out.read_text(), err.read_text()

    def run() -> Measured:
        with tempfile.TemporaryDirectory(prefix=f"bench-d3-{system}-") as tmp:
            code, _, err = phase("crash", tmp)
            if code != -signal.SIGKILL:
                raise AssertionError(
                    f"the crash phase exited {code}, not by SIGKILL: {err[-2000:]}"
                )
            expect(_effects(Path(tmp)), list(range(s.d3_kill_at - 1)))
            code, out, err = phase("recover", tmp)
            if code:
                raise AssertionError(f"the recover phase exited {code}: {err[-2000:]}")
            expect(_effects(Path(tmp)), list(range(s.d3_steps)))  # each exactly once, in order
            lines = [x for x in out.splitlines() if x.startswith(MARKER)]
            return Measured(json.loads(lines[-1][len(MARKER) :])["seconds"])

    return run


def expect(actual: object, expected: object) -> None:
    """Check a run's result (not an ``assert``: the checks must survive ``python -O``)."""
    if actual != expected:
        raise AssertionError(f"expected {expected!r}, got {actual!r}")


def triangle(n: int) -> int:
    """0 + 1 + ... + (n - 1): what W2's sum step must return."""
    return n * (n - 1) // 2


# ---- timing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """What a runner returns when it times itself (D3 times a recovery in another process):
    `seconds` is then the value, not the runner call's wall time."""

    seconds: float


def _seconds(result: object, start: float) -> float:
    end = time.perf_counter()
    return result.seconds if isinstance(result, Measured) else end - start


async def _timed_async(runner: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    return _seconds(await runner(), start)


def _timed_sync(runner: Runner) -> float:
    start = time.perf_counter()
    return _seconds(runner(), start)


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
    fill about `target` seconds (sized from the last warm-up call; one call without a warm-up)."""
    with _timer(runner) as once:
        first = [once() for _ in range(warmup)][-1] if warmup else target
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
    recoveries: dict[str, Recovery] = field(default_factory=dict)

    def workload(self, wid: str, variant: str = "") -> Callable[[Builder], Builder]:
        """Register a builder for `wid`; the first variant registered is the system's main one."""

        def register(builder: Builder) -> Builder:
            self.builders.setdefault(wid, {})[variant] = builder
            return builder

        return register

    def recovery(self, variant: str = "") -> Callable[[Recovery], Recovery]:
        """Register D3 for this system: `recovery(phase, directory, sizes)` (see
        :data:`Recovery`); the worker runs each phase in a fresh process of its own."""

        def register(recovery: Recovery) -> Recovery:
            self.recoveries[variant] = recovery
            script = str(Path(sys.argv[0]).resolve())
            self.builders.setdefault("D3", {})[variant] = lambda s: crash_and_recover(
                script, self.system, variant, s
            )
            return recovery

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
        parser.add_argument("--phase", choices=("crash", "recover"), help="one D3 phase only")
        parser.add_argument("--variant", default="", help="D3: the variant")
        parser.add_argument("--dir", help="D3: the directory of the run's store and effects")
        args = parser.parse_args(argv)
        sizes = QUICK if args.quick else FULL
        if args.phase:
            seconds = self.recoveries[args.variant](args.phase, Path(args.dir), sizes)
            print(MARKER + json.dumps({"seconds": seconds}), flush=True)
            return
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
                    target = 0.02 if quick else 0.25
                    seconds = measure(runner, reps, warmup=workload.warmup, target=target)
                    scale = workload.scale(sizes)
                    done = getattr(runner, "count", None)  # a runner doing fewer items
                    if done and workload.count:
                        scale *= workload.count(sizes) / done
                        record.reason = f"N={done} (fewer than the others' {workload.count(sizes)})"
                    record.values = [t * scale for t in seconds]
            except NotApplicable as exc:
                record.status, record.reason = "n/a", str(exc)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                record.status, record.reason = "error", f"{type(exc).__name__}: {exc}"
            yield record
