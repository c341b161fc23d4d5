"""Seed 002's ``WORKFLOW_CONFIG`` (phases) as a batten workflow.

Each phase becomes an :class:`~batten.AgentStep` named after the phase:

- ``agent``: a registered agent name (``@batten.agent``) or ``module:attribute``; when the config
  lists ``agents``, the phase's agent must be one of them.
- ``timeout``: seconds per attempt (the seed's default, 300, when absent).
- ``retries``: attempts in all, as the seed's ``for attempt in range(phase.get("retries", 1))``
  loop runs them (default 1: no retry), waiting ``2 ** attempt`` seconds between attempts (the
  seed's exponential backoff: ``RetryPolicy(initial_interval=1, backoff_coefficient=2)``).
- ``depends_on``: phase names.
- ``message`` (batten's addition): the agent's input, default ``"{inputs.requirements}"`` (the
  seed's ``execute(requirements)``); the results of the phases it depends on are appended as
  ``Context: {...}`` (the seed's ``context["results"]``).
- ``condition``: the seed's ``{"type": "result_contains", "phase": ..., "value": ...}`` (the
  phase runs only if that phase's result contains the value; otherwise it is ``SKIPPED``, the
  seed's ``phase_skipped``) or a ``module:attribute`` callable taking the context.

``error_handling.continue_on_error``, ``max_total_retries`` and ``fallback_workflow`` (a
registered workflow factory's name or a workflow file, run when this workflow fails; see
:meth:`batten.Workflow.with_fallback_workflow`) become the Workflow's own. ``output`` is kept
as ``workflow.output_options`` and honoured by ``batten run`` (``save_to_file`` writes the
result as JSON under ``.batten/results/``; ``include_agent_outputs`` adds every phase's output
to it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batten.config.source import DocPath, LineMap
from batten.errors import WorkflowConfigError

#: The largest count in a workflow file (``batten._internal.checks.MAX_COUNT``, 2**31 - 1).
MAX_COUNT = 2_147_483_647

_PHASE_KEYS = {"name", "agent", "timeout", "retries", "depends_on", "message", "condition"}
_TOP_KEYS = {
    "name",
    "description",
    "version",
    "agents",
    "phases",
    "error_handling",
    "output",
}


def _need(cond: bool, lines: LineMap, path: DocPath, message: str) -> None:
    if not cond:
        raise lines.error(path, message)


def to_native(
    config: Mapping[str, Any], lines: LineMap
) -> tuple[dict[str, Any], LineMap, dict[str, Any]]:
    """``(format-1 document, its line map, extras)`` for a phases config; ``extras`` holds
    what format 1 cannot say: ``{"contexts": {step: [deps]}, "conditions": {step: spec},
    "output": {...}}``.

    Raises:
        WorkflowConfigError: a key the seed does not define, a phase without a name or agent,
            an agent not listed in ``agents``, a bad timeout/retries, or an unknown condition.
    """
    for key in config:
        _need(
            key in _TOP_KEYS,
            lines,
            (key,),
            f"unknown key '{key}' in a phases config (known: {', '.join(sorted(_TOP_KEYS))})",
        )
    _need(isinstance(config.get("name"), str), lines, ("name",), "name must be a string")
    phases = config.get("phases")
    _need(
        isinstance(phases, list) and bool(phases),
        lines,
        ("phases",),
        "phases must be a non-empty list",
    )
    assert isinstance(phases, list)
    agents = config.get("agents")
    _need(
        agents is None or (isinstance(agents, list) and all(isinstance(a, str) for a in agents)),
        lines,
        ("agents",),
        "agents must be a list of agent names",
    )
    handling = config.get("error_handling") or {}
    _need(isinstance(handling, Mapping), lines, ("error_handling",), "must be a mapping")
    output = config.get("output") or {}
    _need(isinstance(output, Mapping), lines, ("output",), "must be a mapping")
    for key in handling:
        _need(
            key in {"continue_on_error", "fallback_workflow", "max_total_retries"},
            lines,
            ("error_handling", key),
            f"unknown key '{key}' (known: continue_on_error, fallback_workflow, max_total_retries)",
        )
    steps: list[dict[str, Any]] = []
    contexts: dict[str, list[str]] = {}
    conditions: dict[str, Any] = {}
    remap: dict[DocPath, DocPath] = {(): ()}
    for i, phase in enumerate(phases):
        path: DocPath = ("phases", i)
        _need(isinstance(phase, Mapping), lines, path, "a phase must be a mapping")
        for key in phase:
            _need(
                key in _PHASE_KEYS,
                lines,
                (*path, key),
                f"unknown phase key '{key}' (known: {', '.join(sorted(_PHASE_KEYS))})",
            )
        for key in ("name", "agent"):
            _need(
                isinstance(phase.get(key), str) and bool(phase.get(key)),
                lines,
                (*path, key) if key in phase else path,
                f"a phase needs '{key}' (a non-empty string)",
            )
        name, agent = phase["name"], phase["agent"]
        if agents is not None and ":" not in agent:
            _need(
                agent in agents,
                lines,
                (*path, "agent"),
                f"phase '{name}' uses agent '{agent}', which is not in agents "
                f"({', '.join(agents)})",
            )
        retries = phase.get("retries", 1)
        _need(
            isinstance(retries, int)
            and not isinstance(retries, bool)
            and 1 <= retries <= MAX_COUNT,
            lines,
            (*path, "retries"),
            f"retries must be an int from 1 to {MAX_COUNT} (attempts in all, as the seed's "
            f"loop), got {retries!r}",
        )
        step: dict[str, Any] = {
            "id": name,
            "kind": "agent",
            "agent": agent,
            "message": phase.get("message", "{inputs.requirements}"),
            "timeout": phase.get("timeout", 300),
            "retry": {"max_attempts": retries, "initial_interval": 1, "backoff_coefficient": 2},
        }
        deps = phase.get("depends_on")
        _need(
            deps is None or (isinstance(deps, list) and all(isinstance(d, str) for d in deps)),
            lines,
            (*path, "depends_on"),
            "depends_on must be a list of phase names",
        )
        if deps:
            step["depends_on"] = deps
            contexts[name] = list(deps)
        if "condition" in phase:
            cond = phase["condition"]
            if isinstance(cond, str):
                step["condition"] = cond
            else:
                _check_condition(cond, lines, (*path, "condition"))
                conditions[name] = cond
                # The seed evaluates it after the earlier phases; here it waits for its phase.
                if cond["phase"] != name and cond["phase"] not in step.get("depends_on", ()):
                    step["depends_on"] = [*step.get("depends_on", ()), cond["phase"]]
        steps.append(step)
        remap[("steps", i)] = path
        remap[("steps", i, "retry")] = (*path, "retries")
        remap[("steps", i, "id")] = (*path, "name")
    native: dict[str, Any] = {
        "name": config["name"],
        "version": config.get("version", "1.0.0"),
        "inputs": {
            "requirements": {
                "type": "string",
                "default": "",
                "description": "what the workflow is asked to do (seed 002's requirements)",
            }
        },
        "steps": steps,
    }
    if "description" in config:
        native["description"] = config["description"]
    if "continue_on_error" in handling:
        native["continue_on_error"] = handling["continue_on_error"]
    if handling.get("max_total_retries") is not None:
        native["max_total_retries"] = handling["max_total_retries"]
    if handling.get("fallback_workflow") is not None:
        native["fallback_workflow"] = handling["fallback_workflow"]
    for key in ("name", "version", "description"):
        remap[(key,)] = (key,)
    remap[("continue_on_error",)] = ("error_handling", "continue_on_error")
    remap[("max_total_retries",)] = ("error_handling", "max_total_retries")
    remap[("fallback_workflow",)] = ("error_handling", "fallback_workflow")
    extras = {
        "contexts": contexts,
        "conditions": conditions,
        "output": dict(output),
    }
    return native, lines.remap(remap), extras


def _check_condition(cond: Any, lines: LineMap, path: DocPath) -> None:
    if not isinstance(cond, Mapping):
        raise lines.error(path, "a condition is a module:attribute string or a mapping")
    kind = cond.get("type")
    if kind == "result_contains":
        _need(
            isinstance(cond.get("phase"), str) and "value" in cond,
            lines,
            path,
            "a result_contains condition needs 'phase' and 'value'",
        )
        return
    raise lines.error(
        path,
        f"unknown condition type {kind!r}; batten supports 'result_contains' and "
        "module:attribute callables",
    )


def result_contains(phase: str, value: Any) -> Any:
    """The seed's ``result_contains`` condition: ``value in str(results[phase])``."""

    def condition(context: Any) -> bool:
        return str(value) in str(context.results.get(phase))

    condition.__qualname__ = f"result_contains({phase!r}, {value!r})"
    return condition


def dependency_results(deps: list[str]) -> Any:
    """A context function giving the agent the results of the phases it depends on."""

    def results(context: Any) -> dict[str, Any]:
        return {d: context.results.get(d) for d in deps}

    return results


def apply_extras(workflow: Any, extras: Mapping[str, Any], lines: LineMap) -> None:
    """Adds what format 1 cannot say to the built workflow (see :func:`to_native`)."""
    by_id = {s.step_id: s for s in workflow.steps}
    for name, deps in extras["contexts"].items():
        by_id[name].with_context_function(dependency_results(deps))
    for name, cond in extras["conditions"].items():
        if cond["phase"] not in by_id:
            raise WorkflowConfigError(
                f"the condition of phase '{name}' names phase '{cond['phase']}', which does "
                "not exist",
                file=lines.source,
                line=lines.line(("steps",)),
                field="condition.phase",
            )
        by_id[name].add_condition(result_contains(cond["phase"], cond["value"]))
    workflow.output_options = dict(extras["output"])
