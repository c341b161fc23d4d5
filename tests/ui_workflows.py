"""Workflows the dashboard tests drive (tests/test_ui.py, tests/test_ui_browser.py): one that
waits for a human approval, one whose middle step fails until told not to."""

from __future__ import annotations

from typing import Any

from batten import HumanApprovalStep, ToolStep, Workflow

#: Set ``FLAKY["fail"] = False`` to make ``flaky``'s ``fetch`` succeed.
FLAKY: dict[str, Any] = {"fail": True, "calls": []}


def approval_workflow(approvers: list[str] | None = None) -> Workflow:
    """prepare -> review (approval) -> publish."""

    def prepare() -> dict[str, int]:
        return {"files": 3}

    def publish() -> str:
        return "published"

    wf = Workflow("reviewed", name="Reviewed change")
    wf.add_step(ToolStep("prepare", prepare))
    wf.add_step(HumanApprovalStep("review", "Ship it?", approvers=approvers))
    wf.add_step(ToolStep("publish", publish))
    return wf


def flaky_workflow() -> Workflow:
    """load -> fetch (fails while ``FLAKY["fail"]``) -> report, with ``side`` beside fetch."""

    def load() -> int:
        FLAKY["calls"].append("load")
        return 41

    def fetch() -> int:
        FLAKY["calls"].append("fetch")
        if FLAKY["fail"]:
            raise ConnectionError("upstream said no")
        return 42

    def report() -> str:
        FLAKY["calls"].append("report")
        return "ok"

    def side() -> str:
        FLAKY["calls"].append("side")
        return "side"

    wf = Workflow("flaky", name="Flaky fetch")
    wf.add_step(ToolStep("load", load))
    wf.add_step(ToolStep("fetch", fetch), depends_on=["load"])
    wf.add_step(ToolStep("side", side), depends_on=["load"])
    wf.add_step(ToolStep("report", report), depends_on=["fetch"])
    return wf
