"""Post an alert to a chat webhook (Slack, Teams via a connector, Mattermost, a custom receiver).

The body is JSON with a plain ``text`` field, which Slack-compatible receivers
show as the message, plus the structured report for receivers that read more.

A webhook URL is itself a secret (Slack's carries its token in the path), and
so is an optional bearer token: neither is ever printed, logged or put in an
exception. Messages name the receiver by scheme and host only
(:func:`redact_url`). Failures that may pass (connection errors, 5xx, 408,
425, 429: the same rule as the uploader's, :func:`~perf_sdk._errors.error_class_for_status`)
are retried with exponential back-off; a 4xx is final.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from perf_sdk._errors import RejectedError, RetryableError, TransportError, error_class_for_status

__all__ = ["post_webhook", "redact_url"]


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/secret`` -> ``https://hooks.slack.com/…``."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<webhook>"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}/…"


def post_webhook(
    url: str,
    payload: Mapping[str, Any],
    *,
    token: str | None = None,
    attempts: int = 4,
    backoff: float = 0.5,
    timeout: float = 10.0,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST ``payload`` as JSON; return the final HTTP status, or raise :class:`TransportError`.

    ``payload`` must hold a ``text`` string. Retries ``attempts - 1`` times,
    waiting ``backoff``, ``2·backoff``, ... seconds between tries.
    """
    if not isinstance(payload.get("text"), str):
        raise ValueError("a webhook payload needs a plain 'text' string (what Slack-compatible receivers show)")
    where = redact_url(url)
    if not url.startswith(("http://", "https://")):
        raise TransportError(f"the webhook URL ({where}) must start with http:// or https://")
    headers = {"Content-Type": "application/json", "User-Agent": "perf-sdk-check"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(payload).encode("utf-8")
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    last: TransportError | None = None
    try:
        for attempt in range(max(1, attempts)):
            if attempt:
                sleep(backoff * 2 ** (attempt - 1))
            try:
                response = http.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                # the exception text can carry the URL: keep only its kind
                last = RetryableError(f"the webhook at {where} could not be reached ({type(exc).__name__})")
                continue
            if response.status_code < 300:
                return response.status_code
            cls = error_class_for_status(response.status_code)
            last = cls(f"the webhook at {where} answered {response.status_code}", status=response.status_code)
            if cls is RejectedError:
                break
    finally:
        if own:
            http.close()
    assert last is not None
    raise last
