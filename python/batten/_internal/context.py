"""The contextvars a run sets for the tasks and threads that run its steps (private,
``batten._internal``).

The runtime sets them when it starts a run (``batten._runtime.run``); steps read them: a
composite reports progress through the run's :data:`EVENT_SINK`, an approval step and the
result cache find the durable run's store through :data:`JOURNAL`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

__all__ = ["EVENT_SINK", "JOURNAL", "EventSink", "Raw"]

#: ``(kind, step_id, attempt, payload)`` -> None; see ``Plan.start``'s ``on_event``.
EventSink = Callable[[str, str, int, Any], None]

#: One engine event: ``(kind, step_id, attempt, payload)``.
Raw = tuple[str, str, int, Any]

#: The event subscriber of the run a task belongs to; nested runs report through it with their
#: step ids prefixed by the composite's id (``"parallel/branch"``).
EVENT_SINK: contextvars.ContextVar[EventSink | None] = contextvars.ContextVar(
    "batten_event_sink", default=None
)

#: The checkpoint journal (``_core.Journal``) of the durable run a task belongs to; a nested run
#: writes through ``journal.child(prefix)`` so its steps have paths ``"parent/step"``.
JOURNAL: contextvars.ContextVar[Any] = contextvars.ContextVar("batten_journal", default=None)
