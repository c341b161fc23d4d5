"""The argument checks of batten's Python API, written once (private).

Every public constructor and method that takes a step id, a number of seconds, a count or a
callable checks it here, so a bad value is refused with the same words wherever it is given,
as a :class:`~batten.errors.WorkflowDefinitionError` naming its owner (``step 'fetch'``,
``workflow 'w'``, ``RateLimit('llm')``) and the argument, before anything runs. The bounds keep
every value inside what the native engine can hold: a larger number of seconds made Rust's
``Duration`` panic, a larger count raised ``OverflowError`` on its way into a Rust integer.

A leaf module (``batten._internal``): it imports nothing from batten but :mod:`batten.errors`.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any, Final, TypeGuard

from batten.errors import WorkflowDefinitionError

__all__ = [
    "MAX_COUNT",
    "MAX_SECONDS",
    "check_callable",
    "check_count",
    "check_lease",
    "check_rate",
    "check_run_options",
    "check_seconds",
    "check_step_id",
    "is_finite_number",
]

#: The most seconds any duration argument takes (365 days); workflow files use the same
#: bound (the JSON Schema's ``maximum``).
MAX_SECONDS: Final = 31_536_000

#: The most any count argument takes (``2**31 - 1``: it fits every integer type of the engine).
MAX_COUNT: Final = 2**31 - 1

#: The one character a step id may not hold: it joins a composite's id to its inner steps' ids
#: in the paths that checkpoints, events and ``batten status`` use (``"parallel/branch"``).
PATH_SEPARATOR: Final = "/"

#: A loop's iteration and a map's item are addressed as ``"<id>[<i>]"`` in the same paths, so
#: a step id may not end in a bracketed index of its own (a top-level ``ParallelStep("l[0]")``
#: would share the paths of loop ``l``'s first iteration).
#: A pattern (``re`` compiles and caches it for the first id ending in "]").
_INDEX_SUFFIX: Final = r"\[[0-9]*\]\Z"


def _fail(owner: str | None, name: str, expected: str, value: Any) -> WorkflowDefinitionError:
    subject = f"{owner}: {name}" if owner else name
    try:
        shown = f"{value!r:.80}"
    except ValueError:  # an int of more than 4,300 digits has no repr (sys.int_info)
        shown = f"an {type(value).__name__} too large to show"
    return WorkflowDefinitionError(f"{subject} must be {expected}, got {shown}")


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """Whether ``value`` is an int (not a bool) or float that a float (and so the engine's
    ``f64``) holds exactly enough: not NaN, not infinite, not an int past ``1.8e308``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        # math.isfinite(10**400) raises OverflowError instead of answering.
        return abs(value) <= sys.float_info.max
    return math.isfinite(value)


def check_step_id(step_id: object) -> str:
    """Returns ``step_id`` if it can name a step: a non-empty str without ``/`` that does not
    end in a bracketed index such as ``[0]``.

    ``/`` is refused because a composite's inner step is addressed as ``"<composite>/<inner>"``:
    a top-level ``"a/b"`` beside a ``ParallelStep("a", [ToolStep("b")])`` would share its
    checkpoints and its line in ``batten status``. Workflow files are stricter (the schema's
    ``identifier`` pattern); the Python API also takes spaces and dots, as agent names have them.

    Raises:
        WorkflowDefinitionError: ``step_id`` is not a non-empty str, holds ``/``, or ends in
            ``[<digits>]`` (the paths of loop iterations and map items).
    """
    if not isinstance(step_id, str) or not step_id:
        raise WorkflowDefinitionError(f"step_id must be a non-empty str, got {step_id!r:.80}")
    if PATH_SEPARATOR in step_id:
        raise WorkflowDefinitionError(
            f"step '{step_id}': a step id may not contain '/', which separates a composite "
            "step's id from its inner steps' ids ('parallel/branch'); use '-' or '_'"
        )
    if step_id.endswith("]") and re.search(_INDEX_SUFFIX, step_id):
        raise WorkflowDefinitionError(
            f"step '{step_id}': a step id may not end in '[<index>]', which addresses a loop's "
            "iterations and a map's items ('loop[0]'); use '-' or '_'"
        )
    return step_id


def check_count(
    value: object,
    name: str,
    *,
    owner: str | None = None,
    minimum: int = 1,
    maximum: int = MAX_COUNT,
    allow_none: bool = False,
) -> None:
    """Checks a count: an int (not a bool) from ``minimum`` to ``maximum``.

    Args:
        value: what was given.
        name: the argument's name, as the message shows it (``"max_concurrency"``).
        owner: who takes it (``"step 'fan'"``), or ``None`` when ``name`` says it all.
        minimum: the least value allowed (int; default 1).
        maximum: the most (int; default :data:`MAX_COUNT`).
        allow_none: whether ``None`` (meaning "no limit") is allowed; default ``False``.

    Raises:
        WorkflowDefinitionError: ``value`` is not such an int (nor an allowed ``None``); the
            message names ``owner`` and ``name``.
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise _fail(owner, name, expected, value)
    if value > maximum:
        raise _fail(owner, name, f"at most {maximum}", value)


def check_seconds(
    value: object,
    name: str,
    *,
    owner: str | None = None,
    allow_zero: bool = False,
    allow_none: bool = False,
) -> None:
    """Checks a duration in seconds: a finite int or float (not a bool), > 0 (``>= 0`` with
    ``allow_zero``), at most :data:`MAX_SECONDS`.

    Args:
        value: what was given (seconds).
        name: the argument's name, as the message shows it (``"timeout"``).
        owner: who takes it (``"step 'fetch'"``), or ``None``.
        allow_zero: whether 0 is meaningful (a retry interval); default ``False``.
        allow_none: whether ``None`` (meaning "no bound") is allowed; default ``False``.

    Raises:
        WorkflowDefinitionError: ``value`` is out of range or not a number; the message names
            ``owner`` and ``name``.
    """
    if value is None and allow_none:
        return
    if not is_finite_number(value) or value < 0 or (value == 0 and not allow_zero):
        expected = (
            "a finite number of seconds >= 0" if allow_zero else "a positive number of seconds"
        )
        raise _fail(owner, name, expected + (" or None" if allow_none else ""), value)
    if value > MAX_SECONDS:
        raise _fail(owner, name, f"at most {MAX_SECONDS} seconds (365 days)", value)


def check_rate(
    value: object,
    name: str,
    *,
    owner: str | None = None,
    per_seconds: float,
    allow_none: bool = False,
) -> None:
    """Checks a rate (events per ``per_seconds`` seconds): a finite positive number, high
    enough that one event is allowed within :data:`MAX_SECONDS`.

    Args:
        value: what was given (events per ``per_seconds``).
        name: the argument's name (``"requests_per_second"``).
        owner: who takes it, or ``None``.
        per_seconds: the rate's period in seconds (1 for per second, 60 for per minute).
        allow_none: whether ``None`` (meaning "unlimited") is allowed; default ``False``.

    Raises:
        WorkflowDefinitionError: ``value`` is out of range or not a number.
    """
    if value is None and allow_none:
        return
    if not is_finite_number(value) or value <= 0:
        expected = "a positive number" + (" or None" if allow_none else "")
        raise _fail(owner, name, expected, value)
    least = per_seconds / MAX_SECONDS
    if value < least:
        raise _fail(owner, name, f"at least {least:g} (one in 365 days)", value)


def check_run_options(timeout: object, max_concurrency: object) -> None:
    """Checks a run's ``timeout`` (seconds, > 0, at most :data:`MAX_SECONDS`, or ``None``) and
    ``max_concurrency`` (an int from 1 to :data:`MAX_COUNT`, or ``None``), as ``execute``,
    ``resume`` and ``stream`` take them.

    Raises:
        WorkflowDefinitionError: either is out of range; the message names it.
    """
    check_seconds(timeout, "execute(timeout=...)", allow_none=True)
    check_count(max_concurrency, "execute(max_concurrency=...)", allow_none=True)


def check_callable(value: object, name: str, *, owner: str | None = None) -> None:
    """Checks that ``value`` can be called.

    Args:
        value: what was given.
        name: what it is for, as the message shows it (``"the condition"``).
        owner: who takes it (``"step 'gate'"``), or ``None``.

    Raises:
        WorkflowDefinitionError: ``value`` is not callable.
    """
    if not callable(value):
        raise _fail(owner, name, "callable", value)


def check_lease(lease_seconds: Any, heartbeat_seconds: Any) -> None:
    """``WorkflowDefinitionError`` unless both are finite numbers of seconds > 0 with
    ``heartbeat_seconds < lease_seconds``."""
    for name, value in (("lease_seconds", lease_seconds), ("heartbeat_seconds", heartbeat_seconds)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not 0 < value < 10**9
            or value != value
        ):
            raise WorkflowDefinitionError(
                f"{name} must be a number of seconds > 0 (and < 1e9), got {value!r}"
            )
    if heartbeat_seconds >= lease_seconds:
        raise WorkflowDefinitionError(
            f"heartbeat_seconds ({heartbeat_seconds!r}) must be less than lease_seconds "
            f"({lease_seconds!r}): the lease would lapse between two heartbeats"
        )
