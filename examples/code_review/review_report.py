"""The report step of the code-review workflow: ``report.md`` for people, ``report.json`` for
tools."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from review_tools import CATEGORIES, is_test_path

__all__ = ["FINDINGS_PER_FILE", "write_report"]

#: At most this many findings per file in ``report.md`` (``report.json`` has them all).
FINDINGS_PER_FILE = 5

_SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}


def _cell(value: Any, width: int = 160) -> str:
    """``value`` as one markdown table cell: one line, pipes escaped, clipped to ``width``."""
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def _review_text(review: Any) -> str:
    if review is None:
        return "_No review was produced (the review step did not run)._"
    if isinstance(review, Mapping):
        for key in ("text", "output", "final_output"):
            if isinstance(review.get(key), str):
                return str(review[key]).strip()
        return "```json\n" + json.dumps(review, indent=2, default=str) + "\n```"
    return str(review).strip()


def _review_section(review: Any) -> list[str]:
    """The review as report lines: under a "Review" heading unless it brings its own."""
    text = _review_text(review)
    return [text] if text.startswith("## ") else ["## Review", "", text]


def _jsonable_review(review: Any) -> Any:
    try:
        json.dumps(review)
    except (TypeError, ValueError):
        return str(review)
    return review


def _worst(record: Mapping[str, Any]) -> int:
    return min((_SEVERITY_RANK.get(f.get("severity"), 3) for f in record["findings"]), default=3)


def _is_test(record: Mapping[str, Any]) -> bool:
    if "test_code" in record:
        return bool(record["test_code"])
    return is_test_path(str(record.get("path", "")))


def _split_totals(totals: Mapping[str, Any]) -> list[str]:
    """The totals split by kind: security (bandit) and lint (ruff) in library code, and what is
    in test files."""
    security, lint = totals.get("security"), totals.get("lint")
    if not isinstance(security, Mapping) or not isinstance(lint, Mapping):
        return []  # a summary from before the split

    def sev(counts: Mapping[str, Any]) -> str:
        return f"{counts.get('high', 0)} | {counts.get('medium', 0)} | {counts.get('low', 0)}"

    tests = totals.get("test_code") or {}
    return [
        "| Library code | High | Medium | Low |",
        "|---|---:|---:|---:|",
        f"| Security (bandit) | {sev(security)} |",
        f"| Lint (ruff) | {sev(lint)} |",
        "",
        f"Test files: {tests.get('files', 0)}, with {tests.get('findings', 0)} finding(s) "
        f"({tests.get('security', 0)} security, {tests.get('lint', 0)} lint), listed apart "
        "and not counted in the verdict.",
    ]


def _file_sections(records: list[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    for record in records:
        findings = record["findings"]
        worst = findings[0].get("severity", "low") if findings else "low"
        out += [
            f"### `{record['path']}`",
            "",
            f"{len(findings)} finding(s), worst {worst}; max complexity "
            f"{record.get('max_complexity', 0)}.",
            "",
            "| Line | Severity | Tool | Kind | Code | Message |",
            "|---:|---|---|---|---|---|",
        ]
        shown = sorted(
            findings, key=lambda f: (_SEVERITY_RANK.get(f.get("severity"), 3), f.get("line", 0))
        )[:FINDINGS_PER_FILE]
        out += [
            f"| {f.get('line', '')} | {f.get('severity', '')} | {f.get('tool', '')} "
            f"| {f.get('category') or CATEGORIES.get(f.get('tool', ''), '')} "
            f"| `{_cell(f.get('code', ''))}` | {_cell(f.get('message', ''))} |"
            for f in shown
        ]
        if len(findings) > len(shown):
            out.append(f"\n…and {len(findings) - len(shown)} more in `report.json`.")
        out.append("")
    return out


def _markdown(summary: Mapping[str, Any], review: Any, target: str, generated_at: str) -> str:
    totals = summary.get("totals", {})
    sev = totals.get("by_severity", {})
    tools = totals.get("by_tool", {})
    out = [
        f"# Code review: `{target}`",
        "",
        f"Generated {generated_at} by the batten `code_review` example (ruff, radon, bandit).",
        "",
        "## Totals",
        "",
        "| Files | Findings | High | Medium | Low | Complex functions | Missing results |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {totals.get('files', 0)} | {totals.get('findings', 0)} | {sev.get('high', 0)} "
        f"| {sev.get('medium', 0)} | {sev.get('low', 0)} | {totals.get('complex_blocks', 0)} "
        f"| {totals.get('missing', len(summary.get('missing', [])))} |",
        "",
        "By tool: " + (", ".join(f"{t} {n}" for t, n in tools.items()) or "none") + ".",
        "",
        *_split_totals(totals),
        "",
        *_review_section(review),
        "",
        "## Complexity hot spots",
        "",
    ]
    spots = summary.get("hot_spots", [])
    if spots:
        out += ["| File | Line | Block | Type | Complexity | Rank |", "|---|---:|---|---|---:|---|"]
        out += [
            f"| `{_cell(b['path'])}` | {b.get('line', '')} | `{_cell(b.get('name', '?'))}` "
            f"| {b.get('type', '')} | {b.get('complexity', '')} | {b.get('rank', '')} |"
            for b in spots
        ]
    else:
        out.append("None.")
    records = [r for r in summary.get("files", []) if r.get("findings")]
    # Worst severity first, then the files with most findings, then by path.
    records.sort(key=lambda r: (_worst(r), -len(r["findings"]), r["path"]))
    library = [r for r in records if not _is_test(r)]
    tests = [r for r in records if _is_test(r)]
    out += ["", "## Findings in library code", ""]
    out += _file_sections(library) if library else ["No findings."]
    if tests:
        out += [
            "",
            "## Findings in test files",
            "",
            "Not counted in the verdict: tests do on purpose what library code must not "
            "(assert, exec, a shell, fixed passwords).",
            "",
            *_file_sections(tests),
        ]
    out.append("")
    missing = summary.get("missing", [])
    if missing:
        out += ["## Missing analyser results", ""]
        out += [f"- {m.get('tool', '?')}: `{m.get('path', '?')}`" for m in missing]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _write(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (a reader never sees half a report)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(
    summary: dict[str, Any], review: dict[str, Any] | str | None, out_dir: str, target: str
) -> dict[str, Any]:
    """Writes ``out_dir/report.md`` and ``out_dir/report.json`` (``out_dir`` is created).

    Args:
        summary: ``review_tools.collect``'s output.
        review: the triage step's output: a local reviewer's dict (its ``"text"`` is shown), an
            LLM reviewer's reply (str), or ``None`` (no review ran).
        out_dir: directory for the two files (str path; created with its parents).
        target: the reviewed directory, as given (shown in the title).

    ``report.md``: title, totals table (then security and lint counts of library code and the
    test files' count apart), the review text, the complexity hot spots, and per file (files
    with findings only, worst severity first, then most findings; library code first, test
    files in a section of their own) at most ``FINDINGS_PER_FILE`` findings, each with its
    kind (security or lint). ``report.json``: ``{"target", "generated_at" (UTC ISO
    8601), "totals", "review", "files", "hot_spots", "missing"}`` with every finding.

    Returns:
        ``{"markdown": absolute path of report.md, "json": absolute path of report.json,
        "files": int, "findings": int, "high_severity": int}``.

    Raises:
        OSError: ``out_dir`` cannot be created or written.
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    generated_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    totals = dict(summary.get("totals", {}))
    md_path, json_path = out / "report.md", out / "report.json"
    _write(md_path, _markdown(summary, review, target, generated_at))
    document = {
        "target": target,
        "generated_at": generated_at,
        "totals": totals,
        "review": _jsonable_review(review),
        "files": summary.get("files", []),
        "hot_spots": summary.get("hot_spots", []),
        "missing": summary.get("missing", []),
    }
    _write(json_path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return {
        "markdown": str(md_path),
        "json": str(json_path),
        "files": int(totals.get("files", 0)),
        "findings": int(totals.get("findings", 0)),
        "high_severity": int(totals.get("high_severity", 0)),
    }
