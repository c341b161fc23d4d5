"""The dashboard API's OpenAPI 3.1 document (hand-written; served at ``/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

__all__ = ["OPENAPI"]


def _op(
    summary: str, *, body: dict[str, Any] | None = None, params: tuple[str, ...] | list[str] = ()
) -> Any:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "400": {"description": "bad input: {error, message} naming the field"},
            "401": {"description": "the dashboard's token is required"},
            "403": {"description": "refused (not an approver, cross-origin)"},
            "404": {"description": "no such run"},
            "409": {
                "description": "the run's state does not allow it (ended; or leased by a live "
                "process: then `owner` names it)"
            },
        },
        "parameters": [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ],
    }
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "properties": body}}},
        }
    return op


_S = {"type": "string"}
_RUN = ["run_id"]

#: The OpenAPI document.
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "batten dashboard API", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}, {}],
    "paths": {
        "/api/runs": {
            "get": {
                **_op("List runs, newest first (paginated by cursor)"),
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": t}, "description": d}
                    for n, t, d in (
                        ("status", "string", "a WorkflowStatus value"),
                        ("workflow", "string", "a workflow id"),
                        ("since", "number", "created at or after (unix seconds)"),
                        ("until", "number", "created at or before (unix seconds)"),
                        ("q", "string", "substring of the run id"),
                        ("limit", "integer", "1..500, default 50"),
                        ("cursor", "string", "next_cursor of the previous page"),
                    )
                ],
            }
        },
        "/api/runs/{run_id}": {"get": _op("A run: record, steps, timeline, graph", params=_RUN)},
        "/api/runs/{run_id}/history": {"get": _op("A run's step history", params=_RUN)},
        "/api/runs/{run_id}/approve": {
            "post": _op(
                "Approve a waiting step (then the run continues)",
                body={"step": _S, "comment": _S, "resume": {"type": "boolean"}},
                params=_RUN,
            )
        },
        "/api/runs/{run_id}/reject": {
            "post": _op(
                "Reject a waiting step (then the run continues)",
                body={"step": _S, "comment": _S, "resume": {"type": "boolean"}},
                params=_RUN,
            )
        },
        "/api/runs/{run_id}/cancel": {"post": _op("Cancel a run", body={}, params=_RUN)},
        "/api/runs/{run_id}/pause": {"post": _op("Pause a run", body={}, params=_RUN)},
        "/api/runs/{run_id}/resume": {
            "post": _op("Resume a run (failed steps run again)", body={}, params=_RUN)
        },
        "/api/runs/{run_id}/fork": {
            "post": _op(
                "Fork a run from a step into a new run", body={"from_step": _S}, params=_RUN
            )
        },
        "/api/workflows": {"get": _op("Workflows the dashboard can start")},
        "/api/workflows/{name}/runs": {
            "post": _op(
                "Start a registered workflow, factory or workflow file by name",
                body={"inputs": {"type": "object"}, "run_id": _S},
                params=["name"],
            )
        },
    },
}
