"""Hostile and malformed workflow files: every one ends as a WorkflowConfigError naming the file,
the line and the field (``batten validate`` exits 2 printing ``file:line: field: problem``),
within a small bound of time and memory, before anything of the file's runs; and a file that is
not trusted can be validated and drawn without importing or running anything of it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from batten import Workflow, WorkflowConfigError, WorkflowContext, load_workflow
from batten.cli import main
from batten.config import read_workflow
from batten.config.source import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES

#: The classic "billion laughs": 7 levels of 9 aliases each, 9**7 = 4,782,969 values expanded.
ALIAS_BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]"
        for prev, name in zip("abcdef", "bcdefg", strict=True)
    ]
)

#: The same with merge keys: each level merges the previous mapping 9 times.
MERGE_BOMB = "\n".join(
    ["l0: &l0 {k0: 1, k1: 2}"]
    + [f"l{i}: &l{i} {{<<: [{', '.join([f'*l{i - 1}'] * 9)}]}}" for i in range(1, 9)]
)

GOOD_STEP = '{id: a, kind: tool, tool: "os:getcwd"}'


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(text: str, name: str = "wf.yaml") -> str:
    Path(name).write_text(textwrap.dedent(text), encoding="utf-8")
    return name


def validate(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["validate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def batten_command(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("batten")
    return subprocess.run([str(exe), *argv], cwd=cwd, capture_output=True, text=True, timeout=120)


# -- bounded reading ---------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_in_well_under_a_second(here):
    write(ALIAS_BOMB)
    started = time.perf_counter()
    with pytest.raises(WorkflowConfigError) as caught:
        load_workflow("wf.yaml")
    assert time.perf_counter() - started < 2.0  # was 9 s and 1.2 GB
    assert caught.value.file == "wf.yaml" and caught.value.line is not None
    assert f"more than {MAX_VALUES:,} values (aliases expanded)" in caught.value.reason


def test_batten_validate_refuses_an_alias_bomb_with_exit_2(here):
    write(ALIAS_BOMB)
    done = batten_command("validate", "wf.yaml", cwd=here)
    assert done.returncode == 2
    assert re.search(r"^invalid: wf\.yaml:\d+: \S+: the document holds more than", done.stderr)
    assert "Traceback" not in done.stderr


def test_a_merge_key_bomb_is_refused_quickly(here):
    write(MERGE_BOMB)
    started = time.perf_counter()
    with pytest.raises(WorkflowConfigError, match="values"):
        load_workflow("wf.yaml")
    assert time.perf_counter() - started < 2.0


def test_a_recursive_alias_is_refused(here):
    write(f"name: t\nsteps: &s [{GOOD_STEP}, *s]\n")
    with pytest.raises(WorkflowConfigError, match=r"the alias \*s is inside the value") as caught:
        load_workflow("wf.yaml")
    assert (caught.value.line, caught.value.field) == (2, "steps[1]")


def test_aliases_and_merge_keys_share_settings_and_an_explicit_key_wins(here):
    write(
        """\
        name: t
        defaults:
          retry: &patient {max_attempts: 3, initial_interval: 0}
        steps:
          - {id: a, kind: tool, tool: "os:getcwd", retry: *patient}
          - id: b
            kind: tool
            tool: "os:getcwd"
            retry: {<<: *patient, max_attempts: 5}
        """
    )
    wf = load_workflow("wf.yaml")
    assert [s.retry_policy.max_attempts for s in wf.steps] == [3, 5]


def test_nesting_deeper_than_the_limit_is_refused_at_its_line(here):
    write("name: t\nsteps:\n  - {id: a, kind: tool, args: {x: " + "[" * 3000 + "\n")
    with pytest.raises(WorkflowConfigError) as caught:
        load_workflow("wf.yaml")
    assert caught.value.line == 3 and caught.value.field.startswith("steps[0].args.x")
    assert f"more than {MAX_DEPTH} levels deep" in caught.value.reason


def test_a_file_larger_than_1_mib_is_refused(here):
    body = f"name: t\nsteps: [{GOOD_STEP}]\n"
    Path("wf.yaml").write_text(body + "# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    with pytest.raises(WorkflowConfigError, match="larger than 1,048,576 bytes"):
        load_workflow("wf.yaml")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_file_is_refused_after_1_mib():
    with pytest.raises(WorkflowConfigError, match="larger than"):
        load_workflow("/dev/zero")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_is_refused_at_once_not_waited_on(here):
    # Opening a FIFO for reading waits for a writer: without a check, load_workflow blocked
    # forever. Run in a child process so the bug, if it came back, fails on the timeout.
    os.mkfifo("wf.yaml")
    code = textwrap.dedent(
        """
        from batten import WorkflowConfigError, load_workflow
        try:
            load_workflow("wf.yaml")
        except WorkflowConfigError as exc:
            print(exc.file, "|", exc.reason)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr[-2000:]
    assert stdout.startswith("wf.yaml |") and "not a regular file" in stdout, stdout


def test_a_config_dict_that_contains_itself_is_refused():
    config: dict = {"name": "t", "steps": [{"id": "a", "kind": "tool", "tool": "os:getcwd"}]}
    config["steps"][0]["args"] = {"again": config}
    with pytest.raises(WorkflowConfigError, match="levels deep"):
        Workflow.from_config(config)


# -- every bad value is a WorkflowConfigError at its line ----------------------------------------

STEP = 'name: t\nsteps:\n  - id: a\n    kind: tool\n    tool: "os:getcwd"\n    {}\n'
TOP = 'name: t\n{}\nsteps:\n  - {{id: a, kind: tool, tool: "os:getcwd"}}\n'

BAD_YAML = {
    "control character": ("name: t\nsteps: []\ndescription: a\x01b\n", 3, None, "U+0001"),
    "!!int many": (STEP.format("retry: !!int many"), 6, "steps[0].retry", "'many' is not"),
    "!!timestamp xyz": (STEP.format("retry: !!timestamp xyz"), 6, "steps[0].retry", "'xyz' is"),
    "3000 nested [": ("name: [" + "[" * 3000 + "\n", 1, "name[0][0]", "levels deep"),
    "timeout 1.0e+20": (STEP.format("timeout: 1.0e+20"), 6, "steps[0].timeout", "maximum"),
    "timeout 2**64": (
        STEP.format("timeout: 18446744073709551616"),
        6,
        "steps[0].timeout",
        "greater than the maximum of 31536000 seconds",
    ),
    "timeout .nan": (STEP.format("timeout: .nan"), 6, "steps[0].timeout", "not a finite"),
    "interval 1e+300": (
        STEP.format("retry: {max_attempts: 2, max_interval: 1.0e+300}"),
        6,
        "steps[0].retry.max_interval",
        "maximum",
    ),
    "max_parallel_steps 2**64": (
        TOP.format("max_parallel_steps: 18446744073709551616"),
        2,
        "max_parallel_steps",
        "greater than the maximum of 2147483647",
    ),
    "max_total_retries 2**63": (
        TOP.format("max_total_retries: 9223372036854775808"),
        2,
        "max_total_retries",
        "greater than the maximum of 2147483647",
    ),
    "retry 2.0": (STEP.format("retry: 2.0"), 6, "steps[0].retry", "2.0 is not an integer"),
    "unknown field beside a non-string kind": (
        TOP.format("kind: [1]"),
        2,
        "kind",
        "unknown field 'kind' for the workflow",
    ),
    "top level a list": (f"- {GOOD_STEP}\n", 1, "<document>", "holds a mapping, got list"),
    "steps not a list": ("name: t\nsteps: 3\n", 2, "steps", "not of type 'array'"),
    "a step not a mapping": ("name: t\nsteps: [3]\n", 2, "steps[0]", "not of type 'object'"),
    "empty approvers": (
        "name: t\nsteps:\n  - {id: a, kind: approval, prompt: ok?, approvers: []}\n",
        3,
        "steps[0].approvers",
        "would let anyone decide",
    ),
    "a python tag": (
        "name: t\nsteps: !!python/object/apply:os.system [echo hi]\n",
        2,
        "steps",
        "not supported",
    ),
    "phases: depends_on not a list": (
        "name: t\nphases:\n  - {name: a, agent: 'os:getcwd', depends_on: 5}\n",
        3,
        "phases[0].depends_on",
        "a list of phase names",
    ),
    "phases: output not a mapping": (
        "name: t\noutput: 5\nphases:\n  - {name: a, agent: 'os:getcwd'}\n",
        2,
        "output",
        "must be a mapping",
    ),
}


@pytest.mark.parametrize("case", BAD_YAML, ids=list(BAD_YAML))
def test_bad_yaml_is_a_config_error_at_its_line_and_field(here, case):
    text, line, field, problem = BAD_YAML[case]
    Path("wf.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(WorkflowConfigError) as caught:
        load_workflow("wf.yaml")
    error = caught.value
    assert (error.file, error.line) == ("wf.yaml", line), str(error)
    assert error.field == field or (field and error.field.startswith(field)), str(error)
    assert problem in error.reason


@pytest.mark.parametrize("case", BAD_YAML, ids=list(BAD_YAML))
def test_batten_validate_exits_2_with_file_line_field_problem(here, capsys, case):
    text, line, field, problem = BAD_YAML[case]
    Path("wf.yaml").write_text(text, encoding="utf-8")
    code, _, err = validate(capsys, "wf.yaml")
    assert code == 2
    where = f"wf.yaml:{line}: " + (f"{re.escape(field)}\\S*: " if field else "")
    assert re.match(f"invalid: {where}.*{re.escape(problem)}", err), err


def test_a_panicking_timeout_never_reaches_the_batten_process(here):
    Path("wf.yaml").write_text(STEP.format("timeout: 1.0e+20"))
    done = batten_command("validate", "wf.yaml", cwd=here)
    assert done.returncode == 2 and done.stderr.startswith("invalid: wf.yaml:6: steps[0].timeout")
    assert "panicked" not in done.stderr and "Traceback" not in done.stderr


BAD_JSON = {
    "timeout 1e20": ({"timeout": 1e20}, "steps[0].timeout", "maximum"),
    "timeout NaN": ({"timeout": float("nan")}, None, "not a JSON value"),
    "retry 2.0": ({"retry": 2.0}, "steps[0].retry", "not an integer"),
    "max_attempts 2**64": (
        {"retry": {"max_attempts": 2**64}},
        "steps[0].retry.max_attempts",
        "maximum",
    ),
}


@pytest.mark.parametrize("case", BAD_JSON, ids=list(BAD_JSON))
def test_bad_json_is_a_config_error_at_its_line_and_field(here, case):
    extra, field, problem = BAD_JSON[case]
    step = {"id": "a", "kind": "tool", "tool": "os:getcwd", **extra}
    Path("wf.json").write_text(json.dumps({"name": "t", "steps": [step]}, indent=2))
    with pytest.raises(WorkflowConfigError) as caught:
        load_workflow("wf.json")
    assert caught.value.file == "wf.json" and caught.value.line is not None
    assert field is None or caught.value.field == field
    assert problem in caught.value.reason


def test_json_nested_3000_deep_is_a_config_error(here):
    Path("wf.json").write_text('{"name": "t", "steps": ' + "[" * 3000 + "]" * 3000 + "}")
    with pytest.raises(WorkflowConfigError, match="levels deep") as caught:
        load_workflow("wf.json")
    assert caught.value.line == 1


def test_json_numbers_keep_their_json_meaning(here):
    step = '{"id": "a", "kind": "tool", "tool": "os:getcwd", "timeout": 1e2}'
    Path("wf.json").write_text('{"name": "t", "steps": [' + step + "]}")
    assert load_workflow("wf.json").steps[0].timeout == 100.0  # YAML 1.1 would read "1e2"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"timeout": 1e20}, "steps[0].timeout"),
        ({"timeout": float("inf")}, "steps[0].timeout"),
        ({"retry": 2.0}, "steps[0].retry"),
        ({"retry": {"max_attempts": 2**63}}, "steps[0].retry.max_attempts"),
    ],
)
def test_bad_values_in_a_config_dict_are_config_errors(extra, field):
    step = {"id": "a", "kind": "tool", "tool": "os:getcwd", **extra}
    with pytest.raises(WorkflowConfigError) as caught:
        Workflow.from_config({"name": "t", "steps": [step]})
    assert caught.value.field == field


def test_a_fallback_workflow_file_that_falls_back_to_itself_is_refused(here):
    write(f"name: t\nfallback_workflow: wf.yaml\nsteps: [{GOOD_STEP}]\n")
    with pytest.raises(WorkflowConfigError, match="the fallbacks form a cycle") as caught:
        load_workflow("wf.yaml")
    assert (caught.value.line, caught.value.field) == (2, "fallback_workflow")


# -- untrusted files: validate and graph without importing ----------------------------------------

EVIL_MODULE = """\
from pathlib import Path
Path("imported.marker").write_text("the module ran")
"""

EVIL = """\
name: evil
imports: [evilmod]
steps:
  - {id: wipe, kind: tool, tool: "os:system", args: {command: "touch ran.marker"}}
  - {id: check, kind: tool, tool: "evilmod:helper", condition: "evilmod:always",
     depends_on: [wipe]}
"""


@pytest.fixture
def evil(here):
    (here / "evilmod.py").write_text(EVIL_MODULE)
    write(EVIL)
    return here


def test_validate_no_import_runs_nothing_and_lists_what_it_did_not_check(evil):
    done = batten_command("validate", "--no-import", "wf.yaml", cwd=evil)
    assert done.returncode == 0, done.stderr
    assert not (evil / "imported.marker").exists() and not (evil / "ran.marker").exists()
    assert "wf.yaml: valid without importing (2 steps, workflow 'evil')" in done.stdout
    for listed in (
        "wf.yaml:2: imports[0]: evilmod",
        "wf.yaml:4: steps[0].tool: os:system",
        "wf.yaml:5: steps[1].tool: evilmod:helper",
        "wf.yaml:5: steps[1].condition: evilmod:always",
    ):
        assert listed in done.stdout


def test_validate_no_import_json_lists_what_it_did_not_check(evil):
    done = batten_command("validate", "--no-import", "--json", "wf.yaml", cwd=evil)
    doc = json.loads(done.stdout)
    assert doc["valid"] is True and not (evil / "imported.marker").exists()
    assert {"file": "wf.yaml", "line": 4, "field": "steps[0].tool", "reference": "os:system"} in (
        doc["not_imported"]
    )


def test_validate_no_import_still_reports_a_malformed_file(evil):
    write(EVIL.replace("depends_on: [wipe]", "depends_on: [wipes]"))
    done = batten_command("validate", "--no-import", "wf.yaml", cwd=evil)
    assert done.returncode == 2 and "wf.yaml:6: steps[1].depends_on[0]:" in done.stderr
    assert not (evil / "imported.marker").exists()


def test_graph_imports_nothing_by_default_and_shows_references_as_written(evil):
    done = batten_command("graph", "wf.yaml", cwd=evil)
    assert done.returncode == 0, done.stderr
    assert "tool: os:system" in done.stdout and "tool: evilmod:helper" in done.stdout
    assert not (evil / "imported.marker").exists() and not (evil / "ran.marker").exists()


def test_graph_import_resolves_and_so_runs_the_imports(evil):
    (evil / "evilmod.py").write_text(
        EVIL_MODULE + "def helper():\n    return 1\ndef always(context):\n    return True\n"
    )
    done = batten_command("graph", "--import", "wf.yaml", cwd=evil)
    assert done.returncode == 0, done.stderr
    assert (evil / "imported.marker").exists() and not (evil / "ran.marker").exists()
    assert "tool: helper" in done.stdout


def test_validate_imports_by_default(evil):
    done = batten_command("validate", "wf.yaml", cwd=evil)
    assert (evil / "imported.marker").exists()
    assert done.returncode == 2 and "evilmod' has no attribute 'helper'" in done.stderr


@pytest.mark.parametrize(("command", "flag"), [("validate", "--no-import"), ("graph", "--import")])
def test_help_says_workflow_files_are_code(capsys, command, flag):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "A workflow file is code" in text and flag in text and "os:system" in text


def test_a_workflow_loaded_without_importing_cannot_run_its_steps(evil):
    wf = load_workflow("wf.yaml", resolve=False)
    result = asyncio.run(wf.execute(WorkflowContext(wf.workflow_id)))
    assert result.steps[0].status == "failed"
    assert "'os:system' was not imported" in result.steps[0].error
    assert not (evil / "imported.marker").exists() and not (evil / "ran.marker").exists()


def test_read_workflow_lists_unresolved_references_in_file_order(evil):
    loaded = read_workflow("wf.yaml", resolve=False)
    assert [(u.line, u.field, u.reference) for u in loaded.unresolved] == [
        (2, "imports[0]", "evilmod"),
        (4, "steps[0].tool", "os:system"),
        (5, "steps[1].tool", "evilmod:helper"),
        (5, "steps[1].condition", "evilmod:always"),
    ]
    assert os.path.isabs(loaded.workflow.source)


# -- messages ------------------------------------------------------------------------------------


def test_a_typo_under_defaults_retry_suggests_the_field_and_names_its_path(here, capsys):
    write(f"name: t\ndefaults:\n  retry: {{max_atempts: 3}}\nsteps: [{GOOD_STEP}]\n")
    code, _, err = validate(capsys, "wf.yaml")
    assert code == 2
    assert err.strip() == (
        "invalid: wf.yaml:3: defaults.retry.max_atempts: unknown field 'max_atempts'; "
        "did you mean 'max_attempts'?"
    )


def test_graph_labels_a_map_with_its_items_reference_as_written(here, capsys):
    write(
        """\
        name: m
        steps:
          - {id: discover, kind: tool, tool: "os:listdir"}
          - {id: each, kind: map, items: "{discover.result}",
             step: {id: one, kind: tool, tool: "os:path.basename"}}
        """
    )
    assert main(["graph", "wf.yaml"]) == 0
    out = capsys.readouterr().out
    assert "map over {discover.result} → one" in out and "source()" not in out
