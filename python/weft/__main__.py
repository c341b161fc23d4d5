"""``python -m weft``: the ``weft`` command line."""

from weft.cli import run

run()
