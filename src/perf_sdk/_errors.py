"""The one exception hierarchy of perf_sdk.

Every error the SDK raises is a :class:`PerfSdkError`, so a service can catch the
SDK's failures without catching its own. At run time the recording calls never
raise (unless ``strict=True``): these classes reach the host through the
``on_error`` hook, logs and counters instead.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigurationError",
    "PerfSdkError",
    "RejectedError",
    "RetryableError",
    "TransportError",
    "ValidationError",
]


class PerfSdkError(Exception):
    """Base class of every error perf_sdk raises."""


class ValidationError(PerfSdkError, ValueError):
    """A record, or one argument of a recording call, breaks a rule.

    ``field`` names the argument (``rating``, ``at``, ``channel`` ...), ``value``
    is what was given (never a secret: transaction ids are shown hashed or not at
    all) and ``rule`` says what would have been accepted.
    """

    def __init__(self, field: str, value: Any, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"{field}={_short(value)}: {rule}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.field, self.value, self.rule))


class ConfigurationError(PerfSdkError):
    """The SDK is set up wrongly; the message says what to set, and where."""


class TransportError(PerfSdkError):
    """Talking to the platform failed.

    ``status`` is the HTTP status when there was an answer (``None`` for a
    connection failure or time-out); ``messages`` are the platform's own words.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        messages: list[str] | None = None,
    ) -> None:
        self.status = status
        self.messages = list(messages or [])
        super().__init__(message)


class RejectedError(TransportError):
    """The platform refused the request for good (a 4xx other than 408/429).

    Sending the same bytes again will fail the same way: the records are
    dead-lettered (400) or their data set is paused until the configuration is
    fixed (401/403/404).
    """


class RetryableError(TransportError):
    """A failure that may pass: 5xx, 408, 429, a dropped connection, a time-out.

    ``retry_after`` is the platform's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        messages: list[str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, messages=messages)
        self.retry_after = retry_after


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
