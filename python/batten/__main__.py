"""``python -m batten``: the ``batten`` command line."""

from batten.cli import run

run()
