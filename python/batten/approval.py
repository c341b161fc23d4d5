"""Human approval's decisions: :func:`approve` and :func:`reject` (seed 001's
``HUMAN_APPROVAL``), and :class:`HumanApprovalStep` re-exported from
:mod:`batten.steps.approval`.

A :class:`HumanApprovalStep` in a durable run (one with a store) checkpoints the run and ends
``execute()`` with ``WorkflowStatus.WAITING_APPROVAL``; the process may exit. ``approve`` or
``reject``, from any process sharing the store, records the decision, and ``resume`` continues:
an approval completes the step (its output is the decision), a rejection fails it with
:class:`~batten.errors.ApprovalRejectedError`, so error handlers, fallbacks and compensation
apply. Other branches run on while a step waits; several approvals may wait at once and be
decided in any order.

Layer: beside ``batten.engine`` and ``batten.composite``, above the public facades; imports
:mod:`batten.durable`'s run controls and the step model.
"""

from __future__ import annotations

import os
import socket
import time

from batten.durable import is_finished, require_store
from batten.errors import ApprovalError
from batten.steps.approval import ApprovalPending as ApprovalPending
from batten.steps.approval import HumanApprovalStep, waiting_since
from batten.store import Store

__all__ = ["HumanApprovalStep", "approve", "reject"]


def _decide(
    run_id: str,
    step_id: str,
    approved: bool,
    by: str | None,
    comment: str | None,
    store: Store | str | None,
) -> None:
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
    since = waiting_since(events, step_id)
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
        "host": os.environ.get("BATTEN_HOST_ID") or socket.gethostname(),
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
