"""Reading a workflow file into plain data while remembering where each value was written.

PyYAML composes the document into nodes that carry their line; walking those nodes (instead of
``yaml.safe_load``) gives the same Python values plus a map from each value's path
(``("steps", 2, "retry")``) to its line, so every later error can say ``file:line``. JSON is
read by the same parser (JSON is YAML's flow style); a document the YAML parser refuses falls
back to the json module, whose errors carry a line too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from batten.errors import WorkflowConfigError

#: A path into the document: keys (str) and list indexes (int).
DocPath = tuple[str | int, ...]


class LineMap:
    """Where each value of a document was written: ``line(path)`` is the 1-based line of the
    value at ``path``, or of its nearest enclosing value that has one.

    Args:
        source: the file name shown in errors (``None``: the data did not come from a file).
        lines: ``{path: line}``.
    """

    def __init__(self, source: str | None, lines: dict[DocPath, int] | None = None) -> None:
        self.source = source
        self.lines: dict[DocPath, int] = lines or {}
        #: For a rewritten document: new path prefix -> the original document's (see remap).
        self._origins: dict[DocPath, DocPath] = {}

    def original(self, path: DocPath) -> DocPath:
        """``path`` in the terms of the document as written (the longest remapped prefix)."""
        for end in range(len(path), -1, -1):
            old = self._origins.get(path[:end])
            if old is not None:
                return old + path[end:]
        return path

    def line(self, path: DocPath) -> int | None:
        """The 1-based line of ``path`` or of its nearest ancestor that has one (``None``)."""
        path = self.original(path)
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None

    def error(self, path: DocPath, message: str) -> WorkflowConfigError:
        """A :class:`~batten.WorkflowConfigError` for the value at ``path``, named as written."""
        return WorkflowConfigError(
            message, file=self.source, line=self.line(path), field=field_name(self.original(path))
        )

    def remap(self, mapping: Mapping[DocPath, DocPath]) -> LineMap:
        """A LineMap for a rewritten document: ``mapping`` sends each new path prefix to the
        original path prefix it came from (the longest matching prefix wins), so errors about
        the rewritten document name the lines and fields as written."""
        out = LineMap(self.source, self.lines)
        out._origins = dict(mapping)
        return out


def field_name(path: DocPath) -> str:
    """``("steps", 2, "retry", "max_attempts")`` -> ``"steps[2].retry.max_attempts"``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "<document>"


def _walk(
    loader: yaml.SafeLoader, node: yaml.Node, path: DocPath, lines: dict[DocPath, int]
) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # merge keys (<<: *anchor)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise WorkflowConfigError(
                    f"keys must be strings, got {key!r}",
                    file=None,
                    line=key_node.start_mark.line + 1,
                    field=field_name(path),
                )
            if key in out:
                raise WorkflowConfigError(
                    f"duplicate key '{key}'",
                    file=None,
                    line=key_node.start_mark.line + 1,
                    field=field_name((*path, key)),
                )
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _walk(loader, value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, item, (*path, i), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse(text: str, source: str | None) -> tuple[Any, LineMap]:
    """``(data, lines)`` for a YAML or JSON document.

    Raises:
        WorkflowConfigError: the text is not valid YAML/JSON (with the parser's line), is
            empty, holds several documents, or has a duplicate or non-string key.
    """
    lines: dict[DocPath, int] = {}
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise WorkflowConfigError("the file is empty", file=source, line=None, field=None)
        data = _walk(loader, node, (), lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if source is not None and source.endswith(".json"):
            return _parse_json(text, source)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise WorkflowConfigError(
            f"invalid YAML: {problem}",
            file=source,
            line=mark.line + 1 if mark is not None else None,
            field=None,
        ) from None
    except WorkflowConfigError as exc:
        exc.file = source
        raise exc.refresh() from None
    finally:
        loader.dispose()
    return data, LineMap(source, lines)


def _parse_json(text: str, source: str) -> tuple[Any, LineMap]:
    try:
        return json.loads(text), LineMap(source)
    except json.JSONDecodeError as exc:
        raise WorkflowConfigError(
            f"invalid JSON: {exc.msg}", file=source, line=exc.lineno, field=None
        ) from None


def read(path: str | Path) -> tuple[Any, LineMap]:
    """``(data, lines)`` for the workflow file at ``path``.

    Raises:
        WorkflowConfigError: the file cannot be read (missing, a directory, not UTF-8) or
            parsed.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowConfigError(
            "no such workflow file", file=name, line=None, field=None
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowConfigError(
            f"cannot read the workflow file: {exc}", file=name, line=None, field=None
        ) from None
    return parse(text, name)
