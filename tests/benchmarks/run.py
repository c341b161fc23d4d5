"""Run batten's benchmark suite (DESIGN.md §5, issue 18) against its yardsticks and peers.

In-process workloads (W*, M, I) against plain asyncio, LangGraph and jaf-py; durable ones (D1-D4)
against a hand-written sqlite3 floor, DBOS Transact and Prefect.

    python tests/benchmarks/run.py                    # everything (~30 min); rewrites BENCHMARKS.md
    python tests/benchmarks/run.py --quick            # smoke run (< 2 min); writes nothing
    python tests/benchmarks/run.py --only batten,asyncio --workloads W1,W5
    python tests/benchmarks/run.py --groups stores,ray  # issue 17's notes alone

Issue 17's notes run as optional groups after the workloads, in a full run (and in --quick at
tiny sizes where cheap), or alone with --groups: ``stores`` (tests/measure_store_costs.py: W1's
checkpoint cost per step with a SQLite, Redis and PostgreSQL store, cancel and approval
latency) and ``ray`` (tests/ray_bench.py: per-step overhead on Ray, scaling over two worker
CPUs). Each starts its own servers (redis-server, tests/pg_server.py, tests/ray_cluster.py);
one that cannot start shows as "skipped: <reason>". Notes are shown with their goals, never
judged as failures.

Every (system, workload) runs in a fresh worker process (``bench_<system>.py``), so imports and
memory do not bleed between them; M and I take a fresh process per repetition. A value is the
median over repetitions, each repetition being the median of enough runs to fill ~0.25 s.
BENCHMARKS.md is rewritten only by a full run of every system and workload.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import datetime
import importlib.metadata
import itertools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from _harness import FULL, MARKER, QUICK, WORKLOADS, Record, Sizes, repetitions

HERE = Path(__file__).resolve().parent
REPORT = HERE.parents[1] / "BENCHMARKS.md"
ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # jaf imports litellm: stay offline
# Workers write missing .pyc files, as `pip install` does, even where the caller's environment
# sets PYTHONDONTWRITEBYTECODE: otherwise every fresh worker compiles the modules it imports
# lazily from source, inside the timings (D3's recovery imported batten's durable-run module
# that way: ~13-20 ms of a ~20 ms recovery on the shared 2-core machine).
ENV.pop("PYTHONDONTWRITEBYTECODE", None)


@dataclass(frozen=True)
class System:
    name: str
    module: str  # the worker script in this directory
    dist: str | None  # distribution whose version is reported (None: the standard library)
    import_stmt: str  # what workload I times (issue 18: the bare import)
    # More of workload I's rows, as (variant, statement): what a program's first line really
    # imports. batten resolves its names on first access (PEP 562), so the bare import alone
    # would hide what `from batten import Workflow` costs.
    import_uses: tuple[tuple[str, str], ...] = ()


SYSTEMS = {
    s.name: s
    for s in (
        System("asyncio", "bench_asyncio.py", None, "import asyncio"),
        System(
            "batten",
            "bench_batten.py",
            "batten",
            "import batten",
            (("from batten import Workflow, ToolStep", "from batten import Workflow, ToolStep"),),
        ),
        System("langgraph", "bench_langgraph.py", "langgraph", "import langgraph.graph"),
        System("jaf", "bench_jaf.py", "jaf-py", "import jaf"),
        System("dbos", "bench_dbos.py", "dbos", "import dbos"),
        System("prefect", "bench_prefect.py", "prefect", "import prefect"),
    )
}

QUICK_SKIPS = {
    ("prefect", "D3"): "skipped by --quick (it starts two Prefect servers, ~1 min); "
    "`--only prefect --workloads D3 --quick` runs it",
}
"""(system, workload) pairs a quick run leaves out unless --workloads names the workload."""


def version(dist: str | None) -> str | None:
    """The installed version of `dist` (the Python version for the stdlib), or None."""
    if dist is None:
        return platform.python_version()
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---- running the workers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    system: System
    workloads: tuple[str, ...]
    quick: bool

    def timed_run(self) -> list[Record]:
        """`run`, printing how long it took to stderr."""
        start = time.perf_counter()
        records = self.run()
        took = time.perf_counter() - start
        print(
            f"  {self.system.name:<9} {','.join(self.workloads):<22} {took:6.1f} s", file=sys.stderr
        )
        return records

    def run(self) -> list[Record]:
        if self.workloads == ("I",):
            return import_time(self.system, repetitions("I", self.quick))
        if self.workloads == ("M",):  # a fresh process per repetition: peak RSS never goes down
            records = [
                worker(self.system, ("M",), self.quick)[0]
                for _ in range(repetitions("M", self.quick))
            ]
            merged = next((r for r in records if r.status != "ok"), records[0])
            if merged.status == "ok":
                merged.values = [v for r in records for v in r.values]
            return [merged]
        return worker(self.system, self.workloads, self.quick)


def worker(system: System, workloads: tuple[str, ...], quick: bool) -> list[Record]:
    """Run `workloads` in one fresh worker process; a crash becomes error records."""
    cmd = [sys.executable, str(HERE / system.module), "--workloads", ",".join(workloads)]
    try:
        proc = subprocess.run(
            [*cmd, *(["--quick"] if quick else [])],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=HERE,
            timeout=300 if quick else 1800,
        )
    except subprocess.TimeoutExpired as exc:
        return [
            Record(system.name, w, status="error", reason=f"timed out after {exc.timeout} s")
            for w in workloads
        ]
    records = [
        Record(**json.loads(line[len(MARKER) :]))
        for line in proc.stdout.splitlines()
        if line.startswith(MARKER)
    ]
    seen = {r.workload for r in records}
    tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    for r in records:
        if r.status == "error":
            print(f"--- {system.name} {r.workload} stderr:\n{proc.stderr}", file=sys.stderr)
    return records + [
        Record(system.name, w, status="error", reason=tail) for w in workloads if w not in seen
    ]


def import_time(system: System, n: int) -> list[Record]:
    """Workload I: wall time of `python -c <import>` minus `python -c pass`, per repetition.

    One record for `system.import_stmt` (variant "", the one goals judge), then one per
    `system.import_uses` entry; the statements alternate within each repetition."""

    def wall(code: str, env: dict[str, str] = ENV) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        return time.perf_counter() - start

    # The warm-up writes any missing .pyc files, as `pip install` does, even where the caller's
    # environment sets PYTHONDONTWRITEBYTECODE (otherwise an editable install is timed
    # compiling its sources on every import).
    writing = {k: v for k, v in ENV.items() if k != "PYTHONDONTWRITEBYTECODE"}
    statements = [("", system.import_stmt), *system.import_uses]
    records = [Record(system.name, "I", variant) for variant, _ in statements]
    try:
        for _, code in statements:  # warm the file cache and write missing .pyc files
            wall(code, writing)
        for _ in range(n):
            for record, (_, code) in zip(records, statements, strict=True):
                record.values.append(wall(code) - wall("pass"))
    except subprocess.CalledProcessError as exc:
        reason = exc.stderr.decode().strip().splitlines()[-1]
        for record in records:
            record.status, record.reason, record.values = "error", reason, []
    return records


# ---- issue 17's notes: optional groups --------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """An optional group of notes: a script printing JSON lines, run once per bench run."""

    name: str
    script: str  # under tests/
    full: tuple[str, ...]  # its arguments in a full run
    quick: tuple[str, ...] | None  # in a quick run (None: skipped by --quick unless named)
    quick_skip: str = ""


GROUPS = {
    g.name: g
    for g in (
        Group("stores", "measure_store_costs.py", ("--json",), ("--json", "--quick")),
        Group(
            "ray",
            "ray_bench.py",
            ("--n", "1000", "--m", "200", "--repeat", "3"),
            None,
            "skipped by --quick (it starts three local Ray clusters, ~2 min); "
            "`--groups ray --quick` runs it at small sizes",
        ),
    )
}
RAY_QUICK = ("--n", "50", "--m", "8", "--repeat", "1")
STORE_MARKER = "@@store-note "


@dataclass
class Note:
    """One line of a group's report: a value with its unit and goal, or why it is missing."""

    group: str
    name: str
    value: str = ""
    goal: str = ""
    status: str = "ok"  # ok | skipped | error

    def cells(self) -> tuple[str, ...]:
        shown = self.value if self.status == "ok" else one_cell(self.status)
        return (self.group, self.name, shown, self.goal)


def one_cell(text: str, most: int = 300) -> str:
    """`text` fit for one table cell: ANSI colours dropped, on one line, `|` escaped, and past
    `most` characters its start and its end (where a server's log says what went wrong)."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split()).replace("|", "\\|")
    if len(text) <= most:
        return text
    return f"{text[: most // 3]} … {text[-(most - most // 3) :]}"


def ray_notes(doc: dict[str, object]) -> list[Note]:
    """tests/ray_bench.py's JSON line as notes."""
    if "speedup" in doc:
        return [
            Note(
                "ray",
                f"{doc['workload']}: one worker CPU vs two",
                f"{doc['one_cpu_s']} s vs {doc['two_cpus_s']} s: {doc['speedup']}x",
                "≥ 1.7x faster with two",
            )
        ]
    return [
        Note(
            "ray",
            f"{doc['workload']}: batten on Ray vs plain ray.remote + gather",
            f"{doc['batten_s']} s vs {doc['plain_ray_s']} s: {doc['ratio']}x",
            "≤ 1.2x",
        )
    ]


def run_group(group: Group, quick: bool) -> list[Note]:
    """Runs `group`'s script in a fresh process; its lines as notes ("skipped: ..." for a
    service that could not start, "error" for a script that failed)."""
    argv = group.full if not quick else group.quick or RAY_QUICK
    cmd = [sys.executable, str(HERE.parent / group.script), *argv]
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=ENV, timeout=600 if quick else 3600
        )
    except subprocess.TimeoutExpired as exc:
        return [Note(group.name, "(the group)", status=f"error: timed out after {exc.timeout} s")]
    print(
        f"  {group.name:<9} {'(group)':<22} {time.perf_counter() - started:6.1f} s", file=sys.stderr
    )
    notes: list[Note] = []
    for line in proc.stdout.splitlines():
        if group.name == "stores" and line.startswith(STORE_MARKER):
            doc = json.loads(line[len(STORE_MARKER) :])
            if doc["value"] is None:
                notes.append(Note("stores", doc["name"], status=doc["reason"]))
            else:
                value = f"{fmt(doc['value'])} {doc['unit']}"
                notes.append(Note("stores", doc["name"], value, doc["goal"]))
        elif group.name == "ray" and line.startswith("{"):
            doc = json.loads(line)
            if "skipped" in doc:
                notes.append(Note("ray", "steps on Ray", status=f"skipped: {doc['skipped']}"))
            else:
                notes += ray_notes(doc)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        print(f"--- group {group.name} stderr:\n{proc.stderr}", file=sys.stderr)
        notes.append(Note(group.name, "(the group)", status=f"error: {tail}"))
    return notes


def notes_table(notes: list[Note]) -> list[str]:
    lines = [row("group", "note", "measured", "goal (note only)"), row("---", "---", "---:", "---")]
    return lines + [row(*n.cells()) for n in notes]


# ---- reporting ----------------------------------------------------------------------------------


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.3g}"


def times(value: float, base: float | None) -> str:
    """`value` as a multiple of `base` ("" without a base)."""
    return f"{fmt(value / base)}x" if base else ""


def row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def baseline(records: list[Record], wid: str) -> float | None:
    """The yardstick's median a workload's ratios are taken against: the plain asyncio record
    (hand-written code) of the workload's `baseline` variant, else its first."""
    rows = [r for r in records if r.system == "asyncio" and r.workload == wid and r.values]
    wanted = [r for r in rows if r.variant == WORKLOADS[wid].baseline] or rows
    return statistics.median(wanted[0].values) if wanted else None


def ideal_note(wid: str, value: float, sizes: Sizes) -> str:
    """ "Nx ideal" for a workload with an ideal value (W2, W6, D2: the sleep), else ""."""
    ideal = WORKLOADS[wid].ideal
    return f"{fmt(value / ideal(sizes))}x ideal" if ideal else ""


def results_table(records: list[Record], sizes: Sizes) -> list[str]:
    header = ("workload", "system", "variant", "median", "min", "max", "unit", "vs yardstick")
    lines = [row(*header, "notes"), row(*["---"] * 3, *["---:"] * 3, "---", "---:", "---")]
    for r in records:
        w = WORKLOADS[r.workload]
        if r.status == "n/a" and r.reason == "not implemented":
            continue  # listed once under "not written for", not as a row per system
        if r.status != "ok":
            lines.append(row(r.workload, r.system, r.variant, r.status, "", "", "", "", r.reason))
            continue
        med = statistics.median(r.values)
        notes = [ideal_note(r.workload, med, sizes), r.reason]
        if r.system == "asyncio" and r.variant == (w.baseline or r.variant):
            if baseline(records, r.workload) == med:
                notes.append("the yardstick")
        lo, hi = fmt(min(r.values)), fmt(max(r.values))
        ratio = times(med, baseline(records, r.workload))
        note = "; ".join(n for n in notes if n)
        lines.append(row(r.workload, r.system, r.variant, fmt(med), lo, hi, w.unit, ratio, note))
    return lines


def goal_text(wid: str) -> str:
    """A workload's goal in words, e.g. "≤ 0.2x asyncio Task per step"."""
    w = WORKLOADS[wid]
    parts = [f"≤ {w.goal.ratio:g}x {w.yardstick}"] if w.goal.ratio is not None else []
    parts += [f"never > {w.goal.cap:g} {w.unit}"] if w.goal.cap is not None else []
    return " and ".join(parts) or "note (not judged)"


def goals_table(records: list[Record], sizes: Sizes) -> list[str]:
    """batten's goals (issue 18), each judged on batten's first variant of the workload."""
    head = ("workload", "goal", "batten", "yardstick", "ratio", "met?")
    lines = [row(*head), row(*["---"] * 4, "---:", "---")]
    for wid, w in WORKLOADS.items():
        mine = next((r for r in records if r.system == "batten" and r.workload == wid), None)
        if mine is None:
            continue
        base = baseline(records, wid)
        base_cell = f"{fmt(base)} {w.unit}" if base else ""
        if not mine.values:
            lines.append(row(wid, goal_text(wid), mine.status, base_cell, "", mine.reason))
            continue
        med = statistics.median(mine.values)
        met = w.goal.met(med, base)
        if w.goal.ratio is None and w.goal.cap is None:
            verdict = ideal_note(wid, med, sizes) or "note"
        else:
            verdict = "no yardstick" if met is None else "met" if met else "**not met**"
        shown = f"{fmt(med)} {w.unit}" + (f" ({mine.variant})" if mine.variant else "")
        lines.append(row(wid, goal_text(wid), shown, base_cell, times(med, base), verdict))
    return lines


def proc_field(path: str, key: str) -> str:
    """The value of `key: value` in a /proc file ("" if absent)."""
    for line in Path(path).read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return ""


def calibration() -> str:
    """Yardsticks that place this machine against others: plain CPU, one asyncio loop turn."""

    async def loop_turns(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await asyncio.sleep(0)
        return (time.perf_counter() - start) / n

    cpu = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000
    turn = min(asyncio.run(loop_turns(20_000)) for _ in range(3))
    return f"`sum(range(1000))` {cpu * 1e6:.1f} µs; `await asyncio.sleep(0)` {turn * 1e6:.1f} µs"


def git_revision() -> str:
    """The commit of the checkout being measured ("" outside git), "+dirty" if it has changes."""
    git = ["git", "-C", str(HERE)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        return ""
    dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout
    return head.stdout.strip() + ("+dirty" if dirty.strip() else "")


def machine() -> list[str]:
    cpu = proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown"
    mem_gib = int((proc_field("/proc/meminfo", "MemTotal") or "0 kB").split()[0]) / 2**20
    cores = len(os.sched_getaffinity(0))
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return [
        f"- CPU: {cpu}, {cores} cores (`nproc`), {mem_gib:.0f} GiB memory",
        f"- OS: {platform.platform()}",
        f"- Python: {python} ({sys.executable})",
        f"- Calibration: {calibration()}",
    ]


REPORT_TEMPLATE = """\
# Benchmarks

Written by `python tests/benchmarks/run.py` on {date} UTC (the run took {seconds:.0f} s).
Do not edit by hand: rerun it.

## Machine

{machine}

## Versions

| package | version |
|---|---|
{versions}

## Method

The in-process workloads are DESIGN.md §5's: W1/W1a N={s.w1_steps}; W2 N={s.w2_fanout} steps of
`await asyncio.sleep({s.w2_sleep:g})`; W3 {s.w3_nodes} nodes (`random.Random(42)`);
W4 {s.w4_steps} steps; W5 (issue 18's W5r: the workflow is built once) {s.w5_runs} runs; W6
(batten's `MapStep`, not in DESIGN) {s.w6_items} items computed at run time, each
`await asyncio.sleep({s.w2_sleep:g})`, against `asyncio.gather` (LangGraph and jaf-py have no
run-time fan-out written for it yet). The durable ones are issue 18's: D1 a chain of
{s.d1_steps} sync steps; D2 a fan-out of {s.d2_fanout} steps of
`await asyncio.sleep({s.d2_sleep:g})` then a join; D3 a chain of {s.d3_steps} steps whose
{s.d3_kill_at}th step SIGKILLs its process, then the recovery in a new process, timed from
opening the store to the finished result (every step's side effect is checked to have happened
exactly once, or the workload errors); D4 {s.d4_runs} runs of a pre-built 3-step workflow. ISO
is a 1-step workflow run {s.iso_runs} times, its step in-process and isolated in a process.
I times the bare `import batten` the issue names (batten's names load on first access, PEP 562)
and, as a second row, `from batten import Workflow, ToolStep`, which loads what a program uses.

Each (system, workload) runs in a fresh process (`tests/benchmarks/bench_<system>.py`); M and I
take a fresh process per repetition, each D3 repetition two (the crash and the recovery).
Building the workflow is not timed. A repetition is the median of as many runs as fill ~0.25 s
(a single run for W2, W6, D2, D3); the tables show the median, min and max over repetitions (W2,
W6, D2, D3, M, I: 5; the others: 7). Async workloads are awaited on one event loop per process;
sync ones (LangGraph's `invoke`, batten's `run`, DBOS's and Prefect's sync workflows) are called
with no event loop running.

Ratios ("vs yardstick") are to issue 18's yardstick for the workload, all hand-written code in
`bench_asyncio.py`: one asyncio Task per step (W1, W1a, W3, W4, W5), `asyncio.gather` (W2, W6),
plain asyncio (M), `import asyncio` (I), and for D1-D4 the floor: the same steps with one
sqlite3 `INSERT` per step, autocommit, WAL, `synchronous=NORMAL`.

## Results

{results}

## batten's goals (issue 18)

Each goal is a ratio to the workload's yardstick measured in this same run (I also has an
absolute cap), judged on batten's first variant. C (W1 with a SQLite store: issue 14's lease
heartbeat shows here), ISO and D2 are notes.

{goals}

## Issue 17's notes: stores and Ray

Optional groups run after the workloads (`--groups`), note only: their goals are shown, not
judged. `stores` (tests/measure_store_costs.py): W1 ({store_steps} steps) with a SQLite, Redis
and PostgreSQL store, its checkpoint cost per step over W1 without a store; a `cancel` written
at a random instant to the run stopping (the executor polls every 0.1 s; PostgreSQL also pushes
it by LISTEN/NOTIFY); `approve` to the resumed run completing. `ray` (tests/ray_bench.py): 1,000
no-op steps through batten on Ray against plain `ray.remote` + `asyncio.gather`, and 200
CPU-bound ~50 ms steps on one worker CPU against two, on a local cluster
(tests/ray_cluster.py). A service that cannot start shows as skipped.

{notes}

## Workloads not written for a system, or that it cannot express

{not_applicable}

## How each system runs the workloads

{systems}
"""


def docstring(module: str) -> str:
    """The docstring of a worker module, read without importing it."""
    return ast.get_docstring(ast.parse((HERE / module).read_text())) or ""


def report(
    records: list[Record],
    sizes: Sizes,
    started: datetime.datetime,
    seconds: float,
    notes: list[Note] | None = None,
) -> str:
    versions = [
        row(s.dist or "python", version(s.dist) or "not installed") for s in SYSTEMS.values()
    ]
    for dist in ("langchain-core", "sqlalchemy"):
        versions.append(row(dist, version(dist) or "not installed"))
    versions.append(row("batten checkout (git)", git_revision() or "unknown"))
    na = [f"- {r.system} {r.workload}: {r.reason}" for r in records if r.status == "n/a"]
    na = list(dict.fromkeys(na))  # one line per (system, workload), not per variant
    return REPORT_TEMPLATE.format(
        date=f"{started:%Y-%m-%d %H:%M}",
        seconds=seconds,
        machine="\n".join(machine()),
        versions="\n".join(versions),
        s=sizes,
        results="\n".join(results_table(records, sizes)),
        goals="\n".join(goals_table(records, sizes)),
        store_steps=200,
        notes="\n".join(notes_table(notes or [])),
        not_applicable="\n".join(na) or "None.",
        systems="\n\n".join(f"### {s.name}\n\n{docstring(s.module)}" for s in SYSTEMS.values()),
    )


# ---- main ---------------------------------------------------------------------------------------


def pick(
    value: str | None, known: Iterable[str], what: str, parser: argparse.ArgumentParser
) -> list[str]:
    names = list(known)
    if value is None:
        return names
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [c for c in chosen if c not in names]
    if unknown:
        parser.error(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(names)})")
    return [n for n in names if n in chosen]


def plan(
    systems: list[System], workloads: list[str], quick: bool, skip: Iterable[tuple[str, str]] = ()
) -> list[Job]:
    """One job per (system, workload) but those in `skip`; a quick run groups each system's
    timed workloads."""
    jobs: list[Job] = []
    for system in systems:
        mine = [w for w in workloads if (system.name, w) not in set(skip)]
        timed = tuple(w for w in mine if not WORKLOADS[w].fresh_process_per_rep)
        groups = [timed] if quick and timed else [(w,) for w in timed]
        groups += [(w,) for w in mine if WORKLOADS[w].fresh_process_per_rep]
        jobs += [Job(system, group, quick) for group in groups]
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, no report")
    parser.add_argument("--only", help="comma-separated systems: " + ",".join(SYSTEMS))
    parser.add_argument("--workloads", help="comma-separated workloads: " + ",".join(WORKLOADS))
    parser.add_argument(
        "--groups",
        help="comma-separated optional groups (issue 17's notes): "
        + ",".join(GROUPS)
        + "; alone, only they run. Default: all in a full run (ray skipped by --quick), none "
        "with --only or --workloads",
    )
    args = parser.parse_args()
    started, clock = datetime.datetime.now(datetime.UTC), time.perf_counter()
    partial = bool(args.only or args.workloads)
    if args.groups is not None:
        groups = [GROUPS[g] for g in pick(args.groups, GROUPS, "group", parser)]
    else:
        groups = [] if partial else list(GROUPS.values())
    notes: list[Note] = []
    if args.groups is not None and not partial:
        # The groups alone.
        for group in groups:
            notes += run_group(group, args.quick)
        print("\n".join(notes_table(notes)))
        if any(n.status.startswith("error") for n in notes):
            sys.exit(1)
        return
    systems = pick(args.only, SYSTEMS, "system", parser)
    workloads = pick(args.workloads, WORKLOADS, "workload", parser)

    missing = [s for s in systems if version(SYSTEMS[s].dist) is None]
    skipped = {
        (s, w): why
        for (s, w), why in QUICK_SKIPS.items()
        if args.quick and args.workloads is None and s in systems and w in workloads
    }
    installed = [SYSTEMS[s] for s in systems if s not in missing]
    jobs = plan(installed, workloads, args.quick, skipped)
    # A full run goes one job at a time, so that jobs do not compete for the cores.
    with ThreadPoolExecutor(max_workers=2 if args.quick else 1) as pool:
        records = [r for batch in pool.map(Job.timed_run, jobs) for r in batch]
    records += [Record(s, w, status="not installed") for s in missing for w in workloads]
    records += [Record(s, w, status="n/a", reason=why) for (s, w), why in skipped.items()]
    order = {(s, w): i for i, (w, s) in enumerate(itertools.product(workloads, systems))}
    records.sort(key=lambda r: order[(r.system, r.workload)])

    for group in groups:
        if args.quick and group.quick is None and args.groups is None:
            notes.append(Note(group.name, "(the group)", status=group.quick_skip))
            continue
        notes += run_group(group, args.quick)

    sizes = QUICK if args.quick else FULL
    seconds = time.perf_counter() - clock
    print("\n".join(results_table(records, sizes)))
    if any(r.system == "batten" for r in records):
        print("\n" + "\n".join(goals_table(records, sizes)))
    if notes:
        print("\n" + "\n".join(notes_table(notes)))
    print(f"\n{len(jobs)} worker jobs in {seconds:.0f} s", file=sys.stderr)
    if args.quick or args.only or args.workloads:
        print("(BENCHMARKS.md is rewritten only by a full run of everything)", file=sys.stderr)
    else:
        REPORT.write_text(report(records, sizes, started, seconds, notes))
        print(f"wrote {REPORT}", file=sys.stderr)
    if any(r.status == "error" for r in records) or any(
        n.status.startswith("error") for n in notes
    ):
        sys.exit(1)


if __name__ == "__main__":
    main()
