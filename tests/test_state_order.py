"""Mappings a step sees iterate in key order, never in hash or completion order."""

from __future__ import annotations

import string

from batten import ToolStep, Workflow, WorkflowContext

KEYS = [f"{c}{i}" for i in range(30) for c in string.ascii_lowercase[:5]][::-1]


def test_context_and_variables_iterate_in_sorted_key_order() -> None:
    ctx = WorkflowContext("wf", variables={k: i for i, k in enumerate(KEYS)})
    assert list(ctx) == sorted(KEYS)
    assert ctx.keys() == sorted(KEYS)
    assert [k for k, _ in ctx.items()] == sorted(KEYS)
    assert list(ctx.variables) == sorted(KEYS)
    assert list(ctx.variables.to_dict()) == sorted(KEYS)
    assert ctx.values() == [ctx[k] for k in sorted(KEYS)]


def test_results_of_parallel_steps_iterate_in_step_id_order() -> None:
    wf = Workflow("fan", "fan-in")
    ids = [f"branch_{k}" for k in KEYS[:40]]
    for step_id in ids:
        wf.add_step(ToolStep(step_id, lambda: 1), depends_on=[])

    def join(context):
        return list(context.results)

    wf.add_step(ToolStep("join", join), depends_on=ids)
    assert wf.run().final_output == sorted(ids)
