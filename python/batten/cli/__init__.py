"""The ``batten`` command line (``batten run FILE``, ``batten resume RUN_ID``, ...); see
:mod:`batten.cli.main`. ``python -m batten`` runs it too."""

from __future__ import annotations

from batten.cli.main import main, run

__all__ = ["main", "run"]
