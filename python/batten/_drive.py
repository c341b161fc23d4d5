"""``batten._drive``: the path the compiled core imports ``drive`` from
(``src/py/run/mod.rs``); it lives in :mod:`batten._runtime.loops`."""

from __future__ import annotations

from batten._runtime.loops import drive

__all__ = ["drive"]
