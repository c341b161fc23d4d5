"""README.md's Python examples run as written, and print what their comments say they print."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _expected(block: str) -> list[str]:
    """The `# ...` comment lines right after a `print(...)`: what the block prints."""
    lines = block.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines[:-1]):
        nxt = lines[i + 1]
        if line.startswith("print(") and nxt.startswith("# "):
            out.append(nxt[2:])
    return out


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(block: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", block],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.splitlines()
    for want in _expected(block):
        assert want in printed, f"README says {want!r}; the example printed {printed}"
