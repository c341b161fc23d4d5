"""The CLI's run progress (``batten.cli.progress.Progress``), driven by synthetic engine events."""

from __future__ import annotations

import asyncio
import io
import re

import pytest
from batten import StepResult
from batten.cli.progress import Progress


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def result(path: str, status: str = "completed", ms: float = 0.0, **kw: object) -> StepResult:
    return StepResult(path.rsplit("/", 1)[-1], status, execution_time_ms=ms, **kw)  # type: ignore[arg-type]


def end(progress: Progress, path: str, status: str = "completed", ms: float = 0.0) -> None:
    progress.sink(status, path, 1, result(path, status, ms, error="bad", error_type="ValueError"))


def plain(steps: list[str], **kw: object) -> tuple[Progress, io.StringIO, Clock]:
    stream = io.StringIO()
    clock = Clock()
    return Progress(steps, title="lint", stream=stream, clock=clock, **kw), stream, clock  # type: ignore[arg-type]


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


# -- counting -------------------------------------------------------------------------------


def test_counts_top_level_steps_and_map_items() -> None:
    progress, _, _ = plain(["discover", "ruff", "report"])
    assert (progress.done, progress.total) == (0, 3)
    progress.sink("started", "discover", 1, None)
    assert progress.running == {"discover"}
    end(progress, "discover")
    assert (progress.done, progress.total, progress.running) == (1, 3, frozenset())

    progress.sink("started", "ruff", 1, None)
    progress.sink("fanout", "ruff", 1, 5)
    assert (progress.done, progress.total) == (1, 8)
    for i in range(5):
        progress.sink("started", f"ruff/run_ruff[{i}]", 1, None)
    assert progress.running == {"ruff"} | {f"ruff/run_ruff[{i}]" for i in range(5)}
    for i in range(5):
        end(progress, f"ruff/run_ruff[{i}]", "failed" if i == 2 else "completed")
    assert (progress.done, progress.total, progress.failed) == (6, 8, 1)
    end(progress, "ruff")
    end(progress, "report", "skipped")
    assert (progress.done, progress.total, progress.failed) == (8, 8, 1)
    assert progress.running == frozenset()


def test_never_counts_a_path_twice() -> None:
    progress, _, _ = plain(["a", "m"])
    progress.sink("fanout", "m", 1, 2)
    for _ in range(3):
        end(progress, "a", "failed")
        end(progress, "m/x[0]", "timeout")
    assert (progress.done, progress.total, progress.failed) == (2, 4, 2)


def test_terminal_events_without_start_count() -> None:
    """A resumed run reports the steps it restored without starting them."""
    progress, _, _ = plain(["a", "b", "c"])
    end(progress, "a")
    end(progress, "b", "skipped")
    assert (progress.done, progress.total, progress.running) == (2, 3, frozenset())


def test_nested_steps_run_but_are_not_units() -> None:
    progress, _, _ = plain(["par", "after"])
    progress.sink("started", "par", 1, None)
    progress.sink("started", "par/left", 1, None)
    progress.sink("started", "par/right", 1, None)
    assert progress.running == {"par", "par/left", "par/right"}
    end(progress, "par/left")
    end(progress, "par/right", "failed")
    assert (progress.done, progress.total, progress.failed) == (0, 2, 0)
    assert progress.running == {"par"}
    end(progress, "par", "failed")
    assert (progress.done, progress.total, progress.failed) == (1, 2, 1)


def test_items_of_a_map_without_fanout_are_not_units() -> None:
    progress, _, _ = plain(["m"])
    end(progress, "m/x[0]")
    assert (progress.done, progress.total) == (0, 1)


def test_nested_map_items_are_units() -> None:
    progress, _, _ = plain(["outer"])
    progress.sink("fanout", "outer", 1, 2)
    progress.sink("fanout", "outer/inner[0]", 1, 3)
    assert progress.total == 6
    for i in range(3):
        end(progress, f"outer/inner[0]/leaf[{i}]")
    end(progress, "outer/inner[0]")
    end(progress, "outer/inner[0]/leaf[0]/deeper")  # not an item of a map: not a unit
    assert progress.done == 4


def test_fanout_again_replaces_the_count() -> None:
    """A retried map step fans out again: its items are not added twice."""
    progress, _, _ = plain(["m"])
    progress.sink("fanout", "m", 1, 4)
    end(progress, "m/x[0]")
    progress.sink("retrying", "m", 1, (0.0, RuntimeError("again")))
    progress.sink("fanout", "m", 2, 4)
    end(progress, "m/x[0]")
    assert (progress.done, progress.total, progress.retries) == (1, 5, 1)
    progress.sink("fanout", "m", 3, 6)
    assert progress.total == 7


def test_undeclared_top_level_step_becomes_a_unit() -> None:
    progress, _, _ = plain(["a"])
    progress.sink("started", "extra", 1, None)
    assert progress.total == 2
    end(progress, "extra")
    end(progress, "a")
    assert (progress.done, progress.total) == (2, 2)


def test_retries_keep_the_step_running() -> None:
    progress, _, _ = plain(["a"])
    progress.sink("started", "a", 1, None)
    progress.sink("retrying", "a", 1, (0.5, TimeoutError("slow")))
    assert progress.running == {"a"}
    progress.sink("started", "a", 2, None)
    progress.sink("retrying", "a", 2, (1.0, TimeoutError("slow")))
    progress.sink("started", "a", 3, None)
    end(progress, "a")
    assert (progress.retries, progress.failed, progress.done) == (2, 0, 1)
    assert progress.running == frozenset()


def test_ignores_circuit_and_unknown_kinds() -> None:
    progress, stream, _ = plain(["a"])
    before = stream.getvalue()
    progress.sink("circuit", "a", 0, ("breaker", "closed", "open"))
    progress.sink("something-new", "a", 0, object())
    assert stream.getvalue() == before
    assert (progress.done, progress.total, progress.running) == (0, 1, frozenset())


def test_properties_are_read_only() -> None:
    progress, _, _ = plain(["a"])
    with pytest.raises(AttributeError):
        progress.done = 3  # type: ignore[misc]
    progress.sink("started", "a", 1, None)
    running = progress.running
    with pytest.raises(AttributeError):
        running.add("b")  # type: ignore[attr-defined]
    assert progress.running == {"a"}


# -- plain mode -----------------------------------------------------------------------------


def test_plain_lines() -> None:
    progress, stream, clock = plain(["discover", "ruff", "report"])
    progress.sink("started", "discover", 1, None)
    clock.now += 0.012
    progress.sink("completed", "discover", 1, result("discover", ms=12.4))
    progress.sink("started", "ruff", 1, None)
    progress.sink("fanout", "ruff", 1, 3)
    progress.sink("started", "ruff/run_ruff[0]", 1, None)
    progress.sink("retrying", "ruff/run_ruff[0]", 1, (0.5, TimeoutError("slow")))
    progress.sink("started", "ruff/run_ruff[0]", 2, None)
    end(progress, "ruff/run_ruff[0]")
    end(progress, "ruff/run_ruff[1]", "failed")
    end(progress, "ruff/run_ruff[2]")
    progress.sink("failed", "ruff", 1, result("ruff", "failed", 2345.0, error="1 item failed"))
    progress.sink("retrying", "report", 1, (0.05, ValueError()))
    progress.sink("started", "report", 2, None)
    progress.sink("completed", "report", 2, result("report", ms=3.0))
    clock.now += 12.3
    progress.finish("failed")
    assert lines(stream) == [
        "lint: 3 steps",
        "[0/3] started discover",
        "[1/3] completed discover (12 ms)",
        "[1/3] started ruff",
        "[1/6] ruff: 3 items",
        "[1/6] retry  ruff/run_ruff[0] attempt 1 failed: TimeoutError: slow; next in 0.5 s",
        "[2/6] ruff: 1/3 items",
        "[3/6] failed ruff/run_ruff[1]: ValueError: bad",
        "[3/6] ruff: 2/3 items, 1 failed",
        "[4/6] ruff: 3/3 items, 1 failed",
        "[5/6] failed ruff (2.3 s): 1 item failed",
        "[5/6] retry  report attempt 1 failed: ValueError; next in 0.1 s",
        "[5/6] started report (attempt 2)",
        "[6/6] completed report (3 ms)",
        "lint: failed, 6/6 steps, 2 retries, 2 failed, 12.3 s",
    ]


def test_plain_counter_is_padded_to_the_total() -> None:
    progress, stream, _ = plain([f"s{i}" for i in range(136)])
    for i in range(3):
        end(progress, f"s{i}", ms=12)
    assert lines(stream)[-1] == "[  3/136] completed s2 (12 ms)"


def test_plain_throttles_map_items() -> None:
    progress, stream, _ = plain(["ruff"])
    progress.sink("fanout", "ruff", 1, 125)
    for i in range(125):
        progress.sink("started", f"ruff/run_ruff[{i}]", 1, None)
        end(progress, f"ruff/run_ruff[{i}]")
    item_lines = [line for line in lines(stream) if re.search(r"ruff: \d+/125 items", line)]
    assert 5 <= len(item_lines) <= 11
    assert item_lines[-1] == "[125/126] ruff: 125/125 items"
    done = [int(re.search(r"ruff: (\d+)/", line).group(1)) for line in item_lines]  # type: ignore[union-attr]
    assert done == sorted(done)
    assert all(b - a <= 13 for a, b in zip([0, *done], done, strict=False))  # every ~10%
    assert len(lines(stream)) == 2 + len(item_lines)  # header, fanout and the item lines only


def test_plain_small_map_prints_every_item() -> None:
    progress, stream, _ = plain(["m"])
    progress.sink("fanout", "m", 1, 3)
    for i in range(3):
        end(progress, f"m/x[{i}]")
    assert [line for line in lines(stream) if "items" in line][1:] == [
        "[1/4] m: 1/3 items",
        "[2/4] m: 2/3 items",
        "[3/4] m: 3/3 items",
    ]


def test_plain_output_has_no_control_characters() -> None:
    progress, stream, _ = plain(["a", "m"])
    progress.sink("started", "a", 1, None)
    progress.sink("retrying", "a", 1, (1.0, RuntimeError("line one\nline two")))
    end(progress, "a", "failed")
    progress.sink("fanout", "m", 1, 40)
    for i in range(40):
        end(progress, f"m/x[{i}]", "timeout" if i % 7 == 0 else "completed")
    progress.finish("failed")
    text = stream.getvalue()
    assert "\r" not in text
    assert "\x1b" not in text
    assert "line two" not in text  # messages keep their first line
    assert text.endswith("\n")


def test_plain_lines_are_flushed() -> None:
    class Recording(io.StringIO):
        flushed = ""

        def flush(self) -> None:
            self.flushed = self.getvalue()

    stream = Recording()
    progress = Progress(["a"], title="t", stream=stream, live=False)
    progress.sink("started", "a", 1, None)
    assert stream.flushed == stream.getvalue() != ""


def test_live_none_follows_isatty() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    progress, _, _ = plain(["a"])  # a StringIO is no terminal
    assert not progress._live
    terminal = Terminal()
    progress = Progress(["a"], title="t", stream=terminal)
    assert progress._live
    progress.finish("completed")
    assert "\r" in terminal.getvalue()


def test_finish_once_and_ignores_later_events() -> None:
    progress, stream, clock = plain(["a"])
    clock.now += 1.25
    progress.finish("completed")
    progress.finish("failed")
    progress.sink("started", "a", 1, None)
    end(progress, "a")
    assert lines(stream)[1:] == ["lint: completed, 0/1 steps, 0 retries, 0 failed, 1.2 s"]
    assert progress.done == 0


# -- live mode ------------------------------------------------------------------------------


def live(steps: list[str]) -> tuple[Progress, io.StringIO, Clock]:
    return plain(steps, live=True)


def test_live_bar() -> None:
    progress, stream, clock = live(["discover", "ruff"])
    progress.sink("started", "discover", 1, None)
    clock.now += 1
    end(progress, "discover")
    progress.sink("started", "ruff", 1, None)
    progress.sink("fanout", "ruff", 1, 4)
    clock.now += 1
    for i in range(4):
        progress.sink("started", f"ruff/run_ruff[{i}]", 1, None)
    clock.now += 1
    progress.sink("retrying", "ruff/run_ruff[1]", 1, (0.5, TimeoutError("slow")))
    text = stream.getvalue()
    assert "lint:" in text
    assert "1/6" in text  # the total grew with the fanout
    assert "running 5 · retries 1 · failed 0 · ruff/run_ruff[3], ruff/run_ruff[2], ruff/r" in text
    end(progress, "ruff/run_ruff[0]", "failed")
    for i in range(1, 4):
        end(progress, f"ruff/run_ruff[{i}]")
    end(progress, "ruff", "failed")
    clock.now += 2
    progress.finish("failed")
    text = stream.getvalue()
    assert "retry  ruff/run_ruff[1] attempt 1 failed: TimeoutError: slow; next in 0.5 s\n" in text
    assert "failed ruff/run_ruff[0]: ValueError: bad\n" in text
    assert "6/6" in text
    assert "failed · retries 1 · failed 2" in text
    assert text.endswith("lint: failed, 6/6 steps, 1 retries, 2 failed, 5.0 s\n")


def test_live_bar_redraws_at_most_every_tenth_of_a_second() -> None:
    progress, stream, clock = live(["a"])
    progress.sink("started", "a", 1, None)
    drawn = stream.getvalue()
    progress.sink("fanout", "a", 1, 1000)
    for i in range(1000):
        progress.sink("started", f"a/x[{i}]", 1, None)
        end(progress, f"a/x[{i}]")
    assert stream.getvalue() == drawn  # the clock stood still: nothing redrawn
    clock.now += 0.2
    progress.sink("started", "a/other", 1, None)
    assert "1000/1001" in stream.getvalue()[len(drawn) :]


def test_live_bar_draws_skipped_changes_from_the_loop() -> None:
    async def main() -> str:
        progress, stream, clock = live(["a"])
        progress.sink("started", "a", 1, None)
        clock.now += 0.05
        progress.sink("started", "a/branch", 1, None)  # too soon: drawn later by a timer
        assert "running 2" not in stream.getvalue()
        clock.now += 0.2
        await asyncio.sleep(0.3)
        progress.finish("completed")
        return stream.getvalue()

    assert "running 2 · retries 0 · failed 0 · a/branch, a" in asyncio.run(main())


def test_live_shortens_long_names() -> None:
    progress, stream, _ = live(["a"])
    long = "a/" + "very_long_step_name_" * 5 + "[7]"
    progress.sink("started", long, 1, None)
    progress.finish("completed")
    text = stream.getvalue()
    assert long not in text
    assert "…" + long[-31:] in text


def test_an_approval_wait_is_not_a_failure_and_steps_run_again_after_resume() -> None:
    from types import SimpleNamespace

    stream = io.StringIO()
    progress = Progress(["gate", "publish"], title="t", stream=stream, live=False)
    progress.sink("started", "gate", 1, None)
    pending = SimpleNamespace(
        error_type="ApprovalPending", error="waiting", execution_time_ms=1.0, status="failed"
    )
    progress.sink("failed", "gate", 1, pending)
    progress.sink("blocked", "publish", 0, SimpleNamespace(error=None, execution_time_ms=0.0))
    # publish is blocked only by the undecided approval: it waits, it is not done
    assert (progress.failed, progress.done) == (0, 0)
    assert "waiting for approval: gate" in stream.getvalue()
    # resumed after the approval: both run and complete
    for path in ("gate", "publish"):
        progress.sink("started", path, 1, None)
        progress.sink("completed", path, 1, SimpleNamespace(error=None, execution_time_ms=1.0))
    assert (progress.done, progress.total, progress.failed) == (2, 2, 0)
