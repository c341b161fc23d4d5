"""``module:attribute`` references in workflow files."""

from __future__ import annotations

import builtins
import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batten.errors import WorkflowDefinitionError


@contextmanager
def on_path(directory: Path | None) -> Iterator[None]:
    """Puts ``directory`` first on ``sys.path`` while resolving, so modules next to the
    workflow file import by their plain name. It is left there afterwards only if it was
    already there."""
    if directory is None:
        yield
        return
    entry = str(directory)
    present = entry in sys.path
    if not present:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if not present:
            # Modules imported from it stay imported; their later lazy imports of siblings
            # need the entry, so keep it (appended, so it does not shadow anything).
            sys.path.remove(entry)
            sys.path.append(entry)


def is_import_ref(text: str) -> bool:
    """Whether ``text`` has the ``module:attribute`` form (else it is a registry name)."""
    return ":" in text


def import_ref(text: str) -> Any:
    """The object ``module:attr.sub`` names.

    Raises:
        LookupError: the module cannot be imported or has no such attribute; the message says
            which (an ImportError raised *inside* the module is reported with its own text).
    """
    module_name, _, attr = text.partition(":")
    if not module_name or not attr:
        raise LookupError(f"'{text}' is not of the form module:attribute")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise LookupError(f"no module named '{module_name}' (looked in sys.path)") from None
        raise LookupError(f"importing '{module_name}' failed: {exc}") from None
    except Exception as exc:
        raise LookupError(
            f"importing '{module_name}' failed: {type(exc).__name__}: {exc}"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LookupError(f"module '{module_name}' has no attribute '{attr}'") from None
    return obj


def exception_class(text: str) -> type[BaseException]:
    """An exception class by builtin name (``"ValueError"``) or ``module:Class``.

    Raises:
        LookupError: nothing of that name, or it is not an exception class.
    """
    obj = import_ref(text) if is_import_ref(text) else getattr(builtins, text, None)
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        raise LookupError(f"'{text}' is not an exception class (a builtin name or module:Class)")
    return obj


def unresolved(reference: str) -> Callable[..., Any]:
    """A stand-in for the agent, tool or callable ``reference`` (``module:attribute`` or a
    registered name) that a load with ``resolve=False`` did not import or look up; its
    ``__qualname__`` is the reference, so graphs show it as written.

    Calling it raises :class:`~batten.WorkflowDefinitionError`: such a workflow is for
    inspection (``batten validate --no-import``, ``batten graph``), not for running.
    """

    def stand_in(*args: Any, **kwargs: Any) -> Any:
        raise WorkflowDefinitionError(
            f"'{reference}' was not imported: the workflow was loaded without importing "
            "(resolve=False), to be inspected, not run"
        )

    stand_in.__name__ = stand_in.__qualname__ = reference
    return stand_in


def unresolved_exception(reference: str) -> type[BaseException]:
    """A stand-in exception class for the ``module:Class`` ``reference`` that a load with
    ``resolve=False`` did not import; no exception is an instance of it, so it matches none."""
    return type(f"Unresolved[{reference}]", (Exception,), {"__module__": __name__})
