"""``{step.result}`` and ``{inputs.name}`` templates in messages, arguments and prompts
(private, ``batten._internal``).

``{x.result}`` / ``{x.result.key}`` name an upstream step's output; ``{inputs.name}`` a run
variable, as workflow files name their inputs. Other braces (JSON in a prompt) are left alone.
Steps find their references here once, at creation, and render them when they run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["input_refs", "lookup", "ref_pattern", "render", "render_inputs", "template_refs"]

# NOTE: the patterns are compiled on first use (~0.35 ms of `from batten import Workflow`
# otherwise), and only for a string that holds their literal part (".result", "{inputs."),
# without which neither can match: a workflow without templates never compiles them.
_patterns: dict[str, re.Pattern[str]] = {}


def ref_pattern() -> re.Pattern[str]:
    """``{step_id.result}`` / ``{step_id.result.key.key}``: group 1 the step id, group 2 the
    path (compiled on first use)."""
    pattern = _patterns.get("ref")
    if pattern is None:
        pattern = _patterns["ref"] = re.compile(r"\{([A-Za-z_][\w\-]*)\.result((?:\.[\w\-]+)*)\}")
    return pattern


def _input_pattern() -> re.Pattern[str]:
    """``{inputs.name}``: a run variable, as workflow files name their inputs."""
    pattern = _patterns.get("input")
    if pattern is None:
        pattern = _patterns["input"] = re.compile(r"\{inputs\.([A-Za-z_][\w\-]*)\}")
    return pattern


def input_refs(value: Any) -> set[str]:
    """The input names referenced as ``{inputs.name}`` anywhere in the strings of ``value``."""
    found: set[str] = set()
    if isinstance(value, str):
        if "{inputs." in value:
            found.update(m.group(1) for m in _input_pattern().finditer(value))
    elif isinstance(value, Mapping):
        for v in value.values():
            found |= input_refs(v)
    elif isinstance(value, list | tuple):
        for v in value:
            found |= input_refs(v)
    return found


def render_inputs(value: Any, variables: Mapping[str, Any]) -> Any:
    """Replaces ``{inputs.name}`` by the variable ``name``: a string that is exactly one
    reference becomes the value itself, references inside longer strings its ``str``.

    Raises:
        KeyError: the run has no variable ``name``.
    """
    if isinstance(value, str):
        if "{inputs." not in value:
            return value
        whole = _input_pattern().fullmatch(value)
        if whole:
            return _variable(variables, whole.group(1))
        return _input_pattern().sub(lambda m: str(_variable(variables, m.group(1))), value)
    if isinstance(value, Mapping):
        return {k: render_inputs(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render_inputs(v, variables) for v in value]
    return value


def _variable(variables: Mapping[str, Any], name: str) -> Any:
    if name not in variables:
        raise KeyError(f"the run has no input '{name}' (pass it with --input {name}=...)")
    return variables[name]


def template_refs(value: Any) -> tuple[str, ...]:
    """Step ids referenced as ``{step_id.result...}`` anywhere in the strings of ``value``."""
    found: list[str] = []
    if isinstance(value, str):
        if ".result" in value:
            found.extend(m.group(1) for m in ref_pattern().finditer(value))
    elif type(value) is dict or isinstance(value, Mapping):  # a dict without the ABC check
        for v in value.values():
            found.extend(template_refs(v))
    elif isinstance(value, list | tuple):
        for v in value:
            found.extend(template_refs(v))
    return tuple(dict.fromkeys(found)) if found else ()


def lookup(results: Mapping[str, Any], step_id: str, ref: str, path: str) -> Any:
    """The value ``{ref.result<path>}`` names in ``results`` (``path`` is ``""`` or
    ``".key.key"``).

    Raises:
        KeyError: ``ref`` has no result (it was skipped).
    """
    if ref not in results:
        raise KeyError(
            f"step '{step_id}' references '{{{ref}.result{path}}}' but '{ref}' has no result "
            "(it was skipped)"
        )
    value = results[ref]
    for key in filter(None, path.split(".")):
        value = value[key] if isinstance(value, Mapping) else getattr(value, key)
    return value


def render(value: Any, results: Mapping[str, Any], step_id: str) -> Any:
    """Replaces ``{x.result}`` / ``{x.result.key}`` in the strings of ``value``.

    A string that is exactly one reference becomes the referenced value itself (so a dict output
    passes through as a dict); references inside longer strings are replaced by ``str(value)``.
    Other braces (JSON in a prompt) are left alone.
    """
    if isinstance(value, str):
        if ".result" not in value:
            return value
        whole = ref_pattern().fullmatch(value)
        if whole:
            return lookup(results, step_id, whole.group(1), whole.group(2))
        return ref_pattern().sub(
            lambda m: str(lookup(results, step_id, m.group(1), m.group(2))), value
        )
    if isinstance(value, Mapping):
        return {k: render(v, results, step_id) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, results, step_id) for v in value]
    if isinstance(value, tuple):
        return tuple(render(v, results, step_id) for v in value)
    return value
