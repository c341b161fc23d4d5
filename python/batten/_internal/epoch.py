"""The step-change counter that lets a compiled plan be reused without re-reading its steps
(private, ``batten._internal``).

Bumped by every change to any step or workflow after creation (and by attaching a traffic
control to an agent or tool); a workflow whose compiled plan is newer than the last bump reuses
it. NOTE: re-reading each step's version instead cost ~0.37 µs a step per run, a tenth of W1's
whole per-step cost.
"""

from __future__ import annotations

__all__ = ["bump_epoch", "mutation_epoch"]

_EPOCH = [0]


def mutation_epoch() -> int:
    """The current value of the step-change counter (int, grows by one per change)."""
    return _EPOCH[0]


def bump_epoch() -> None:
    """Records a change that compiled plans may depend on (a step, a workflow's steps or
    handlers, an attached traffic control)."""
    _EPOCH[0] += 1
