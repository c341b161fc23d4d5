"""The run page's graph: a workflow's top-level steps as inline SVG, laid out in layers (each
step one level below its deepest dependency, by :class:`graphlib.TopologicalSorter`) and
coloured by each step's status. Computed in Python so the page needs no drawing library."""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["STATUS_COLOURS", "layers", "svg"]

#: Fill colour of a node per step status (``StepStatus`` values, plus ``"pending"``).
STATUS_COLOURS: dict[str, str] = {
    "completed": "#2e9d4f",
    "failed": "#d23c3c",
    "timeout": "#d23c3c",
    "running": "#2f7fd8",
    "retrying": "#e69a1d",
    "waiting_approval": "#9b59d0",
    "cancelled": "#8a8a8a",
    "blocked": "#b0b0b0",
    "skipped": "#c8c8c8",
    "compensated": "#7a5c3c",
    "pending": "#e2e2e2",
}

_W, _H, _GX, _GY = 150, 40, 30, 46


def layers(nodes: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """``nodes`` grouped by depth: layer 0 has no dependencies, layer n depends on n-1 at most.
    Dependencies on unknown ids are ignored; a cycle puts the rest in one last layer."""
    known = set(nodes)
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for n in nodes:
        sorter.add(n, *[d for d in deps.get(n, ()) if d in known])
    depth: dict[str, int] = {}
    try:
        for n in sorter.static_order():
            depth[n] = 1 + max((depth[d] for d in deps.get(n, ()) if d in depth), default=-1)
    except graphlib.CycleError:
        pass
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    rest = [n for n in nodes if n not in depth]
    for n in nodes:
        if n in depth:
            out[depth[n]].append(n)
    if rest:
        out.append(rest)
    return out


def svg(
    nodes: Sequence[str],
    deps: Mapping[str, Sequence[str]],
    statuses: Mapping[str, str],
    composites: Sequence[str] = (),
) -> str:
    """An ``<svg>`` element drawing ``nodes`` (step ids) with arrows from each dependency, each
    node filled with its status's colour (``pending`` when ``statuses`` has none) and carrying
    ``data-step`` and ``data-status`` attributes; composite steps (``composites``) get a ``+``
    marker and ``class="node composite"`` so the page can expand their children."""
    rows = layers(nodes, deps)
    width = max((len(r) for r in rows), default=1) * (_W + _GX) + _GX
    height = len(rows) * (_H + _GY) + _GY
    pos: dict[str, tuple[int, int]] = {}
    for y, row in enumerate(rows):
        offset = (width - len(row) * (_W + _GX) + _GX) // 2
        for x, n in enumerate(row):
            pos[n] = (offset + x * (_W + _GX), _GY // 2 + y * (_H + _GY))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="workflow graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker>'
        "</defs>",
    ]
    for n in nodes:
        for d in deps.get(n, ()):
            if d in pos and n in pos:
                x1, y1 = pos[d][0] + _W // 2, pos[d][1] + _H
                x2, y2 = pos[n][0] + _W // 2, pos[n][1]
                parts.append(
                    f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#666" '
                    'marker-end="url(#arrow)"/>'
                )
    for n in nodes:
        if n not in pos:
            continue
        x, y = pos[n]
        status = statuses.get(n, "pending")
        fill = STATUS_COLOURS.get(status, "#e2e2e2")
        text = "#111" if status in ("pending", "blocked", "skipped") else "#fff"
        cls = "node composite" if n in composites else "node"
        label = n if len(n) <= 18 else n[:17] + "…"
        plus = "  +" if n in composites else ""
        parts.append(
            f'<g class="{cls}" data-step="{escape(n)}" data-status="{escape(status)}" '
            f'tabindex="0"><title>{escape(n)}: {escape(status)}</title>'
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="6" fill="{fill}" '
            f'stroke="#333"/><text x="{x + _W // 2}" y="{y + 17}" text-anchor="middle" '
            f'fill="{text}" font-size="13">{escape(label)}{plus}</text>'
            f'<text x="{x + _W // 2}" y="{y + 32}" text-anchor="middle" fill="{text}" '
            f'font-size="10">{escape(status)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
