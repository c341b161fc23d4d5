"""The step model (layer ``batten.steps``): what a step is, never how it runs.

- :mod:`batten.steps.base`: :class:`Step`, :class:`AgentStep`, :class:`ToolStep`.
- :mod:`batten.steps.composite`: the composite steps (conditional, parallel, loop, map,
  sub-workflow, router); public as :mod:`batten.composite`.
- :mod:`batten.steps.approval`: :class:`~batten.HumanApprovalStep`; public as
  :mod:`batten.approval`.
- :mod:`batten.steps.protocol`: the :class:`CompileContext` through which a step that runs
  other steps compiles and runs them.

A new step kind goes here: a :class:`Step` subclass whose ``_call_spec(ctx)`` says how the
engine calls it and whose ``_describe()`` says how it is drawn. This layer imports only the
layers below it (``batten.retry``, ``batten.registry``, ``batten.traffic``, ``batten.adapters``,
``batten._internal``, ``batten.errors``); ``make lint`` checks it.
"""

from __future__ import annotations

from batten.steps.base import AgentStep, Step, ToolStep

__all__ = ["AgentStep", "Step", "ToolStep"]
