"""Reading a workflow file into plain data while remembering where each value was written.

The document is built from PyYAML's parse events (libyaml's C parser when PyYAML has it, as
its wheels do), giving the same Python values as ``yaml.safe_load`` plus a map from each
value's path (``("steps", 2, "retry")``) to its line, so every later error can say
``file:line``. A ``.json`` file is read by the same parser with JSON's meaning of unquoted
values (``1e5`` is a number; ``NaN``, tags, anchors and aliases are not JSON); a document the
YAML parser refuses falls back to the json module, whose errors carry a line too.

Any file is read within a fixed bound of time and memory, whatever it holds:

- at most :data:`MAX_FILE_BYTES` (1 MiB) are read;
- values nest at most :data:`MAX_DEPTH` (50) levels deep;
- the document holds at most :data:`MAX_VALUES` (100,000) values (scalars, keys, lists and
  mappings) *counted with every YAML alias expanded*. Aliases (``*name``) and merge keys
  (``<<: *name``) work, but an aliased value is shared, not copied, and counted once per use,
  so an "alias bomb" (a few hundred bytes of nested aliases that would expand to billions of
  values) is refused at once, before anything is expanded.

Within those bounds the largest workflow (some 8,000 steps) is read and checked in a few
seconds and under 100 MB; reading alone stops at the first bound broken, in milliseconds.

Breaking a bound, a control character, a value its tag cannot hold (``!!int many``), an
unsupported tag, a recursive or undefined alias, a duplicate or non-string key: each is a
:class:`~batten.WorkflowConfigError` with the file, the line and (where there is one) the field.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from batten.errors import WorkflowConfigError

#: A path into the document: keys (str) and list indexes (int).
DocPath = tuple[str | int, ...]

#: The largest workflow file read, in bytes (1 MiB).
MAX_FILE_BYTES = 1_048_576
#: How deep mappings and lists may nest (aliases expanded); the top-level mapping is level 1.
MAX_DEPTH = 50
#: How many values (scalars, keys, lists, mappings) a document may hold, aliases expanded.
MAX_VALUES = 100_000

# libyaml's parser is ~30x faster than the pure-Python one; both give the same events.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_MERGE_TAG = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS = {None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
# YAML 1.1's printable characters (the reader refuses the others with no line); checked first
# so the error can say where.
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


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


class _Merge:
    """The key ``<<`` of a mapping (YAML's merge key), as read."""


_MERGE = _Merge()
_NO_KEY = object()


class _Open:
    """A list or mapping being read: its value so far, its path and line, its expanded size
    (values in it, itself included) and height (levels below it)."""

    __slots__ = ("anchor", "height", "is_map", "key", "key_line", "merges", "path", "size", "value")

    def __init__(self, is_map: bool, path: DocPath, anchor: str | None) -> None:
        self.is_map = is_map
        self.path = path
        self.anchor = anchor
        self.value: Any = {} if is_map else []
        self.size = 1
        self.height = 0
        self.key: Any = _NO_KEY
        self.key_line = 0
        self.merges: list[dict[str, Any]] = []

    def child_path(self) -> DocPath:
        if not self.is_map:
            return (*self.path, len(self.value))
        if isinstance(self.key, str):
            return (*self.path, self.key)
        return self.path if self.key is _NO_KEY else (*self.path, "<<")


class _Reader:
    """Builds the document from parse events, within the bounds of the module docstring."""

    def __init__(self, loader: Any, json_values: bool) -> None:
        self.loader: Any = loader  # PyYAML's loaders are untyped
        self.json_values = json_values
        self.lines: dict[DocPath, int] = {}
        self.anchors: dict[str, tuple[Any, int, int]] = {}  # name -> (value, size, height)
        self.stack: list[_Open] = []
        self.total = 0
        self.root: Any = _NO_KEY

    def fail(self, event: Any, message: str, path: DocPath | None = None) -> WorkflowConfigError:
        field = None
        if path is not None:
            # Past a few levels the path says nothing more (a bomb's is 50 "[0]" long).
            field = field_name(path[:6]) + ("..." if len(path) > 6 else "")
        return WorkflowConfigError(message, line=event.start_mark.line + 1, field=field)

    def read(self) -> Any:
        loader = self.loader
        documents = 0
        while True:
            event = loader.get_event()
            if isinstance(event, yaml.StreamEndEvent):
                break
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise self.fail(
                        event, "a workflow file holds one YAML document, found a second"
                    )
            elif isinstance(event, yaml.ScalarEvent):
                self.scalar(event)
            elif isinstance(event, yaml.AliasEvent):
                self.alias(event)
            elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                self.start(event)
            elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
                self.end()
        if self.root is _NO_KEY:
            raise WorkflowConfigError("the file is empty")
        return self.root

    def path_here(self) -> DocPath:
        return self.stack[-1].child_path() if self.stack else ()

    def count(self, event: Any, size: int, height: int) -> None:
        self.total += size
        if self.total > MAX_VALUES:
            raise self.fail(
                event,
                f"the document holds more than {MAX_VALUES:,} values (aliases expanded), the "
                "limit for workflow files",
                self.path_here(),
            )
        if len(self.stack) + height + 1 > MAX_DEPTH:
            raise self.fail(
                event,
                f"values nest more than {MAX_DEPTH} levels deep (aliases expanded), the limit "
                "for workflow files",
                self.path_here(),
            )

    def scalar(self, event: Any) -> None:
        self.count(event, 1, 0)
        if self.json_values:
            value = self.json_scalar(event)
        else:
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            if tag == _MERGE_TAG:
                frame = self.stack[-1] if self.stack else None
                in_key = frame is not None and frame.is_map and frame.key is _NO_KEY
                value = _MERGE if in_key else event.value
            else:
                value = self.construct(event, tag)
        self.add(event, value, 1, 0)
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, 1, 0)

    def construct(self, event: Any, tag: str) -> Any:
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return self.loader.construct_object(node)
        except yaml.MarkedYAMLError:
            raise
        except Exception as exc:  # PyYAML's constructors fail in many ways (!!timestamp x:
            # AttributeError), all meaning the text does not fit its tag
            short = tag.rpartition(":")[2] if tag.startswith("tag:yaml.org") else tag
            why = f" ({exc})" if isinstance(exc, ValueError) else ""
            raise self.fail(
                event, f"{event.value!r} is not a valid {short}{why}", self.path_here()
            ) from None
        finally:
            # The constructor caches every node it built; nothing here needs the cache.
            self.loader.constructed_objects.pop(node, None)

    def json_scalar(self, event: Any) -> Any:
        if event.anchor is not None or event.tag is not None:
            raise self.fail(event, "tags and anchors are YAML, not JSON", self.path_here())
        if event.style:  # quoted or a block scalar (a plain one has None or "")
            return event.value
        try:
            return json.loads(event.value, parse_constant=_no_constant)
        except ValueError:
            raise self.fail(
                event,
                f"{event.value!r} is not a JSON value (text is quoted; NaN and Infinity are "
                "not JSON)",
                self.path_here(),
            ) from None

    def alias(self, event: Any) -> None:
        name = event.anchor
        if self.json_values:
            raise self.fail(event, "aliases are YAML, not JSON", self.path_here())
        if any(frame.anchor == name for frame in self.stack):
            raise self.fail(
                event,
                f"the alias *{name} is inside the value it names (recursive)",
                self.path_here(),
            )
        found = self.anchors.get(str(name))
        if found is None:
            raise self.fail(event, f"the alias *{name} names no anchor (&{name}) before it")
        value, size, height = found
        self.count(event, size, height)
        self.add(event, value, size, height)

    def start(self, event: Any) -> None:
        if event.tag not in _COLLECTION_TAGS:
            raise self.fail(event, f"the tag {event.tag} is not supported", self.path_here())
        if self.json_values and event.anchor is not None:
            raise self.fail(event, "tags and anchors are YAML, not JSON", self.path_here())
        parent = self.stack[-1] if self.stack else None
        if parent is not None and parent.is_map and parent.key is _NO_KEY:
            raise self.fail(event, "keys must be strings, got a list or mapping", parent.path)
        self.count(event, 1, 0)
        path = self.path_here()
        self.lines.setdefault(path, event.start_mark.line + 1)
        self.stack.append(_Open(isinstance(event, yaml.MappingStartEvent), path, event.anchor))

    def end(self) -> None:
        frame = self.stack.pop()
        value = frame.value
        if frame.merges:
            merged: dict[str, Any] = {}
            # YAML's merge: an earlier mapping in a `<<` list wins, an explicit key wins over all.
            for source in reversed(frame.merges):
                merged.update(source)
            merged.update(value)
            value = merged
        self.add(None, value, frame.size, frame.height)
        if frame.anchor is not None:
            self.anchors[frame.anchor] = (value, frame.size, frame.height)

    def add(self, event: Any, value: Any, size: int, height: int) -> None:
        """Puts a finished value into the list or mapping being read (or makes it the root)."""
        if not self.stack:
            self.root = value
            return
        frame = self.stack[-1]
        frame.size += size
        frame.height = max(frame.height, height + 1)
        if not frame.is_map:
            if event is not None:
                self.lines.setdefault(frame.child_path(), event.start_mark.line + 1)
            frame.value.append(value)
            return
        if frame.key is _NO_KEY:
            line = event.start_mark.line + 1
            if value is not _MERGE and not isinstance(value, str):
                raise WorkflowConfigError(
                    f"keys must be strings, got {value!r}", line=line, field=field_name(frame.path)
                )
            if isinstance(value, str) and value in frame.value:
                raise WorkflowConfigError(
                    f"duplicate key '{value}'", line=line, field=field_name((*frame.path, value))
                )
            frame.key, frame.key_line = value, line
            if isinstance(value, str):
                self.lines[(*frame.path, value)] = line
            return
        key, frame.key = frame.key, _NO_KEY
        if key is _MERGE:
            sources = value if isinstance(value, list) else [value]
            if not sources or not all(isinstance(s, dict) for s in sources):
                raise WorkflowConfigError(
                    "a merge key (<<) takes a mapping or a list of mappings",
                    line=frame.key_line,
                    field=field_name((*frame.path, "<<")),
                )
            frame.merges.extend(sources)
            return
        frame.value[key] = value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _printable(text: str) -> None:
    bad = _NOT_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise WorkflowConfigError(
            f"the character U+{ord(bad.group()):04X} (a control character) is not allowed in a "
            "workflow file",
            line=line,
        )


def parse(text: str, source: str | None) -> tuple[Any, LineMap]:
    """``(data, lines)`` for a YAML or JSON document (JSON when ``source`` ends in ``.json``).

    Args:
        text: the document.
        source: the file name shown in errors, or ``None``.

    Raises:
        WorkflowConfigError: the text is not valid YAML/JSON (with the parser's line), is
            empty, holds several documents, breaks a bound of the module docstring, holds a
            control character, a value its tag cannot hold or an unsupported tag, a recursive or
            undefined alias, or a duplicate or non-string key.
    """
    is_json = source is not None and source.lower().endswith(".json")
    try:
        if len(text) > MAX_FILE_BYTES:
            raise WorkflowConfigError(
                f"the document is longer than {MAX_FILE_BYTES:,} characters, the limit for "
                "workflow files"
            )
        _printable(text)
        loader = _Loader(text)
        reader = _Reader(loader, json_values=is_json)
        try:
            data = reader.read()
        except yaml.MarkedYAMLError as exc:
            if is_json:
                assert source is not None
                return _parse_json(text, source)
            mark = exc.problem_mark or exc.context_mark
            problem = " ".join(p for p in (exc.context, exc.problem) if p)
            raise WorkflowConfigError(
                f"invalid YAML: {problem}", line=mark.line + 1 if mark is not None else None
            ) from None
        except yaml.YAMLError as exc:
            raise WorkflowConfigError(f"invalid YAML: {exc}") from None
        finally:
            loader.dispose()
    except WorkflowConfigError as exc:
        exc.file = source
        raise exc.refresh() from None
    return data, LineMap(source, reader.lines)


def _parse_json(text: str, source: str) -> tuple[Any, LineMap]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise ValueError(f"duplicate key '{key}'")
            out[key] = value
        return out

    too_deep = False
    data: Any = None
    try:
        data = json.loads(text, parse_constant=_no_constant, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise WorkflowConfigError(
            f"invalid JSON: {exc.msg}", file=source, line=exc.lineno, field=None
        ) from None
    except RecursionError:
        too_deep = True  # the json module's own guard (deeper than the interpreter allows)
    except ValueError as exc:
        raise WorkflowConfigError(f"invalid JSON: {exc}", file=source) from None
    problem = "values nest deeper than the interpreter allows" if too_deep else None
    problem = problem or bounds_problem(data)
    if problem is not None:
        raise WorkflowConfigError(problem, file=source)
    return data, LineMap(source)


def bounds_problem(data: Any) -> str | None:
    """What makes ``data`` (a config dict, or JSON) break :data:`MAX_DEPTH` or
    :data:`MAX_VALUES` (shared values counted at each use), or ``None``. Iterative, and it stops
    at the first bound broken, so any input (even one that contains itself) is measured in
    bounded time."""
    todo: list[tuple[Any, int]] = [(data, 1)]
    count = 0
    while todo:
        value, depth = todo.pop()
        count += 1
        if count > MAX_VALUES:
            return f"the document holds more than {MAX_VALUES:,} values, the limit for workflows"
        if isinstance(value, Mapping):
            count += len(value)
            children: Any = list(value.values())
        elif isinstance(value, list | tuple):
            children = value
        else:
            continue
        if depth >= MAX_DEPTH and children:
            return f"values nest more than {MAX_DEPTH} levels deep, the limit for workflows"
        todo.extend((child, depth + 1) for child in children)
    return None


def read(path: str | Path) -> tuple[Any, LineMap]:
    """``(data, lines)`` for the workflow file at ``path`` (see :func:`parse`); at most
    :data:`MAX_FILE_BYTES` are read, so even an endless file (``/dev/zero``) ends at once.

    Raises:
        WorkflowConfigError: the file cannot be read (missing, a directory, a FIFO or socket
            rather than a regular file, not UTF-8), is larger than :data:`MAX_FILE_BYTES`, or
            cannot be parsed.
    """
    name = str(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, forever.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as handle:
            mode = os.fstat(fd).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket"
                raise WorkflowConfigError(
                    f"cannot read the workflow file: not a regular file but {kind}",
                    file=name,
                    line=None,
                    field=None,
                )
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise WorkflowConfigError(
            "no such workflow file", file=name, line=None, field=None
        ) from None
    except OSError as exc:
        raise WorkflowConfigError(
            f"cannot read the workflow file: {exc}", file=name, line=None, field=None
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise WorkflowConfigError(
            f"the file is larger than {MAX_FILE_BYTES:,} bytes (1 MiB), the limit for workflow "
            "files",
            file=name,
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise WorkflowConfigError(
            f"cannot read the workflow file: not UTF-8 ({exc.reason} at byte {exc.start})",
            file=name,
            line=line,
        ) from None
    return parse(text, name)
