"""Human approval (seed 001's ``HUMAN_APPROVAL`` step, ``WAITING_APPROVAL`` status): the step
(layer ``batten.steps``; public as :mod:`batten.approval` and ``batten``).

A :class:`HumanApprovalStep` in a durable run (one with a store) checkpoints the run and ends
``execute()`` with ``WorkflowStatus.WAITING_APPROVAL``; the process may exit. ``approve`` or
``reject``, from any process sharing the store, records the decision, and ``resume`` continues:
an approval completes the step (its output is the decision), a rejection fails it with
:class:`~batten.errors.ApprovalRejectedError`, so error handlers, fallbacks and compensation
apply. Other branches run on while a step waits; several approvals may wait at once and be
decided in any order.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from batten._internal.checks import check_seconds
from batten._internal.context import JOURNAL
from batten._internal.templates import render, render_inputs, template_refs
from batten._internal.view import NAME_MAX, PROMPT_MAX, StepView, one_line, seconds_text, shorten
from batten.errors import (
    ApprovalRejectedError,
    BattenError,
    StepTimeoutError,
    WorkflowDefinitionError,
)
from batten.steps.base import Step
from batten.steps.protocol import CallSpec, CompileContext

__all__ = ["ApprovalPending", "HumanApprovalStep"]


class ApprovalPending(BattenError):
    """Raised by a :class:`HumanApprovalStep` that has no decision yet (private: the run ends
    ``WAITING_APPROVAL`` and the step's status says ``WAITING_APPROVAL``). Never retried."""


def waiting_since(events: Sequence[dict[str, Any]], path: str) -> float | None:
    """When ``path`` first waited for approval in the run's current wait, or ``None`` if it
    is not waiting (never asked, completed, timed out or cancelled since)."""
    since: float | None = None
    for e in events:
        if e["step_id"] != path:
            continue
        status = e["status"]
        if status == "waiting_approval":
            if since is None:
                since = e["at"]
        elif status == "failed" and e.get("error_type") == "ApprovalPending":
            continue
        elif status not in ("running", "retrying"):
            since = None
    return since


class HumanApprovalStep(Step):
    """A step that waits for a person's decision (seed 001's ``HUMAN_APPROVAL``).

    Args:
        step_id: the step's id.
        prompt: what the approver is asked; ``{step.result}`` references are filled from the
            step's context, as in an ``AgentStep`` message, and ``{inputs.name}`` ones from
            the run's variables (workflow files' inputs).
        approvers: who may decide (a non-empty list of str; ``approve(..., by=...)`` must
            name one of them); ``None`` (default): anyone. An empty list is refused: it would
            mean nobody may decide, so the run could never go on.
        timeout: seconds (> 0, at most 365 days) from when the step first waited; a decision
            that has not come by then ends the step ``TIMEOUT`` (checked when the run resumes,
            and ``approve`` after it is refused). ``None`` (default): wait forever.

    The step's output on approval is ``{"approved": True, "by": ..., "comment": ...,
    "prompt": ...}``. It needs a durable run (``execute(store=...)``); without a store the
    run fails with a ``WorkflowDefinitionError`` naming the step.

    Raises:
        WorkflowDefinitionError: ``prompt`` is not a str, ``approvers`` not a non-empty list
            of str, or ``timeout`` not a positive number of seconds up to 365 days.
    """

    __slots__ = ("approval_timeout", "approvers", "prompt")

    def __init__(
        self,
        step_id: str,
        prompt: str,
        approvers: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(step_id)
        if not isinstance(prompt, str):
            raise WorkflowDefinitionError(
                f"step '{step_id}': prompt must be a str, got {type(prompt).__name__}"
            )
        names: list[str] | None = None
        if approvers is not None:
            listed = isinstance(approvers, Iterable) and not isinstance(approvers, str | bytes)
            names = list(approvers) if listed else []
            if not listed or not all(isinstance(a, str) for a in names):
                raise WorkflowDefinitionError(
                    f"step '{step_id}': approvers must be a list of str or None, "
                    f"got {approvers!r:.80}"
                )
            if not names:
                raise WorkflowDefinitionError(
                    f"step '{step_id}': approvers is empty, so nobody could approve; name who "
                    "may decide, or pass approvers=None to let anyone"
                )
        check_seconds(timeout, "timeout", owner=f"step '{step_id}'", allow_none=True)
        self.prompt = prompt
        self.approvers: list[str] | None = names
        self.approval_timeout: float | None = float(timeout) if timeout is not None else None

    def with_timeout(self, seconds: float) -> HumanApprovalStep:
        """Sets the approval timeout (seconds from the first wait), as the ``timeout``
        argument does. Returns the step.

        Raises:
            WorkflowDefinitionError: ``seconds`` is not a positive number of seconds up to 365
                days.
        """
        super().with_timeout(seconds)
        self.approval_timeout, self.timeout = self.timeout, None
        return self

    def _call_spec(self, ctx: CompileContext) -> CallSpec:
        step_id, prompt, approvers, limit = (
            self.step_id,
            self.prompt,
            self.approvers,
            self.approval_timeout,
        )
        refs = template_refs(prompt)
        uses_inputs = "{inputs." in prompt

        async def invoke(context: Any) -> Any:
            journal = JOURNAL.get()
            if journal is None:
                raise WorkflowDefinitionError(
                    f"step '{step_id}': a HumanApprovalStep needs a durable run; pass "
                    "store=... to execute() (e.g. batten.SqliteStore('runs.db'))"
                )
            native = journal.store
            scope = journal.scope
            if scope.endswith(f"/{step_id}/") or scope == f"{step_id}/":
                # Run inside its own recovery wrapper (a fallback): the wrapper's path is the
                # step's, the one approvers name.
                scope = scope[: -len(step_id) - 1]
            path = scope + step_id
            text = render(prompt, context.results, step_id) if refs else prompt
            if uses_inputs:
                text = render_inputs(text, context.variables)
            decision = next(
                (d for d in native.decisions(journal.run_id) if d["step_id"] == path), None
            )
            events = native.events(journal.run_id, 0)
            since = waiting_since(events, path)
            if decision is None and since is not None and limit is not None:
                if time.time() - since >= limit:
                    raise StepTimeoutError(f"step '{path}': no approval decision within {limit}s")
            if decision is not None:
                if not decision["approved"]:
                    raise ApprovalRejectedError(
                        f"step '{path}' was rejected"
                        + (f" by {decision['by']}" if decision["by"] else "")
                        + (f": {decision['comment']}" if decision["comment"] else ""),
                        step_id=path,
                        by=decision["by"],
                        comment=decision["comment"],
                    )
                return {
                    "approved": True,
                    "by": decision["by"],
                    "comment": decision["comment"],
                    "prompt": text,
                }
            if since is None:
                journal.root().record(
                    path,
                    "waiting_approval",
                    detail={"prompt": text, "approvers": approvers, "timeout": limit},
                )
            raise ApprovalPending(f"step '{path}' is waiting for approval: {text}")

        return invoke, True, True, refs

    def _version_key(self) -> Any:
        return (super()._version_key(), self.prompt, tuple(self.approvers or ()))

    def _describe(self) -> StepView:
        """A hexagon with the prompt, the approvers and how long it waits."""
        lines = [f"approval: {shorten(one_line(self.prompt), PROMPT_MAX)}"]
        if self.approvers:
            lines.append(f"approvers: {shorten(', '.join(self.approvers), NAME_MAX)}")
        if self.approval_timeout is not None:
            lines.append(f"waits at most {seconds_text(self.approval_timeout)}")
        return StepView(type(self).__name__, "hexagon", lines=tuple(lines))
