"""ReAct (reason, act, observe) with batten: seed 001's fifth pattern.

One iteration of the loop is a small sub-workflow:

    think (agent: picks the next action from the scratchpad)
      └── act (router: runs the tool the agent chose, or "finish" with the answer)

``LoopStep`` repeats it while no final answer is in the state, at most ``max_iterations`` times,
so a model that never concludes still ends (``metadata["max_iterations_reached"]``). Each
iteration sees the previous one's output: the scratchpad of thoughts, actions and observations.

The "model" here is a deterministic local reasoner, so the example runs offline; swap
``think`` for a real LLM agent (any callable or LangChain/OpenAI agent object) to use one.

Run it with ``python examples/react_agent.py``.
"""

from __future__ import annotations

import ast
import operator

from batten import (
    AgentStep,
    LoopStep,
    RouterStep,
    SubWorkflowStep,
    ToolStep,
    Workflow,
    WorkflowContext,
)

FACTS = {"speed of light": "299792 km/s", "boiling point of water": "100 C"}

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def calculator(expression: str) -> float:
    """Tool: evaluates + - * on numbers (no eval of arbitrary code)."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"unsupported expression: {expression!r}")

    return ev(ast.parse(expression, mode="eval").body)


def lookup(topic: str) -> str:
    """Tool: a tiny offline knowledge base."""
    return FACTS.get(topic, "unknown")


def think(message: str, context: WorkflowContext) -> dict:
    """The reasoner: reads the question and the scratchpad, returns the next action."""
    question = context["question"]
    pad = list(context.get("scratchpad", []))
    observations = [step["observation"] for step in pad if step["observation"] is not None]
    if "calculate" in question and not observations:
        expression = question.split("calculate", 1)[1].strip(" ?")
        thought = {"thought": "I need arithmetic", "action": "calculator", "input": expression}
    elif "look up" in question and not observations:
        topic = question.split("look up", 1)[1].strip(" ?")
        thought = {"thought": "I need a fact", "action": "lookup", "input": topic}
    elif observations:
        thought = {"thought": "I can answer", "action": "finish", "input": str(observations[-1])}
    else:
        thought = {"thought": "I am not sure yet", "action": "ponder", "input": question}
    return {"next": thought, "scratchpad": pad}


def act_with(tool):
    def act(context: WorkflowContext) -> dict:
        step = dict(context["next"])
        step["observation"] = tool(step["input"])
        return {"scratchpad": [*context["scratchpad"], step]}

    return act


def finish(context: WorkflowContext) -> dict:
    return {"answer": context["next"]["input"]}


def ponder(context: WorkflowContext) -> dict:
    step = {**context["next"], "observation": None}
    return {"scratchpad": [*context["scratchpad"], step]}


def react_workflow(max_iterations: int = 5) -> Workflow:
    """The ReAct workflow: a LoopStep around think -> act."""
    iteration = Workflow("react_iteration", "one reason-act-observe step")
    iteration.add_step(AgentStep("think", think, "next action?"))
    iteration.add_step(
        RouterStep(
            "act",
            lambda ctx: ctx["next"]["action"],
            {
                "calculator": ToolStep("calculator", act_with(lambda e: calculator(e))),
                "lookup": ToolStep("lookup", act_with(lookup)),
                "finish": ToolStep("finish", finish),
                "ponder": ToolStep("ponder", ponder),
            },
        )
    )
    wf = Workflow("react", "ReAct agent")
    wf.add_step(
        LoopStep(
            "react",
            SubWorkflowStep("iteration", iteration),
            condition=lambda ctx, i: "answer" not in ctx,
            max_iterations=max_iterations,
        )
    )
    return wf


def main() -> None:
    for question in (
        "please calculate 17 * 23 + 4",
        "please look up speed of light",
        "what is the meaning of life?",
    ):
        result = react_workflow().run(WorkflowContext("react", variables={"question": question}))
        loop = result.step("react")
        answer = result.context.get("answer", "(no final answer)")
        print(f"Q: {question}")
        for n, step in enumerate(result.context.get("scratchpad", []), 1):
            obs = step["observation"]
            print(f"  {n}. {step['thought']}: {step['action']}({step['input']!r}) -> {obs!r}")
        print(
            f"  A: {answer}  [{loop.metadata['iterations']} iterations, "
            f"limit reached: {loop.metadata['max_iterations_reached']}]"
        )


if __name__ == "__main__":
    main()
