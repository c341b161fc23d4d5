"""The ``weft`` command line (``weft run FILE``, ``weft resume RUN_ID``, ...); see
:mod:`weft.cli.main`. ``python -m weft`` runs it too."""

from __future__ import annotations

from weft.cli.main import main, run

__all__ = ["main", "run"]
