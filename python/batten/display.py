"""Pictures of workflows and tables of runs: Mermaid diagrams, SVG, Jupyter HTML, terminal text.

:func:`to_mermaid` draws a :class:`~batten.Workflow` as a Mermaid ``flowchart``: one node per
step labelled with its id and kind, an edge from each dependency to its dependent, and the
composite steps drawn as what they do (a ``ConditionalStep`` is a rhombus with ``true`` /
``false`` edges, a ``ParallelStep`` a subgraph of its branches, a ``MapStep`` a subroutine
node ``[[...]]``, a ``HumanApprovalStep`` a hexagon, fallbacks and compensations dotted edges).
:func:`to_svg` draws the same graph as an SVG picture laid out here (offline: no script, no
CDN), coloured by status when given a run's result; :func:`workflow_html` and
:func:`workflow_mimebundle` wrap it for Jupyter, VS Code and JupyterLab; :func:`result_html`
and :func:`result_text` tabulate a :class:`~batten.WorkflowResult` (each step's status,
attempts, time and error).

Each step says how it is drawn (its ``_describe()`` returns a
:class:`~batten._internal.view.StepView`); this module lays the views out, so it knows no step
class and a new step kind needs no change here. It imports only ``batten._internal`` (it sits
below the result, the step model and the workflow it draws, which load it on first use).

Everything here only reads the objects it is given; the output depends on nothing but them
(no ids drawn from counters shared between calls, no clocks), so equal workflows give equal
text.
"""

from __future__ import annotations

import graphlib
import html
import math
import re
import reprlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from batten._internal.kinds import ResultKind, WorkflowHolderKind, WorkflowKind
from batten._internal.status import StepStatus, WorkflowStatus
from batten._internal.view import one_line as _one_line
from batten._internal.view import shorten as _shorten

__all__ = [
    "result_html",
    "result_text",
    "to_mermaid",
    "to_svg",
    "workflow_html",
    "workflow_mimebundle",
]

#: Flowchart directions :func:`to_mermaid` accepts (top-down, left-right, bottom-top,
#: right-left).
DIRECTIONS: tuple[str, ...] = ("TD", "LR", "BT", "RL")

#: Mermaid's ES module on the jsDelivr CDN, for drawing :func:`to_mermaid`'s text in a page of
#: your own. batten loads nothing from it: :func:`workflow_html` draws an inline SVG.
MERMAID_CDN = "https://cdn.jsdelivr.net/npm/mermaid@11/dist/mermaid.esm.min.mjs"

#: Longest text kept from an error before it is cut with "…".
_ERROR_MAX = 200
_STEP_ID_MAX = 40  # result_text's step column
_TOOLTIP_MAX = 2000

#: ``(open, close)`` of each Mermaid node shape used; the label goes between, in quotes.
_SHAPES: dict[str, tuple[str, str]] = {
    "box": ("[", "]"),
    "rhombus": ("{", "}"),
    "hexagon": ("{{", "}}"),
    "subroutine": ("[[", "]]"),
}

_PLAIN_EDGE_LABEL = re.compile(r"[A-Za-z0-9_ ]+")

# Characters Mermaid could read as syntax inside a quoted label (the closing quote, an entity,
# HTML, a markdown string, a ``%%`` comment), and the entity codes that print them instead.
# ``#`` comes first: the others introduce one.
_MERMAID_ENTITIES = (
    ("#", "#35;"),
    ('"', "#quot;"),
    ("&", "#amp;"),
    ("<", "#lt;"),
    (">", "#gt;"),
    ("`", "#96;"),
    ("%", "#37;"),
)
# Mermaid's lexer reads a line holding "direction LR" (TB, BT, RL) as a direction statement,
# even inside a quoted label; an entity for the "d" defuses it.
_DIRECTION_WORD = re.compile(r"direction(?=\s+(?:TB|BT|RL|LR))")


# --------------------------------------------------------------------------------------------
# Small text helpers
# --------------------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    """``text`` as it may stand inside a quoted Mermaid label: one line, with the characters
    Mermaid would parse written as entity codes (``"`` is ``#quot;``)."""
    text = _one_line(text)
    for char, entity in _MERMAID_ENTITIES:
        text = text.replace(char, entity)
    return _DIRECTION_WORD.sub("#100;irection", text)


def _label(lines: list[str]) -> str:
    """A quoted Mermaid label of ``lines`` (escaped, joined by line breaks)."""
    return '"' + "<br/>".join(_mermaid_text(line) for line in lines if line) + '"'


def _format_ms(ms: float | None) -> str:
    """Formats a duration for a table: ``"12.3 ms"`` below a second, ``"1.52 s"`` below a
    minute, then ``"2 min 5.0 s"`` and ``"1 h 2 min"``.

    Args:
        ms: milliseconds (float); ``None``, NaN or a negative value prints ``"-"``.

    Returns:
        str: the formatted duration.
    """
    if ms is None or not isinstance(ms, int | float) or not math.isfinite(ms) or ms < 0:
        return "-"
    if ms < 1000:
        return f"{ms:.1f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)} min {seconds:.1f} s"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours} h {minutes} min"


# --------------------------------------------------------------------------------------------
# Mermaid
# --------------------------------------------------------------------------------------------


def _as_workflow(workflow: Any) -> Any:
    """The :class:`~batten.Workflow` to draw: ``workflow`` itself, or the one a
    :class:`~batten.DagWorkflow` holds.

    Raises:
        TypeError: ``workflow`` is neither.
    """
    if isinstance(workflow, WorkflowHolderKind):
        workflow = workflow.workflow  # type: ignore[attr-defined]
    if not isinstance(workflow, WorkflowKind):
        raise TypeError(f"expected a batten.Workflow, got {type(workflow).__name__}")
    return workflow


class _Renderer:
    """Builds one flowchart: node and subgraph lines in declaration order (indented by
    nesting) and the edges, kept apart and written after every node, outside any subgraph:
    Mermaid puts every node an edge line names inside a subgraph's block into that subgraph,
    so only node definitions may go there."""

    def __init__(self) -> None:
        self.body: list[str] = []
        self.edges: dict[str, None] = {}  # ordered set: a repeated depends_on is one edge
        self.missing: list[str] = []
        self._count = 0
        self._indent = 1
        self._active: list[int] = []  # ids of the steps and workflows being drawn

    def _emit(self, text: str) -> None:
        self.body.append("    " * self._indent + text)

    def _new_id(self, prefix: str) -> str:
        ident = f"{prefix}{self._count}"
        self._count += 1
        return ident

    def node(self, shape: str, lines: list[str]) -> str:
        """Adds a node; returns its id."""
        ident = self._new_id("n")
        opening, closing = _SHAPES[shape]
        self._emit(f"{ident}{opening}{_label(lines)}{closing}")
        return ident

    def edge(self, src: str, dst: str, label: str | None = None, *, dotted: bool = False) -> None:
        """Adds an edge ``src --> dst`` (``-.->`` when dotted), labelled when ``label`` is
        given."""
        arrow = "-.->" if dotted else "-->"
        if label is None:
            text = ""
        elif _PLAIN_EDGE_LABEL.fullmatch(label):
            text = f"|{label}|"
        else:
            text = f"|{_label([label])}|"
        self.edges[f"{src} {arrow}{text} {dst}"] = None

    @contextmanager
    def subgraph(self, title: str) -> Iterator[str]:
        """Opens a subgraph (its nodes are those added inside the ``with``); yields its id."""
        ident = self._new_id("g")
        self._emit(f"subgraph {ident}[{_label([title])}]")
        self._indent += 1
        try:
            yield ident
        finally:
            self._indent -= 1
            self._emit("end")

    def workflow(self, workflow: Any) -> None:
        """Adds ``workflow``'s steps and their dependency edges to the current subgraph."""
        self._active.append(id(workflow))
        try:
            ends: dict[str, tuple[str, str]] = {}
            drawn: list[tuple[str, str]] = []
            for step in workflow._steps:
                drawn.append(self.step(step))
                ends.setdefault(step.step_id, drawn[-1])
            for (entry, _), deps in zip(drawn, workflow._deps, strict=True):
                for dep in deps:
                    if dep not in ends:
                        ident = self.node("box", [dep, "unknown step"])
                        self.missing.append(ident)
                        ends[dep] = (ident, ident)
                    self.edge(ends[dep][1], entry)
        finally:
            self._active.pop()

    def step(self, step: Any) -> tuple[str, str]:
        """Adds ``step`` (with its fallback and compensation); returns ``(entry, exit)``: the
        ids its incoming and outgoing dependency edges attach to."""
        if id(step) in self._active:  # a step that is its own fallback, directly or not
            ident = self.node("box", [step.step_id, "(drawn above)"])
            return ident, ident
        self._active.append(id(step))
        try:
            entry, exit_ = self._body(step)
            for attr in ("fallback", "compensation"):
                other = getattr(step, attr, None)
                if other is not None:
                    other_entry, _ = self.step(other)
                    self.edge(exit_, other_entry, attr, dotted=True)
        finally:
            self._active.pop()
        return entry, exit_

    def _body(self, step: Any) -> tuple[str, str]:
        """Draws what ``step._describe()`` says (see :class:`~batten._internal.view.StepView`);
        returns ``(entry, exit)``."""
        view = step._describe()
        sid: str = step.step_id
        if view.shape != "group":
            ident = self.node(view.shape, [sid, *view.lines])
            return ident, ident
        with self.subgraph(f"{sid} ({view.title})") as group:
            entry: str | None = None
            lead_exit: str | None = None
            if view.lead is not None:
                entry, lead_exit = self.step(view.lead)
            test: str | None = None
            if view.test:
                test = self.node("rhombus", list(view.test))
                if lead_exit is not None:
                    self.edge(lead_exit, test)
                entry = entry or test
            sub = view.workflow
            if sub is not None:
                if id(sub) in self._active:
                    self.node("box", [sub.workflow_id, "(recursive: drawn above)"])
                elif not sub._steps:
                    self.node("box", [view.empty])
                else:
                    self.workflow(sub)
            else:
                last_exit: str | None = None
                for label, branch in view.branches:
                    branch_entry, last_exit = self.step(branch)
                    if test is not None:
                        self.edge(test, branch_entry, label)
                if view.repeat and test is not None and last_exit is not None:
                    self.edge(last_exit, test)
                if not view.branches and view.empty:
                    self.node("box", [view.empty])
        return entry or group, group


def to_mermaid(workflow: Any, *, direction: str = "TD") -> str:
    """Draws ``workflow`` as a Mermaid ``flowchart``.

    One node per step, in declaration order, labelled with the step id and its kind
    (``tool: name`` / ``agent: name``, or the step's type) and its non-default settings
    (attempts, timeout, conditions, cache); an edge ``dependency --> step`` for each
    ``depends_on``. Composite steps show their inner steps: a ``ConditionalStep`` is a subgraph
    holding a rhombus with ``true`` / ``false`` edges to its branches; a ``ParallelStep`` a
    subgraph of its branches; a ``MapStep`` a subroutine node ``[["id<br/>map over items →
    inner"]]``; a ``LoopStep`` a subgraph whose ``while`` rhombus leads to the body and back; a
    ``SubWorkflowStep`` a subgraph of the inner workflow; a ``RouterStep`` a subgraph whose
    rhombus has an edge per branch labelled with its key. A ``HumanApprovalStep`` is a hexagon
    ``{{...}}``. Fallbacks and compensations hang off their step by dotted edges labelled
    ``fallback`` / ``compensation``. A ``depends_on`` naming no step gets an ``unknown step``
    node (dashed).

    Node ids are ``n0``, ``n1``, ... and subgraph ids ``g0``, ``g1``, ... in drawing order, so
    any step id (``a-b``, ``x.y``, ``has space``, ``end``) is safe; labels are quoted, with
    ``"`` written ``#quot;`` and Mermaid's other special characters as entity codes.

    Args:
        workflow: a :class:`~batten.Workflow` (or a :class:`~batten.DagWorkflow`).
        direction: ``"TD"`` (default, top-down), ``"LR"``, ``"BT"`` or ``"RL"``.

    Returns:
        str: the flowchart source (no trailing newline); equal workflows give equal text.

    Raises:
        ValueError: ``direction`` is not one of the four.
        TypeError: ``workflow`` is not a Workflow.
    """
    if not isinstance(direction, str) or direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}")
    wf = _as_workflow(workflow)
    renderer = _Renderer()
    renderer.workflow(wf)
    lines = [f"flowchart {direction}", *renderer.body]
    lines.extend("    " + edge for edge in renderer.edges)
    if renderer.missing:
        lines.append("    classDef missing stroke-dasharray:5 5")
        lines.extend(f"    class {ident} missing" for ident in renderer.missing)
    return "\n".join(lines)


def workflow_html(workflow: Any, *, result: Any = None) -> str:
    """HTML showing ``workflow`` in Jupyter: a header (name, id, version, number of steps), the
    graph as an inline ``<svg>`` (:func:`to_svg`: computed in Python, so it shows offline, in an
    untrusted notebook and in GitHub's viewer: no script and no URL), and the
    :func:`to_mermaid` source in a ``<details>`` for users who draw it with Mermaid.

    Args:
        workflow: a :class:`~batten.Workflow` (or a :class:`~batten.DagWorkflow`).
        result: a :class:`~batten.WorkflowResult` of a run of it, or ``None`` (default): with
            one, nodes are coloured by status (see :func:`to_svg`) and the header names the
            run and its status.

    Returns:
        str: an HTML fragment; every text from the workflow is escaped with ``html.escape``.

    Raises:
        TypeError: ``workflow`` is not a Workflow, or ``result`` not a WorkflowResult.
    """
    wf = _as_workflow(workflow)
    source = html.escape(to_mermaid(wf))
    n = len(wf._steps)
    name = html.escape(str(wf.name))
    ident = html.escape(str(wf.workflow_id))
    version = html.escape(str(getattr(wf, "version", "")))
    run = ""
    if result is not None:
        _, run_id, status, total = _header(_as_result(result))
        colour = _RUN_COLOURS.get(status, _BLUE)
        run = (
            f" &middot; run <code>{html.escape(run_id)}</code> &middot; "
            f'<span style="color:{colour};font-weight:bold">{html.escape(status)}</span>'
            f" &middot; {html.escape(total)}"
        )
    return (
        '<div class="batten-workflow">'
        f'<div class="batten-workflow-header"><strong>{name}</strong> '
        f"<code>{ident}</code> v{version} &middot; {n} step{'s' if n != 1 else ''}{run}</div>"
        f'<div style="overflow:auto">{_svg(wf, result, xmlns=False)}</div>'
        f"<details><summary>Mermaid source</summary><pre>{source}</pre></details>"
        "</div>"
    )


def workflow_mimebundle(workflow: Any) -> dict[str, str]:
    """The MIME bundle for ``Workflow._repr_mimebundle_``: ``text/plain`` (its ``repr``),
    ``text/html`` (:func:`workflow_html`) and ``text/markdown`` (a fenced ``mermaid`` block,
    which VS Code and JupyterLab draw without loading scripts).

    Args:
        workflow: a :class:`~batten.Workflow` (or a :class:`~batten.DagWorkflow`).

    Returns:
        dict[str, str]: MIME type to content.

    Raises:
        TypeError: ``workflow`` is not a Workflow.
    """
    wf = _as_workflow(workflow)
    return {
        "text/plain": repr(workflow),
        "text/html": workflow_html(wf),
        "text/markdown": f"```mermaid\n{to_mermaid(wf)}\n```",
    }


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

_GREEN, _RED, _GREY, _AMBER, _BLUE = "#1a7f37", "#cf222e", "#6e7781", "#9a6700", "#0969da"

_STEP_COLOURS: dict[str, str] = {
    StepStatus.COMPLETED: _GREEN,
    StepStatus.FAILED: _RED,
    StepStatus.TIMEOUT: _RED,
    StepStatus.SKIPPED: _GREY,
    StepStatus.CANCELLED: _GREY,
    StepStatus.BLOCKED: _GREY,
    StepStatus.WAITING_APPROVAL: _AMBER,
    StepStatus.PENDING: _BLUE,
    StepStatus.RUNNING: _BLUE,
    StepStatus.RETRYING: _BLUE,
}

_RUN_COLOURS: dict[str, str] = {
    WorkflowStatus.COMPLETED: _GREEN,
    WorkflowStatus.FAILED: _RED,
    WorkflowStatus.COMPENSATED: _AMBER,
    WorkflowStatus.WAITING_APPROVAL: _AMBER,
    WorkflowStatus.PAUSED: _AMBER,
    WorkflowStatus.INTERRUPTED: _AMBER,
    WorkflowStatus.CANCELLED: _GREY,
}

_HEADERS = ("step", "status", "attempts", "time", "error")

_output_repr = reprlib.Repr()
_output_repr.maxstring = 200
_output_repr.maxother = 200


def _status_text(status: Any) -> str:
    """A status enum's value (``"completed"``), or ``str`` of anything else."""
    value = getattr(status, "value", status)
    return str(value)


def _as_result(result: Any) -> Any:
    if not isinstance(result, ResultKind):
        raise TypeError(f"expected a batten.WorkflowResult, got {type(result).__name__}")
    return result


def _error_text(step: Any) -> str:
    """``"ErrorType: message"`` of a step result (one line, uncut), or ``""``."""
    if step.error is None and step.error_type is None:
        return ""
    message = _one_line(str(step.error or ""))
    return f"{step.error_type}: {message}" if step.error_type else message


def _tooltip(text: str) -> str:
    """A ``title`` attribute holding ``text`` when a cell shows it cut, else ``""``."""
    if len(text) <= _ERROR_MAX:
        return ""
    return f' title="{html.escape(_shorten(text, _TOOLTIP_MAX))}"'


def _nested(step: Any) -> int:
    """How many results a composite step's result holds."""
    return len(step.children or ())


def _header(result: Any) -> tuple[str, str, str, str]:
    """``(workflow_id, run_id, status, total time)`` as text."""
    return (
        str(result.workflow_id),
        str(result.run_id),
        _status_text(result.status),
        _format_ms(result.total_execution_time_ms),
    )


def result_html(result: Any) -> str:
    """An HTML table of ``result``'s steps, for ``WorkflowResult._repr_html_``.

    A header line gives the workflow id, run id, status (coloured) and total time, then the
    run's error if any; the table has one row per step result in ``result.steps`` order: step
    id (with the number of nested results of a composite step), status (completed green,
    failed and timeout red, skipped, cancelled and blocked grey, waiting for approval amber),
    attempts, time (``"12.3 ms"`` / ``"1.52 s"``) and error (``"ErrorType: message"`` cut to
    200 characters, the whole message then in the cell's tooltip). The final output follows in a
    ``<details>`` (its ``repr``, abridged). All text is escaped with ``html.escape``.

    Args:
        result: a :class:`~batten.WorkflowResult`.

    Returns:
        str: an HTML fragment.

    Raises:
        TypeError: ``result`` is not a WorkflowResult.
    """
    res = _as_result(result)
    esc = html.escape
    workflow_id, run_id, status, total = _header(res)
    colour = _RUN_COLOURS.get(status, _BLUE)
    parts = [
        '<div class="batten-result">',
        f"<div><strong>{esc(workflow_id)}</strong> &middot; run <code>{esc(run_id)}</code>"
        f' &middot; <span style="color:{colour};font-weight:bold">{esc(status)}</span>'
        f" &middot; {esc(total)}</div>",
    ]
    if res.error:
        message = _one_line(str(res.error))
        parts.append(
            f'<div style="color:{_RED}"{_tooltip(message)}>'
            f"error: {esc(_shorten(message, _ERROR_MAX))}</div>"
        )
    cell = 'style="text-align:left;padding:2px 8px"'
    parts.append('<table class="batten-steps" style="border-collapse:collapse">')
    parts.append(
        "<thead><tr>"
        + "".join(f"<th {cell}>{name.capitalize()}</th>" for name in _HEADERS)
        + "</tr></thead><tbody>"
    )
    for step in res.steps:
        st = _status_text(step.status)
        nested = _nested(step)
        more = f" <small>(+{nested} nested)</small>" if nested else ""
        error = _error_text(step)
        parts.append(
            "<tr>"
            f"<td {cell}><code>{esc(str(step.step_id))}</code>{more}</td>"
            f'<td {cell}><span style="color:{_STEP_COLOURS.get(st, _BLUE)}">{esc(st)}</span></td>'
            f"<td {cell}>{step.attempts}</td>"
            f"<td {cell}>{esc(_format_ms(step.execution_time_ms))}</td>"
            f"<td {cell}{_tooltip(error)}>{esc(_shorten(error, _ERROR_MAX))}</td>"
            "</tr>"
        )
    parts.append("</tbody></table>")
    if res.final_output is not None:
        try:
            shown = _output_repr.repr(res.final_output)
        except Exception as exc:  # a repr that raises must not break the display
            shown = f"<unprintable {type(res.final_output).__name__}: {type(exc).__name__}>"
        parts.append(f"<details><summary>final output</summary><pre>{esc(shown)}</pre></details>")
    parts.append("</div>")
    return "".join(parts)


def result_text(result: Any) -> str:
    """``result``'s steps as a plain-text table for terminals: the header line of
    :func:`result_html` (``workflow 'id' · run … · status · time``), the run's error if any,
    then fixed-width columns STEP, STATUS, ATTEMPTS, TIME, ERROR (a step id cut to 40
    characters, the error to 200; ``(+N nested)`` after a composite step's id).

    Args:
        result: a :class:`~batten.WorkflowResult`.

    Returns:
        str: the table (lines joined by ``\\n``, no trailing newline or trailing spaces).

    Raises:
        TypeError: ``result`` is not a WorkflowResult.
    """
    res = _as_result(result)
    workflow_id, run_id, status, total = _header(res)
    lines = [f"workflow {workflow_id!r} · run {run_id} · {status} · {total}"]
    if res.error:
        lines.append(f"error: {_shorten(_one_line(str(res.error)), _ERROR_MAX)}")
    rows = [[h.upper() for h in _HEADERS]]
    for step in res.steps:
        nested = _nested(step)
        sid = _shorten(_one_line(str(step.step_id)), _STEP_ID_MAX)
        rows.append(
            [
                f"{sid} (+{nested} nested)" if nested else sid,
                _status_text(step.status),
                str(step.attempts),
                _format_ms(step.execution_time_ms),
                _shorten(_error_text(step), _ERROR_MAX),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS) - 1)]
    rows.insert(1, ["-" * w for w in widths] + ["-" * len(_HEADERS[-1])])
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# SVG (offline: computed here, no script, no network)
# --------------------------------------------------------------------------------------------

_FONT = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px"
_CHAR_W = 7.3  # width of one 12 px monospace character, in px
_LINE_H = 15  # px per text line
_LABEL_MAX = 44  # characters kept per label line
_PAD = 10  # px inside a box or a group
_GAP = 24  # px between blocks in a level
_VGAP = 40  # px between levels
_TITLE_H = 22  # px of a group's title
_MARGIN = 8  # px around the picture

#: (stroke, fill) of a step's node by status; no result: neutral.
_NEUTRAL = ("#57606a", "#f6f8fa")
_SVG_COLOURS: dict[str, tuple[str, str]] = {
    StepStatus.COMPLETED: (_GREEN, "#dafbe1"),
    StepStatus.FAILED: (_RED, "#ffebe9"),
    StepStatus.TIMEOUT: (_RED, "#ffebe9"),
    StepStatus.SKIPPED: (_GREY, "#eaeef2"),
    StepStatus.CANCELLED: (_GREY, "#eaeef2"),
    StepStatus.BLOCKED: (_GREY, "#eaeef2"),
    StepStatus.WAITING_APPROVAL: (_AMBER, "#fff8c5"),
    StepStatus.PENDING: (_BLUE, "#ddf4ff"),
    StepStatus.RUNNING: (_BLUE, "#ddf4ff"),
    StepStatus.RETRYING: (_BLUE, "#ddf4ff"),
}


def _n(value: float) -> str:
    """A coordinate as SVG text: at most one decimal, no trailing ``.0``."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


class _Block:
    """A laid-out piece of the picture: a node or a group, ``w`` x ``h`` px."""

    w: float
    h: float

    def draw(self, x: float, y: float, out: list[str]) -> None:
        """Appends this block's SVG at ``(x, y)`` (px) to ``out``; abstract: ``_Node`` and
        ``_Group`` each draw themselves."""
        raise NotImplementedError


class _Node(_Block):
    """One step (or a rhombus, or a note box): its label lines in a shape."""

    def __init__(
        self,
        shape: str,
        lines: list[str],
        status: str | None,
        *,
        dashed: bool = False,
    ) -> None:
        self.shape = shape
        self.full = [_one_line(line) for line in lines if line]
        self.lines = [_shorten(line, _LABEL_MAX) for line in self.full]
        self.status = status
        self.dashed = dashed
        text_w = max((len(line) for line in self.lines), default=1) * _CHAR_W
        self.w = max(text_w + 2 * _PAD, 60.0)
        self.h = len(self.lines) * _LINE_H + 2 * _PAD - 4
        if shape == "rhombus":
            self.w, self.h = self.w * 1.5, self.h * 1.6
        elif shape == "hexagon":
            self.w += 2 * _PAD
        elif shape == "subroutine":
            self.w += _PAD

    def draw(self, x: float, y: float, out: list[str]) -> None:
        stroke, fill = _SVG_COLOURS.get(self.status or "", _NEUTRAL)
        style = f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"'
        if self.dashed:
            style += ' stroke-dasharray="5 4"'
        status = f' data-status="{html.escape(self.status)}"' if self.status else ""
        w, h = self.w, self.h
        out.append(f'<g class="batten-node"{status}>')
        tip = "\n".join(self.full) + (f"\n{self.status}" if self.status else "")
        out.append(f"<title>{html.escape(tip)}</title>")
        if self.shape == "rhombus":
            points = [(x, y + h / 2), (x + w / 2, y), (x + w, y + h / 2), (x + w / 2, y + h)]
        elif self.shape == "hexagon":
            d = _PAD
            points = [
                (x, y + h / 2),
                (x + d, y),
                (x + w - d, y),
                (x + w, y + h / 2),
                (x + w - d, y + h),
                (x + d, y + h),
            ]
        else:
            points = []
        if points:
            coords = " ".join(f"{_n(px)},{_n(py)}" for px, py in points)
            out.append(f'<polygon points="{coords}" {style}/>')
        else:
            out.append(
                f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="4" {style}/>'
            )
            if self.shape == "subroutine":
                for lx in (x + _PAD / 2, x + w - _PAD / 2):
                    out.append(
                        f'<line x1="{_n(lx)}" y1="{_n(y)}" x2="{_n(lx)}" y2="{_n(y + h)}" '
                        f'stroke="{stroke}"/>'
                    )
        top = y + h / 2 - (len(self.lines) - 1) * _LINE_H / 2 + 4
        for i, line in enumerate(self.lines):
            weight = ' font-weight="bold"' if i == 0 and self.shape != "rhombus" else ""
            out.append(
                f'<text x="{_n(x + w / 2)}" y="{_n(top + i * _LINE_H)}" text-anchor="middle"'
                f"{weight}>{html.escape(line)}</text>"
            )
        out.append("</g>")


class _Group(_Block):
    """A composite step: a titled frame around the layout of what it holds."""

    def __init__(self, title: str, inner: _Layout, status: str | None) -> None:
        self.title = _shorten(_one_line(title), 2 * _LABEL_MAX)
        self.inner = inner
        self.status = status
        self.w = max(inner.w + 2 * _PAD, len(self.title) * _CHAR_W + 2 * _PAD)
        self.h = inner.h + _TITLE_H + _PAD

    def draw(self, x: float, y: float, out: list[str]) -> None:
        stroke, _ = _SVG_COLOURS.get(self.status or "", _NEUTRAL)
        status = f' data-status="{html.escape(self.status)}"' if self.status else ""
        out.append(f'<g class="batten-group"{status}>')
        out.append(
            f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(self.w)}" height="{_n(self.h)}" rx="6" '
            f'fill="none" stroke="{stroke}" stroke-width="1.5" stroke-dasharray="6 3"/>'
        )
        out.append(
            f'<text x="{_n(x + _PAD)}" y="{_n(y + 15)}" font-weight="bold">'
            f"{html.escape(self.title)}</text>"
        )
        self.inner.draw(x + (self.w - self.inner.w) / 2, y + _TITLE_H, out)
        out.append("</g>")


class _Layout:
    """Blocks in layers: each block's level is one more than its deepest predecessor's
    (``graphlib``'s topological order over the forward edges); a level is a centred row."""

    def __init__(self) -> None:
        self.blocks: list[_Block] = []
        self.edges: list[tuple[int, int, str | None, bool, bool]] = []  # src dst label dot back
        self.w = self.h = 0.0
        self._pos: list[tuple[float, float]] = []

    def add(self, block: _Block) -> int:
        self.blocks.append(block)
        return len(self.blocks) - 1

    def edge(
        self,
        src: int,
        dst: int,
        label: str | None = None,
        *,
        dotted: bool = False,
        back: bool = False,
    ) -> None:
        if (src, dst, label, dotted, back) not in self.edges:
            self.edges.append((src, dst, label, dotted, back))

    def place(self) -> None:
        """Computes each block's position (relative to this layout) and the layout's size."""
        preds: dict[int, set[int]] = {i: set() for i in range(len(self.blocks))}
        for src, dst, _, _, back in self.edges:
            if not back and src != dst:
                preds[dst].add(src)
        try:
            order = list(graphlib.TopologicalSorter(preds).static_order())
        except graphlib.CycleError:  # cannot happen for a valid workflow; draw in order
            order = list(preds)
            preds = {i: {p for p in ps if p < i} for i, ps in preds.items()}
        level: dict[int, int] = {}
        for i in order:
            level[i] = max((level[p] + 1 for p in preds[i] if p in level), default=0)
        rows: dict[int, list[int]] = {}
        for i in range(len(self.blocks)):
            rows.setdefault(level[i], []).append(i)
        widths = {
            lv: sum(self.blocks[i].w for i in ids) + _GAP * (len(ids) - 1)
            for lv, ids in rows.items()
        }
        self.w = max(widths.values(), default=0.0)
        self._pos = [(0.0, 0.0)] * len(self.blocks)
        y = 0.0
        for lv in sorted(rows):
            ids = rows[lv]
            row_h = max(self.blocks[i].h for i in ids)
            x = (self.w - widths[lv]) / 2
            for i in ids:
                block = self.blocks[i]
                self._pos[i] = (x, y + (row_h - block.h) / 2)
                x += block.w + _GAP
            y += row_h + _VGAP
        self.h = max(y - _VGAP, 0.0)
        # Back edges bulge to the right of the blocks they join.
        if any(back for *_, back in self.edges):
            self.w += _GAP

    def draw(self, x: float, y: float, out: list[str]) -> None:
        for (bx, by), block in zip(self._pos, self.blocks, strict=True):
            block.draw(x + bx, y + by, out)
        for src, dst, label, dotted, back in self.edges:
            (sx, sy), (dx, dy) = self._pos[src], self._pos[dst]
            a, b = self.blocks[src], self.blocks[dst]
            if back:
                x1, y1 = x + sx + a.w, y + sy + a.h / 2
                x2, y2 = x + dx + b.w, y + dy + b.h / 2
                bulge = max(x1, x2) + _GAP
                path = (
                    f"M{_n(x1)},{_n(y1)} C{_n(bulge)},{_n(y1)} {_n(bulge)},{_n(y2)} "
                    f"{_n(x2)},{_n(y2)}"
                )
                head = [(x2, y2), (x2 + 7, y2 - 4), (x2 + 7, y2 + 4)]
                mid = (bulge, (y1 + y2) / 2)
            else:
                x1, y1 = x + sx + a.w / 2, y + sy + a.h
                x2, y2 = x + dx + b.w / 2, y + dy
                bend = max((y2 - y1) / 2, 12.0)
                path = (
                    f"M{_n(x1)},{_n(y1)} C{_n(x1)},{_n(y1 + bend)} {_n(x2)},{_n(y2 - bend)} "
                    f"{_n(x2)},{_n(y2)}"
                )
                head = [(x2, y2), (x2 - 4, y2 - 7), (x2 + 4, y2 - 7)]
                mid = ((x1 + x2) / 2, (y1 + y2) / 2)
            dash = ' stroke-dasharray="4 3"' if dotted else ""
            out.append(f'<path d="{path}" fill="none" stroke="#57606a"{dash}/>')
            coords = " ".join(f"{_n(px)},{_n(py)}" for px, py in head)
            out.append(f'<polygon points="{coords}" fill="#57606a"/>')
            if label:
                out.append(
                    f'<text x="{_n(mid[0] + 4)}" y="{_n(mid[1])}" fill="#57606a" '
                    f'font-size="11px">{html.escape(_shorten(_one_line(label), _LABEL_MAX))}</text>'
                )


def _statuses(result: Any) -> dict[str, str]:
    """Each step result's status by its path (``"p"``, ``"p/branch"``), nested ones included."""
    found: dict[str, str] = {}

    def walk(steps: Any, prefix: str) -> None:
        for step in steps or ():
            key = prefix + str(step.step_id)
            found.setdefault(key, _status_text(step.status))
            walk(step.children, key + "/")

    walk(_as_result(result).steps, "")
    return found


class _SvgRenderer:
    """Builds the block tree of a workflow, as :class:`_Renderer` builds Mermaid text."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses
        self._active: list[int] = []

    def workflow(self, workflow: Any, prefix: str) -> _Layout:
        layout = _Layout()
        self._active.append(id(workflow))
        try:
            ends: dict[str, tuple[int, int]] = {}
            drawn: list[tuple[int, int]] = []
            for step in workflow._steps:
                drawn.append(self.step(step, layout, prefix))
                ends.setdefault(step.step_id, drawn[-1])
            for (entry, _), deps in zip(drawn, workflow._deps, strict=True):
                for dep in deps:
                    if dep not in ends:
                        ident = layout.add(_Node("box", [dep, "unknown step"], None, dashed=True))
                        ends[dep] = (ident, ident)
                    layout.edge(ends[dep][1], entry)
        finally:
            self._active.pop()
        layout.place()
        return layout

    def step(self, step: Any, layout: _Layout, prefix: str) -> tuple[int, int]:
        """Adds ``step`` (and its fallback and compensation) to ``layout``; returns the
        indexes of the blocks its incoming and outgoing edges attach to."""
        if id(step) in self._active:
            ident = layout.add(_Node("box", [step.step_id, "(drawn above)"], None))
            return ident, ident
        self._active.append(id(step))
        try:
            ident = layout.add(self._block(step, prefix))
            for attr in ("fallback", "compensation"):
                other = getattr(step, attr, None)
                if other is not None:
                    other_entry, _ = self.step(other, layout, prefix)
                    layout.edge(ident, other_entry, attr, dotted=True)
        finally:
            self._active.pop()
        return ident, ident

    def _block(self, step: Any, prefix: str) -> _Block:
        view = step._describe()
        sid: str = step.step_id
        key = prefix + sid
        status = self.statuses.get(key)
        if view.shape != "group":
            return _Node(view.shape, [sid, *view.lines], status)
        inner = _Layout()
        inner_prefix = key + "/"
        sub = view.workflow
        if sub is not None:
            if id(sub) in self._active:
                inner.add(_Node("box", [sub.workflow_id, "(recursive: drawn above)"], None))
            elif not sub._steps:
                inner.add(_Node("box", [view.empty], None))
            else:
                inner = self.workflow(sub, inner_prefix)
                return _Group(f"{sid} ({view.title})", inner, status)
        else:
            lead_exit: int | None = None
            if view.lead is not None:
                _, lead_exit = self.step(view.lead, inner, inner_prefix)
            test: int | None = None
            if view.test:
                test = inner.add(_Node("rhombus", list(view.test), None))
                if lead_exit is not None:
                    inner.edge(lead_exit, test)
            last_exit: int | None = None
            for label, branch in view.branches:
                branch_entry, last_exit = self.step(branch, inner, inner_prefix)
                if test is not None:
                    inner.edge(test, branch_entry, label)
            if view.repeat and test is not None and last_exit is not None:
                inner.edge(last_exit, test, back=True)
            if not view.branches and view.empty:
                inner.add(_Node("box", [view.empty], None))
        inner.place()
        return _Group(f"{sid} ({view.title})", inner, status)


def _svg(workflow: Any, result: Any, *, xmlns: bool) -> str:
    wf = _as_workflow(workflow)
    statuses = _statuses(result) if result is not None else {}
    layout = _SvgRenderer(statuses).workflow(wf, "")
    width, height = layout.w + 2 * _MARGIN, layout.h + 2 * _MARGIN
    ns = ' xmlns="http://www.w3.org/2000/svg"' if xmlns else ""
    title = html.escape(f"{wf.name} ({wf.workflow_id})")
    out = [
        f'<svg{ns} class="batten-graph" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" role="img" style="{_FONT};max-width:100%">',
        f"<title>{title}</title>",
    ]
    layout.draw(_MARGIN, _MARGIN, out)
    out.append("</svg>")
    return "".join(out)


def to_svg(workflow: Any, *, result: Any = None) -> str:
    """Draws ``workflow`` as a standalone SVG picture, computed here in Python: no script, no
    network, so it shows in an offline notebook, in GitHub's notebook viewer and in a browser.

    The layout is layered, as Mermaid's and Graphviz's ``dot``: each step's level is one more
    than its deepest dependency's (a topological order from ``graphlib``), and the steps of a
    level stand in a centred row, top-down, with an arrow from each dependency to its
    dependent. Steps are drawn as :func:`to_mermaid` draws them (a box labelled with the step
    id, its kind and settings; an approval a hexagon; a ``MapStep`` a box with double sides);
    composite steps are dashed frames titled ``"<id> (<kind>)"`` around the layout of what
    they hold (a condition's rhombus with ``true`` / ``false`` arrows, parallel branches, a
    sub-workflow); fallbacks and compensations hang off their step by dotted arrows; a
    ``depends_on`` naming no step is a dashed ``unknown step`` box. Labels longer than 44
    characters are cut with "…" (the whole text is in the node's ``<title>`` tooltip).

    With ``result``, each node and frame is coloured by its step's status (completed green,
    failed and timeout red, skipped, cancelled and blocked grey, waiting for approval amber,
    pending and running blue) and carries ``data-status``; steps inside composites are matched
    by path (``"parallel/branch"``, as ``StepResult.children`` nests them).

    Args:
        workflow: a :class:`~batten.Workflow` (or a :class:`~batten.DagWorkflow`).
        result: a :class:`~batten.WorkflowResult` of a run of it, or ``None`` (default: no
            colours).

    Returns:
        str: an ``<svg xmlns=...>`` document (sizes in px); every text is escaped with
        ``html.escape``; equal arguments give equal text.

    Raises:
        TypeError: ``workflow`` is not a Workflow, or ``result`` not a WorkflowResult.
    """
    return _svg(workflow, result, xmlns=True)
