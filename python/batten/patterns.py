"""Multi-agent patterns from aigen (seed 004): a fixed sequence of agents, and agents that hand
the conversation to one another.

- :class:`DeterministicWorkflow`: each agent gets the previous agent's output; the first gets
  the run's ``input`` (``engine.execute(workflow, context, "Input prompt")``).
- :class:`HandoffWorkflow`: the first agent runs; an agent that returns :class:`Handoff` (or
  ``{"handoff_to": id, "message": ...}``) passes control to another agent it declared with
  ``add_handoff``, as in the OpenAI Agents SDK.
- :class:`Agent`: wraps a plain function so it has an id and can declare handoffs.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batten._core import CompositeFailure, Nested, WorkflowContext
from batten._internal.checks import check_callable, check_count
from batten.errors import HandoffError, WorkflowDefinitionError
from batten.steps import AgentStep, ToolStep
from batten.steps.base import _accepts_context, _is_async, _resolve
from batten.workflow import Workflow

__all__ = ["Agent", "DeterministicWorkflow", "Handoff", "HandoffError", "HandoffWorkflow"]


class Agent:
    """A plain callable with an id and declared handoffs (seed 004's agents).

    Args:
        agent_id: the agent's id (non-empty str), used as its step id and as handoff target.
        fn: called as ``fn(message)``, sync or async; if it declares a ``context`` parameter it
            also gets ``context=`` (the step's :class:`~batten.WorkflowContext`).
        description: free text.

    Calling the agent calls ``fn`` (an async ``fn`` returns its coroutine).

    Raises:
        WorkflowDefinitionError: ``agent_id`` is not a non-empty str or ``fn`` not callable.
    """

    def __init__(self, agent_id: str, fn: Callable[..., Any], *, description: str = "") -> None:
        if not isinstance(agent_id, str) or not agent_id:
            raise WorkflowDefinitionError(f"agent_id must be a non-empty str, got {agent_id!r}")
        check_callable(fn, "fn", owner=f"agent '{agent_id}'")
        self.agent_id = agent_id
        self.fn = fn
        self.description = description
        #: Ids of the agents this one may hand off to, in the order declared.
        self.handoffs: list[str] = []

    def add_handoff(self, agent: str | Any) -> Agent:
        """Allows this agent to hand off to ``agent`` (an id, or an agent with an id), as
        aigen's ``triage_agent.add_handoff(research_agent.agent_id)`` (seed 004). Declaring
        the same target twice is harmless. Returns the agent.

        Raises:
            WorkflowDefinitionError: ``agent`` has no id.
        """
        target = agent_id_of(agent)
        if target not in self.handoffs:
            self.handoffs.append(target)
        return self

    def __call__(self, message: Any, **kwargs: Any) -> Any:
        return self.fn(message, **kwargs)

    def _batten_target(self) -> Callable[..., Any]:
        """What a step runs for this agent: ``fn`` itself, so an async one runs as async."""
        return self.fn

    def __repr__(self) -> str:
        return f"Agent({self.agent_id!r}, handoffs={self.handoffs})"


@dataclass(frozen=True)
class Handoff:
    """What an agent in a :class:`HandoffWorkflow` returns to pass control to another agent.

    Args:
        to: the target agent's id, or the agent itself.
        message: what the target is called with; ``None`` (default): the message the handing
            agent was called with.

    An agent may instead return ``{"handoff_to": id, "message": ...}`` (``"message"``
    optional).
    """

    to: Any
    message: Any = None

    @property
    def target(self) -> str:
        """The target's id.

        Raises:
            WorkflowDefinitionError: ``to`` is neither an id nor an agent with one.
        """
        return agent_id_of(self.to)


def agent_id_of(agent: Any) -> str:
    """An agent's id: ``agent`` itself if a str, else its ``agent_id``, ``name`` or
    ``__name__``.

    Raises:
        WorkflowDefinitionError: none of those is a non-empty str.
    """
    if isinstance(agent, str) and agent:
        return agent
    for attr in ("agent_id", "name", "__name__"):
        value = getattr(agent, attr, None)
        if isinstance(value, str) and value:
            return value
    raise WorkflowDefinitionError(
        f"agent {agent!r:.60} has no id: give it an agent_id or name, or wrap it as "
        "batten.patterns.Agent(agent_id, fn)"
    )


def _callable_of(agent: Any) -> Any:
    """What a step calls for ``agent``: an :class:`Agent`'s function (so an async one runs on
    the event loop), or the agent itself (a callable, an object with ``arun`` / ``run`` / ...,
    or a registered name)."""
    return agent.fn if isinstance(agent, Agent) else agent


def _declared_handoffs(agent: Any) -> list[str]:
    declared = getattr(agent, "handoffs", None) or ()
    return [agent_id_of(h) for h in declared]


def _check_agents(what: str, agents: Any) -> list[Any]:
    if isinstance(agents, str | bytes) or not isinstance(agents, Sequence):
        raise WorkflowDefinitionError(
            f"{what}: agents must be a list of agents, got {type(agents).__name__}"
        )
    if not agents:
        raise WorkflowDefinitionError(f"{what}: agents is empty; give at least one agent")
    return list(agents)


class DeterministicWorkflow(Workflow):
    """Agents in a fixed sequence, each fed the previous one's output (aigen's
    ``DeterministicWorkflow``, seed 004).

    Args:
        agents: the agents, in order: :class:`Agent` objects, sync or async callables, objects
            with ``arun`` / ``run`` / ..., or registered agent names (str). Each becomes an
            :class:`~batten.AgentStep` whose id is the agent's id (``agent_id``, ``name`` or
            ``__name__``); an id that repeats gets a suffix (``writer``, ``writer-2``), so one
            agent may appear twice.
        name: the workflow's id and name (default ``"deterministic"``).
        description: free text.

    The first agent is called with the run's ``"input"`` variable (``engine.execute(workflow,
    context, input)``; ``None`` if absent), every later one with the previous agent's output,
    unchanged. The result's ``final_output`` (``result["result"]``) is the last agent's output.
    A failed agent fails the run and blocks the agents after it; add ``with_retry`` or
    ``with_fallback`` on ``workflow.steps[i]`` to change that.

    Raises:
        WorkflowDefinitionError: ``agents`` is empty or not a list, or an agent has no id.
    """

    def __init__(
        self, agents: Sequence[Any], name: str = "deterministic", *, description: str = ""
    ) -> None:
        self.agents = _check_agents(f"DeterministicWorkflow '{name}'", agents)
        super().__init__(name, name, description)
        used: set[str] = set()
        prev: str | None = None
        for agent in self.agents:
            base = agent_id_of(agent)
            step_id, n = base, 1
            while step_id in used:
                n += 1
                step_id = f"{base}-{n}"
            used.add(step_id)
            step = AgentStep(step_id, _callable_of(agent))
            step.with_input_function(_first_input if prev is None else _output_of(prev))
            self.add_step(step)
            prev = step_id


def _first_input(context: WorkflowContext) -> Any:
    return context.get("input")


def _output_of(step_id: str) -> Callable[[WorkflowContext], Any]:
    def previous_output(context: WorkflowContext) -> Any:
        return context.results[step_id]

    return previous_output


class HandoffWorkflow(Workflow):
    """Agents that pass control to one another at run time (aigen's ``HandoffWorkflow``,
    seed 004; the OpenAI Agents SDK's handoffs).

    Args:
        agents: the agents; ``agents[0]`` is the entry agent. Each is an :class:`Agent`, or any
            object or callable with an id (``agent_id``, ``name`` or ``__name__``), whose
            allowed targets are its ``handoffs`` list (ids or agents; none if absent). Agents
            are called as ``agent(message)``, sync (in a thread, ``asyncio.to_thread``) or async,
            with ``context=`` if they declare it.
        name: the workflow's id and name, and the id of its one step (default ``"handoff"``).
        max_handoffs: handoffs allowed in one run (int from 0 to ``2**31 - 1``, default 10).
        description: free text.

    The workflow has a single step. It calls the entry agent with the run's ``"input"``
    variable. If the output is a :class:`Handoff` (or ``{"handoff_to": id, "message": m}``), the
    target, which the current agent must have declared with ``add_handoff``, is called with
    the handoff's message (default: the message the current agent got), and so on. The first
    output that is not a handoff is the step's output; its metadata holds ``"path"`` (the ids
    of the agents that ran, in order) and ``"handoffs"`` (how many there were). An undeclared
    target, a target outside the workflow, or one handoff more than ``max_handoffs`` fails the
    step with :class:`HandoffError` (its metadata still holds the path). An agent that raises
    fails the step with that exception.

    Raises:
        WorkflowDefinitionError: ``agents`` is empty or not a list, an agent has no id, two
            agents share an id, or ``max_handoffs`` is not such an int.
    """

    def __init__(
        self,
        agents: Sequence[Any],
        name: str = "handoff",
        max_handoffs: int = 10,
        *,
        description: str = "",
    ) -> None:
        what = f"HandoffWorkflow '{name}'"
        self.agents = _check_agents(what, agents)
        check_count(max_handoffs, "max_handoffs", owner=what, minimum=0)
        super().__init__(name, name, description)
        self._max_handoffs = max_handoffs
        by_id: dict[str, Any] = {}
        for agent in self.agents:
            agent_id = agent_id_of(agent)
            if agent_id in by_id:
                raise WorkflowDefinitionError(
                    f"{what}: two agents have the id '{agent_id}'; handoffs name agents by id"
                )
            by_id[agent_id] = agent
        entry = agent_id_of(self.agents[0])
        self.add_step(ToolStep(name, _handoff_runner(name, by_id, entry, max_handoffs)))

    @property
    def max_handoffs(self) -> int:
        """Handoffs allowed in one run (fixed when the workflow is made)."""
        return self._max_handoffs


def _handoff_of(output: Any) -> tuple[str, Any] | None:
    """``(target_id, message)`` if ``output`` is a handoff, else ``None``."""
    if isinstance(output, Handoff):
        return output.target, output.message
    if isinstance(output, Mapping) and "handoff_to" in output:
        return agent_id_of(output["handoff_to"]), output.get("message")
    return None


def _handoff_runner(
    step_id: str, agents: Mapping[str, Any], entry: str, max_handoffs: int
) -> Callable[[WorkflowContext], Any]:
    """The async body of a HandoffWorkflow's step."""

    # Resolved once, as steps resolve their targets once: (fn, is_async, wants_context).
    calls: dict[str, tuple[Callable[..., Any], bool, bool]] = {}
    for agent_id, agent in agents.items():
        fn, _single = _resolve(_callable_of(agent), "agent", step_id)
        calls[agent_id] = (fn, _is_async(fn), _accepts_context(fn))

    async def call(agent_id: str, message: Any, context: WorkflowContext) -> Any:
        fn, is_async, wants = calls[agent_id]
        kwargs = {"context": context} if wants else {}
        if is_async:
            return await fn(message, **kwargs)
        # A sync agent (an LLM client call, typically) must not block the event loop.
        out = await asyncio.to_thread(fn, message, **kwargs)
        return await out if inspect.isawaitable(out) else out

    async def run_handoffs(context: WorkflowContext) -> Nested:
        message = context.get("input")
        current = entry
        path = [entry]
        try:
            while True:
                output = await call(current, message, context)
                handoff = _handoff_of(output)
                if handoff is None:
                    return Nested(output, metadata={"path": path, "handoffs": len(path) - 1})
                target, handoff_message = handoff
                declared = _declared_handoffs(agents[current])
                if target not in declared:
                    raise HandoffError(
                        f"agent '{current}' handed off to '{target}', which it did not declare "
                        f"with add_handoff (declared: {', '.join(declared) or 'none'})",
                        agent_id=current,
                        target=target,
                        path=path,
                    )
                if target not in agents:
                    raise HandoffError(
                        f"agent '{current}' handed off to '{target}', which is not an agent of "
                        f"this workflow ({', '.join(agents)})",
                        agent_id=current,
                        target=target,
                        path=path,
                    )
                if len(path) - 1 >= max_handoffs:
                    raise HandoffError(
                        f"agent '{current}' handed off to '{target}' but the workflow allows at "
                        f"most {max_handoffs} handoffs (path: {' -> '.join(path)})",
                        agent_id=current,
                        target=target,
                        path=path,
                    )
                if handoff_message is not None:
                    message = handoff_message
                current = target
                path.append(target)
        except Exception as exc:
            # Keep the path on the failed step's metadata too (see
            # batten._internal.outcome.raise_failed).
            nested = Nested(metadata={"path": list(path), "handoffs": len(path) - 1})
            raise CompositeFailure(exc, nested) from None

    return run_handoffs
