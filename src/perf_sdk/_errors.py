"""The one exception hierarchy of perf_sdk.

Every error the SDK raises is a :class:`PerfSdkError`, so a service can catch the
SDK's failures without catching its own. At run time the recording calls never
raise (unless ``strict=True``): these classes reach the host through the
``on_error`` hook, logs and counters instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

__all__ = [
    "RETRYABLE_STATUSES",
    "ConfigurationError",
    "PerfSdkError",
    "RejectedError",
    "RetryableError",
    "TransportError",
    "ValidationError",
    "error_class_for_status",
    "scrub",
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
    """The SDK is set up wrongly; the message says what to set, and where.

    ``cli_message`` says the same in the command line's words (``--secret``
    rather than ``secret=``); the ``perf-sdk`` command prints it. It is the
    message itself when the two read alike.
    """

    def __init__(self, message: str, *, cli_message: str | None = None) -> None:
        super().__init__(message)
        self.cli_message = cli_message or message


class TransportError(PerfSdkError):
    """Talking to the platform failed.

    ``status`` is the HTTP status when there was an answer (``None`` for a
    connection failure or time-out); ``messages`` are the platform's own words;
    ``reason`` is the failure in a few words ("connection refused", "answered
    503"), for a line that says what delivery is waiting for.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        messages: list[str] | None = None,
        reason: str | None = None,
    ) -> None:
        self.status = status
        self.messages = list(messages or [])
        self.reason = reason or (f"answered {status}" if status is not None else None)
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
        reason: str | None = None,
    ) -> None:
        super().__init__(message, status=status, messages=messages, reason=reason)
        self.retry_after = retry_after


#: The 4xx answers that may pass if asked again (time-out, too early, rate limit); every
#: 5xx is retryable too. The one rule for the write and the read side.
RETRYABLE_STATUSES: Final = frozenset({408, 425, 429})


def error_class_for_status(status: int) -> type[RejectedError] | type[RetryableError]:
    """Which error a non-success HTTP status is: retry it, or stop and say why.

    Decided here once, so the uploader and the KPI reader never disagree about
    whether a 425 is worth another try.
    """
    return RetryableError if status in RETRYABLE_STATUSES or status >= 500 else RejectedError


#: Credentials however a server might echo them: an ``Authorization`` header line,
#: a bearer or basic credential, a ``token=`` / ``secret=`` pair.
_CREDENTIAL_RE: Final = re.compile(
    r"(?i)(authorization\s*[:=]\s*)?\b(bearer|basic)\s+[^\s\"',;&}\]]+"
    r"|\b(token|secret|password|api[_-]?key)(\"?\s*[:=]\s*\"?)[^\s\"',;&}\]]+"
)
#: Configured values shorter than this are not searched for (a test's ``token="t"``
#: would otherwise blank every letter t); real tokens and secrets are far longer.
_MIN_SECRET_LENGTH: Final = 4
REDACTED: Final = "<redacted>"


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` from a server (an error message, a body) with credentials taken out.

    A platform, proxy or hostile endpoint may echo the request's ``Authorization``
    header back; that text then travels to logs, ``on_error``, ``health()`` and the
    dead-letter table. Every server-provided text passes through here first: each
    known secret value is replaced wherever it appears, and so is anything shaped
    like a credential (``Bearer ...``, ``token=...``).
    """
    for value in sorted({v for v in secrets if v and len(v) >= _MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return _CREDENTIAL_RE.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    if match.group(2):  # Authorization: Bearer xyz -> Authorization: Bearer <redacted>
        return f"{match.group(1) or ''}{match.group(2)} {REDACTED}"
    return f"{match.group(3)}{match.group(4)}{REDACTED}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
