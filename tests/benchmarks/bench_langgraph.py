"""LangGraph: each workload as a compiled StateGraph.

Sync graphs run with ``invoke`` (LangGraph runs a superstep's sync nodes on its thread pool), async
ones with ``ainvoke``. Fan-out uses ``Send`` (LangGraph's map); joins use waiting edges
(``add_edge([a, b], c)``); retries use the node's ``RetryPolicy``.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from _harness import Runner, Sizes, Suite, Tally, expect, flaky, random_dag, triangle
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy, Send


class Counter(TypedDict):
    counter: int


class FanOut(TypedDict):
    results: Annotated[list[int], operator.add]
    total: int


class Done(TypedDict):
    done: Annotated[list[str], operator.add]


def inc(state: Counter) -> Counter:
    return {"counter": state["counter"] + 1}


async def ainc(state: Counter) -> Counter:
    return {"counter": state["counter"] + 1}


def line(node: Callable[[Counter], Any], n: int) -> Any:
    """A compiled graph of `n` copies of `node` in a line."""
    graph = StateGraph(Counter)
    previous = START
    for i in range(n):
        graph.add_node(f"s{i}", node)
        graph.add_edge(previous, f"s{i}")
        previous = f"s{i}"
    graph.add_edge(previous, END)
    return graph.compile()


suite = Suite("langgraph")


@suite.workload("W1")
def w1(s: Sizes) -> Runner:
    app, config = line(inc, s.w1_steps), {"recursion_limit": s.w1_steps + 10}

    def run() -> None:
        expect(app.invoke({"counter": 0}, config)["counter"], s.w1_steps)

    return run


@suite.workload("W1a")
def w1a(s: Sizes) -> Runner:
    app, config = line(ainc, s.w1_steps), {"recursion_limit": s.w1_steps + 10}

    async def run() -> None:
        expect((await app.ainvoke({"counter": 0}, config))["counter"], s.w1_steps)

    return run


@suite.workload("W2")
def w2(s: Sizes) -> Runner:
    async def work(task: dict[str, int]) -> dict[str, list[int]]:
        await asyncio.sleep(s.w2_sleep)
        return {"results": [task["i"]]}

    def total(state: FanOut) -> dict[str, int]:
        return {"total": sum(state["results"])}

    graph = StateGraph(FanOut)
    graph.add_node("work", work)
    graph.add_node("total", total)
    graph.add_conditional_edges(
        START, lambda _state: [Send("work", {"i": i}) for i in range(s.w2_fanout)], ["work"]
    )
    graph.add_edge("work", "total")
    graph.add_edge("total", END)
    app = graph.compile()

    async def run() -> None:
        expect((await app.ainvoke({"results": [], "total": 0}))["total"], triangle(s.w2_fanout))

    return run


@suite.workload("W3")
def w3(s: Sizes) -> Runner:
    tally = Tally()
    graph = StateGraph(Counter)
    for i, deps in enumerate(random_dag(s.w3_nodes)):
        graph.add_node(f"n{i}", tally.noop)
        sources = [f"n{d}" for d in deps]
        if len(sources) > 1:
            graph.add_edge(sources, f"n{i}")  # a waiting edge: runs once all sources have run
        else:
            graph.add_edge(sources[0] if sources else START, f"n{i}")
    app, config = graph.compile(), {"recursion_limit": s.w3_nodes + 10}

    def run() -> None:
        app.invoke({"counter": 0}, config)
        expect(tally.take(), s.w3_nodes)

    return run


@suite.workload("W4")
def w4(s: Sizes) -> Runner:
    def node(step: Callable[[], str]) -> Callable[[Done], Done]:
        return lambda _state: {"done": [step()]}

    policy = RetryPolicy(max_attempts=3, initial_interval=0, jitter=False, retry_on=RuntimeError)
    graph = StateGraph(Done)
    for i in range(s.w4_steps):
        graph.add_node(f"s{i}", node(flaky()), retry_policy=policy)
        graph.add_edge(START, f"s{i}")
    app = graph.compile()

    def run() -> None:
        expect(app.invoke({"done": []})["done"], ["ok"] * s.w4_steps)

    return run


@suite.workload("W5")
def w5(s: Sizes) -> Runner:
    app = line(inc, 3)

    def run() -> None:
        for _ in range(s.w5_runs):
            expect(app.invoke({"counter": 0})["counter"], 3)

    return run


if __name__ == "__main__":
    suite.main()
