"""Plain asyncio: the floor the workflow engines are compared against (DESIGN.md §5).

The "workflow" here is hand-written code: a list of functions called in a loop ("direct") or one
asyncio Task per step ("tasks"), with no scheduler, state merging or bookkeeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from _harness import Runner, Sizes, Suite, Tally, expect, flaky, random_dag, triangle

suite = Suite("asyncio")

State = dict[str, int]


def inc(state: State) -> State:
    return {"counter": state["counter"] + 1}


async def ainc(state: State) -> State:
    return {"counter": state["counter"] + 1}


async def call(step: Callable[[State], State], state: State) -> State:
    """A sync step wrapped in a coroutine, so it can be its own Task."""
    return step(state)


async def sleeper(i: int, delay: float) -> int:
    await asyncio.sleep(delay)
    return i


@suite.workload("W1", "direct")
def w1(s: Sizes) -> Runner:
    steps = [inc] * s.w1_steps

    def run() -> None:
        state = {"counter": 0}
        for step in steps:
            state = step(state)
        expect(state["counter"], s.w1_steps)

    return run


@suite.workload("W1a", "tasks")
def w1a(s: Sizes) -> Runner:
    steps = [ainc] * s.w1_steps

    async def run() -> None:
        state = {"counter": 0}
        for step in steps:
            state = await asyncio.create_task(step(state))
        expect(state["counter"], s.w1_steps)

    return run


@suite.workload("W2", "gather")
def w2(s: Sizes) -> Runner:
    async def run() -> None:
        outputs = await asyncio.gather(*(sleeper(i, s.w2_sleep) for i in range(s.w2_fanout)))
        expect(sum(outputs), triangle(s.w2_fanout))

    return run


@suite.workload("W6", "gather")
def w6(s: Sizes) -> Runner:
    async def run() -> None:
        items = list(range(s.w6_items))
        outputs = await asyncio.gather(*(sleeper(i, s.w2_sleep) for i in items))
        expect(sum(outputs), triangle(s.w6_items))

    return run


@suite.workload("W3", "direct")
def w3_direct(s: Sizes) -> Runner:
    dag, tally = random_dag(s.w3_nodes), Tally()

    def run() -> None:
        for _deps in dag:  # index order is a topological order
            tally.noop()
        expect(tally.take(), s.w3_nodes)

    return run


@suite.workload("W3", "tasks")
def w3_tasks(s: Sizes) -> Runner:
    dag, tally = random_dag(s.w3_nodes), Tally()

    async def node(deps: list[asyncio.Task[None]]) -> None:
        for dep in deps:
            await dep
        tally.noop()

    async def run() -> None:
        tasks: list[asyncio.Task[None]] = []
        for deps in dag:
            tasks.append(asyncio.create_task(node([tasks[d] for d in deps])))
        await asyncio.gather(*tasks)
        expect(tally.take(), s.w3_nodes)

    return run


@suite.workload("W4", "tasks")
def w4(s: Sizes) -> Runner:
    steps = [flaky() for _ in range(s.w4_steps)]

    async def retrying(step: Callable[[], str], attempts: int = 3) -> str:
        for attempt in range(1, attempts + 1):
            try:
                return step()
            except RuntimeError:
                if attempt == attempts:
                    raise
                await asyncio.sleep(0)  # zero backoff, but still yield to the loop
        raise AssertionError("unreachable")

    async def run() -> None:
        outputs = await asyncio.gather(*(retrying(step) for step in steps))
        expect(outputs, ["ok"] * s.w4_steps)

    return run


@suite.workload("W5", "tasks")
def w5(s: Sizes) -> Runner:
    steps = (inc, inc, inc)

    async def run() -> None:
        for _ in range(s.w5_runs):
            state = {"counter": 0}
            for step in steps:
                state = await asyncio.create_task(call(step, state))
            expect(state["counter"], 3)

    return run


if __name__ == "__main__":
    suite.main()
