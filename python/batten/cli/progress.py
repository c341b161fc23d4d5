"""Run progress for the ``batten`` CLI: a live ``tqdm`` bar on a terminal, plain log lines
elsewhere (CI logs, pipes)."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO

__all__ = ["Progress"]

#: Event kinds that end a step; their payload is the step's StepResult.
_TERMINAL = frozenset({"completed", "failed", "timeout", "skipped", "blocked", "cancelled"})
#: Terminal kinds that count as failures.
_FAILURES = frozenset({"failed", "timeout"})
#: Seconds between two renders of the live bar.
_INTERVAL = 0.1
#: Seconds after which the live bar is redrawn even if nothing happened (tqdm's elapsed ticks).
_HEARTBEAT = 1.0
#: Running step paths named on the live bar, most recently started first.
_NAMES = 3
#: Longest step path named on the live bar before it is shortened.
_NAME_WIDTH = 32
#: Longest error message printed.
_MESSAGE_WIDTH = 200
#: Lines printed per map step in plain mode, at most (one every 10% of its items).
_MAP_LINES = 10
#: Bar cells the live bar keeps on a terminal: the postfix is shortened (fewer running step
#: names, then shorter counts, then none) before the bar gets narrower than this.
_MIN_BAR = 20
#: Longest run title shown as the live bar's description.
_TITLE_WIDTH = 30
#: The live bar's layout: tqdm's default without rate and ETA, which mean little for steps of
#: very different lengths and cost a dozen columns.
_BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class _Map:
    """The items of one map step (after its ``"fanout"`` event)."""

    __slots__ = ("count", "done", "every", "failed")

    def __init__(self, count: int) -> None:
        self.count = count
        self.done = 0
        self.failed = 0
        self.every = max(1, -(-count // _MAP_LINES))  # print every ceil(count / 10) items


class Progress:
    """Shows a run's progress from its engine events, as a live ``tqdm`` bar or as plain lines.

    Feed :meth:`sink` every engine event (on the event loop's thread) and call :meth:`finish`
    once when the run ends.

    Progress is counted in units: each top-level step is one unit, and each item of a map step
    is one more (a ``"fanout"`` event with ``N`` items adds ``N`` to :attr:`total`; the map
    step itself stays one unit). A unit is done when its first terminal event arrives (any of
    ``completed``, ``failed``, ``timeout``, ``skipped``, ``blocked``, ``cancelled``), started
    or not; once done it stays done, so the count never goes backwards, and it is never
    counted twice. Two things are not done: an approval step waiting for its decision, and a
    step ``blocked`` only because such an approval is still undecided (it is *waiting*: it
    runs once the approval is decided; the engine reports it right after the approval's wait).
    Steps a resumed run restored from its store report no events: :meth:`restore` counts them.
    Other nested steps (parallel or condition branches, steps of sub-workflows) show as running
    but are not units. A top-level step that is not in ``steps`` becomes a unit when it
    reports.

    Live mode (a terminal) draws one bar: done/total, elapsed, and ``running n · retries r ·
    failed f`` with the most recently started running steps, shortened to fit the terminal's
    width so the bar keeps at least ``_MIN_BAR`` cells (20); retries and failures are also
    printed above the bar. Plain mode prints one line per event of interest (top-level steps
    starting, ending and waiting, retries, failures of any step, map fan-outs, a map's items
    every 10%) and never uses carriage returns or ANSI codes.

    Writing never raises: when the stream fails (a pipe whose reader went away, a terminal
    that hung up) the display goes quiet and the run goes on.

    Args:
        steps: the ids of the workflow's top-level steps.
        title: the run's name (the bar's description, the first and last plain lines).
        stream: where to write (``sys.stderr`` by default).
        live: ``True`` for the bar, ``False`` for plain lines; ``None`` (the default) for the
            bar exactly when ``stream`` is a terminal.
        clock: seconds, monotonic; elapsed times and the bar's refresh rate use it.
    """

    def __init__(
        self,
        steps: Sequence[str],
        *,
        title: str,
        stream: TextIO | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._title = title
        self._stream = stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._start = clock()
        self._top: set[str] = set(steps)
        self._total = len(self._top)
        self._done: set[str] = set()  # units that ended
        self._running: dict[str, None] = {}  # paths running now, in order of their last start
        self._maps: dict[str, _Map] = {}  # map step path -> its items
        self._retries = 0
        self._failed = 0
        self._finished = False
        self._quiet = False  # the stream failed: nothing more is written
        self._gate: str | None = None  # an approval that just started waiting (see sink)
        if live is None:
            isatty = getattr(stream, "isatty", None)
            live = bool(isatty()) if isatty is not None else False
        self._live = live
        self._bar: Any = None
        self._last_render = -float("inf")
        self._dirty = False
        self._ticker: asyncio.TimerHandle | None = None
        if live:
            from tqdm import tqdm

            options: dict[str, Any] = {
                "desc": title if len(title) <= _TITLE_WIDTH else title[: _TITLE_WIDTH - 1] + "…",
                "total": self._total,
                "unit": "step",
                "leave": True,
                "file": stream,
                "dynamic_ncols": True,
                "mininterval": _INTERVAL,
                "bar_format": _BAR_FORMAT,
            }
            try:
                self._bar = tqdm(**options)
            except (OSError, ValueError):  # tqdm draws at once; the stream is already gone
                self._quiet = True
                self._bar = tqdm(**options, disable=True)
        else:
            self._line(f"{title}: {self._total} steps")

    # -- state -----------------------------------------------------------------------------

    @property
    def done(self) -> int:
        """Units that ended (int)."""
        return len(self._done)

    @property
    def total(self) -> int:
        """Units known so far (int): the top-level steps plus every map item fanned out."""
        return self._total

    @property
    def running(self) -> frozenset[str]:
        """The paths of the steps running now (a retried step runs until it ends)."""
        return frozenset(self._running)

    @property
    def retries(self) -> int:
        """Retries of any step so far (int)."""
        return self._retries

    @property
    def failed(self) -> int:
        """Units that ended failed or timed out (int)."""
        return self._failed

    # -- events ----------------------------------------------------------------------------

    def sink(self, kind: str, step_id: str, attempt: int, payload: Any) -> None:
        """Takes one engine event ``(kind, step_id, attempt, payload)``; call it on the event
        loop's thread. Unknown kinds are ignored."""
        if self._finished:
            return
        gate, self._gate = self._gate, None
        if kind == "failed" and getattr(payload, "error_type", None) == "ApprovalPending":
            # The run stops here until someone decides: not a failure, and not done.
            self._running.pop(step_id, None)
            self._gate = step_id
            self._note(f"waiting for approval: {step_id}")
        elif kind == "blocked" and gate is not None and _scope(step_id) == _scope(gate):
            # The engine reports the steps a failure blocks right after the failure itself, so
            # the blocked steps that follow an approval's wait are blocked by that wait alone:
            # they run once it is decided.
            self._gate = gate
            self._waiting(step_id, gate)
        elif kind in _TERMINAL:
            self._ended(kind, step_id, payload)
        elif kind == "started":
            # A done unit that starts again (a map's items when the map step is retried) stays
            # counted once, so the count never goes backwards.
            self._running.pop(step_id, None)
            self._running[step_id] = None
            if step_id in self._top or "/" not in step_id:
                self._unit(step_id)
                if not self._live:
                    again = f" (attempt {attempt})" if attempt > 1 else ""
                    self._line(f"{self._counter()} started {step_id}{again}")
        elif kind == "retrying":
            self._retries += 1
            delay, error = payload if isinstance(payload, tuple) else (0.0, payload)
            self._note(
                f"retry  {step_id} attempt {attempt} failed: {_exception(error)}; "
                f"next in {_seconds(float(delay))}"
            )
        elif kind == "fanout":
            count = max(0, int(payload))
            known = self._maps.get(step_id)
            self._total += count - (known.count if known is not None else 0)
            if known is None:
                self._maps[step_id] = _Map(count)
            else:  # the map step ran again (a retry): same items, maybe another count
                known.count = count
                known.every = _Map(count).every
            if self._live:
                self._bar.total = self._total
            else:
                self._line(f"{self._counter()} {step_id}: {count} items")
        else:  # "circuit" and kinds this version does not know
            return
        if self._live:
            self._render()

    def restore(self, done: Iterable[str], items: Mapping[str, int] | None = None) -> None:
        """Counts the units a resumed run restored from its store: the engine reports no
        events for them, yet they are part of the run (without this a resumed run would end
        ``completed, 3/6 steps``).

        Args:
            done: the restored paths: top-level step ids and map items
                (``"<map path>/<inner id>[<i>]"``); other paths are ignored, as are paths
                already done.
            items: map step path -> how many items it had, as the store knows them (int); makes
                those items units, as a ``"fanout"`` event does (a later ``"fanout"`` of the
                same map replaces the count). Default: none.
        """
        if self._finished:
            return
        for path, count in (items or {}).items():
            if path not in self._maps:
                self._maps[path] = _Map(max(0, int(count)))
                self._total += self._maps[path].count
        restored = 0
        for path in done:
            top = path in self._top or "/" not in path
            known = None if top or not path.endswith("]") else self._maps.get(_scope(path))
            if (top or known is not None) and path not in self._done:
                if top:
                    self._unit(path)
                self._done.add(path)
                restored += 1
                if known is not None:
                    known.done += 1
        if self._live:
            self._bar.total = self._total
            self._render(force=True)
        else:
            self._line(f"{self._counter()} restored {restored} from the store")

    def _waiting(self, path: str, gate: str) -> None:
        """``path`` is blocked only by the undecided approval ``gate``: waiting, not done."""
        self._running.pop(path, None)
        if path in self._top or "/" not in path:
            self._unit(path)
            if not self._live:
                self._line(f"{self._counter()} waiting {path} (behind approval {gate})")

    def _unit(self, path: str) -> None:
        """Makes an undeclared top-level step a unit."""
        if path not in self._top:
            self._top.add(path)
            self._total += 1
            if self._live:
                self._bar.total = self._total

    def _ended(self, kind: str, path: str, result: Any) -> None:
        self._running.pop(path, None)
        failure = kind in _FAILURES
        top = path in self._top or "/" not in path
        items: _Map | None = None
        if not top and path.endswith("]"):  # "<map path>/<inner id>[<i>]"
            items = self._maps.get(path[: path.rfind("/")])
        if top or items is not None:
            if path in self._done:
                return
            if top:
                self._unit(path)
            self._done.add(path)
            if failure:
                self._failed += 1
        if top and not self._live:
            took = _milliseconds(float(getattr(result, "execution_time_ms", 0.0) or 0.0))
            why = f": {_error(result)}" if failure else ""
            self._line(f"{self._counter()} {kind} {path} ({took}){why}")
        elif failure:
            self._note(f"{kind} {path}: {_error(result)}")
        if items is not None:
            items.done += 1
            if failure:
                items.failed += 1
            if not self._live and (items.done % items.every == 0 or items.done == items.count):
                broke = f", {items.failed} failed" if items.failed else ""
                name = path[: path.rfind("/")]
                self._line(f"{self._counter()} {name}: {items.done}/{items.count} items{broke}")

    def finish(self, status: str) -> None:
        """Ends the display with a last line: the run's status, done/total, retries, failures
        and elapsed time. Calls after the first do nothing."""
        if self._finished:
            return
        self._finished = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        status = str(getattr(status, "value", status))
        elapsed = _seconds(self._clock() - self._start)
        if self._live:
            bar = self._bar
            bar.total = self._total
            bar.n = self.done
            if not self._quiet:
                postfix = f"{status} · retries {self._retries} · failed {self._failed}"
                bar.set_postfix_str(self._fit([postfix, status]), refresh=False)
            self._guard(bar.refresh)
            self._guard(bar.close)
        self._line(
            f"{self._title}: {status}, {self.done}/{self._total} steps, "
            f"{self._retries} retries, {self._failed} failed, {elapsed}"
        )

    # -- output ----------------------------------------------------------------------------

    def _counter(self) -> str:
        width = len(str(self._total))
        return f"[{len(self._done):>{width}}/{self._total}]"

    def _line(self, text: str) -> None:
        def write() -> None:
            self._stream.write(text + "\n")
            self._stream.flush()

        self._guard(write)

    def _guard(self, write: Callable[[], object]) -> None:
        """Calls ``write`` unless the stream failed before; a failure now (a closed pipe: the
        reader went away, ``batten run ... | head``; a hung-up terminal) quiets the display for
        good, so it never stops the run it shows."""
        if self._quiet:
            return
        try:
            write()
        except (OSError, ValueError):  # ValueError: the stream was closed
            self._quiet = True
            if self._bar is not None:
                self._bar.disable = True  # tqdm's close (also at exit) then writes nothing

    def note(self, text: str) -> None:
        """Prints a line of the caller's (``batten run``'s own messages) without breaking the
        bar: above it when live, as a plain line otherwise (no counter)."""
        if self._live:
            self._guard(lambda: self._bar.write(text, file=self._stream))
        else:
            self._line(text)

    def _note(self, text: str) -> None:
        """Prints a retry or failure: above the bar when live, as a line otherwise."""
        if self._live:
            self._guard(lambda: self._bar.write(text, file=self._stream))
        else:
            self._line(f"{self._counter()} {text}")

    def _render(self, *, force: bool = False) -> None:
        """Redraws the bar, at most every ``_INTERVAL`` seconds; a change it skips is drawn by
        a timer on the running event loop."""
        now = self._clock()
        if not force and now - self._last_render < _INTERVAL:
            self._dirty = True
            self._tick_later()
            return
        self._last_render = now
        self._dirty = False
        if self._quiet:
            return
        running = len(self._running)
        names = [_short(path) for path in itertools.islice(reversed(self._running), _NAMES)]
        counts = f"running {running} · retries {self._retries} · failed {self._failed}"
        brief = f"running {running}"
        if self._retries:
            brief += f" · retries {self._retries}"
        if self._failed:
            brief += f" · failed {self._failed}"
        # Narrower terminals lose the zero counts before the running steps' names, then the
        # names, then everything; the bar itself never shrinks below _MIN_BAR cells for them.
        candidates = [
            f"{words} · {', '.join(names[:k])}"
            for words in (counts, brief)
            for k in range(len(names), 0, -1)
        ]
        bar = self._bar
        bar.n = len(self._done)
        bar.set_postfix_str(self._fit([*candidates, counts, brief, ""]), refresh=False)
        self._guard(bar.refresh)
        self._tick_later()

    def _fit(self, postfixes: Sequence[str]) -> str:
        """The first of ``postfixes`` (longest first) that leaves the bar ``_MIN_BAR`` cells on
        the terminal, else the last; the first when the stream's width is unknown (not a
        terminal). tqdm would otherwise squeeze the bar itself down to a single cell."""
        from tqdm.utils import disp_len

        bar = self._bar
        try:
            shape = bar.format_dict  # asks the terminal for its current width
        except (OSError, ValueError):
            return postfixes[0]
        width = shape.get("ncols")
        if not width:
            return postfixes[0]
        barless = _BAR_FORMAT.replace("{bar}", "")
        for postfix in postfixes:
            text = bar.format_meter(
                **{**shape, "ncols": None, "bar_format": barless, "postfix": postfix}
            )
            if width - disp_len(text) >= _MIN_BAR:
                return postfix
        return postfixes[-1]

    def _tick_later(self) -> None:
        if self._ticker is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (driven by hand): draws happen on events only
            return
        self._ticker = loop.call_later(_INTERVAL, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        if self._finished:
            return
        if self._dirty or self._clock() - self._last_render >= _HEARTBEAT:
            self._render(force=True)
        else:
            self._tick_later()


def _scope(path: str) -> str:
    """The path of the run ``path`` is a step of (``""`` at the top level)."""
    return path[: path.rfind("/")] if "/" in path else ""


def _short(path: str) -> str:
    return path if len(path) <= _NAME_WIDTH else "…" + path[-(_NAME_WIDTH - 1) :]


def _clip(text: str) -> str:
    text = text.strip().split("\n", 1)[0]
    return text if len(text) <= _MESSAGE_WIDTH else text[: _MESSAGE_WIDTH - 1] + "…"


def _exception(error: object) -> str:
    if isinstance(error, BaseException):
        message = str(error)
        name = type(error).__name__
        return _clip(f"{name}: {message}" if message else name)
    return _clip(str(error))


def _error(result: object) -> str:
    """A terminal StepResult's error as ``"Type: message"``."""
    kind = getattr(result, "error_type", None)
    message = getattr(result, "error", None)
    if kind and message:
        return _clip(f"{kind}: {message}")
    return _clip(str(kind or message or "no error recorded"))


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s"


def _milliseconds(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else _seconds(ms / 1000)
