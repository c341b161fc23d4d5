"""Composite steps: conditional, parallel, loop, map, sub-workflow and routing.

A re-export of :mod:`batten.steps.composite`, where they are defined (the step model); this
module path stays for code that imports it.
"""

from __future__ import annotations

from batten.steps.composite import (
    ConditionalStep,
    LoopStep,
    MapStep,
    ParallelStep,
    RouterStep,
    SubWorkflowStep,
)

__all__ = [
    "ConditionalStep",
    "LoopStep",
    "MapStep",
    "ParallelStep",
    "RouterStep",
    "SubWorkflowStep",
]
