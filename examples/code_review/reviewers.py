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
    "approve'. Keep security findings (bandit) apart from lint (ruff): an undefined name is a "
    "bug, not a vulnerability. Findings marked 'test file' are in tests, which do deliberately "
    "what library code must not: never list them as issues to fix first or let them decide "
    "the verdict. After the verdict line give "
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
    """The triage condition: whether the high-severity *security* findings in library code
    reach the threshold (lint errors such as ``F821`` and findings in test files do not count;
    see ``review_tools``).

    Args:
        context: the condition's ``batten.WorkflowContext`` (or anything with a ``results``
            mapping and ``get``): ``context.results["collect"]["totals"]["security_high"]``
            (int; ``"high_severity"`` for a summary from before the split) is compared with the
            variable ``security_threshold`` (int or numeric str; default 1 when missing or
            empty).

    Returns:
        ``security_high >= security_threshold``.

    Raises:
        KeyError: the context has no ``collect`` result.
        ValueError: ``security_threshold`` is not numeric.
    """
    totals = context.results["collect"]["totals"]
    raw = context.get("security_threshold")
    threshold = 1 if raw is None or str(raw).strip() == "" else int(raw)
    high = totals["security_high"] if "security_high" in totals else totals["high_severity"]
    return int(high) >= threshold


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
            "security_findings": [],
            "lint_findings": [],
            "test_findings": [],
            "hot_spots": [],
            "text": text,
        }

    totals = summary.get("totals", {})
    ranked = rank_findings(summary, per_file=PER_FILE)
    library = [f for f in ranked if not f["test_code"]]
    security = [f for f in library if f["category"] == "security"]
    lint = [f for f in library if f["category"] != "security"]
    in_tests = [f for f in ranked if f["test_code"]]
    hot_spots = list(summary.get("hot_spots", []))[:5]
    complex_blocks = int(totals.get("complex_blocks", 0))

    def count(findings: list[dict[str, Any]], severity: str) -> int:
        return sum(1 for f in findings if f["severity"] == severity)

    high_security, high_lint = count(security, "high"), count(lint, "high")
    medium, low = count(library, "medium"), count(library, "low")
    if high_security or high_lint:
        verdict = "request changes"
        parts = []
        if high_security:
            parts.append(f"{high_security} high-severity security finding(s)")
        if high_lint:
            parts.append(f"{high_lint} lint error(s) that break at run time (e.g. undefined names)")
        reason = " and ".join(parts) + " in library code must be fixed first"
    elif medium or complex_blocks:
        verdict = "approve with comments"
        reason = (
            f"no high-severity findings in library code; {medium} medium, {low} low, "
            f"{complex_blocks} function(s) over complexity {COMPLEX_THRESHOLD}"
        )
    else:
        verdict = "approve"
        reason = f"no high- or medium-severity findings in library code ({low} low)"

    lines = [f"## {title} (local reviewer)", "", f"**Verdict:** {verdict}: {reason}.", ""]
    test_code = totals.get("test_code") or {}
    lines.append(
        f"Reviewed {totals.get('files', 0)} files: {len(library)} findings in library code "
        f"({len(security)} security, {len(lint)} lint), {len(in_tests)} in "
        f"{test_code.get('files', 0)} test file(s) (listed apart, not counted in the verdict)."
    )
    if summary.get("missing"):
        lines.append(
            f"{len(summary['missing'])} analyser result(s) are missing (a tool failed on those "
            "files); their findings are not included."
        )

    def section(heading: str, findings: list[dict[str, Any]], note: str = "") -> None:
        shown = findings[:TOP_FINDINGS]
        lines.extend(["", f"### {heading}", ""])
        if note and findings:
            lines.extend([note, ""])
        lines.extend([_finding_line(i, f) for i, f in enumerate(shown, 1)] or ["None."])
        if len(findings) > len(shown):
            lines.append(f"\n…and {len(findings) - len(shown)} more (see the per-file tables).")

    section("Security issues to fix first (bandit, library code)", security)
    section("Lint (ruff, library code)", lint)
    section(
        "In test files (not counted in the verdict)",
        in_tests,
        "Tests do on purpose what library code must not (assert, exec, a shell, fixed "
        "passwords); check these only if the tests themselves handle untrusted input.",
    )
    lines += ["", "### Complexity hot spots", ""]
    lines += [
        f"- `{b['path']}:{b['line']}` {b['type']} `{b['name']}`: complexity "
        f"{b['complexity']} (rank {b['rank']})"
        + (" — consider splitting it" if b["complexity"] > COMPLEX_THRESHOLD else "")
        for b in hot_spots
    ] or ["None."]
    top = (security if kind == "security" else library)[:TOP_FINDINGS]
    return {
        "reviewer": "local",
        "kind": kind,
        "verdict": verdict,
        "top_findings": top,
        "security_findings": security[:TOP_FINDINGS],
        "lint_findings": lint[:TOP_FINDINGS],
        "test_findings": in_tests[:TOP_FINDINGS],
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
        "approve with comments" | "approve", "top_findings": [the security findings below],
        "security_findings": [up to TOP_FINDINGS bandit findings in library code],
        "lint_findings": [up to TOP_FINDINGS ruff findings in library code],
        "test_findings": [up to TOP_FINDINGS findings in test files], "hot_spots": [up to 5
        blocks], "text": markdown}``. Each list is ranked worst severity first, then by the
        file's complexity, at most PER_FILE per file before other files' (``rank_findings``),
        each finding with "path", "file_complexity", "category" and "test_code". The verdict
        counts library code only: "request changes" for a high-severity security finding or a
        lint error that breaks at run time (``F821``...); test files never count and are never
        listed under "fix first". The same input always gives the same output.
    """
    return _review("security", message, context)


async def local_summary_review(message: str, context: Any = None) -> dict[str, Any]:
    """Deterministic general review of the ``collect`` step's summary (no LLM).

    Args:
        message: the digest (``collect``'s ``digest``); used only when the context holds no
            ``collect`` result.
        context: the step's ``batten.WorkflowContext``; ``context.results["collect"]`` is read.

    Returns:
        As ``local_security_review`` with ``"kind": "summary"`` and ``"top_findings"`` every
        library-code finding (both categories), ranked.
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
