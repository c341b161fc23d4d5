"""The GC must never be told about references a batten object does not own.

Persistent maps share their values between every context of a run, and each value holds one Python
reference however many maps share it. An object may report a value in ``tp_traverse`` only if it
holds a reference of its own; otherwise the collector sees more references than exist and can
clear a live object.
"""

from __future__ import annotations

import gc
import sys

from batten import ToolStep, Workflow, WorkflowContext


def reports(obj: object, value: object) -> bool:
    return any(r is value for r in gc.get_referents(obj))


def test_contexts_report_no_more_references_than_they_hold() -> None:
    shared = ["a value in two contexts"]
    before = sys.getrefcount(shared)
    first = WorkflowContext("wf", variables={"v": shared})
    second = WorkflowContext("wf", variables=first.variables)
    view = first.variables
    held = sys.getrefcount(shared) - before
    reporters = sum(reports(o, shared) for o in (first, second, view))
    assert reporters <= held


def test_a_steps_context_does_not_claim_the_runs_values() -> None:
    payload = ["produced by a step"]
    seen = []

    def produce():
        return {"payload": payload}

    def consume(context):
        seen.append(context)
        return len(context["payload"])

    wf = Workflow("gc", "step contexts")
    wf.add_step(ToolStep("produce", produce))
    wf.add_step(ToolStep("consume", consume))
    result = wf.run()
    assert result.final_output == 1
    assert not reports(seen[0], payload)
    assert not reports(seen[0].variables, payload)
    assert reports(result.context, payload)


def test_shared_variable_survives_collection_of_a_context_cycle() -> None:
    shared = ["still here"]
    survivor = WorkflowContext("wf", variables={"v": shared})
    doomed = WorkflowContext("wf", user_context={}, variables=survivor.variables)
    doomed.user_context["self"] = doomed  # a cycle through the context
    del doomed, shared
    gc.collect()
    assert survivor["v"] == ["still here"]
