"""The benchmark harness itself (issue 18): goals, D3's exactly-once check, and that a quick run
of the durable workloads works and leaves BENCHMARKS.md alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import QUICK, Goal, Measured, crash_and_recover  # noqa: E402


def test_goal_ratio_cap_and_note() -> None:
    assert Goal(0.2).met(1.0, 10.0) is True
    assert Goal(0.2).met(3.0, 10.0) is False
    assert Goal(0.2).met(1.0, None) is None  # no yardstick measured: not judged
    import_goal = Goal(1.5, cap=0.05)
    assert import_goal.met(0.04, 0.03) is True
    assert import_goal.met(0.06, 0.05) is False  # within 1.5x, over the 50 ms cap
    assert import_goal.met(0.04, 0.02) is False  # under the cap, over 1.5x
    assert Goal().met(123.0, 1.0) is None
    assert Goal().text() == "note"


FAKE_WORKER = """\
import sys
from pathlib import Path
sys.path.insert(0, {here!r})
from _harness import Suite, d3_step

suite = Suite("fake")


@suite.recovery()
def d3(phase, directory, s):
    first = 0
    if phase == "recover" and {resume!r}:
        first = len((directory / "effects").read_text().split())
    for i in range(first, s.d3_steps):
        d3_step(directory, i, s)
    return 0.001


if __name__ == "__main__":
    suite.main()
"""


def fake_worker(tmp_path: Path, *, resume: bool) -> str:
    script = tmp_path / "bench_fake.py"
    script.write_text(FAKE_WORKER.format(here=str(HERE), resume=resume))
    return str(script)


@pytest.mark.timeout(120)
def test_d3_accepts_a_recovery_that_runs_each_step_once(tmp_path: Path) -> None:
    run = crash_and_recover(fake_worker(tmp_path, resume=True), "fake", "", QUICK)
    assert run() == Measured(0.001)


@pytest.mark.timeout(120)
def test_d3_refuses_a_recovery_that_reruns_completed_steps(tmp_path: Path) -> None:
    run = crash_and_recover(fake_worker(tmp_path, resume=False), "fake", "", QUICK)
    with pytest.raises(
        AssertionError, match=r"expected \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\], got \[0, 1, 2, 3, 0, 1"
    ):
        run()


@pytest.mark.timeout(300)
def test_quick_durable_run_works_and_writes_no_report() -> None:
    report = HERE.parents[1] / "BENCHMARKS.md"
    before = report.read_bytes()
    cmd = [sys.executable, str(HERE / "run.py"), "--quick", "--only", "asyncio,batten"]
    proc = subprocess.run(
        [*cmd, "--workloads", "W1,D1,D3,D4"],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split("|")[1:4] for line in proc.stdout.splitlines() if line.startswith("| D")]
    cells = {tuple(c.strip() for c in r) for r in rows}
    for wid in ("D1", "D3", "D4"):
        assert (wid, "asyncio", "floor") in cells, proc.stdout
        assert (wid, "batten", "sync") in cells, proc.stdout
    assert "≤ 0.2x asyncio Task per step" in proc.stdout  # W1's goal, beside its ratio
    assert "error" not in proc.stdout
    assert report.read_bytes() == before
    assert "(BENCHMARKS.md is rewritten only" in proc.stderr
