"""``batten ui``: a web dashboard and JSON HTTP API over a store's runs (issue 19), as the run
views of Temporal's Web UI, Prefect's and Hatchet's dashboards and LangGraph Studio.

Pages (server-rendered, with a small script and stylesheet shipped in this package: no CDN, so
it works offline): the runs list (filters, live by short polling) and a run's page (its graph
coloured by status as inline SVG, a timeline of attempts, retries and waits, each step's input,
output, error, attempts, duration and idempotency key, owner and heartbeat when the store
records run ownership, a trace link) with approve/reject, cancel, pause, resume and fork.

The JSON API is under ``/api`` (OpenAPI document at ``/api/openapi.json``); the pages use it.

Needs the ``ui`` extra: ``pip install 'batten[ui]'`` (Starlette and uvicorn).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from batten.errors import BattenError

__all__ = ["DashboardConfigError", "create_app", "serve"]

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class DashboardConfigError(BattenError, ValueError):
    """``serve``/``create_app`` was given settings it refuses: an address other than the
    loopback without a token (anyone on the network could approve and cancel runs), an empty
    token, or a ``trace_url`` without ``{trace_id}``."""


def create_app(
    store: Any,
    *,
    host: str = "127.0.0.1",
    token: str | None = None,
    trace_url: str | None = None,
    workflows: Mapping[str, Any] | None = None,
    identity: str | None = None,
) -> Any:
    """The dashboard as an ASGI application (a ``starlette.applications.Starlette``).

    Args:
        store: a :class:`~batten.Store` or URL (``None``: ``BATTEN_STORE``).
        host: the address it will be served on (default ``"127.0.0.1"``); any other address
            requires ``token``, and then reads need the token too.
        token: ``"name:secret"`` or ``"secret"`` (default ``None``: no token, loopback only).
            Requests send it as ``Authorization: Bearer secret`` or open a page once with
            ``?token=secret`` (sets an HttpOnly, SameSite=Strict cookie). Every state-changing
            request needs it when set. Approvals are recorded as by ``name`` (``"token"``
            when the token has no name).
        trace_url: a trace UI's URL template with ``{trace_id}``, e.g.
            ``"http://localhost:16686/trace/{trace_id}"`` (Jaeger); a traced run's page links
            to it.
        workflows: workflows the dashboard can run, by workflow id / name: ``Workflow``
            objects or workflow file paths. Runs started by ``batten run`` record their file
            and need no entry. Used to continue a run after approve/resume, to fork, and by
            ``POST /api/workflows/{name}/runs``.
        identity: who approvals are recorded as without a token (default: the OS user).

    Raises:
        DashboardConfigError: a non-loopback ``host`` without ``token``, an empty token, or a
            ``trace_url`` without ``{trace_id}``.
        StoreURLError, StoreUnavailableError: the store cannot be opened.
    """
    from batten.approval import _os_user
    from batten.ui.app import Dashboard, build

    if token is not None and not token.strip(":"):
        raise DashboardConfigError("token: expected 'name:secret' or 'secret', got an empty one")
    loopback = host in _LOOPBACK
    if not loopback and not token:
        raise DashboardConfigError(
            f"host {host!r} is not the loopback address: serving the dashboard there needs "
            "--token (anyone who can reach it could approve, cancel and fork runs)"
        )
    if trace_url is not None and "{trace_id}" not in trace_url:
        raise DashboardConfigError(f"trace_url must contain {{trace_id}}, got {trace_url!r}")
    dash = Dashboard(
        store,
        token=token,
        trace_url=trace_url,
        workflows=workflows,
        identity=identity or _os_user(),
    )
    return build(dash, loopback=loopback)


def serve(
    store: Any = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    trace_url: str | None = None,
    workflows: Mapping[str, Any] | None = None,
) -> None:
    """Serves the dashboard on uvicorn at ``http://host:port/`` until interrupted (blocks).
    Arguments and errors as :func:`create_app`; ``port`` is a TCP port (default 8765)."""
    import uvicorn

    app = create_app(store, host=host, token=token, trace_url=trace_url, workflows=workflows)
    print(f"batten dashboard: http://{host}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
