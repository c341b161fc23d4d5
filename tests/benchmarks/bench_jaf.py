"""jaf-py: each workload with ``jaf.core.workflows`` (Workflow, ToolStep, ParallelStep).

How JAF's workflow module shapes these (read from its source, jaf-py 2.6):
- ``Workflow`` runs its steps one after another, each under ``asyncio.wait_for`` (so as a Task);
  there are no dependency edges, so a DAG runs as a sequence in a topological order.
- A ``ToolStep`` calls ``await tool.execute(args, user_context)``: a tool sees the run's
  ``user_context`` but not the workflow variables, so the W1 counter lives in ``user_context``.
  Tools come from ``create_function_tool``, which accepts sync and async functions (both awaited).
- Step outputs land in ``context.variables["step_<id>_result"]``; reading them needs a custom
  ``WorkflowStep`` (the W2 sum).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from _harness import Runner, Sizes, Suite, Tally, expect, random_dag, triangle
from jaf.core.tools import create_function_tool
from jaf.core.types import Tool
from jaf.core.workflows import (
    ParallelStep,
    StepResult,
    StepStatus,
    ToolStep,
    Workflow,
    WorkflowContext,
    WorkflowResult,
    WorkflowStatus,
    WorkflowStep,
)
from pydantic import BaseModel

logging.getLogger("jaf").setLevel(logging.WARNING)


class NoArgs(BaseModel):
    pass


class Index(BaseModel):
    i: int


def tool(name: str, execute: Any, parameters: type[BaseModel] = NoArgs) -> Tool[Any, Any]:
    return create_function_tool(
        {"name": name, "description": name, "execute": execute, "parameters": parameters}
    )


def inc(_args: NoArgs, context: dict[str, int]) -> int:
    context["counter"] += 1
    return context["counter"]


async def ainc(_args: NoArgs, context: dict[str, int]) -> int:
    context["counter"] += 1
    return context["counter"]


class SumStep(WorkflowStep):
    """Sums the outputs of a ParallelStep (found in the variables under step_<id>_result)."""

    def __init__(self, step_id: str, source: str) -> None:
        super().__init__(step_id, "sum")
        self.source = source

    async def execute(self, context: WorkflowContext) -> StepResult:
        results: list[StepResult] = context.variables[f"step_{self.source}_result"]
        total = sum(r.output for r in results)
        return StepResult(step_id=self.step_id, status=StepStatus.COMPLETED, output=total)


def sequence(name: str, steps: list[WorkflowStep]) -> Workflow:
    workflow = Workflow(name, name)
    for step in steps:
        workflow.add_step(step)
    return workflow


async def execute(workflow: Workflow, user_context: Any = None) -> WorkflowResult:
    result = await workflow.execute(WorkflowContext(workflow.workflow_id, user_context))
    expect((result.status, result.error), (WorkflowStatus.COMPLETED, None))
    return result


def counter_chain(name: str, execute_fn: Any, n: int) -> Workflow:
    counter = tool("inc", execute_fn)
    return sequence(name, [ToolStep(f"s{i}", counter, NoArgs()) for i in range(n)])


suite = Suite("jaf")
suite.cannot(
    "W4",
    "Workflow retries sleep 2**attempt s between attempts (hard-coded in "
    "Workflow._execute_step_with_retry), so zero backoff cannot be set: "
    "100 steps would sleep 300 s",
)


@suite.workload("W1")
def w1(s: Sizes) -> Runner:
    workflow = counter_chain("w1", inc, s.w1_steps)

    async def run() -> None:
        state = {"counter": 0}
        await execute(workflow, state)
        expect(state["counter"], s.w1_steps)

    return run


@suite.workload("W1a")
def w1a(s: Sizes) -> Runner:
    workflow = counter_chain("w1a", ainc, s.w1_steps)

    async def run() -> None:
        state = {"counter": 0}
        await execute(workflow, state)
        expect(state["counter"], s.w1_steps)

    return run


@suite.workload("W2")
def w2(s: Sizes) -> Runner:
    async def sleeper(args: Index, _context: Any) -> int:
        await asyncio.sleep(s.w2_sleep)
        return args.i

    work = tool("sleep", sleeper, Index)
    fan_out = ParallelStep("fan", [ToolStep(f"w{i}", work, Index(i=i)) for i in range(s.w2_fanout)])
    workflow = sequence("w2", [fan_out, SumStep("total", "fan")])

    async def run() -> None:
        expect((await execute(workflow)).final_output, triangle(s.w2_fanout))

    return run


@suite.workload("W3", "sequential")
def w3(s: Sizes) -> Runner:
    tally = Tally()
    noop = tool("noop", lambda _args, _context: tally.noop())
    nodes = [ToolStep(f"n{i}", noop, NoArgs()) for i, _deps in enumerate(random_dag(s.w3_nodes))]
    workflow = sequence("w3", nodes)  # index order is a topological order of the DAG

    async def run() -> None:
        await execute(workflow)
        expect(tally.take(), s.w3_nodes)

    return run


@suite.workload("W5")
def w5(s: Sizes) -> Runner:
    workflow = counter_chain("w5", inc, 3)

    async def run() -> None:
        for _ in range(s.w5_runs):
            state = {"counter": 0}
            await execute(workflow, state)
            expect(state["counter"], 3)

    return run


if __name__ == "__main__":
    suite.main()
