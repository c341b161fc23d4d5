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

__all__ = ["REF", "input_refs", "lookup", "render", "render_inputs", "template_refs"]

#: ``{step_id.result}`` / ``{step_id.result.key.key}``: group 1 the step id, group 2 the path.
REF = re.compile(r"\{([A-Za-z_][\w\-]*)\.result((?:\.[\w\-]+)*)\}")
#: ``{inputs.name}``: a run variable, as workflow files name their inputs.
_INPUT = re.compile(r"\{inputs\.([A-Za-z_][\w\-]*)\}")


def input_refs(value: Any) -> set[str]:
    """The input names referenced as ``{inputs.name}`` anywhere in the strings of ``value``."""
    found: set[str] = set()
    if isinstance(value, str):
        found.update(m.group(1) for m in _INPUT.finditer(value))
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
        whole = _INPUT.fullmatch(value)
        if whole:
            return _variable(variables, whole.group(1))
        if "{inputs." not in value:
            return value
        return _INPUT.sub(lambda m: str(_variable(variables, m.group(1))), value)
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
        found.extend(m.group(1) for m in REF.finditer(value))
    elif isinstance(value, Mapping):
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
        whole = REF.fullmatch(value)
        if whole:
            return lookup(results, step_id, whole.group(1), whole.group(2))
        return REF.sub(lambda m: str(lookup(results, step_id, m.group(1), m.group(2))), value)
    if isinstance(value, Mapping):
        return {k: render(v, results, step_id) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, results, step_id) for v in value]
    if isinstance(value, tuple):
        return tuple(render(v, results, step_id) for v in value)
    return value
