"""The package is called batten everywhere: distribution, import, native module, command, data
directory. The old name (see CHANGELOG, issue 12) belongs to an unrelated PyPI project, so
nothing here may install, create or answer to it."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import batten

# Spelled in two halves so that `grep -ri` over the repository finds the old name only in the
# CHANGELOG entry that explains the rename.
OLD = "we" + "ft"


def test_import_batten_gives_the_package_and_its_native_module() -> None:
    assert batten.__name__ == "batten"
    assert batten._core.__name__ == "batten._core"
    assert issubclass(batten.WorkflowDefinitionError, batten.BattenError)
    assert not hasattr(batten, OLD.capitalize() + "Error")


def test_the_distribution_is_batten_and_its_only_command_is_batten() -> None:
    dist = importlib.metadata.distribution("batten")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"batten": "batten.cli:run"}
    assert "batten" in (dist.read_text("top_level.txt") or "batten")


def test_no_module_of_the_old_name_is_installed_by_this_package() -> None:
    files = importlib.metadata.distribution("batten").files or []
    assert not [f for f in files if OLD in str(f).lower()]
    # An unrelated package of the old name may exist on a user's machine; ours must not provide it.
    spec = importlib.util.find_spec(OLD)
    if spec is not None:
        assert "batten" not in (spec.origin or "")


def test_the_package_source_never_says_the_old_name() -> None:
    root = Path(batten.__file__).parent
    offenders = []
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in {".py", ".pyi", ".json", ".typed"}:
            if OLD in path.read_text(encoding="utf-8").lower():
                offenders.append(path.relative_to(root))
    assert offenders == []


def test_the_installed_batten_command_runs_and_stores_runs_under_dot_batten(
    tmp_path: Path,
) -> None:
    exe = shutil.which(
        "batten", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    )
    assert exe is not None, "the batten console script is not installed"
    (tmp_path / "hello.py").write_text("def greet(name):\n    return 'hi ' + name\n")
    (tmp_path / "wf.yaml").write_text(
        textwrap.dedent(
            """\
            name: hello
            steps:
              - {id: greet, kind: tool, tool: hello:greet, args: {name: ada}}
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATTEN_", OLD.upper()))}
    proc = subprocess.run(
        [exe, "run", "wf.yaml", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hi ada" in proc.stdout
    assert (tmp_path / ".batten" / "runs.db").is_file()
    assert not [p for p in tmp_path.rglob("*") if OLD in p.name.lower()]

    via_module = subprocess.run(
        [sys.executable, "-m", "batten", "runs"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert via_module.returncode == 0, via_module.stderr
    assert "hello" in via_module.stdout
