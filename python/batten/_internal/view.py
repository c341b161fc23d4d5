"""What a step says about itself for drawing (private, ``batten._internal``): the
:class:`StepView` each step class returns from ``_describe()``, and the short texts steps
build it from.

``batten.display`` lays views out as Mermaid (nodes, subgraphs, edges) without knowing any step
class, so a new step kind is drawn by writing its ``_describe()``, not by editing display.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sized
from typing import Any, NamedTuple

__all__ = [
    "NAME_MAX",
    "PROMPT_MAX",
    "StepView",
    "items_text",
    "name_of",
    "one_line",
    "seconds_text",
    "settings_text",
    "shorten",
]

#: Longest text kept from a prompt or a name before it is cut with "…".
NAME_MAX = 60
PROMPT_MAX = 60


class StepView(NamedTuple):
    """How a step is drawn: one node (``shape`` ``"box"``, ``"hexagon"`` or ``"subroutine"``,
    labelled with the step id and ``lines``), or a ``"group"`` (a subgraph titled
    ``"<step id> (<title>)"``) holding, in drawing order: ``lead``, a ``test`` rhombus, then
    ``branches`` or ``workflow``.

    Attributes:
        kind: what the step is, in a few words (``"tool: fetch"``, ``"agent: writer"``, the
            step's type name); a ``MapStep`` names its inner step by it.
        shape: ``"box"`` (default), ``"hexagon"``, ``"subroutine"`` or ``"group"``.
        lines: a node's label lines after the step id (empty ones are left out).
        title: a group's title after the step id.
        test: a group's decision rhombus, its label lines; ``()``: none. The group is entered
            at the rhombus (or at ``lead``).
        lead: a step drawn first in a group, whose exit leads into the rhombus (a router's
            routing step); ``None``: none.
        branches: ``(edge label, step)`` pairs drawn in the group; with a rhombus, an edge
            from it to each (labelled unless the label is ``None``).
        repeat: the last branch's exit leads back to the rhombus (a loop).
        workflow: a workflow drawn inside the group (a sub-workflow); ``None``: none.
        empty: a group's one box when it holds nothing (``"no branches"``, ``"no steps"``).
    """

    kind: str
    shape: str = "box"
    lines: tuple[str, ...] = ()
    title: str = ""
    test: tuple[str, ...] = ()
    lead: Any = None
    branches: tuple[tuple[str | None, Any], ...] = ()
    repeat: bool = False
    workflow: Any = None
    empty: str = ""


def one_line(text: str) -> str:
    """``text`` with runs of whitespace (newlines included) as one space and other control
    characters dropped."""
    text = " ".join(text.split())
    return "".join(ch for ch in text if ch.isprintable())


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def name_of(obj: Any) -> str:
    """A short name for an agent, tool, condition or route: a str as is, a function or class
    by its ``__qualname__``, a ``functools.partial`` by its function's name, any other object
    by its type's name (with its ``name`` / ``agent_id`` when it has a str one)."""
    if isinstance(obj, str):
        return shorten(obj, NAME_MAX)
    if isinstance(obj, functools.partial):
        return f"partial({name_of(obj.func)})"
    if inspect.isroutine(obj) or inspect.isclass(obj):
        name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        if isinstance(name, str) and name:
            return shorten(name.rpartition("<locals>.")[2], NAME_MAX)
    kind = type(obj).__name__
    for attr in ("name", "agent_id"):
        own = getattr(obj, attr, None)
        if isinstance(own, str) and own:
            return shorten(f"{kind}({own})", NAME_MAX)
    return kind


def seconds_text(value: float) -> str:
    """``value`` seconds as ``"5s"``, ``"0.5s"``."""
    return f"{value:g}s"


def settings_text(step: Any) -> str:
    """The step's non-default settings on one line: retries, timeout, conditions, cache,
    process isolation."""
    parts: list[str] = []
    policy = getattr(step, "retry_policy", None)
    attempts = getattr(policy, "max_attempts", 1)
    if isinstance(attempts, int) and attempts > 1:
        parts.append(f"up to {attempts} attempts")
    timeout = getattr(step, "timeout", None)
    if isinstance(timeout, int | float):
        parts.append(f"timeout {seconds_text(timeout)}")
    conditions = getattr(step, "conditions", ())
    if conditions:
        n = len(conditions)
        parts.append(f"{n} condition{'s' if n != 1 else ''}")
    if getattr(step, "cache", None) is not None:
        parts.append("cached")
    if getattr(step, "isolation", "thread") == "process":
        parts.append("in a process")
    return ", ".join(parts)


def items_text(items: Any) -> str:
    """What a MapStep maps over: a variable's name, a workflow file's items reference as
    written (a callable with a str ``expression``, such as ``{discover.result}``), ``fn()``,
    ``N items`` or ``an iterable``."""
    if isinstance(items, str):
        return items
    expression = getattr(items, "expression", None)
    if callable(items) and isinstance(expression, str):
        return expression
    if callable(items):
        return f"{name_of(items)}()"
    if isinstance(items, Sized):
        n = len(items)
        return f"{n} item{'s' if n != 1 else ''}"
    return "an iterable"
