"""Building a :class:`~batten.Workflow` from the data of a workflow file (format 1).

Checks run in this order, each error naming the file, the line and the field: the JSON Schema
(``workflow.schema.json``), the ``imports``, then every step (references resolved, ids unique,
``depends_on`` and ``{x.result}`` / ``{inputs.x}`` references known), and last the workflow's
own ``validate()`` (cycles, ancestors). Nothing runs and nothing is recorded before all pass.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from batten._internal.placement import RayExecutor
from batten._internal.templates import input_refs, render, render_inputs, template_refs
from batten.config.refs import (
    exception_class,
    import_ref,
    is_import_ref,
    on_path,
    unresolved,
    unresolved_exception,
)
from batten.config.source import DocPath, LineMap
from batten.errors import WorkflowConfigError, WorkflowDefinitionError
from batten.registry import (
    Registry,
    build_registered_workflow,
    global_registry,
    has_workflow_factory,
    unknown_workflow,
)
from batten.retry import RetryPolicy
from batten.steps import AgentStep, Step, ToolStep
from batten.steps.approval import HumanApprovalStep
from batten.steps.composite import ConditionalStep, LoopStep, MapStep, ParallelStep
from batten.workflow import Workflow

#: How many workflow files a chain of ``fallback_workflow`` files may hold.
MAX_FALLBACK_CHAIN = 8

INPUT_TYPES = ("string", "integer", "number", "boolean", "json")


@functools.cache
def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of workflow files, as shipped in the package."""
    text = resources.files("batten.config").joinpath("workflow.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _integer(checker: Any, instance: Any) -> bool:
    # JSON Schema calls 2.0 an integer; batten would then hand a float to code expecting an
    # int (a retry of 2.0 failed with "'float' object is not iterable"), so only ints are.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _number(checker: Any, instance: Any) -> bool:
    # NaN passes every minimum and maximum (all comparisons are false), so it is no number.
    return (
        isinstance(instance, int | float)
        and not isinstance(instance, bool)
        and (isinstance(instance, int) or math.isfinite(instance))
    )


@functools.cache
def _validator() -> Any:
    import jsonschema

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many({"integer": _integer, "number": _number})
    extend: Any = jsonschema.validators.extend  # untyped
    strict = extend(base, type_checker=checker)
    return strict(schema())


def check_schema(data: Any, lines: LineMap) -> None:
    """Validates ``data`` against the schema, more strictly than JSON Schema itself: an
    integer field refuses a float (``2.0``) and a number field refuses NaN and infinities.

    Raises:
        WorkflowConfigError: the most relevant violation (jsonschema's ``best_match``), at the
            line of the offending value; an unknown field's message suggests the closest known
            one ("did you mean").
    """
    from jsonschema.exceptions import best_match

    try:
        error = best_match(_validator().iter_errors(data))
    except RecursionError:
        # The reader bounds nesting (source.MAX_DEPTH), so only a config dict gets here.
        raise lines.error((), "the document nests too deeply to check") from None
    if error is None:
        return
    # An if/then failure inside a step is reported at the deepest error it holds.
    while error.context:
        deeper = best_match(error.context)
        if deeper is None:
            break
        error = deeper
    path: DocPath = tuple(error.absolute_path)
    message = error.message
    instance = error.instance
    if error.validator in ("unevaluatedProperties", "additionalProperties"):
        match = re.search(r"'([^']+)' (?:was|were) unexpected", message)
        if match and isinstance(instance, dict):
            key = match.group(1)
            known = sorted(
                k for k in _known_fields(error, path) if isinstance(k, str) and k not in instance
            )
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            kind = instance.get("kind")
            if error.validator == "unevaluatedProperties" and isinstance(kind, str):
                what = f" for a step of kind '{kind}'"
            else:
                what = "" if path else " for the workflow"  # else the field's path says where
            path = (*path, key)
            message = f"unknown field '{key}'{what}{hint}"
    elif error.validator == "minItems" and path and path[-1] == "approvers":
        message = (
            "an empty approver list would let anyone decide; name who may approve, or leave "
            "approvers out to let anyone"
        )
    elif (
        error.validator == "maximum"
        and error.validator_value == schema()["$defs"]["seconds"]["maximum"]
    ):
        message += " seconds (365 days, the longest timeout or interval batten accepts)"
    elif error.validator == "type" and isinstance(instance, float):
        if not math.isfinite(instance):
            message = f"{instance!r} is not a finite number"
        elif "integer" in (error.validator_value, *error.validator_value):
            hint = f" (write {int(instance)})" if instance.is_integer() else ""
            message = f"{instance!r} is not an integer{hint}"
    raise lines.error(path, message)


def _known_fields(error: Any, path: DocPath) -> list[str]:
    """The fields the schema allows where ``error`` (an unknown-field error at ``path``)
    happened (for "did you mean")."""
    if error.validator == "additionalProperties":
        return list(error.schema.get("properties", {}))
    defs = schema()["$defs"]
    kind = error.instance.get("kind")
    if not isinstance(kind, str) or kind not in defs["common"]["properties"]["kind"]["enum"]:
        return list(defs["common"]["properties"]) if path else list(schema()["properties"])
    name = "conditional" if kind == "condition" else kind
    fields = list(defs["common"]["properties"])
    fields += list(defs.get(name, {}).get("properties", {}))
    if kind in ("map", "parallel"):
        fields += list(defs["fanout"]["properties"])
    return fields


class Builder:
    """Turns checked data into a Workflow (one use).

    Args:
        data: the document (a dict of format 1).
        lines: where each value was written.
        base_dir: the directory put on ``sys.path`` while resolving ``module:attribute``
            references (the file's directory), or ``None``.
        registry: where agent and tool names are looked up (default: the process-wide one).
        resolve: import the ``imports`` and every ``module:attribute`` reference (default
            ``True``). ``False`` imports nothing, so nothing in the file's modules runs: each
            reference is checked for form only and listed in :attr:`unresolved`, agents and
            tools and callables become stand-ins (:func:`~batten.config.refs.unresolved`) that
            raise when called; the workflow can be validated and drawn, not run.

    Attributes:
        unresolved: ``[(path, reference)]``, what ``resolve=False`` left unchecked, in file
            order (a name that the process's registry already holds is resolved).
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        lines: LineMap,
        base_dir: Path | None,
        registry: Registry | None,
        *,
        resolve: bool = True,
    ) -> None:
        self.data = data
        self.lines = lines
        self.base_dir = base_dir
        self.registry = registry or global_registry()
        self.resolve = resolve
        self.unresolved: list[tuple[DocPath, str]] = []
        self.inputs: dict[str, dict[str, Any]] = {}
        self.top_ids: dict[str, int] = {}
        self.all_ids: set[str] = set()

    def build(self) -> Workflow:
        """The workflow.

        Raises:
            WorkflowConfigError: anything wrong, with the file, line and field.
        """
        data, lines = self.data, self.lines
        check_schema(data, lines)
        with on_path(self.base_dir if self.resolve else None):
            for i, module in enumerate(data.get("imports", ())):
                if self.resolve:
                    self._import(module, ("imports", i))
                else:
                    self.unresolved.append((("imports", i), module))
            self.inputs = {
                name: self._input(name, spec or {}, ("inputs", name))
                for name, spec in (data.get("inputs") or {}).items()
            }
            steps = data["steps"]
            for i, spec in enumerate(steps):
                sid = spec["id"]
                if sid in self.top_ids:
                    raise lines.error(
                        ("steps", i, "id"),
                        f"step id '{sid}' is used twice (first at steps[{self.top_ids[sid]}])",
                    )
                self.top_ids[sid] = i
                self._collect_ids(spec)
            wf = Workflow(
                str(data.get("id") or data["name"]),
                data["name"],
                data.get("description", ""),
                max_parallel_steps=data.get("max_parallel_steps"),
                continue_on_error=data.get("continue_on_error", False),
                max_total_retries=data.get("max_total_retries"),
                version=str(data.get("version", "1.0.0")),
                executor=self._executor(data.get("executor")),
            )
            for i, spec in enumerate(steps):
                path: DocPath = ("steps", i)
                step = self.step(spec, path, top=True)
                wf.add_step(step, depends_on=self._depends_on(spec, path))
        if data.get("fallback_workflow"):
            fallback = self._fallback(data["fallback_workflow"])
            if fallback is not None:
                wf.with_fallback_workflow(fallback)
        wf.inputs = self.inputs
        wf.source = lines.source
        try:
            wf.validate()
        except WorkflowConfigError:
            raise
        except WorkflowDefinitionError as exc:
            raise self._located(str(exc)) from None
        return wf

    # -- pieces ------------------------------------------------------------------------------

    def _fallback(self, spec: str) -> Workflow | None:
        """The fallback workflow: a registered factory's name, else a file beside this one
        (``None``: a factory name that ``resolve=False`` cannot check)."""
        # config's own package cycle: a fallback file is read by the loader reading this one
        # (batten.config imports this module).
        from batten.config import _read_workflow, load_workflow, loading

        path = ("fallback_workflow",)
        file = self.base_dir / spec if self.base_dir is not None else None
        is_file = file is not None and (
            file.suffix.lower() in (".yaml", ".yml", ".json") or file.is_file()
        )
        try:
            registered = has_workflow_factory(spec)
            if registered or not is_file:
                if not self.resolve and not registered:
                    self.unresolved.append((path, spec))
                    return None
                made = build_registered_workflow(spec) if registered else None
                if made is None:  # as create_workflow: a file by a path from here, or nothing
                    named = Path(spec)
                    if (
                        named.suffix.lower() not in (".yaml", ".yml", ".json")
                        and not named.is_file()
                    ):
                        raise unknown_workflow(spec)
                    made = load_workflow(named, registry=self.registry)
            else:
                assert file is not None
                chain = loading()
                if str(file.resolve()) in chain:
                    raise self.lines.error(
                        path,
                        f"'{spec}' is a workflow file already being loaded "
                        f"({' -> '.join(chain)}): the fallbacks form a cycle",
                    )
                if len(chain) >= MAX_FALLBACK_CHAIN:
                    raise self.lines.error(
                        path,
                        f"fallback workflow files chain more than {MAX_FALLBACK_CHAIN} deep "
                        f"({' -> '.join(chain)})",
                    )
                loaded = _read_workflow(file, registry=self.registry, resolve=self.resolve)
                made = loaded.workflow
                self.unresolved += [
                    (path, f"{u.file}:{u.line}: {u.field}: {u.reference}")
                    for u in loaded.unresolved
                ]
        except WorkflowConfigError:
            raise
        except WorkflowDefinitionError as exc:
            raise self.lines.error(path, str(exc)) from None
        if not isinstance(made, Workflow):
            raise self.lines.error(path, f"'{spec}' is not a batten.Workflow")
        return made

    def _import(self, module: str, path: DocPath) -> None:
        try:
            import_ref(f"{module}:__name__")
        except LookupError as exc:
            raise self.lines.error(path, str(exc)) from None

    def _input(self, name: str, spec: Mapping[str, Any], path: DocPath) -> dict[str, Any]:
        has_default = "default" in spec
        kind = spec.get("type")
        if kind is None:
            kind = _type_of(spec["default"]) if has_default else "string"
        if has_default and spec["default"] is not None:
            try:
                coerce_input(name, kind, spec["default"])
            except ValueError as exc:
                raise self.lines.error((*path, "default"), str(exc)) from None
        return {
            "type": kind,
            "default": spec.get("default"),
            "required": bool(spec.get("required", not has_default)),
            "description": spec.get("description", ""),
        }

    def _collect_ids(self, spec: Mapping[str, Any]) -> None:
        self.all_ids.add(spec["id"])
        for key in ("step", "if_true", "if_false", "fallback"):
            if isinstance(spec.get(key), Mapping):
                self._collect_ids(spec[key])
        for branch in spec.get("branches", ()):
            self._collect_ids(branch)

    def _depends_on(self, spec: Mapping[str, Any], path: DocPath) -> list[str]:
        """``depends_on`` plus the top-level steps referenced as ``{x.result}``."""
        deps: list[str] = []
        for j, dep in enumerate(spec.get("depends_on", ())):
            if dep not in self.top_ids:
                raise self.lines.error(
                    (*path, "depends_on", j),
                    f"step '{spec['id']}' depends on '{dep}', which is not a step of this "
                    f"workflow (steps: {', '.join(self.top_ids)})",
                )
            deps.append(dep)
        for ref in _all_refs(spec):
            if ref in self.top_ids and ref != spec["id"] and ref not in deps:
                deps.append(ref)
        return deps

    def _located(self, message: str) -> WorkflowConfigError:
        """An engine validation message, placed at the line of the step it names."""
        match = re.search(r"step '([^']+)'", message)
        if match and match.group(1) in self.top_ids:
            return self.lines.error(("steps", self.top_ids[match.group(1)]), message)
        return self.lines.error(("steps",), message)

    def _ref(self, kind: str, value: str | None, spec: Mapping[str, Any], path: DocPath) -> Any:
        """The agent/tool a step names: imported (``module:attr``) or looked up in the registry.

        A name found in the process-wide registry is kept as a name, so a
        :class:`~batten.WorkflowEngine`'s registry can also supply it when the workflow runs.
        A name found in a registry the caller passed (``registry=``) is replaced by the object
        registered there: the workflow then runs it wherever it is run, whatever the
        process-wide registry holds."""
        if value is None:
            value = spec["id"]
            path = (*path, "id")
        else:
            path = (*path, kind)
        if is_import_ref(value):
            if not self.resolve:
                self._unresolved(path, value)
                return unresolved(value)
            try:
                return import_ref(value)
            except LookupError as exc:
                raise self.lines.error(path, str(exc)) from None
        found = self.registry.get(kind, value)  # type: ignore[arg-type]
        if found is None:
            if not self.resolve:  # a module in imports may register it
                self.unresolved.append((path, value))
                return unresolved(value)
            known = ", ".join(self.registry.names(kind)) or "none"  # type: ignore[arg-type]
            raise self.lines.error(
                path,
                f"no {kind} named '{value}' is registered (registered {kind}s: {known}); "
                f"give module:attribute, or register it with @batten.{kind} in a module listed "
                "in imports",
            )
        if self.registry is not global_registry():
            return found
        return value

    def _unresolved(self, path: DocPath, value: str) -> None:
        """Records ``value`` as not imported, after checking its ``module:attribute`` form."""
        module, _, attr = value.partition(":")
        if not module or not attr:
            raise self.lines.error(path, f"'{value}' is not of the form module:attribute")
        self.unresolved.append((path, value))

    def _callable(self, value: str, path: DocPath) -> Callable[..., Any]:
        if not self.resolve:
            self._unresolved(path, value)
            return unresolved(value)
        try:
            fn = import_ref(value)
        except LookupError as exc:
            raise self.lines.error(path, str(exc)) from None
        if not callable(fn):
            raise self.lines.error(path, f"'{value}' is not callable ({type(fn).__name__})")
        return fn  # type: ignore[no-any-return]

    def _check_refs(self, spec: Mapping[str, Any], path: DocPath, *fields: str) -> None:
        for field in fields:
            if field not in spec:
                continue
            for name in sorted(input_refs(spec[field])):
                if name not in self.inputs:
                    known = ", ".join(self.inputs) or "none"
                    raise self.lines.error(
                        (*path, field),
                        f"'{{inputs.{name}}}' names an input the workflow does not declare "
                        f"(inputs: {known})",
                    )
            for ref in template_refs(spec[field]):
                if ref not in self.all_ids:
                    raise self.lines.error(
                        (*path, field),
                        f"'{{{ref}.result}}' names no step of this workflow",
                    )

    def _retry(self, value: Any, path: DocPath) -> RetryPolicy:
        if isinstance(value, int):
            return RetryPolicy(max_attempts=value)
        fields = dict(value)
        for key in ("retry_on", "non_retryable"):
            if key in fields:
                classes = []
                for j, name in enumerate(fields[key]):
                    if is_import_ref(name) and not self.resolve:
                        self._unresolved((*path, key, j), name)
                        classes.append(unresolved_exception(name))
                        continue
                    try:
                        classes.append(exception_class(name))
                    except LookupError as exc:
                        raise self.lines.error((*path, key, j), str(exc)) from None
                fields[key] = tuple(classes)
        try:
            return RetryPolicy(**fields)
        except WorkflowDefinitionError as exc:
            raise self.lines.error(path, str(exc)) from None

    # -- steps -------------------------------------------------------------------------------

    def _executor(self, spec: Any) -> RayExecutor | None:
        """The workflow file's ``executor:`` (``"ray"`` or ``{kind: ray, ...}``), or ``None``.

        Raises:
            WorkflowConfigError: ``ray`` is not installed, or a value is refused.
        """
        if spec is None:
            return None
        opts = {} if spec == "ray" else {k: v for k, v in spec.items() if k != "kind"}
        try:
            return RayExecutor(**opts)
        except WorkflowDefinitionError as exc:
            raise self.lines.error(("executor",), str(exc)) from None

    def step(self, spec: Mapping[str, Any], path: DocPath, *, top: bool = False) -> Step:
        """One step (and the steps it holds).

        Raises:
            WorkflowConfigError: as :meth:`build`.
        """
        kind = spec["kind"]
        try:
            step = getattr(self, f"_{kind}")(spec, path)
            self._common(step, spec, path)
        except WorkflowConfigError:
            raise
        except WorkflowDefinitionError as exc:
            raise self.lines.error(path, str(exc)) from None
        return step  # type: ignore[no-any-return]

    def _common(self, step: Step, spec: Mapping[str, Any], path: DocPath) -> None:
        defaults = self.data.get("defaults") or {}
        invocable = isinstance(step, ToolStep | AgentStep)
        timeout = spec.get("timeout", defaults.get("timeout") if invocable else None)
        if timeout is not None and spec["kind"] != "approval":
            step.with_timeout(timeout)
        retry = spec.get("retry", defaults.get("retry") if invocable else None)
        if retry is not None:
            where = (*path, "retry") if "retry" in spec else ("defaults", "retry")
            step.with_retry(policy=self._retry(retry, where))
        if "isolation" in spec:
            step.with_isolation(spec["isolation"])
        if "condition" in spec and spec["kind"] != "condition":
            step.add_condition(self._callable(spec["condition"], (*path, "condition")))
        if "fallback" in spec:
            step.with_fallback(self.step(spec["fallback"], (*path, "fallback")))
        if "ray" in spec:
            step.on_ray(**spec["ray"])

    def _tool(self, spec: Mapping[str, Any], path: DocPath) -> Step:
        self._check_refs(spec, path, "args")
        tool = self._ref("tool", spec.get("tool"), spec, path)
        args = spec.get("args") or {}
        step = ToolStep(spec["id"], tool, args)
        if input_refs(args):
            sid = spec["id"]

            def params(context: Any) -> dict[str, Any]:
                filled = render_inputs(args, context.variables)
                rendered: dict[str, Any] = render(filled, context.results, sid)
                return rendered

            step.with_params_function(params)
        return step

    def _agent(self, spec: Mapping[str, Any], path: DocPath) -> Step:
        self._check_refs(spec, path, "message")
        agent = self._ref("agent", spec.get("agent"), spec, path)
        message = spec.get("message", "")
        step = AgentStep(spec["id"], agent, message)
        if input_refs(message):
            sid = spec["id"]

            def text(context: Any) -> Any:
                return render(render_inputs(message, context.variables), context.results, sid)

            step.with_input_function(text)
        return step

    def _map(self, spec: Mapping[str, Any], path: DocPath) -> Step:
        self._check_refs(spec, path, "items")
        inner_spec = spec["step"]
        if inner_spec["kind"] not in ("tool", "agent"):
            raise self.lines.error(
                (*path, "step", "kind"),
                f"a map runs a tool or agent step per item, got kind '{inner_spec['kind']}'",
            )
        inner = self.step(inner_spec, (*path, "step"))
        step = MapStep(
            spec["id"],
            _items_source(spec["id"], spec["items"], self.lines, (*path, "items")),
            inner,
            spec.get("max_concurrency"),
            item_arg=spec.get("item_arg", "item"),
        )
        _fanout(step, spec)
        return step

    def _parallel(self, spec: Mapping[str, Any], path: DocPath) -> Step:
        seen: dict[str, int] = {}
        branches = []
        for j, branch in enumerate(spec["branches"]):
            if branch["id"] in seen:
                raise self.lines.error(
                    (*path, "branches", j, "id"),
                    f"branch id '{branch['id']}' is used twice in step '{spec['id']}'",
                )
            seen[branch["id"]] = j
            branches.append(self.step(branch, (*path, "branches", j)))
        step = ParallelStep(
            spec["id"],
            branches,
            wait_for_all=spec.get("wait_for_all", True),
            max_concurrency=spec.get("max_concurrency"),
        )
        _fanout(step, spec)
        return step

    def _condition(self, spec: Mapping[str, Any], path: DocPath) -> Step:
        cond = self._callable(spec["condition"], (*path, "condition"))
        true_step = self.step(spec["if_true"], (*path, "if_true")) if "if_true" in spec else None
        false_step = (
            self.step(spec["if_false"], (*path, "if_false")) if "if_false" in spec else None
        )
        return ConditionalStep(spec["id"], cond, true_step, false_step)

    def _approval(self, spec: Mapping[str, Any], path: DocPath) -> Step:
        self._check_refs(spec, path, "prompt")
        return HumanApprovalStep(
            spec["id"], spec["prompt"], spec.get("approvers"), spec.get("timeout")
        )

    def _loop(self, spec: Mapping[str, Any], path: DocPath) -> Step:
        body = self.step(spec["step"], (*path, "step"))
        cond = self._callable(spec["while"], (*path, "while"))
        return LoopStep(
            spec["id"],
            body,
            cond,
            spec.get("max_iterations", 10),
            on_max_iterations=spec.get("on_max_iterations", "complete"),
        )


def _fanout(step: MapStep | ParallelStep, spec: Mapping[str, Any]) -> None:
    if "failure_policy" in spec:
        step.with_failure_policy(spec["failure_policy"])
    if "minimum_success_count" in spec:
        step.with_minimum_success_count(spec["minimum_success_count"])


def _all_refs(spec: Mapping[str, Any]) -> list[str]:
    """Every ``{x.result}`` step id referenced in a step's texts, nested steps included."""
    found: list[str] = []
    for key in ("args", "message", "prompt", "items"):
        if key in spec:
            found.extend(template_refs(spec[key]))
    for key in ("step", "if_true", "if_false", "fallback"):
        if isinstance(spec.get(key), Mapping):
            found.extend(_all_refs(spec[key]))
    for branch in spec.get("branches", ()):
        found.extend(_all_refs(branch))
    return found


_WHOLE_REF = re.compile(r"\{(?:[A-Za-z_][\w\-]*\.result(?:\.[\w\-]+)*|inputs\.[A-Za-z_][\w\-]*)\}")


def _items_source(step_id: str, items: Any, lines: LineMap, path: DocPath) -> Any:
    """A MapStep's items: a literal list, or an :class:`ItemsReference` reading one reference."""
    if isinstance(items, list):
        return items
    if not _WHOLE_REF.fullmatch(items):
        raise lines.error(
            path,
            f"items must be a list or exactly one reference such as '{{discover.result}}' or "
            f"'{{inputs.files}}', got {items!r}",
        )
    return ItemsReference(step_id, items)


class ItemsReference:
    """A map step's ``items`` written as one reference (``"{discover.result}"``,
    ``"{inputs.files}"``): called with the step's context, it gives the referenced value.

    Args:
        step_id: the map step's id (named in errors).
        expression: the reference as written; graphs show it.
    """

    def __init__(self, step_id: str, expression: str) -> None:
        self.step_id = step_id
        self.expression = expression

    def __call__(self, context: Any) -> Any:
        """The referenced value in ``context`` (a :class:`~batten.WorkflowContext`)."""
        filled = render_inputs(self.expression, context.variables)
        return render(filled, context.results, self.step_id)


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "json"


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def coerce_input(name: str, kind: str, value: Any) -> Any:
    """``value`` as input ``name`` of type ``kind`` (``"string"``, ``"integer"``, ``"number"``,
    ``"boolean"``, ``"json"``); text (from a command line) is parsed, other values checked.

    Raises:
        ValueError: the value does not fit the type; the message names the input.
    """
    try:
        if kind == "string":
            if isinstance(value, str):
                return value
            raise TypeError
        if kind == "integer":
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, str):
                return int(value)
            if isinstance(value, int):
                return value
            raise TypeError
        if kind == "number":
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, str):
                return float(value)
            if isinstance(value, int | float):
                return value
            raise TypeError
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
                return value.lower() in _TRUE
            raise TypeError
        if kind == "json":
            return json.loads(value) if isinstance(value, str) else value
    except (TypeError, ValueError):
        pass
    raise ValueError(f"input '{name}' must be of type {kind}, got {value!r}")
