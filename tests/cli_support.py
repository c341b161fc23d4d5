"""Helpers shared by the CLI test modules: write a workflow file, run ``batten`` in-process,
find the run id it printed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from batten.cli import main


def write(text: str, name: str = "wf.yaml") -> str:
    """Writes ``text`` (dedented) to ``name`` in the working directory; returns ``name``."""
    Path(name).write_text(textwrap.dedent(text))
    return name


def batten_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Runs ``batten ARGV...`` in-process: ``(exit code, stdout, stderr)``."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_id_of(err: str) -> str:
    """The run id from the ``run <id> of <workflow>`` line ``batten run`` prints on stderr."""
    for line in err.splitlines():
        if line.startswith("run ") and " of " in line:
            return line.split()[1]
    raise AssertionError(f"no run id in {err!r}")
