"""Retry policies: how many attempts a step gets and how long to wait between them."""

from __future__ import annotations

from dataclasses import dataclass

from batten._internal.checks import check_count, check_seconds, is_finite_number
from batten.errors import WorkflowDefinitionError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed step is retried; the engine applies it natively.

    Follows Temporal's ``RetryPolicy`` (``initial_interval``, ``backoff_coefficient``,
    ``maximum_interval``, ``maximum_attempts``, ``non_retryable_error_types``) with jitter added.

    Args:
        max_attempts: attempts in all, counting the first (an int from 1 to ``MAX_COUNT``,
            ``2**31 - 1``). Default 3.
        initial_interval: seconds to wait after the first failed attempt (``>= 0``, at most
            ``MAX_SECONDS``, 365 days). Default 1.0.
        backoff_coefficient: each further wait is multiplied by this (finite, ``>= 1``).
            Default 2.0.
        max_interval: cap on any single wait, in seconds (``>= 0``, at most 365 days).
            Default 100.0.
        jitter: the wait is multiplied by a uniform random factor in ``[1 - jitter, 1 + jitter]``
            (then capped at ``max_interval``); ``0 <= jitter <= 1``. Default 0.1.
        retry_on: exception classes; when non-empty, only these are retried.
        non_retryable: exception classes that are never retried (checked first).

    With both tuples empty the default classification applies: timeouts, ``ConnectionError``,
    HTTP 429 and 5xx (read from an exception's ``status_code``, ``status`` or
    ``response.status_code``) and other exceptions are retried, honouring a ``retry_after``
    attribute or ``Retry-After`` header (seconds) as a minimum wait; HTTP 4xx, ``TypeError``,
    ``ValueError`` (pydantic's ``ValidationError`` included), ``AttributeError``, ``NameError``,
    ``KeyError``, ``NotImplementedError`` and :class:`~batten.BattenError` are not.

    The wait after failed attempt ``n`` (1-based) is
    ``min(initial_interval * backoff_coefficient ** (n - 1), max_interval)`` before jitter.

    Raises:
        WorkflowDefinitionError: a value is out of range (the message names the field).
    """

    max_attempts: int = 3
    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    max_interval: float = 100.0
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] = ()
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        def bad(field: str, expected: str) -> WorkflowDefinitionError:
            value = getattr(self, field)
            return WorkflowDefinitionError(f"RetryPolicy.{field} must be {expected}, got {value!r}")

        check_count(self.max_attempts, "RetryPolicy.max_attempts")
        for field in ("initial_interval", "max_interval"):
            check_seconds(getattr(self, field), f"RetryPolicy.{field}", allow_zero=True)
        coefficient = self.backoff_coefficient
        if not is_finite_number(coefficient) or coefficient < 1:
            raise bad("backoff_coefficient", "a finite number >= 1")
        if not is_finite_number(self.jitter) or not 0 <= self.jitter <= 1:
            raise bad("jitter", "a number between 0 and 1")
        for field in ("retry_on", "non_retryable"):
            classes = getattr(self, field)
            if not isinstance(classes, tuple) or not all(
                isinstance(c, type) and issubclass(c, BaseException) for c in classes
            ):
                raise bad(field, "a tuple of exception classes")

    def _engine_fields(self) -> dict[str, float]:
        """The numeric fields, as the native engine deserializes them (private)."""
        return {
            "max_attempts": self.max_attempts,
            "initial_interval": self.initial_interval,
            "backoff_coefficient": self.backoff_coefficient,
            "max_interval": self.max_interval,
            "jitter": self.jitter,
        }

    @classmethod
    def no_retry(cls) -> RetryPolicy:
        """The policy of a step without ``with_retry``: one attempt, never retried."""
        return cls(max_attempts=1, initial_interval=0.0)
