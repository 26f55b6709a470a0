"""The Performance Platform write protocol over httpx: one request, one verdict.

A transport knows nothing of spools, batching or retries (that is the
uploader's job); it sends one body to one data set and turns the answer into
success or a :class:`~perf_sdk.TransportError` the uploader can act on:

=====================  ====================================================
answer                 raises
=====================  ====================================================
200 ``{"status":"ok"}``  nothing: stored
400, 422               ``RejectedError`` (bad records: bisect, dead-letter)
413                    ``RejectedError`` (too large: split the batch)
401, 403, 404, other   ``RejectedError`` (configuration: pause the data set)
408, 425, 429, 5xx     ``RetryableError`` with ``retry_after``
200 with another body  ``RetryableError`` (not a clear success; re-sending is
                       harmless because the platform upserts by ``_id``)
time-out, dropped      ``RetryableError``
=====================  ====================================================

Tokens travel only in the ``Authorization`` header and never appear in a log
line, a repr or an exception.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import ssl
import time
from pathlib import Path
from typing import Any, Protocol

import httpx

from perf_sdk._errors import RejectedError, RetryableError
from perf_sdk._version import __version__

__all__ = ["HttpTransport", "Transport", "parse_retry_after"]

USER_AGENT = f"perf-sdk/{__version__}"
_RETRYABLE_4XX = {408, 425, 429}


class Transport(Protocol):
    """What the uploader needs of a way to reach the platform."""

    def send(self, data_type: str, body: bytes) -> None:
        """Store ``body`` (a JSON array of records) in ``data_type``, or raise a TransportError."""

    def close(self) -> None: ...


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _messages(response: httpx.Response) -> list[str]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        text = response.text[:200].strip()
        return [text] if text else []
    if isinstance(body, dict):
        if isinstance(body.get("messages"), list):
            return [str(m) for m in body["messages"]]
        if body.get("message"):
            return [str(body["message"])]
    return []


class HttpTransport:
    """POST ``/data/<service>/<data_type>`` with a bearer token per data set.

    One ``httpx.Client`` (connection kept alive), TLS verified against the
    system's CAs or ``ca_bundle``; bodies above ``gzip_threshold`` bytes are
    gzip-compressed.
    """

    def __init__(
        self,
        endpoint: str,
        service: str,
        tokens: dict[str, str | None],
        *,
        default_token: str | None = None,
        timeout: float = 10.0,
        gzip_threshold: int = 32_768,
        ca_bundle: Path | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.service = service
        self._tokens = dict(tokens)
        self._default_token = default_token
        self.gzip_threshold = gzip_threshold
        verify: ssl.SSLContext | bool = True
        if ca_bundle is not None:
            verify = ssl.create_default_context(cafile=str(ca_bundle))
        elif self.endpoint.startswith("http://"):
            # No TLS on this connection at all (redirects are not followed), so skip
            # loading a CA bundle: it holds the GIL for tens of milliseconds.
            verify = False
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            verify=verify,
            headers={"User-Agent": USER_AGENT, "Content-Type": "application/json"},
            limits=httpx.Limits(max_keepalive_connections=2, max_connections=4),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"HttpTransport(endpoint={self.endpoint!r}, service={self.service!r}, tokens=<redacted>)"

    def url(self, data_type: str) -> str:
        return f"{self.endpoint}/data/{self.service}/{data_type}"

    def send(self, data_type: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        token = self._tokens.get(data_type) or self._default_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.gzip_threshold and len(body) > self.gzip_threshold:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        url = self.url(data_type)
        try:
            response = self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"no answer from {url} in time ({type(exc).__name__})") from None
        except (httpx.TransportError, ssl.SSLError, OSError) as exc:
            raise RetryableError(f"could not reach {url}: {type(exc).__name__}: {_safe(exc)}") from None
        self._verdict(url, response)

    @staticmethod
    def _verdict(url: str, response: httpx.Response) -> None:
        status = response.status_code
        if status == 200:
            try:
                body: Any = response.json()
            except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
                body = None
            if isinstance(body, dict) and body.get("status") == "ok":
                return
            raise RetryableError(
                f"{url} answered 200 without a clear success ({response.text[:100]!r})",
                status=status,
                messages=_messages(response),
            )
        messages = _messages(response)
        detail = f": {'; '.join(messages[:3])}" if messages else ""
        if status in _RETRYABLE_4XX or status >= 500:
            raise RetryableError(
                f"{url} answered {status}{detail}",
                status=status,
                messages=messages,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        raise RejectedError(f"{url} answered {status}{detail}", status=status, messages=messages)

    def close(self) -> None:
        self._client.close()


def _safe(exc: BaseException) -> str:
    """An exception's text without anything that looks like a credential."""
    text = str(exc)
    return "" if "Bearer" in text or "Authorization" in text else text[:200]
