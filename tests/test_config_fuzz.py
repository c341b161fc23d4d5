"""Fuzzing workflow configs and files: whatever the input, ``Workflow.from_config`` and
``batten.load_workflow`` either give a workflow (which can be drawn) or raise a ``BattenError``;
never another exception, a crash or a hang.

Hypothesis runs derandomized (the same examples on every run, so a failure in CI reproduces
locally), with no example database, and keeps its cache in a temporary directory, not in the
repository. References are drawn from a fixed list of harmless ones and files are loaded with
``resolve=False``, so no fuzzed text can import (and so run) an arbitrary module.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from batten import BattenError, Workflow, load_workflow
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "batten-hypothesis")

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

#: Harmless references: importing these modules does nothing, calling the callables neither.
REFERENCES = [
    "os:getcwd",
    "json:dumps",
    "builtins:len",
    "os.path:basename",
    "batten_no_such_module:thing",
    "os:no_such_attribute",
    "os:",
    ":x",
    "a:b:c",
    "registered_nowhere",
    "ValueError",
    "",
]
MODULES = ["json", "os.path", "batten_no_such_module", "", "json.decoder"]

TOP_KEYS = [
    "name", "id", "version", "description", "imports", "inputs", "defaults", "batten",
    "max_parallel_steps", "continue_on_error", "max_total_retries", "fallback_workflow",
    "steps", "phases", "agents", "error_handling", "output", "$schema",
]  # fmt: skip
STEP_KEYS = [
    "id", "kind", "description", "depends_on", "timeout", "retry", "condition", "fallback",
    "tool", "args", "agent", "message", "items", "step", "item_arg", "max_concurrency",
    "failure_policy", "minimum_success_count", "branches", "wait_for_all", "if_true",
    "if_false", "prompt", "approvers", "while", "max_iterations", "on_max_iterations",
]  # fmt: skip
RETRY_KEYS = [
    "max_attempts", "initial_interval", "backoff_coefficient", "max_interval", "jitter",
    "retry_on", "non_retryable",
]  # fmt: skip
PHASE_KEYS = ["name", "agent", "timeout", "retries", "depends_on", "message", "condition"]
KINDS = ["tool", "agent", "map", "parallel", "condition", "approval", "loop", "nope"]
IDS = ["a", "b", "c", "discover", "a-1", "1a", ""]

EDGE_NUMBERS = [0, -1, 1, 2, 2**31 - 1, 2**31, 2**63, 2**64, 10**400, 0.5, 2.0, -0.0, 1e20]
EDGE_NUMBERS += [1e308, math.inf, -math.inf, math.nan, 31_536_000, 31_536_000.5]
edge_numbers = st.sampled_from(EDGE_NUMBERS)
text = st.text(alphabet="abcxyz_.{}:- 01", max_size=12)
references = st.sampled_from(REFERENCES)
templates = st.sampled_from(
    ["{a.result}", "{discover.result}", "{inputs.x}", "{inputs.nope}", "{zz.result}", "{", "}"]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    edge_numbers,
    text,
    references,
    templates,
    st.sampled_from(IDS + KINDS),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(IDS + STEP_KEYS), inner)
    ),
    max_leaves=12,
)


def keyed(keys: list[str], value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with some of ``keys`` (and now and then another) holding ``value``s."""
    return st.dictionaries(st.one_of(st.sampled_from(keys), text), value, max_size=len(keys) // 2)


retry = st.one_of(edge_numbers, keyed(RETRY_KEYS, st.one_of(edge_numbers, values)))


def step_value(steps: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(IDS + KINDS),
        references,
        templates,
        edge_numbers,
        retry,
        st.lists(st.sampled_from(IDS), max_size=3),
        steps,
        st.lists(steps, max_size=3),
        values,
    )


def number_keys(target: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The numeric fields ``target`` (a part of ``config``) may hold, so a fuzzed number
    reaches the code that uses it instead of failing as an unknown field."""
    if target is config:
        return ["max_parallel_steps", "max_total_retries", "version"]
    if "kind" in target:
        return ["timeout", "retry", "max_concurrency", "minimum_success_count", "max_iterations"]
    if "agent" in target and "name" in target:  # a phase
        return ["timeout", "retries"]
    if target.keys() & {"max_attempts", "initial_interval", "timeout"}:
        return ["max_attempts", "initial_interval", "backoff_coefficient", "max_interval",
                "jitter", "timeout"]  # fmt: skip
    return ["default", "max_total_retries", "timeout"]


def base_step(extra: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A step that is nearly right: an id and a kind, the fields of that kind, then noise."""
    return st.fixed_dictionaries(
        {"id": st.sampled_from(IDS), "kind": st.sampled_from(KINDS)},
        optional={
            "tool": references,
            "agent": references,
            "args": st.dictionaries(text, st.one_of(templates, scalars), max_size=3),
            "message": st.one_of(templates, text),
            "items": st.one_of(templates, st.lists(scalars, max_size=3)),
            "prompt": st.one_of(templates, text),
            "condition": references,
            "while": references,
            "timeout": edge_numbers,
            "retry": retry,
            "depends_on": st.lists(st.sampled_from(IDS), max_size=3),
            "approvers": st.lists(text, max_size=2),
            **extra,
        },
    )


steps = st.recursive(
    base_step({}),
    lambda inner: st.one_of(
        base_step({"step": inner, "fallback": inner, "if_true": inner, "if_false": inner}),
        base_step({"branches": st.lists(inner, min_size=1, max_size=3)}),
        st.builds(
            lambda s, k, v: {**s, k: v}, inner, st.sampled_from(STEP_KEYS), step_value(inner)
        ),
    ),
    max_leaves=6,
)

phase = keyed(PHASE_KEYS, st.one_of(st.sampled_from(IDS), references, edge_numbers, values))

configs = st.one_of(
    st.fixed_dictionaries(
        {"name": st.one_of(st.just("fuzz"), scalars), "steps": st.lists(steps, max_size=4)},
        optional={
            "defaults": keyed(["timeout", "retry"], st.one_of(edge_numbers, retry)),
            "imports": st.lists(st.sampled_from(MODULES), max_size=2),
            "inputs": st.dictionaries(
                st.sampled_from(["x", "y", "1"]),
                st.one_of(st.none(), keyed(["type", "default", "required", "description"], values)),
                max_size=2,
            ),
            "max_parallel_steps": edge_numbers,
            "max_total_retries": edge_numbers,
            "continue_on_error": scalars,
            "version": scalars,
        },
    ),
    st.fixed_dictionaries(
        {"name": st.one_of(st.just("fuzz"), scalars), "phases": st.lists(phase, max_size=3)},
        optional={
            "agents": st.lists(st.sampled_from(IDS + REFERENCES), max_size=2),
            "error_handling": keyed(
                ["continue_on_error", "max_total_retries", "fallback_workflow"], values
            ),
            "output": values,
        },
    ),
    keyed(TOP_KEYS, values),
)


def only_batten_errors(load: Any) -> None:
    """Runs ``load()``: a workflow must come out drawable, or a BattenError (anything else, a
    crash or a hang fails the test)."""
    try:
        workflow = load()
    except BattenError:
        return
    assert isinstance(workflow, Workflow)
    workflow.to_mermaid()


VALID_YAML = [
    """\
name: fuzz
defaults: {timeout: 30, retry: &r {max_attempts: 3, initial_interval: 0.5}}
inputs:
  x: {type: integer, default: 2}
steps:
  - {id: discover, kind: tool, tool: "os:getcwd", retry: *r}
  - id: each
    kind: map
    items: "{discover.result}"
    max_concurrency: 4
    step: {id: one, kind: agent, agent: "json:dumps", message: "item {item} of {inputs.x}"}
  - id: gate
    kind: approval
    prompt: "ok {inputs.x}?"
    approvers: [ada]
    depends_on: [each]
""",
    """\
name: phases
agents: [writer]
phases:
  - {name: draft, agent: "json:dumps", timeout: 10, retries: 2}
  - name: review
    agent: "json:dumps"
    depends_on: [draft]
    condition: {type: result_contains, phase: draft, value: ok}
error_handling: {continue_on_error: true, max_total_retries: 3}
output: {save_to_file: false}
""",
    """\
name: shapes
steps:
  - id: fan
    kind: parallel
    branches:
      - {id: l, kind: tool, tool: "os:getcwd", <<: {timeout: 5}}
      - {id: r, kind: tool, tool: "os:getcwd", fallback: {id: f, kind: tool, tool: "os:getcwd"}}
  - id: pick
    kind: condition
    condition: "os.path:exists"
    if_true:
      {id: t, kind: loop, while: "os.path:isdir", step: {id: body, kind: tool, tool: "os:getcwd"}}
""",
]
SEED_CONFIGS = [yaml.safe_load(doc) for doc in VALID_YAML]


@st.composite
def mutated_config(draw: st.DrawFn) -> dict[str, Any]:
    """A valid config (a seed file's) with one or two values replaced, added or removed
    anywhere in it, so most of it still passes and the fuzzing reaches past the schema."""
    config = copy.deepcopy(draw(st.sampled_from(SEED_CONFIGS)))
    for _ in range(draw(st.integers(1, 2))):
        slots: list[tuple[Any, Any]] = []
        todo: list[Any] = [config]
        while todo:
            node = todo.pop()
            keys = list(node) if isinstance(node, dict) else range(len(node))
            for key in keys:
                slots.append((node, key))
                if isinstance(node[key], dict | list):
                    todo.append(node[key])
        if not slots:  # everything was deleted
            break
        node, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace", "delete", "add", "number", "number"]))
        hostile = st.one_of(edge_numbers, scalars, retry, steps, values)
        if action == "number":  # the fields that reach native code as counts and seconds
            dicts = [n for n, _ in slots if isinstance(n, dict)] + [config]
            target = draw(st.sampled_from(dicts))
            target[draw(st.sampled_from(number_keys(target, config)))] = draw(edge_numbers)
        elif action == "replace":
            node[key] = draw(hostile)
        elif action == "delete":
            del node[key]
        elif isinstance(node, dict):
            node[draw(st.sampled_from(TOP_KEYS + STEP_KEYS + RETRY_KEYS))] = draw(hostile)
        else:
            node.append(draw(hostile))
    return config


# Mostly near-valid configs: random ones rarely get past the schema.
any_config = st.one_of(mutated_config(), mutated_config(), mutated_config(), configs)


@FUZZ
@given(config=any_config)
def test_from_config_raises_only_batten_errors(config):
    only_batten_errors(lambda: Workflow.from_config(config))


@FUZZ
@given(config=any_config)
def test_a_config_written_as_json_raises_only_batten_errors(fuzz_dir, config):
    path = fuzz_dir / "wf.json"
    path.write_text(json.dumps(config, default=str), encoding="utf-8")
    only_batten_errors(lambda: load_workflow(path, resolve=False))


SNIPPETS = [
    "&a ", "*a", "<<: *a", "!!int ", "!!float ", "!!binary ", "!!python/object:os.system ",
    "!!timestamp ", "!!set ", "1e999", ".nan", "-.inf", "18446744073709551616", "2.0", "[",
    "]", "{", "}", ": ", "- ", "\n  ", "\t", "\x00", "\x1b", "\ufeff", "---\n", "...\n", "? ",
    "|\n", ">-\n", '"', "'", "#", "%YAML 1.1\n", "\\u0000", "~", "null", "id: a", "kind: map",
]  # fmt: skip


@st.composite
def mutated_yaml(draw: st.DrawFn) -> str:
    """A valid workflow text with a few random edits: cuts, repeats and hostile snippets."""
    doc = draw(st.sampled_from(VALID_YAML))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(doc)))
        edit = draw(st.sampled_from(["insert", "delete", "repeat"]))
        if edit == "insert":
            doc = (
                doc[:at]
                + draw(st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=3)))
                + doc[at:]
            )
        elif edit == "delete":
            doc = doc[:at] + doc[at + draw(st.integers(1, 20)) :]
        else:
            piece = doc[at : at + draw(st.integers(1, 40))]
            doc = doc[:at] + piece * draw(st.integers(2, 6)) + doc[at:]
    return doc


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(
    text=st.one_of(mutated_yaml(), st.text(max_size=200)),
    suffix=st.sampled_from([".yaml", ".json"]),
)
def test_a_mutated_or_random_file_raises_only_batten_errors(fuzz_dir, text, suffix):
    path = fuzz_dir / f"wf{suffix}"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    only_batten_errors(lambda: load_workflow(path, resolve=False))


def test_the_valid_seed_files_load(fuzz_dir):
    """The mutation seeds are valid, so the fuzzing starts next to real files."""
    for i, doc in enumerate(VALID_YAML):
        path: Path = fuzz_dir / f"seed{i}.yaml"
        path.write_text(doc, encoding="utf-8")
        assert load_workflow(path).steps
