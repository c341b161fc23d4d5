"""The dashboard's ASGI application (Starlette): the JSON API under ``/api`` and the two pages
(runs list, run) that use it. :func:`batten.ui.create_app` builds it; :func:`batten.ui.serve`
runs it on uvicorn."""

from __future__ import annotations

import asyncio
import hmac
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from html import escape
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from batten.approval import approve, reject
from batten.durable import cancel, is_finished, pause, require_store
from batten.errors import (
    ApprovalError,
    BattenError,
    RunEndedError,
    RunLeasedError,
    RunNotFoundError,
    StoreUnavailableError,
    WorkflowConfigError,
    WorkflowDefinitionError,
)
from batten.store import RunInfo, StepRecord, Store
from batten.ui import graph
from batten.ui.openapi import OPENAPI

__all__ = ["Dashboard", "Token"]

#: Input metadata key holding the workflow file a ``batten run`` run was started from.
SOURCE_KEY = "batten.source"
_COOKIE = "batten_token"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class Token:
    """A dashboard token parsed from ``"name:secret"`` (``name`` recorded as the approver) or
    ``"secret"`` (recorded as ``"token"``)."""

    def __init__(self, spec: str) -> None:
        name, sep, secret = spec.partition(":")
        self.name, self.secret = (name, secret) if sep and name and secret else ("token", spec)

    def matches(self, given: str | None) -> bool:
        """Constant-time comparison with ``given``."""
        return given is not None and hmac.compare_digest(given.encode(), self.secret.encode())


def _status(exc: BaseException) -> int:
    if isinstance(exc, RunNotFoundError):
        return 404
    if isinstance(exc, ApprovalError):
        return 403 if "may be decided by" in str(exc) else 409
    if isinstance(exc, RunEndedError):
        return 409
    if isinstance(exc, StoreUnavailableError):
        return 503
    if isinstance(exc, RunLeasedError):  # a live owner executes the run
        return 409
    return 400


def _error(exc: BaseException, status: int | None = None) -> JSONResponse:
    """``{"error": class name, "message": ...}``; a ``RunLeasedError`` adds ``"owner"``: the
    live lease's host, pid, owner_id, heartbeat_age (s), expires_at (unix s) and token."""
    doc: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, RunLeasedError):
        doc["owner"] = {
            "host": exc.host,
            "pid": exc.pid,
            "owner_id": exc.owner_id,
            "heartbeat_age": exc.heartbeat_age,
            "expires_at": exc.expires_at,
            "token": exc.token,
        }
    return JSONResponse(doc, status_code=status or _status(exc))


def _jsonable(value: Any) -> Any:
    try:
        import json

        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _info_json(info: RunInfo) -> dict[str, Any]:
    from batten._runtime.fork import forked_from

    trace = (info.input or {}).get("trace") if isinstance(info.input, dict) else None
    traceparent = trace.get("traceparent") if isinstance(trace, dict) else None
    trace_id = traceparent.split("-")[1] if traceparent and traceparent.count("-") >= 3 else None
    lease = info.lease
    return {
        "run_id": info.run_id,
        "workflow_id": info.workflow_id,
        "name": info.name,
        "version": info.version,
        "status": str(info.status),
        "created_at": info.created_at,
        "updated_at": info.updated_at,
        "error": info.error,
        # Run ownership: the live lease's owner ("host pid N"), its last heartbeat and expiry
        # (unix s); None when no live process holds the run (ended, paused, interrupted).
        "owner": None if lease is None else f"{lease.host} pid {lease.pid}",
        "heartbeat_at": None if lease is None else lease.heartbeat_at,
        "lease_expires_at": None if lease is None else lease.expires_at,
        "forked_from": forked_from(info.input),
        "trace_id": trace_id,
    }


def _record_json(r: StepRecord) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "step_id": r.step_id,
        "status": str(r.status),
        "attempt": r.attempt,
        "at": r.at,
        "duration_ms": r.duration_ms,
        "error_type": r.error_type,
        "error": r.error,
        "traceback": r.traceback,
        "output": _jsonable(r.output),
        "detail": _jsonable(r.detail),
    }


class Dashboard:
    """The dashboard's state: the store, the token, the workflows it can run, the background
    threads continuing runs. Private; :func:`batten.ui.create_app` makes one."""

    def __init__(
        self,
        store: Store | str,
        *,
        token: str | None,
        trace_url: str | None,
        workflows: Mapping[str, Any] | None,
        identity: str,
    ) -> None:
        self.store = require_store(store)
        self.token = Token(token) if token else None
        self.trace_url = trace_url
        self.workflows: dict[str, Any] = dict(workflows or {})
        self.identity = identity
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="batten-ui-run")
        self.lock = threading.Lock()
        #: run id -> the error a background continuation of it raised (shown on its page).
        self.bg_errors: dict[str, str] = {}

    # -- workflows ---------------------------------------------------------------------------

    def workflow_for(self, info: RunInfo) -> Any:
        """The ``Workflow`` that runs ``info``'s run: a registered one by id, else the workflow
        file its input records (``batten run``). ``WorkflowDefinitionError`` when neither."""
        wf = self.workflows.get(info.workflow_id)
        if wf is not None and not isinstance(wf, str):
            return wf
        source = wf or ((info.input or {}).get("metadata") or {}).get(SOURCE_KEY)
        if not source:
            raise WorkflowDefinitionError(
                f"run '{info.run_id}' of workflow '{info.workflow_id}': the dashboard does not "
                "know its workflow (register it: serve(workflows={...}), or start it with "
                "`batten run FILE`, which records the file)"
            )
        from batten.config import load_workflow

        return load_workflow(source)

    def named_workflow(self, name: str) -> Any:
        """A workflow to start by ``name``: registered with the dashboard (object or file), a
        registered factory (``batten.factory``), or a workflow file path."""
        wf = self.workflows.get(name)
        if wf is not None:
            if isinstance(wf, str):
                from batten.config import load_workflow

                return load_workflow(wf)
            return wf
        from batten.factory import create_workflow, list_workflow_factories

        if name in list_workflow_factories():
            return create_workflow(name)
        raise WorkflowDefinitionError(
            f"no workflow named '{name}' "
            f"(registered: {', '.join(sorted(self.workflows)) or 'none'})"
        )

    # -- background runs ---------------------------------------------------------------------

    def continue_run(self, run_id: str, *, wait: float = 0.3) -> None:
        """Resumes run ``run_id`` on a worker thread (as ``batten resume``: failed steps run
        again). An error raised within ``wait`` seconds (a live lease, an unknown workflow) is
        raised here so the request reports it; a later one is kept for the run's page."""
        info = self.store.get_run(run_id)
        workflow = self.workflow_for(info)

        def go() -> None:
            try:
                asyncio.run(workflow.resume(run_id, store=self.store, retry_failed=True))
            except BaseException as exc:
                with self.lock:
                    self.bg_errors[run_id] = f"{type(exc).__name__}: {exc}"
                raise

        self._submit(go, wait)

    def _submit(self, fn: Callable[[], Any], wait: float) -> Future[Any]:
        fut = self.pool.submit(fn)
        try:
            exc = fut.exception(timeout=wait)
        except FutureTimeout:
            return fut
        if exc is not None:
            raise exc
        return fut

    def start(self, workflow: Any, variables: dict[str, Any], run_id: str | None) -> str:
        """Records a new run of ``workflow`` with ``variables`` and executes it on a worker
        thread; returns its id."""
        from batten import WorkflowContext
        from batten._runtime import lifecycle
        from batten.config import initial_variables

        if getattr(workflow, "inputs", None):
            variables = initial_variables(workflow, variables)
        metadata = {SOURCE_KEY: workflow.source} if getattr(workflow, "source", None) else {}
        ctx = WorkflowContext(workflow.workflow_id, variables=variables, metadata=metadata)
        begun, durable = lifecycle.begin_durable(workflow, ctx, self.store, run_id)
        new_id = str(durable.run_id)

        def go() -> None:
            asyncio.run(
                lifecycle.execute(
                    workflow,
                    begun,
                    timeout=None,
                    max_concurrency=None,
                    on_event=None,
                    base=None,
                    durable=durable,
                )
            )

        self._submit(go, 0.0)
        return new_id

    def fork(self, run_id: str, from_step: str) -> str:
        """Forks run ``run_id`` from ``from_step`` (``Workflow.fork``) and runs the fork on a
        worker thread; returns the new run's id."""
        from batten._runtime.fork import seed_fork

        info = self.store.get_run(run_id)
        workflow = self.workflow_for(info)
        new_id = seed_fork(workflow, self.store, run_id, from_step)

        def go() -> None:
            asyncio.run(workflow.resume(new_id, store=self.store))

        self._submit(go, 0.0)
        return new_id

    # -- reading -----------------------------------------------------------------------------

    def run_json(self, run_id: str) -> dict[str, Any]:
        """Everything the run page shows about run ``run_id``."""
        info = self.store.get_run(run_id)
        history = self.store.history(run_id)
        doc = _info_json(info)
        doc["input"] = _jsonable(info.input)
        doc["result"] = _jsonable(info.result)
        doc["trace_url"] = (
            self.trace_url.format(trace_id=doc["trace_id"])
            if self.trace_url and doc["trace_id"]
            else None
        )
        doc["background_error"] = self.bg_errors.get(run_id)
        try:
            workflow: Any = self.workflow_for(info)
        except (BattenError, OSError):
            workflow = None
        order: list[str] = []
        deps: dict[str, list[str]] = {}
        composites: list[str] = []
        if workflow is not None:
            order = [s.step_id for s in workflow._steps]
            deps = {
                s.step_id: list(d) for s, d in zip(workflow._steps, workflow._deps, strict=True)
            }
        steps: dict[str, dict[str, Any]] = {}
        for r in history:
            s = steps.setdefault(
                r.step_id,
                {
                    "step_id": r.step_id,
                    "status": "pending",
                    "attempts": 0,
                    "started_at": None,
                    "ended_at": None,
                    "duration_ms": None,
                    "output": None,
                    "error_type": None,
                    "error": None,
                    "traceback": None,
                    "idempotency_key": f"{run_id}:{r.step_id}",
                    "timeline": [],
                    "approval": None,
                },
            )
            status = str(r.status)
            s["attempts"] = max(s["attempts"], r.attempt)
            detail = r.detail if isinstance(r.detail, dict) else {}
            if status == "running":
                s["started_at"] = s["started_at"] or r.at
                s["timeline"].append({"kind": "attempt", "attempt": r.attempt, "start": r.at})
            elif status == "retrying":
                s["timeline"].append(
                    {
                        "kind": "retry",
                        "attempt": r.attempt,
                        "at": r.at,
                        "delay_s": detail.get("delay_s"),
                        "error": f"{r.error_type}: {r.error}",
                    }
                )
            elif status == "waiting_approval":
                if detail.get("decision"):
                    s["approval"] = {**(s["approval"] or {}), "decision": detail}
                    s["timeline"].append({"kind": "decision", "at": r.at, **detail})
                else:
                    s["approval"] = {"prompt": detail.get("prompt"), **detail}
                    s["timeline"].append({"kind": "wait", "at": r.at, "what": "approval"})
            if status == "running" or (status == "waiting_approval" and detail.get("decision")):
                continue
            if r.error_type == "ApprovalPending":
                s["status"] = "waiting_approval" if not is_finished(info.status) else "cancelled"
                continue
            s["status"] = status
            if status not in ("retrying",):
                s["ended_at"] = r.at
                s["duration_ms"] = r.duration_ms
                s["output"] = _jsonable(r.output)
                s["error_type"], s["error"] = r.error_type, r.error
                s["traceback"] = r.traceback
                for t in reversed(s["timeline"]):
                    if t["kind"] == "attempt" and "end" not in t:
                        t["end"] = r.at
                        t["outcome"] = status
                        break
        if str(info.status) == "waiting_approval":
            # As `batten status`: a run ends WAITING_APPROVAL only when nothing failed, so a
            # step blocked behind the approval is pending, not blocked.
            for s in steps.values():
                if s["status"] == "blocked":
                    s["status"] = "pending"
        for path in steps:
            top = path.split("/", 1)[0]
            if "/" in path and top not in composites:
                composites.append(top)
        for sid in steps:
            if "/" not in sid and sid not in order:
                order.append(sid)
        statuses = {k: v["status"] for k, v in steps.items()}
        # A step's input context: the outputs of the steps it depends on.
        for sid, s in steps.items():
            s["inputs"] = {d: steps[d]["output"] for d in deps.get(sid, []) if d in steps}
        doc["steps"] = [steps[k] for k in order if k in steps] + [
            v for k, v in steps.items() if k not in order
        ]
        doc["order"] = order
        doc["deps"] = deps
        doc["graph_svg"] = graph.svg(order, deps, statuses, composites)
        doc["waiting"] = [k for k, v in steps.items() if v["status"] == "waiting_approval"]
        doc["history"] = [_record_json(r) for r in history]
        return doc

    def list_runs(self, q: Mapping[str, str]) -> dict[str, Any]:
        """A page of runs, newest first, filtered by ``status``, ``workflow``, ``since`` and
        ``until`` (unix seconds, on ``created_at``) and ``q`` (a substring of the run id);
        ``limit`` (1..500, default 50) from ``cursor`` (an offset). ``next_cursor`` is ``None``
        on the last page."""
        limit = _int_arg(q, "limit", 50, 1, 500)
        offset = _int_arg(q, "cursor", 0, 0, sys.maxsize)
        since, until = _float_arg(q, "since"), _float_arg(q, "until")
        text = q.get("q") or None
        if text is not None and offset == 0:
            # A whole run id (pasted from a log) is one lookup, not a scan of every run.
            try:
                exact = self.store.get_run(text)
            except RunNotFoundError:
                exact = None
            if exact is not None and self._matches(exact, q, since, until):
                return {"runs": [_info_json(exact)], "next_cursor": None}
        scan = text is not None or since is not None or until is not None
        # The stores filter by status and workflow and return newest first; the other filters
        # and the offset are applied here (the store has no cursor).
        fetched = self.store.list_runs(
            status=q.get("status") or None,
            workflow_id=q.get("workflow") or None,
            limit=sys.maxsize if scan else offset + limit + 1,
        )
        if scan:
            fetched = [
                r
                for r in fetched
                if (text is None or text in r.run_id)
                and (since is None or r.created_at >= since)
                and (until is None or r.created_at <= until)
            ]
        page = fetched[offset : offset + limit]
        more = len(fetched) > offset + limit
        return {
            "runs": [_info_json(r) for r in page],
            "next_cursor": str(offset + limit) if more else None,
        }

    @staticmethod
    def _matches(
        r: RunInfo, q: Mapping[str, str], since: float | None, until: float | None
    ) -> bool:
        return (
            (not q.get("status") or str(r.status) == q["status"])
            and (not q.get("workflow") or r.workflow_id == q["workflow"])
            and (since is None or r.created_at >= since)
            and (until is None or r.created_at <= until)
        )


def _int_arg(q: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise WorkflowConfigError(
            f"query parameter {name}: expected an integer, got {raw!r}"
        ) from None
    if not lo <= value <= hi:
        raise WorkflowConfigError(f"query parameter {name}: expected {lo}..{hi}, got {value}")
    return value


def _float_arg(q: Mapping[str, str], name: str) -> float | None:
    raw = q.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError:
        raise WorkflowConfigError(
            f"query parameter {name}: expected unix seconds, got {raw!r}"
        ) from None


# -- the application ---------------------------------------------------------------------------


def build(dash: Dashboard, *, loopback: bool) -> Starlette:
    """The Starlette application serving ``dash``."""

    def given_token(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return request.query_params.get("token") or request.cookies.get(_COOKIE)

    def refused(request: Request, changing: bool) -> Response | None:
        if dash.token is None:
            if changing and request.headers.get("origin") not in (
                None,
                f"{request.url.scheme}://{request.url.netloc}",
            ):
                return JSONResponse(
                    {"error": "Forbidden", "message": "cross-origin request refused"}, 403
                )
            return None
        if not (changing or not loopback):
            return None
        if dash.token.matches(given_token(request)):
            return None
        return JSONResponse(
            {
                "error": "Unauthorized",
                "message": "this dashboard needs its token: Authorization: Bearer TOKEN, or "
                "open it once with ?token=TOKEN",
            },
            status_code=401,
        )

    def guarded(changing: bool) -> Callable[[Any], Any]:
        def wrap(handler: Any) -> Any:
            async def endpoint(request: Request) -> Response:
                denied = refused(request, changing)
                if denied is not None:
                    return denied
                if changing and "application/json" not in request.headers.get("content-type", ""):
                    return JSONResponse(
                        {"error": "UnsupportedMediaType", "message": "send application/json"},
                        status_code=415,
                    )
                try:
                    response: Response = await handler(request)
                except BattenError as exc:
                    return _error(exc)
                except ValueError as exc:
                    return _error(exc, 400)
                token = request.query_params.get("token")
                if token and dash.token is not None and dash.token.matches(token):
                    response.set_cookie(_COOKIE, token, httponly=True, samesite="strict")
                return response

            return endpoint

        return wrap

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise WorkflowConfigError("request body: expected a JSON object") from None
        if not isinstance(data, dict):
            raise WorkflowConfigError("request body: expected a JSON object")
        return data

    def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        return asyncio.get_running_loop().run_in_executor(None, fn, *args)

    @guarded(False)
    async def api_runs(request: Request) -> Response:
        return JSONResponse(await in_thread(dash.list_runs, dict(request.query_params)))

    @guarded(False)
    async def api_run(request: Request) -> Response:
        return JSONResponse(await in_thread(dash.run_json, request.path_params["run_id"]))

    @guarded(False)
    async def api_history(request: Request) -> Response:
        recs = await in_thread(dash.store.history, request.path_params["run_id"])
        return JSONResponse({"history": [_record_json(r) for r in recs]})

    def decide(approved: bool) -> Any:
        @guarded(True)
        async def endpoint(request: Request) -> Response:
            run_id, data = request.path_params["run_id"], await body(request)
            step = data.get("step")
            if not isinstance(step, str) or not step:
                raise WorkflowConfigError(
                    "request body: 'step' (the approval step's id) is required"
                )
            comment = data.get("comment")
            if comment is not None and not isinstance(comment, str):
                raise WorkflowConfigError("request body: 'comment' must be a string")
            who = dash.token.name if dash.token is not None else dash.identity
            fn = approve if approved else reject

            def go() -> None:
                fn(run_id, step, by=who, comment=comment, store=dash.store)
                if data.get("resume", True):
                    dash.continue_run(run_id)

            await in_thread(go)
            return JSONResponse({"run_id": run_id, "step": step, "approved": approved, "by": who})

        return endpoint

    @guarded(True)
    async def api_cancel(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        await in_thread(lambda: cancel(run_id, store=dash.store))
        return JSONResponse({"run_id": run_id, "requested": "cancel"})

    @guarded(True)
    async def api_pause(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        await in_thread(lambda: pause(run_id, store=dash.store))
        return JSONResponse({"run_id": run_id, "requested": "pause"})

    @guarded(True)
    async def api_resume(request: Request) -> Response:
        run_id = request.path_params["run_id"]

        def go() -> None:
            info = dash.store.get_run(run_id)
            if str(info.status) in ("completed", "cancelled", "compensated"):
                raise RunEndedError(
                    f"run '{run_id}' is {info.status}: it has ended, nothing to resume",
                    run_id=run_id,
                    status=str(info.status),
                )
            dash.continue_run(run_id)

        await in_thread(go)
        return JSONResponse({"run_id": run_id, "requested": "resume"})

    @guarded(True)
    async def api_fork(request: Request) -> Response:
        run_id, data = request.path_params["run_id"], await body(request)
        step = data.get("from_step")
        if not isinstance(step, str) or not step:
            raise WorkflowConfigError("request body: 'from_step' (a step id) is required")
        new_id = await in_thread(dash.fork, run_id, step)
        return JSONResponse({"run_id": new_id, "forked_from": {"run_id": run_id, "step": step}})

    @guarded(True)
    async def api_start(request: Request) -> Response:
        name, data = request.path_params["name"], await body(request)
        inputs = data.get("inputs", {})
        if not isinstance(inputs, dict):
            raise WorkflowConfigError("request body: 'inputs' must be an object")
        run_id = data.get("run_id")

        def go() -> str:
            return dash.start(dash.named_workflow(name), dict(inputs), run_id)

        new_id = await in_thread(go)
        return JSONResponse({"run_id": new_id, "workflow": name}, status_code=201)

    @guarded(False)
    async def api_workflows(request: Request) -> Response:
        from batten.factory import list_workflow_factories

        return JSONResponse(
            {"workflows": sorted(dash.workflows), "factories": sorted(list_workflow_factories())}
        )

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    @guarded(False)
    async def page_runs(request: Request) -> Response:
        return HTMLResponse(_page("Runs", "runs", {}))

    @guarded(False)
    async def page_run(request: Request) -> Response:
        return HTMLResponse(
            _page("Run " + request.path_params["run_id"], "run", request.path_params)
        )

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ("app.js", "style.css"):
            return Response("not found", status_code=404)
        text = resources.files("batten.ui").joinpath("static", name).read_text(encoding="utf-8")
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(text, media_type=kind, headers={"cache-control": "no-cache"})

    routes = [
        Route("/", page_runs),
        Route("/runs/{run_id}", page_run),
        Route("/static/{name}", static),
        Route("/api/openapi.json", openapi),
        Route("/api/runs", api_runs),
        Route("/api/runs/{run_id}", api_run),
        Route("/api/runs/{run_id}/history", api_history),
        Route("/api/runs/{run_id}/approve", decide(True), methods=["POST"]),
        Route("/api/runs/{run_id}/reject", decide(False), methods=["POST"]),
        Route("/api/runs/{run_id}/cancel", api_cancel, methods=["POST"]),
        Route("/api/runs/{run_id}/pause", api_pause, methods=["POST"]),
        Route("/api/runs/{run_id}/resume", api_resume, methods=["POST"]),
        Route("/api/runs/{run_id}/fork", api_fork, methods=["POST"]),
        Route("/api/workflows", api_workflows),
        Route("/api/workflows/{name}/runs", api_start, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.dashboard = dash
    return app


def _page(title: str, kind: str, params: Mapping[str, str]) -> str:
    data = " ".join(f'data-{k.replace("_", "-")}="{escape(v)}"' for k, v in params.items())
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)} · batten</title>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        '<link rel=stylesheet href="/static/style.css"></head>'
        f'<body data-page="{kind}" {data}><header><a href="/">batten</a> '
        f"<span>{escape(title)}</span></header><main id=main>loading…</main>"
        '<script src="/static/app.js"></script></body></html>'
    )


def now() -> float:
    """Unix seconds (a seam for tests)."""
    return time.time()
