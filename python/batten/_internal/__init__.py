"""batten's private leaf modules: the shared types and helpers every other layer may use.

Leaves: imports nothing from batten above ``errors``.
"""
