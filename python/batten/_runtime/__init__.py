"""The runtime (private, layer ``batten._runtime``): how a workflow runs, below the public
facades (``batten.workflow``, ``batten.durable``, ``batten.events``) and above the step model.

- :mod:`.compile`: steps into native plans (the step model's ``CompileContext``), and the
  plan cache;
- :mod:`.run`: starting a plan and waiting for its outcome;
- :mod:`.recovery`, :mod:`.isolation` and :mod:`.cache`: wrappers around a step's call,
  registered into compile;
- :mod:`.durable`: a durable run's executing side (journal, pause/cancel watch, its end);
- :mod:`.lifecycle`: execute, resume, compensate, fallback workflow;
- :mod:`.subscribers` and :mod:`.streaming`: delivering a run's events;
- :mod:`.telemetry`: OpenTelemetry spans and metrics of runs (registered into compile);
- :mod:`.ray_steps`: steps placed on a Ray cluster (registered into compile);
- :mod:`.loops`: the coroutine async steps run in and the per-thread loops of ``Workflow.run``.

Importing this package registers the recovery, isolation, cache and telemetry wrappers with
the compiler (compile never imports them: the arrows point one way).
"""

from __future__ import annotations

from batten._runtime import cache, compile, isolation, ray_steps, recovery, telemetry

__all__ = ["cache", "compile", "isolation", "ray_steps", "recovery", "telemetry"]
