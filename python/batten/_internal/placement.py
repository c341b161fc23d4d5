"""Where a step's callable runs: in this process (default) or as a Ray task (private, layer
``batten._internal``; :class:`RayExecutor` is public as ``batten.RayExecutor``).

Data only: nothing here imports Ray. Checking that ``ray`` can be imported is
``importlib.util.find_spec`` (no import); the runtime (:mod:`batten._runtime.ray_steps`) imports
Ray when a workflow with a step placed on it is compiled.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from typing import Any

from batten.errors import WorkflowDefinitionError

__all__ = ["RayExecutor", "RayPlacement", "require_ray"]

RAY_EXTRA = "pip install 'batten[ray]'"
#: ``on_ray(output=...)``: the output comes back (``"value"``) or stays in Ray (``"ref"``).
OUTPUTS = ("value", "ref")


def require_ray(owner: str) -> None:
    """Raises when ``ray`` is not installed (``owner`` names who needs it, e.g. ``"step 'x'"``).

    Raises:
        WorkflowDefinitionError: ``ray`` cannot be imported; the message names the
            ``batten[ray]`` extra.
    """
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # blocked, or a broken install
        found = False
    if not found:
        raise WorkflowDefinitionError(
            f"{owner} runs on Ray, but the 'ray' package is not installed: {RAY_EXTRA}"
        )


def _check_runtime_env(value: Any, owner: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise WorkflowDefinitionError(
            f"{owner}: runtime_env must be a dict with str keys (Ray's runtime_env), "
            f"got {value!r:.80}"
        )
    return dict(value)


def _check_amount(value: Any, name: str, owner: str, *, integer: bool = False) -> Any:
    if value is None:
        return None
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
    if integer:
        ok = ok and isinstance(value, int)
    if not ok:
        kind = "a non-negative int" if integer else "a non-negative number"
        raise WorkflowDefinitionError(f"{owner}: {name} must be {kind}, got {value!r:.80}")
    return value


class RayExecutor:
    """Runs steps as tasks on a Ray cluster (``batten[ray]`` extra), as Ray's own
    ``ray.init`` connects a driver.

    Give it to a workflow (``Workflow(..., executor=RayExecutor())``, ``with_executor``,
    ``batten run --executor ray[=ADDRESS]``, ``executor:`` in a workflow file): every agent and
    tool step then runs as a Ray task, placed by its ``on_ray(...)`` settings if it has any.
    batten keeps scheduling, retries, timeouts, cancellation, rate limits, breakers,
    checkpoints, events and tracing; Ray only runs the callable (``max_retries=0``).

    Args:
        address: ``None`` (default: Ray's own choice, ``RAY_ADDRESS`` or a new local
            cluster), ``"auto"`` (the cluster this machine belongs to), ``"host:port"`` of a
            head node, or ``"ray://host:port"`` (Ray Client).
        runtime_env: Ray's ``runtime_env`` dict for the job (``pip``, ``env_vars``,
            ``working_dir``...), default none.
        namespace: the Ray namespace (str) of the job, default Ray's anonymous one.

    The connection (``ray.init``) is made by the first step submitted; when Ray is already
    initialized in the process (the application called ``ray.init``), that connection is used
    as it is.

    Raises:
        WorkflowDefinitionError: ``ray`` is not installed (the message names the
            ``batten[ray]`` extra), or an argument has the wrong type.
    """

    __slots__ = ("address", "namespace", "runtime_env")

    def __init__(
        self,
        address: str | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        namespace: str | None = None,
    ) -> None:
        owner = "RayExecutor"
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise WorkflowDefinitionError(
                f"{owner}: address must be None, 'auto', 'host:port' or 'ray://host:port', "
                f"got {address!r:.80}"
            )
        if namespace is not None and not isinstance(namespace, str):
            raise WorkflowDefinitionError(
                f"{owner}: namespace must be a str, got {type(namespace).__name__}"
            )
        require_ray(owner)
        self.address = address
        self.runtime_env = _check_runtime_env(runtime_env, owner)
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, namespace={self.namespace!r})"


class RayPlacement:
    """A step's ``on_ray(...)`` settings: Ray's task resources (``None``: Ray's default).

    Immutable; equal when every field is equal, as the frozen dataclass it was (NOTE: a plain
    slotted class since issue 18: ``dataclasses`` is not imported by ``batten.workflow``).

    Args:
        num_cpus: CPUs per task, or ``None``.
        num_gpus: GPUs per task, or ``None``.
        memory: bytes of memory per task, or ``None``.
        resources: custom resources (name to amount), or ``None``.
        runtime_env: Ray's ``runtime_env`` for the task, or ``None``.
        output: ``"value"``: the output comes back to this process; ``"ref"``: it stays in
            Ray's object store and the run holds its ``ObjectRef``. Default ``"value"``.
    """

    __slots__ = ("memory", "num_cpus", "num_gpus", "output", "resources", "runtime_env")

    num_cpus: float | None
    num_gpus: float | None
    memory: int | None
    resources: dict[str, float] | None
    runtime_env: dict[str, Any] | None
    output: str

    def __init__(
        self,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        memory: int | None = None,
        resources: dict[str, float] | None = None,
        runtime_env: dict[str, Any] | None = None,
        output: str = "value",
    ) -> None:
        init = object.__setattr__
        init(self, "num_cpus", num_cpus)
        init(self, "num_gpus", num_gpus)
        init(self, "memory", memory)
        init(self, "resources", resources)
        init(self, "runtime_env", runtime_env)
        init(self, "output", output)

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.num_cpus,
            self.num_gpus,
            self.memory,
            self.resources,
            self.runtime_env,
            self.output,
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"RayPlacement is immutable: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"RayPlacement is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, RayPlacement)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy: rebuilt by the constructor
        return (RayPlacement, self._fields())

    def __repr__(self) -> str:
        return (
            f"RayPlacement(num_cpus={self.num_cpus!r}, num_gpus={self.num_gpus!r}, "
            f"memory={self.memory!r}, resources={self.resources!r}, "
            f"runtime_env={self.runtime_env!r}, output={self.output!r})"
        )

    @classmethod
    def checked(
        cls,
        owner: str,
        num_cpus: Any = None,
        num_gpus: Any = None,
        memory: Any = None,
        resources: Any = None,
        runtime_env: Any = None,
        output: Any = "value",
    ) -> RayPlacement:
        """The placement, each value checked; raises ``WorkflowDefinitionError`` naming
        ``owner`` and the field."""
        if output not in OUTPUTS:
            raise WorkflowDefinitionError(
                f"{owner}: output must be one of {', '.join(map(repr, OUTPUTS))}, "
                f"got {output!r:.80}"
            )
        if resources is not None:
            if not isinstance(resources, Mapping) or not all(isinstance(k, str) for k in resources):
                raise WorkflowDefinitionError(
                    f"{owner}: resources must be a dict of str to amounts, got {resources!r:.80}"
                )
            resources = {
                k: _check_amount(v, f"resources[{k!r}]", owner) for k, v in resources.items()
            }
        return cls(
            _check_amount(num_cpus, "num_cpus", owner),
            _check_amount(num_gpus, "num_gpus", owner),
            _check_amount(memory, "memory (bytes)", owner, integer=True),
            resources,
            _check_runtime_env(runtime_env, owner),
            output,
        )

    def options(self) -> dict[str, Any]:
        """The Ray ``.options(...)`` this placement sets (those not ``None``)."""
        names = ("num_cpus", "num_gpus", "memory", "resources", "runtime_env")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}
