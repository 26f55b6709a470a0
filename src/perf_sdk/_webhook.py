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
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx

from perf_sdk._errors import RejectedError, RetryableError, TransportError, error_class_for_status

__all__ = ["MAX_ANSWER_BYTES", "post_webhook", "redact_url", "webhook_url_problem"]

#: The most of a receiver's answer that is read: only its status matters, and a hostile receiver
#: answering 400 MB must not grow the process by as much.
MAX_ANSWER_BYTES: Final = 64 * 1024


def redact_url(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/secret`` -> ``https://hooks.slack.com/…``."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<webhook>"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}/…"


def webhook_url_problem(url: object) -> str | None:
    """What is wrong with ``url`` as a webhook URL, in words that never repeat it; ``None`` when it will do.

    Checked before anything is sent (``perf-sdk check`` refuses a bad
    ``--webhook`` as a usage error), so that a typo is never an httpx
    traceback, nor an alert that fails hours later.

    >>> webhook_url_problem("https://hooks.example.com/services/T0/B0/x") is None
    True
    >>> webhook_url_problem("https://hooks.example.com/x" + chr(0))
    'holds a control character or a space (character 28)'
    >>> webhook_url_problem("https://hooks.example.com:99999/x")
    'has port 99999: a port is 1 to 65535'
    """
    if not isinstance(url, str) or not url.strip():
        return "is empty"
    for i, ch in enumerate(url, start=1):
        if ord(ch) < 0x20 or ord(ch) == 0x7F or ch.isspace():
            return f"holds a control character or a space (character {i})"
    if not url.lower().startswith(("http://", "https://")):
        return "must start with http:// or https://"
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError, TypeError):
        return "is not a valid URL"
    if not parsed.host:
        return "has no host"
    if port is not None and not 0 < port < 65536:
        return f"has port {port}: a port is 1 to 65535"
    return None


def _attempt(http: httpx.Client, url: str, body: bytes, headers: Mapping[str, str], deadline: float) -> int:
    """One POST within ``deadline`` seconds in all, reading at most :data:`MAX_ANSWER_BYTES` of the answer.

    httpx's timeouts bound each wait (connect, each read), not the whole: a
    receiver sending a byte every two seconds, of its headers or of its body,
    would hold a read open for ever. So the request runs in a worker thread
    and this one waits at most ``deadline``; the worker stops reading at the
    cap or the deadline, and a worker still stuck in a read is left to end on
    its own (a daemon thread, holding no more than one read's buffer).
    """
    outcome: dict[str, Any] = {}
    done, stop = threading.Event(), threading.Event()

    def work() -> None:
        try:
            with http.stream("POST", url, content=body, headers=headers) as response:
                outcome["status"] = response.status_code
                read = 0
                for chunk in response.iter_raw():  # raw: a compressed answer is never inflated
                    read += len(chunk)
                    if read >= MAX_ANSWER_BYTES or stop.is_set():
                        break
        except Exception as exc:  # handed to the waiting thread, which words it
            outcome.setdefault("error", exc)
        finally:
            done.set()

    threading.Thread(target=work, name="perf-sdk-webhook", daemon=True).start()
    done.wait(deadline)
    stop.set()
    if "status" in outcome:  # the answer's status is all that counts, read in time or not
        return int(outcome["status"])
    error = outcome.get("error")
    if error is None:
        raise RetryableError(f"did not answer within {deadline:g} s", reason="timed out")
    if isinstance(error, httpx.InvalidURL):
        raise TransportError(f"is not a URL httpx can send to ({type(error).__name__})")
    # the exception text can carry the URL: keep only its kind
    raise RetryableError(f"could not be reached ({type(error).__name__})", reason=type(error).__name__)


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
    waiting ``backoff``, ``2·backoff``, ... seconds between tries. Each try has
    ``timeout`` seconds in all, however slowly the receiver answers, and reads
    at most :data:`MAX_ANSWER_BYTES` of its answer.
    """
    if not isinstance(payload.get("text"), str):
        raise ValueError("a webhook payload needs a plain 'text' string (what Slack-compatible receivers show)")
    where = redact_url(url)
    problem = webhook_url_problem(url)
    if problem:
        raise TransportError(f"the webhook URL ({where}) {problem}")
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
                status = _attempt(http, url, body, headers, timeout)
            except RetryableError as exc:
                last = RetryableError(f"the webhook at {where} {exc}", reason=exc.reason)
                continue
            except TransportError as exc:
                raise TransportError(f"the webhook URL ({where}) {exc}") from None
            if status < 300:
                return status
            cls = error_class_for_status(status)
            last = cls(f"the webhook at {where} answered {status}", status=status)
            if cls is RejectedError:
                break
    finally:
        if own:
            http.close()
    assert last is not None
    raise last
