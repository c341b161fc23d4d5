"""Tools of the code-review workflow: find the Python files, run real analysers on each, merge.

The analysers run as subprocesses, one file per call, so batten's ``MapStep`` bounds how many run
at once and its per-item timeout and retry apply to each file:

- ``ruff check`` (lint; JSON output, ``--isolated`` so the reviewed project's own ruff
  configuration does not change what is reported),
- ``radon cc`` (cyclomatic complexity per function, method and class),
- ``bandit`` (security issues).

Every result is a JSON-able dict (batten checkpoints step outputs as JSON), and paths in results
stay relative to the reviewed root (POSIX separators).

Ruff severity mapping (``ruff_severity``), from "breaks at run time" to "style":

- ``high``: syntax errors (ruff's ``invalid-syntax``, a missing code, or ``E999``), undefined
  names (``F821``, ``F822``, ``F823``) and statements that cannot run where they are
  (``F7xx``: ``break``/``continue`` outside a loop, ``return``/``yield``/``await`` outside a
  function...);
- ``medium``: the other pyflakes findings (``F``: unused imports and variables, redefinitions,
  f-strings without placeholders...), ``E9`` (I/O errors reading the file), ``E722`` (bare
  ``except``) and flake8-bugbear (``B``: likely bugs);
- ``low``: everything else (``E4``/``E7`` style).

Bandit's own severities (``LOW``/``MEDIUM``/``HIGH``, ``UNDEFINED`` counts as low) are kept.

Two distinctions keep the verdict honest (``collect`` records both):

- a finding's ``category`` is ``"security"`` (bandit) or ``"lint"`` (ruff): an undefined name is
  a bug, not a vulnerability, and is never listed as a security issue;
- a file is test code (``is_test_path``: ``test_*.py``, ``*_test.py``, ``conftest.py``, or under
  a ``test``/``tests`` directory or one named ``*_test``/``*_tests``, such as ``idle_test/``)
  or library code. Tests deliberately do what library code must not (``assert``, ``exec``,
  ``subprocess`` with a shell, hard-coded passwords), so their findings are reported apart and
  do not count towards the verdict or the triage.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pathspec

__all__ = [
    "COMPLEX_THRESHOLD",
    "RUFF_RULES",
    "SEVERITIES",
    "AnalyserError",
    "collect",
    "discover_files",
    "is_test_path",
    "rank_findings",
    "ruff_severity",
    "run_bandit",
    "run_radon",
    "run_ruff",
]

#: Severities, worst first.
SEVERITIES: tuple[str, ...] = ("high", "medium", "low")
_SEVERITY_RANK = {name: i for i, name in enumerate(SEVERITIES)}

#: A finding's category by the tool that reported it.
CATEGORIES: dict[str, str] = {"bandit": "security", "ruff": "lint"}

#: Ruff rule selection: ruff's defaults (E4, E7, E9, F) plus flake8-bugbear (B).
RUFF_RULES = "E4,E7,E9,F,B"

#: A function or method whose cyclomatic complexity is above this is a "complex block"
#: (radon's rank C and worse).
COMPLEX_THRESHOLD = 10

#: How many blocks ``collect`` lists as hot spots, and findings/hot spots the digest shows.
HOT_SPOTS = 10
DIGEST_FINDINGS = 20
#: At most this many of the digest's top findings come from one file (more only to fill it).
DIGEST_PER_FILE = 3
#: Upper bound of the digest's length in characters (it is an LLM prompt).
DIGEST_MAX_CHARS = 6000

_STDERR_EXCERPT = 600  # characters of a failing analyser's stderr kept in AnalyserError


class AnalyserError(RuntimeError):
    """An analyser crashed on one file: an unexpected exit code, a signal, or output that is
    not the JSON it promises. A ``RuntimeError``, so batten's default retry policy retries it.

    Args:
        tool: ``"ruff"``, ``"radon"`` or ``"bandit"``.
        path: the file, relative to the reviewed root.
        detail: what went wrong, with an excerpt of the analyser's stderr.
    """

    def __init__(self, tool: str, path: str, detail: str) -> None:
        super().__init__(f"{tool} failed on {path}: {detail}")
        self.tool = tool
        self.path = path
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.tool, self.path, self.detail))


# --------------------------------------------------------------------------------------------
# discover


def _parse_limit(limit: int | str | None) -> int | None:
    if limit is None or (isinstance(limit, str) and not limit.strip()):
        return None
    try:
        if isinstance(limit, bool | float):
            raise TypeError
        value = int(limit)
    except (TypeError, ValueError):
        raise ValueError(f"limit must be an int or a numeric str, got {limit!r}") from None
    if value < 0:
        raise ValueError(f"limit must be >= 0, got {value}")
    return value


def _read_spec(file: Path) -> pathspec.GitIgnoreSpec | None:
    try:
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:  # unreadable or vanished: git ignores it too
        return None
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    return spec if len(spec.patterns) else None


def _ignored(specs: Sequence[tuple[str, pathspec.GitIgnoreSpec]], rel: str, is_dir: bool) -> bool:
    """Whether ``rel`` (POSIX, relative to the root) is ignored: the deepest ``.gitignore`` with
    a matching pattern decides, and within one file the last matching pattern (git's rules)."""
    for base, spec in reversed(specs):
        sub = rel[len(base) + 1 :] if base else rel
        result = spec.check_file(sub + "/" if is_dir else sub)
        if result.include is not None:
            return bool(result.include)
    return False


def discover_files(root: str, limit: int | str | None = None) -> list[str]:
    """Lists the Python files (``*.py``) under ``root`` that git would not ignore.

    Honours every ``.gitignore`` below ``root`` (root's and nested ones, with git's semantics:
    patterns are relative to their file's directory, a deeper file overrides a shallower one,
    ``!pattern`` re-includes, and nothing inside an ignored directory can be re-included) plus
    ``root/.git/info/exclude``; the ``.git`` directory itself is skipped. Symlinked directories
    are not followed.

    Args:
        root: the directory to review (str path).
        limit: at most this many files (an int, or a numeric str as CLI inputs arrive);
            ``None`` or ``""``: no cap. The first ``limit`` of the sorted list are kept.

    Returns:
        Relative POSIX paths (``"pkg/mod.py"``), sorted, so the order is deterministic.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        NotADirectoryError: ``root`` is not a directory.
        ValueError: ``limit`` is negative or not numeric.
    """
    cap = _parse_limit(limit)
    top = Path(root)
    if not top.exists():
        raise FileNotFoundError(f"review target {root!r} does not exist")
    if not top.is_dir():
        raise NotADirectoryError(f"review target {root!r} is not a directory")

    found: list[str] = []
    # (directory relative to root, its spec); ancestors of the directory being walked only.
    stack: list[tuple[str, pathspec.GitIgnoreSpec]] = []
    exclude = _read_spec(top / ".git" / "info" / "exclude")
    if exclude is not None:
        stack.append(("", exclude))

    for dirpath, dirnames, filenames in os.walk(top):
        rel_dir = Path(dirpath).relative_to(top).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        # Drop the specs of directories that are not ancestors of this one.
        stack = [(b, s) for b, s in stack if not b or rel_dir == b or rel_dir.startswith(b + "/")]
        if ".gitignore" in filenames:
            spec = _read_spec(Path(dirpath) / ".gitignore")
            if spec is not None:
                stack.append((rel_dir, spec))
        prefix = rel_dir + "/" if rel_dir else ""
        dirnames[:] = sorted(
            d for d in dirnames if d != ".git" and not _ignored(stack, prefix + d, is_dir=True)
        )
        for name in sorted(filenames):
            if name.endswith(".py") and not _ignored(stack, prefix + name, is_dir=False):
                if os.path.isfile(os.path.join(dirpath, name)):  # not a dangling symlink
                    found.append(prefix + name)
    found.sort()
    return found if cap is None else found[:cap]


# --------------------------------------------------------------------------------------------
# analysers


@functools.cache
def _ruff_bin() -> str:
    try:
        from ruff import find_ruff_bin

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("ruff")
        if found is None:
            raise FileNotFoundError("the ruff executable was not found: pip install ruff") from None
        return found


def _ruff_argv(file: str) -> list[str]:
    # The interpreter's version, so ruff reports the syntax errors radon and bandit (which parse
    # with this interpreter's ast) would hit.
    target = f"py3{sys.version_info.minor}"
    return [
        _ruff_bin(),
        "check",
        "--output-format",
        "json",
        "--isolated",
        "--no-cache",
        "--exit-zero",
        "--select",
        RUFF_RULES,
        "--target-version",
        target,
        file,
    ]


def _radon_argv(file: str) -> list[str]:
    return [sys.executable, "-m", "radon", "cc", "-j", "-s", file]


def _bandit_argv(file: str) -> list[str]:
    return [sys.executable, "-m", "bandit", "-f", "json", "-q", file]


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Kills ``proc`` if it still runs and waits for it, even if cancelled again meanwhile."""
    if proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    while True:
        try:
            await proc.wait()
            return
        except asyncio.CancelledError:  # a second cancel: the child must still be reaped
            continue


async def _run(tool: str, path: str, argv: list[str], ok: Iterable[int]) -> Any:
    """Runs ``argv``, returns its stdout parsed as JSON; kills and reaps the child if the
    caller is cancelled (batten cancels a step at its timeout)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await proc.communicate()
    except BaseException:
        await _reap(proc)
        raise
    stderr = err.decode("utf-8", "replace").strip()[-_STDERR_EXCERPT:]
    if proc.returncode not in set(ok):
        raise AnalyserError(tool, path, f"exit code {proc.returncode}; stderr: {stderr or '-'}")
    try:
        return json.loads(out)
    except ValueError:
        excerpt = out.decode("utf-8", "replace").strip()[:200]
        raise AnalyserError(
            tool, path, f"output is not JSON ({excerpt!r}); stderr: {stderr or '-'}"
        ) from None


def _file(root: str, path: str) -> str:
    file = os.path.join(root, path)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{path!r} is not a file under {root!r}")
    return file


def is_test_path(path: str) -> bool:
    """Whether ``path`` (relative, POSIX or native separators) is test code: a file named
    ``test_*.py``, ``*_test.py`` or ``conftest.py``, or any file under a directory named
    ``test``, ``tests``, ``*_test`` or ``*_tests`` (pytest's and unittest's conventions;
    ``idlelib/idle_test/``, ``Lib/test/``)."""
    parts = Path(path).parts
    if not parts:
        return False
    name = parts[-1]
    if name == "conftest.py" or name.startswith("test_") or name.endswith("_test.py"):
        return True
    return any(d in ("test", "tests") or d.endswith(("_test", "_tests")) for d in parts[:-1])


def ruff_severity(code: str | None) -> str:
    """The severity (``"high"``, ``"medium"`` or ``"low"``) of a ruff rule code; see the module
    docstring for the mapping. ``None`` (old ruff's syntax errors) is ``"high"``."""
    if code is None or code in {"invalid-syntax", "E999", "F821", "F822", "F823"}:
        return "high"
    if code.startswith("F7"):
        return "high"
    if code.startswith(("F", "E9", "B")) or code == "E722":
        return "medium"
    return "low"


async def run_ruff(root: str, path: str) -> dict[str, Any]:
    """Lints one file with ``ruff check`` (rules ``RUFF_RULES``, the reviewed project's ruff
    configuration ignored).

    Args:
        root: the reviewed directory.
        path: the file, relative to ``root``.

    Returns:
        ``{"path": path, "findings": [{"tool": "ruff", "code": "F401", "message": str,
        "line": int (1-based), "severity": "high"|"medium"|"low"}, ...]}`` (``ruff_severity``
        maps codes to severities; a syntax error has code ``"invalid-syntax"``).

    Raises:
        FileNotFoundError: ``root/path`` is not a file, or ruff is not installed.
        AnalyserError: ruff crashed or printed something that is not its JSON report.
        asyncio.CancelledError: when cancelled; the ruff process is killed and reaped first.
    """
    report = await _run("ruff", path, _ruff_argv(_file(root, path)), ok=(0, 1))
    if not isinstance(report, list):
        raise AnalyserError("ruff", path, f"expected a JSON list, got {type(report).__name__}")
    findings = []
    for item in report:
        code = item.get("code") or None
        location = item.get("location") or {}
        findings.append(
            {
                "tool": "ruff",
                "code": code or "invalid-syntax",
                "message": str(item.get("message", "")),
                "line": int(location.get("row") or 0),
                "severity": ruff_severity(code),
            }
        )
    findings.sort(key=_finding_order)
    return {"path": path, "findings": findings}


def _radon_blocks(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []

    def add(entry: dict[str, Any], name: str, kind: str) -> None:
        blocks.append(
            {
                "name": name,
                "type": kind,
                "line": int(entry.get("lineno", 0)),
                "complexity": int(entry.get("complexity", 0)),
                "rank": str(entry.get("rank", "?")),
            }
        )
        for closure in entry.get("closures") or ():  # nested functions, flattened
            add(closure, f"{name}.{closure.get('name', '?')}", "function")

    for entry in entries:
        kind = entry.get("type", "function")
        name = str(entry.get("name", "?"))
        if kind == "method" and entry.get("classname"):
            name = f"{entry['classname']}.{name}"
        # A class entry repeats its methods, which radon also lists on their own: not recursed.
        add(entry, name, kind if kind in {"function", "method", "class"} else "function")
    blocks.sort(key=lambda b: (b["line"], b["name"]))
    return blocks


async def run_radon(root: str, path: str) -> dict[str, Any]:
    """Measures the cyclomatic complexity of one file's functions, methods and classes with
    ``radon cc``.

    Args:
        root: the reviewed directory.
        path: the file, relative to ``root``.

    Returns:
        ``{"path": path, "blocks": [{"name": str ("Class.method", "outer.inner" for closures),
        "type": "function"|"method"|"class", "line": int, "complexity": int, "rank": "A".."F"},
        ...] (by line), "max_complexity": int, "average_complexity": float}``. The maximum and
        average are over functions and methods only (a class's complexity summarises its
        methods'); 0 when the file has none. A file radon cannot parse gets no blocks and an
        ``"error"`` key with radon's message (ruff reports the syntax error itself).

    Raises:
        FileNotFoundError: ``root/path`` is not a file.
        AnalyserError: radon crashed or printed something that is not its JSON report.
        asyncio.CancelledError: when cancelled; the radon process is killed and reaped first.
    """
    report = await _run("radon", path, _radon_argv(_file(root, path)), ok=(0,))
    if not isinstance(report, dict) or len(report) > 1:
        raise AnalyserError("radon", path, f"unexpected report {str(report)[:200]!r}")
    result: dict[str, Any] = {"path": path, "blocks": [], "max_complexity": 0}
    result["average_complexity"] = 0.0
    if not report:  # radon prints {} for a file without functions or classes
        return result
    (entries,) = report.values()
    if isinstance(entries, dict):  # {"error": "invalid syntax (<unknown>, line 3)"}
        result["error"] = str(entries.get("error", entries))
        return result
    blocks = _radon_blocks(entries)
    scores = [b["complexity"] for b in blocks if b["type"] != "class"]
    result["blocks"] = blocks
    if scores:
        result["max_complexity"] = max(scores)
        result["average_complexity"] = round(sum(scores) / len(scores), 2)
    return result


async def run_bandit(root: str, path: str) -> dict[str, Any]:
    """Looks for security issues in one file with ``bandit`` (all its default tests).

    Args:
        root: the reviewed directory.
        path: the file, relative to ``root``.

    Returns:
        ``{"path": path, "findings": [{"tool": "bandit", "code": "B602", "message": str,
        "line": int, "severity": "high"|"medium"|"low", "confidence": "high"|"medium"|"low"},
        ...]}``; files bandit could not scan (a syntax error) also get ``"errors": [reason]``.

    Raises:
        FileNotFoundError: ``root/path`` is not a file.
        AnalyserError: bandit exited with a code other than 0 (clean) or 1 (issues found), or
            printed something that is not its JSON report.
        asyncio.CancelledError: when cancelled; the bandit process is killed and reaped first.
    """
    report = await _run("bandit", path, _bandit_argv(_file(root, path)), ok=(0, 1))
    if not isinstance(report, dict) or not isinstance(report.get("results"), list):
        raise AnalyserError("bandit", path, f"unexpected report {str(report)[:200]!r}")
    findings = []
    for item in report["results"]:
        severity = str(item.get("issue_severity", "")).lower()
        findings.append(
            {
                "tool": "bandit",
                "code": str(item.get("test_id", "B???")),
                "message": str(item.get("issue_text", "")),
                "line": int(item.get("line_number") or 0),
                "severity": severity if severity in _SEVERITY_RANK else "low",
                "confidence": str(item.get("issue_confidence", "undefined")).lower(),
            }
        )
    findings.sort(key=_finding_order)
    result: dict[str, Any] = {"path": path, "findings": findings}
    errors = [str(e.get("reason", e)) for e in report.get("errors") or ()]
    if errors:
        result["errors"] = errors
    return result


# --------------------------------------------------------------------------------------------
# collect


def _finding_order(f: dict[str, Any]) -> tuple[Any, ...]:
    return (_SEVERITY_RANK.get(f.get("severity", "low"), 3), f.get("line", 0), f["tool"], f["code"])


def collect(
    files: list[str],
    ruff: list[dict[str, Any] | None],
    radon: list[dict[str, Any] | None],
    bandit: list[dict[str, Any] | None],
) -> dict[str, Any]:
    """Merges the analysers' per-file results into one summary.

    Args:
        files: the reviewed files (``discover_files``'s list).
        ruff, radon, bandit: the ``MapStep`` outputs: one entry per file (in ``files``' order),
            ``None`` where that item did not complete. Entries are matched to files by their
            ``"path"``; a file without an entry from a tool is listed under ``"missing"``, and
            entries for paths not in ``files`` are ignored.

    Returns:
        A JSON-able dict::

            {"files": [{"path", "test_code": bool (``is_test_path``), "findings": [...] (each
                        finding as the analysers return it plus "category": "security" |
                        "lint", worst severity first, then by line), "max_complexity": int,
                        "average_complexity": float, "complex_blocks": [blocks with
                        complexity > COMPLEX_THRESHOLD, most complex first]}, ...] (files' order),
             "totals": {"files": int, "findings": int,
                        "by_severity": {"high": int, "medium": int, "low": int},
                        "by_tool": {"bandit": int, "ruff": int}, "high_severity": int
                        (every file, both categories),
                        "security": {"high", "medium", "low"} (bandit, library code only),
                        "lint": {"high", "medium", "low"} (ruff, library code only),
                        "security_high": int (high-severity security findings in library
                        code: what the triage counts),
                        "test_code": {"files", "findings", "security", "lint"} (test files,
                        reported apart and not counted in the verdict),
                        "complex_blocks": int, "missing": int},
             "hot_spots": [the HOT_SPOTS most complex functions/methods, each a radon block
                           plus "path"],
             "missing": [{"path": str, "tool": str}, ...] (an analyser result that is absent),
             "digest": str (plain-text summary for a reviewer, <= DIGEST_MAX_CHARS)}
    """
    by_path: dict[str, dict[str, Any]] = {
        p: {
            "path": p,
            "test_code": is_test_path(p),
            "findings": [],
            "max_complexity": 0,
            "average_complexity": 0.0,
            "complex_blocks": [],
        }
        for p in files
    }
    missing: list[dict[str, str]] = []
    blocks_by_path: dict[str, list[dict[str, Any]]] = {}
    for tool, results in (("ruff", ruff), ("radon", radon), ("bandit", bandit)):
        results = list(results or [])
        seen: set[str] = set()
        for entry in results:
            if not isinstance(entry, dict) or entry.get("path") not in by_path:
                continue
            path = entry["path"]
            seen.add(path)
            record = by_path[path]
            if tool == "radon":
                record["max_complexity"] = int(entry.get("max_complexity", 0))
                record["average_complexity"] = float(entry.get("average_complexity", 0.0))
                blocks_by_path[path] = list(entry.get("blocks") or [])
            else:
                record["findings"].extend(
                    {**f, "category": f.get("category") or CATEGORIES.get(tool, "lint")}
                    for f in entry.get("findings") or ()
                    if isinstance(f, dict)
                )
        missing.extend({"path": p, "tool": tool} for p in files if p not in seen)

    hot: list[dict[str, Any]] = []
    for path, blocks in blocks_by_path.items():
        scored = [b for b in blocks if b.get("type") != "class"]
        by_path[path]["complex_blocks"] = sorted(
            (b for b in scored if b.get("complexity", 0) > COMPLEX_THRESHOLD),
            key=lambda b: (-b["complexity"], b.get("line", 0)),
        )
        hot.extend({"path": path, **b} for b in scored)
    hot.sort(key=lambda b: (-b.get("complexity", 0), b["path"], b.get("line", 0)))

    by_severity: Counter[str] = Counter({s: 0 for s in SEVERITIES})
    by_tool: Counter[str] = Counter({"bandit": 0, "ruff": 0})
    library: dict[str, Counter[str]] = {
        c: Counter({s: 0 for s in SEVERITIES}) for c in ("security", "lint")
    }
    tests: Counter[str] = Counter({"files": 0, "findings": 0, "security": 0, "lint": 0})
    for record in by_path.values():
        record["findings"].sort(key=_finding_order)
        tests["files"] += record["test_code"]
        for f in record["findings"]:
            by_severity[f.get("severity", "low")] += 1
            by_tool[f.get("tool", "?")] += 1
            category = "security" if f.get("category") == "security" else "lint"
            if record["test_code"]:
                tests["findings"] += 1
                tests[category] += 1
            else:
                library[category][f.get("severity", "low")] += 1
    ordered = [by_path[p] for p in dict.fromkeys(files)]
    summary: dict[str, Any] = {
        "files": ordered,
        "totals": {
            "files": len(ordered),
            "findings": sum(by_severity.values()),
            "by_severity": dict(by_severity),
            "by_tool": dict(sorted(by_tool.items())),
            "high_severity": by_severity["high"],
            "security": dict(library["security"]),
            "lint": dict(library["lint"]),
            "security_high": library["security"]["high"],
            "test_code": dict(tests),
            "complex_blocks": sum(len(r["complex_blocks"]) for r in ordered),
            "missing": len(missing),
        },
        "hot_spots": hot[:HOT_SPOTS],
        "missing": missing,
    }
    summary["digest"] = _digest(summary)
    return summary


def rank_findings(
    summary: dict[str, Any], limit: int | None = None, per_file: int | None = None
) -> list[dict[str, Any]]:
    """Every finding of a ``collect`` summary, ranked: worst severity first, then the file's
    maximum complexity (most complex first), then path and line.

    Args:
        summary: ``collect``'s output.
        limit: keep the first ``limit`` (default: all).
        per_file: at most this many findings of one file come before the findings of other
            files (a file's further findings follow, in rank order, after everyone's first
            ``per_file``), so one noisy file does not fill the top of the list. Default: no cap.

    Returns:
        Finding dicts with ``"path"``, ``"file_complexity"`` (the file's maximum complexity),
        ``"test_code"`` (bool) and ``"category"`` added.
    """
    ranked = [
        {
            "path": record["path"],
            "file_complexity": record.get("max_complexity", 0),
            "test_code": bool(record.get("test_code", is_test_path(record["path"]))),
            "category": CATEGORIES.get(f.get("tool", ""), "lint"),
            **f,
        }
        for record in summary.get("files", [])
        for f in record.get("findings", [])
    ]
    ranked.sort(
        key=lambda f: (
            _SEVERITY_RANK.get(f.get("severity", "low"), 3),
            -f["file_complexity"],
            f["path"],
            f.get("line", 0),
            f.get("tool", ""),
            f.get("code", ""),
        )
    )
    if per_file is not None:
        seen: Counter[str] = Counter()
        first: list[dict[str, Any]] = []
        later: list[dict[str, Any]] = []
        for f in ranked:
            seen[f["path"]] += 1
            (first if seen[f["path"]] <= per_file else later).append(f)
        ranked = first + later
    return ranked if limit is None else ranked[:limit]


def _clip(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _digest(summary: dict[str, Any]) -> str:
    totals = summary["totals"]
    sev, tools = totals["by_severity"], totals["by_tool"]
    head = [
        f"Static analysis of {totals['files']} Python files (ruff, radon, bandit).",
        f"Findings: {totals['findings']} (high {sev['high']}, medium {sev['medium']}, "
        f"low {sev['low']}); by tool: "
        + ", ".join(f"{t} {n}" for t, n in tools.items())
        + f". Functions over complexity {COMPLEX_THRESHOLD}: {totals['complex_blocks']}.",
    ]
    if summary["missing"]:
        shown = ", ".join(f"{m['tool']}:{m['path']}" for m in summary["missing"][:5])
        more = len(summary["missing"]) - 5
        head.append(
            f"Missing analyser results: {len(summary['missing'])} ({shown}"
            + (f", +{more} more" if more > 0 else "")
            + ")."
        )
    test_code = totals.get("test_code") or {}
    if test_code.get("findings"):
        head.append(
            f"Of these, {test_code['findings']} are in {test_code['files']} test file(s) "
            "(marked 'test file' below): tests do deliberately what library code must not, so "
            "do not count them as defects of the library."
        )
    findings = [
        f"- [{f['severity']} {f['category']}] {f['path']}:{f['line']} {f['tool']} {f['code']}: "
        f"{_clip(f['message'], 110)}" + (" (test file)" if f["test_code"] else "")
        # Library code first: a test file's findings only fill what is left.
        for f in sorted(
            rank_findings(summary, per_file=DIGEST_PER_FILE), key=lambda f: f["test_code"]
        )[:DIGEST_FINDINGS]
    ]
    spots = [
        f"- {b['path']}:{b['line']} {b['type']} {b['name']}: complexity {b['complexity']} "
        f"(rank {b['rank']})"
        for b in summary["hot_spots"]
    ]
    title = f"Top findings (worst first, at most {DIGEST_PER_FILE} per file before the rest):"
    lines = [*head, "", title, *(findings or ["- none"])]
    lines += ["", "Complexity hot spots:", *(spots or ["- none"])]
    text = "\n".join(lines)
    while len(text) > DIGEST_MAX_CHARS and (findings or spots):  # very long paths
        if len(spots) > 3:
            spots.pop()
        elif findings:
            findings.pop()
        else:
            spots.pop()
        lines = [*head, "", title, *findings]
        lines += ["", "Complexity hot spots:", *spots]
        text = "\n".join(lines)
    return text[:DIGEST_MAX_CHARS]
