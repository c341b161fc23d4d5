"""Fork from a step (private, layer ``batten._runtime``): a new durable run of a workflow that
reuses the recorded outputs of every step of an earlier run except a chosen step and the steps
that depend on it (transitively), and runs those again. ``Workflow.fork`` and ``batten rerun
RUN_ID --from STEP`` use it; as Temporal's reset (a new execution from an event of an old one)
and LangGraph's fork from a checkpoint.

The new run is seeded with copies of the origin's events for the kept steps (their starts,
retries and outcomes, with outputs and state deltas), so resuming it restores them exactly as
``resume`` restores a crashed run's completed steps, and with the origin's approval decisions
on kept steps (so a kept approval decided in the origin is not asked again); its input
context is the origin's, with ``metadata["batten.forked_from"] = {"run_id": ..., "step": ...}``
linking it to its origin.
"""

from __future__ import annotations

import time
from typing import Any

from batten._internal.status import WorkflowStatus
from batten.errors import UnknownStepError, WorkflowDefinitionError

__all__ = ["FORKED_FROM", "forked_from", "redone_steps", "seed_fork"]

#: The input metadata key linking a forked run to its origin: ``{"run_id": ..., "step": ...}``.
FORKED_FROM = "batten.forked_from"


def redone_steps(workflow: Any, from_step: str) -> set[str]:
    """``from_step`` and every top-level step that depends on it, directly or through others.

    Raises:
        UnknownStepError: ``from_step`` is not a top-level step of ``workflow``.
    """
    ids = [s.step_id for s in workflow._steps]
    if from_step not in ids:
        raise UnknownStepError(
            f"workflow '{workflow.workflow_id}' has no step '{from_step}' to fork from "
            f"(its steps: {', '.join(ids) or 'none'})",
            step_id=from_step,
            known=ids,
        )
    dependents: dict[str, list[str]] = {i: [] for i in ids}
    for step, deps in zip(workflow._steps, workflow._deps, strict=True):
        for d in deps:
            dependents.setdefault(d, []).append(step.step_id)
    redo = {from_step}
    todo = [from_step]
    while todo:
        for nxt in dependents.get(todo.pop(), []):
            if nxt not in redo:
                redo.add(nxt)
                todo.append(nxt)
    return redo


def forked_from(info_input: Any) -> dict[str, str] | None:
    """The ``{"run_id", "step"}`` origin link of a run's stored input, or ``None``."""
    if not isinstance(info_input, dict):
        return None
    meta = info_input.get("metadata")
    link = meta.get(FORKED_FROM) if isinstance(meta, dict) else None
    if isinstance(link, dict) and isinstance(link.get("run_id"), str):
        return {"run_id": link["run_id"], "step": str(link.get("step"))}
    return None


def seed_fork(
    workflow: Any, store: Any, run_id: str, from_step: str, new_run_id: str | None = None
) -> str:
    """Records the fork of run ``run_id`` from ``from_step`` in ``store`` (a ``batten.Store``)
    and returns the new run's id; nothing runs (``lifecycle.resume`` of the new id runs it).

    Raises:
        UnknownStepError: ``from_step`` is not one of the workflow's top-level steps.
        RunNotFoundError: no run ``run_id`` in the store.
        WorkflowDefinitionError: the run belongs to another workflow or version.
        StoreError: ``new_run_id`` exists already, or the store fails.
    """
    redo = redone_steps(workflow, from_step)
    native = store._native
    raw = native.get_run(run_id)
    if raw["workflow_id"] != workflow.workflow_id:
        raise WorkflowDefinitionError(
            f"run '{run_id}' belongs to workflow '{raw['workflow_id']}', not "
            f"'{workflow.workflow_id}'"
        )
    if raw["version"] != str(workflow.version):
        raise WorkflowDefinitionError(
            f"run '{run_id}' was started by version {raw['version']!r} of workflow "
            f"'{raw['workflow_id']}'; this is version {workflow.version!r} (its steps may "
            "differ, so its outputs do not apply)"
        )
    data = raw["input"]
    if isinstance(data, dict):
        data = dict(data)
        data.pop("trace", None)  # a new run: its own trace (telemetry starts one)
        meta = dict(data.get("metadata") or {})
        meta[FORKED_FROM] = {"run_id": run_id, "step": from_step}
        data["metadata"] = meta
    import uuid  # on first use, as DurableRun.begin

    new_id = new_run_id or uuid.uuid4().hex
    kept = []
    for e in native.events(run_id, 0):
        top = e["step_id"].split("/", 1)[0]
        if top in redo:
            continue
        ev = {k: v for k, v in e.items() if k != "seq"}
        kept.append(ev)
    native.create_run(
        new_id,
        raw["workflow_id"],
        raw["name"],
        raw["version"],
        WorkflowStatus.RUNNING.value,
        data,
        time.time(),
    )
    if kept:
        native.append(new_id, kept)
    # An approval of a kept step decided in the origin (but not yet continued there) stays
    # decided: without its decision the fork would wait for it again. A redone step's decision
    # is not copied: it asks again, as every redone step runs again.
    for d in native.decisions(run_id):
        if d["step_id"].split("/", 1)[0] not in redo:
            native.decide(new_id, d["step_id"], d["approved"], d["by"], d["comment"], d["at"])
    return new_id
