"""The leaves of batten's Python package (private): what every layer above may share.

Argument checks (:mod:`.checks`), statuses (:mod:`.status`), compile options (:mod:`.options`),
the run's contextvars (:mod:`.context`), ``{step.result}`` / ``{inputs.name}`` templates
(:mod:`.templates`), nested-run outcome helpers (:mod:`.outcome`), the typed run events
(:mod:`.events`), the step-change counter (:mod:`.epoch`), the nominal kinds that let a lower
layer recognise a workflow or a result without importing it (:mod:`.kinds`), and what a step
says about itself for drawing (:mod:`.view`).

A module here imports only the standard library, ``batten._core``, :mod:`batten.errors` and
other ``_internal`` modules (``TYPE_CHECKING``-only imports aside); ``make lint`` checks it.
"""
