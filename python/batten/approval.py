"""Human approval (seed 001's ``HUMAN_APPROVAL`` step, ``WAITING_APPROVAL`` status).

A :class:`HumanApprovalStep` in a durable run (one with a store) checkpoints the run and ends
``execute()`` with ``WorkflowStatus.WAITING_APPROVAL``; the process may exit. ``approve`` or
``reject``, from any process sharing the store, records the decision, and ``resume`` continues:
an approval completes the step (its output is the decision), a rejection fails it with
:class:`~batten.errors.ApprovalRejectedError`, so error handlers, fallbacks and compensation
apply. Other branches run on while a step waits; several approvals may wait at once and be
decided in any order.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from batten._internal.checks import check_seconds
from batten._internal.context import JOURNAL
from batten._internal.templates import render, render_inputs, template_refs
from batten.errors import (
    ApprovalError,
    ApprovalRejectedError,
    BattenError,
    StepTimeoutError,
    WorkflowDefinitionError,
)
from batten.steps import Step

if TYPE_CHECKING:
    from batten._internal.options import CompileOptions
    from batten.steps import CallSpec
    from batten.store import Store

__all__ = ["HumanApprovalStep", "approve", "reject"]


class ApprovalPending(BattenError):
    """Raised by a :class:`HumanApprovalStep` that has no decision yet (private: the run ends
    ``WAITING_APPROVAL`` and the step's status says ``WAITING_APPROVAL``). Never retried."""


def _waiting_since(events: Sequence[dict[str, Any]], path: str) -> float | None:
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

    def _call_spec(self, opts: CompileOptions | None = None) -> CallSpec:
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
            since = _waiting_since(events, path)
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


def _decide(
    run_id: str,
    step_id: str,
    approved: bool,
    by: str | None,
    comment: str | None,
    store: Store | str | None,
) -> None:
    from batten.durable import is_finished, require_store

    st = require_store(store)
    native = st._native
    info = native.get_run(run_id)
    if is_finished(info["status"]):
        # A decision recorded now would never be acted on (cancelled: resume returns the run
        # as it is) while saying "approved".
        raise ApprovalError(
            f"run '{run_id}' is {info['status']}: it has ended, so step '{step_id}' is not "
            "waiting for approval: it can no longer be approved or rejected"
        )
    events = native.events(run_id, 0)
    since = _waiting_since(events, step_id)
    if since is None:
        raise ApprovalError(
            f"run '{run_id}': step '{step_id}' is not waiting for approval (run status "
            f"{info['status']})"
        )
    wait = next(
        e
        for e in events
        if e["step_id"] == step_id and e["status"] == "waiting_approval" and e["at"] >= since
    )
    detail = wait.get("detail") or {}
    allowed = detail.get("approvers")
    if allowed and by not in allowed:
        raise ApprovalError(
            f"run '{run_id}': step '{step_id}' may be decided by {', '.join(allowed)}; got "
            f"by={by!r}"
        )
    limit = detail.get("timeout")
    if limit is not None and time.time() - since >= limit:
        raise ApprovalError(
            f"run '{run_id}': step '{step_id}' stopped waiting: its approval timed out after "
            f"{limit}s"
        )
    native.decide(run_id, step_id, approved, by, comment)
    # `by` is whatever the caller says; the account and host that wrote the decision are facts
    # of this process, kept beside it so the history shows who really decided.
    detail = {
        "approved": approved,
        "by": by,
        "comment": comment,
        "decision": True,
        "os_user": _os_user(),
        "host": socket.gethostname(),
    }
    native.append(
        run_id, [{"step_id": step_id, "status": "waiting_approval", "attempt": 0, "detail": detail}]
    )


def _os_user() -> str:
    """The account this process runs as: the user name of its real uid (not ``$USER``, which
    the caller sets), ``"uid N"`` for a uid with no passwd entry (containers), and on Windows
    what :func:`getpass.getuser` finds."""
    try:
        import pwd
    except ImportError:
        import getpass

        try:
            return getpass.getuser()
        except (OSError, KeyError):
            return "unknown"
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def approve(
    run_id: str,
    step_id: str,
    *,
    by: str | None = None,
    comment: str | None = None,
    store: Store | str | None = None,
) -> None:
    """Approves the waiting :class:`HumanApprovalStep` ``step_id`` (its path, e.g.
    ``"review"`` or ``"branch/review"``) of run ``run_id``; ``resume`` then continues the run.
    Works from any process sharing the store.

    Args:
        run_id: the durable run's id.
        step_id: the approval step's path.
        by: who approves; must be one of the step's ``approvers`` when it has any.
        comment: free text kept in the run's history.
        store: the store (object or URL); default: the ``BATTEN_STORE`` environment variable.

    The decision is kept in the run's history (:func:`batten.run_history`: a
    ``waiting_approval`` entry whose ``detail`` holds ``approved``, ``by``, ``comment``,
    ``os_user`` and ``host``). ``by`` is self-asserted: ``approvers`` checks it, while
    ``os_user`` and ``host`` record the account and machine of the process that wrote the
    decision. Anyone who can write to the store can decide, so protect the store.

    Raises:
        RunNotFoundError: no such run.
        ApprovalError: the run has ended (completed, failed, cancelled or compensated); the
            step is not waiting (never was, already decided, timed out); or ``by`` is not an
            allowed approver.
    """
    _decide(run_id, step_id, True, by, comment, store)


def reject(
    run_id: str,
    step_id: str,
    *,
    by: str | None = None,
    comment: str | None = None,
    store: Store | str | None = None,
) -> None:
    """Rejects the waiting approval step ``step_id`` of run ``run_id``: on ``resume`` the step
    fails with :class:`~batten.errors.ApprovalRejectedError` (error handlers, fallbacks and
    compensation apply). Arguments and errors as :func:`approve`."""
    _decide(run_id, step_id, False, by, comment, store)
