"""Reviewers of the code-review workflow: the triage condition and the two reviewer agents.

``security_reviewer`` and ``summary_reviewer`` are chosen when this module is imported:

- with ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` set (and the ``openai-agents`` package
  installed), OpenAI Agents SDK ``agents.Agent`` objects, which batten runs through its adapter
  (``Runner.run(agent, message)``; the step's output is the reply text). The model is
  ``$BATTEN_REVIEW_MODEL`` (default ``gpt-4o-mini``); with ``OPENAI_BASE_URL`` the agents talk to
  that OpenAI-compatible server through the Chat Completions API (``OPENAI_API_KEY`` optional
  there) and the SDK's tracing, which would upload to OpenAI, is turned off;
- otherwise (or with ``BATTEN_REVIEWER=local``) deterministic local reviewers,
  ``local_security_review`` and ``local_summary_review``, which rank the ``collect`` step's
  findings by severity, then by the complexity of their file, and write a markdown review.

``reviewer_mode()`` says which (``"llm"`` or ``"local"``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from review_tools import COMPLEX_THRESHOLD, rank_findings

__all__ = [
    "DEFAULT_MODEL",
    "PER_FILE",
    "TOP_FINDINGS",
    "local_security_review",
    "local_summary_review",
    "needs_security_review",
    "reviewer_mode",
    "security_reviewer",
    "summary_reviewer",
]

_log = logging.getLogger(__name__)

#: The model when ``BATTEN_REVIEW_MODEL`` is not set.
DEFAULT_MODEL = "gpt-4o-mini"
#: How many findings a local review lists.
TOP_FINDINGS = 15
#: At most this many of them from one file before other files' findings (see rank_findings).
PER_FILE = 3

_INSTRUCTIONS_COMMON = (
    "You receive a digest of static-analysis results for a Python codebase: totals, the worst "
    "findings (severity, file:line, tool, rule code, message) from ruff (lint), bandit "
    "(security) and radon (cyclomatic complexity hot spots). Only discuss what the digest "
    "shows; do not invent files, lines or findings. Answer in GitHub-flavoured markdown, "
    "under 400 words: first a line '**Verdict:** request changes | approve with comments | "
    "approve', then "
)
SECURITY_INSTRUCTIONS = _INSTRUCTIONS_COMMON + (
    "the security issues to fix first (file:line, why it is dangerous, the concrete fix), "
    "then other high-severity defects, then which complex functions deserve a careful look "
    "because they hide those issues."
)
SUMMARY_INSTRUCTIONS = _INSTRUCTIONS_COMMON + (
    "a short assessment of the code's health, the five most valuable fixes (file:line and the "
    "fix), and the complexity hot spots worth refactoring, with a suggested approach for each."
)


# --------------------------------------------------------------------------------------------
# triage


def needs_security_review(context: Any) -> bool:
    """The triage condition: whether the high-severity findings reach the threshold.

    Args:
        context: the condition's ``batten.WorkflowContext`` (or anything with a ``results``
            mapping and ``get``): ``context.results["collect"]["totals"]["high_severity"]``
            (int) is compared with the variable ``security_threshold`` (int or numeric str;
            default 1 when missing or empty).

    Returns:
        ``high_severity >= security_threshold``.

    Raises:
        KeyError: the context has no ``collect`` result.
        ValueError: ``security_threshold`` is not numeric.
    """
    totals = context.results["collect"]["totals"]
    raw = context.get("security_threshold")
    threshold = 1 if raw is None or str(raw).strip() == "" else int(raw)
    return int(totals["high_severity"]) >= threshold


# --------------------------------------------------------------------------------------------
# local reviewers


def _summary_from(context: Any) -> dict[str, Any] | None:
    results: Any = getattr(context, "results", None)
    summary = results.get("collect") if hasattr(results, "get") else None
    return dict(summary) if isinstance(summary, Mapping) else None


def _clip(value: Any, width: int = 140) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _finding_line(i: int, f: Mapping[str, Any]) -> str:
    line = f"{i}. `{f['path']}:{f['line']}` **{f['severity']}** {f['tool']} `{f['code']}`: "
    line += _clip(f["message"])
    if f["file_complexity"]:
        line += f" (file max complexity {f['file_complexity']})"
    return line


def _review(kind: str, message: str, context: Any) -> dict[str, Any]:
    summary = _summary_from(context)
    title = "Security review" if kind == "security" else "Review summary"
    if summary is None:  # no structured results: review the digest text as is
        text = (
            f"## {title} (local reviewer)\n\n**Verdict:** comment (no analyser results were "
            f"available to rank)\n\n```\n{message.strip()}\n```\n"
        )
        return {
            "reviewer": "local",
            "kind": kind,
            "verdict": "comment",
            "top_findings": [],
            "hot_spots": [],
            "text": text,
        }

    totals = summary.get("totals", {})
    sev = totals.get("by_severity", {})
    high, medium, low = (int(sev.get(s, 0)) for s in ("high", "medium", "low"))
    ranked = rank_findings(summary, per_file=PER_FILE)
    if kind == "security":
        # Security first: every bandit finding and every high-severity one, worst first.
        ranked = [f for f in ranked if f.get("tool") == "bandit" or f["severity"] == "high"]
    top = ranked[:TOP_FINDINGS]
    hot_spots = list(summary.get("hot_spots", []))[:5]
    complex_blocks = int(totals.get("complex_blocks", 0))

    if high:
        verdict = "request changes"
        reason = f"{high} high-severity finding(s) must be fixed first"
    elif medium or complex_blocks:
        verdict = "approve with comments"
        reason = (
            f"no high-severity findings; {medium} medium, {low} low, "
            f"{complex_blocks} function(s) over complexity {COMPLEX_THRESHOLD}"
        )
    else:
        verdict = "approve"
        reason = f"no high- or medium-severity findings ({low} low)"

    lines = [f"## {title} (local reviewer)", "", f"**Verdict:** {verdict}: {reason}.", ""]
    lines.append(
        f"Reviewed {totals.get('files', 0)} files: {totals.get('findings', 0)} findings "
        f"(high {high}, medium {medium}, low {low})."
    )
    if summary.get("missing"):
        lines.append(
            f"{len(summary['missing'])} analyser result(s) are missing (a tool failed on those "
            "files); their findings are not included."
        )
    heading = "Security issues to fix first" if kind == "security" else "Fix first"
    lines += ["", f"### {heading}", ""]
    lines += [_finding_line(i, f) for i, f in enumerate(top, 1)] or ["None."]
    if len(ranked) > len(top):
        lines.append(f"\n…and {len(ranked) - len(top)} more (see the per-file tables).")
    lines += ["", "### Complexity hot spots", ""]
    lines += [
        f"- `{b['path']}:{b['line']}` {b['type']} `{b['name']}`: complexity "
        f"{b['complexity']} (rank {b['rank']})"
        + (" — consider splitting it" if b["complexity"] > COMPLEX_THRESHOLD else "")
        for b in hot_spots
    ] or ["None."]
    return {
        "reviewer": "local",
        "kind": kind,
        "verdict": verdict,
        "top_findings": top,
        "hot_spots": hot_spots,
        "text": "\n".join(lines) + "\n",
    }


async def local_security_review(message: str, context: Any = None) -> dict[str, Any]:
    """Deterministic security review of the ``collect`` step's summary (no LLM).

    Args:
        message: the digest (``collect``'s ``digest``); used only when the context holds no
            ``collect`` result.
        context: the step's ``batten.WorkflowContext``; ``context.results["collect"]`` is read.

    Returns:
        ``{"reviewer": "local", "kind": "security", "verdict": "request changes" |
        "approve with comments" | "approve", "top_findings": [up to TOP_FINDINGS findings:
        bandit's and every high-severity one, worst severity first, then by the file's
        complexity, at most PER_FILE per file before other files' (``rank_findings``); each
        with "path" and "file_complexity"], "hot_spots": [up to 5 blocks], "text":
        markdown}``. The same input always gives the same output.
    """
    return _review("security", message, context)


async def local_summary_review(message: str, context: Any = None) -> dict[str, Any]:
    """Deterministic general review of the ``collect`` step's summary (no LLM).

    Args:
        message: the digest (``collect``'s ``digest``); used only when the context holds no
            ``collect`` result.
        context: the step's ``batten.WorkflowContext``; ``context.results["collect"]`` is read.

    Returns:
        As ``local_security_review`` with ``"kind": "summary"``, ranking every finding.
    """
    return _review("summary", message, context)


# --------------------------------------------------------------------------------------------
# choice at import time


def _llm_agents() -> tuple[Any, Any] | None:
    """The two SDK agents, or ``None`` when the SDK is not installed."""
    try:
        import agents
    except ImportError:
        _log.warning(
            "OPENAI_API_KEY/OPENAI_BASE_URL is set but openai-agents is not installed "
            "(pip install openai-agents): using the local reviewers"
        )
        return None
    model_name = os.environ.get("BATTEN_REVIEW_MODEL") or DEFAULT_MODEL
    model: Any = model_name
    base_url = os.environ.get("OPENAI_BASE_URL")
    if base_url:
        import openai

        client = openai.AsyncOpenAI(
            base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "unused")
        )
        model = agents.OpenAIChatCompletionsModel(model=model_name, openai_client=client)
        agents.set_tracing_disabled(True)
    security = agents.Agent(
        name="security_reviewer", instructions=SECURITY_INSTRUCTIONS, model=model
    )
    summary = agents.Agent(name="summary_reviewer", instructions=SUMMARY_INSTRUCTIONS, model=model)
    return security, summary


def _choose() -> tuple[str, Any, Any]:
    wants_llm = bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))
    if wants_llm and os.environ.get("BATTEN_REVIEWER", "").lower() != "local":
        pair = _llm_agents()
        if pair is not None:
            return "llm", pair[0], pair[1]
    return "local", local_security_review, local_summary_review


_MODE, security_reviewer, summary_reviewer = _choose()


def reviewer_mode() -> str:
    """``"llm"`` when ``security_reviewer``/``summary_reviewer`` are OpenAI Agents SDK agents,
    ``"local"`` when they are the deterministic local reviewers (decided at import)."""
    return _MODE
