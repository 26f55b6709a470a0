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
answer too big, or     ``RetryableError`` (a broken proxy or a hostile
not done in time       endpoint: tried again later, shown in ``health()``)
=====================  ====================================================

An endpoint is not trusted to be well-behaved. A response is read up to
``max_response_bytes`` (the platform answers a few hundred bytes of JSON), and
a whole request (connecting, sending, every byte of the answer) must finish
within ``deadline`` seconds, not only each read within ``timeout``: a server
trickling one byte every half second would otherwise hold the uploader, and
every data set behind it, for ever. The deadline is enforced at the socket, by a
network backend that gives each read and write only the time left.

Tokens travel only in the ``Authorization`` header and never appear in a log
line, a repr or an exception: every text the server sends back is scrubbed of
the tokens (and any ``redact`` value, such as the HMAC secret) before it goes
into an exception, because a server may echo the header it was sent.
"""

from __future__ import annotations

import email.utils
import functools
import json
import math
import ssl
import threading
import time
import typing
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, Protocol

if typing.TYPE_CHECKING:
    import httpcore
    import httpx

from perf_sdk._errors import RetryableError, TransportError, error_class_for_status, scrub
from perf_sdk._gzip import gzip_member
from perf_sdk._version import __version__

__all__ = ["MAX_RESPONSE_BYTES", "HttpTransport", "Transport", "parse_retry_after"]

USER_AGENT = f"perf-sdk/{__version__}"
#: Most bytes of a response body read (after decompression): a platform's answer is a small JSON object.
MAX_RESPONSE_BYTES: Final = 4 << 20
#: A whole request's deadline, as a multiple of the per-read ``timeout``, when none is given.
DEADLINE_FACTOR: Final = 3.0


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
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    # 0, a negative number, nan or a date already past say nothing useful: the usual back-off applies.
    return seconds if math.isfinite(seconds) and seconds > 0 else None


class AnswerTooLarge(Exception):
    pass


class DeadlinePassed(Exception):
    pass


def read_bounded(response: httpx.Response, cap: int, remaining: Callable[[], float]) -> bytes:
    """A streamed answer's body, at most ``cap`` bytes once inflated, read while ``remaining()`` is positive.

    Read raw and inflated here, a bounded step at a time: httpx would inflate
    each compressed chunk whole, so a 64 KB gzip bomb would become hundreds
    of megabytes before the cap could see it (a request may ask for
    ``identity``, but a server may send gzip anyway). Raises
    :class:`AnswerTooLarge` past the cap (or for a body that cannot be
    inflated) and :class:`DeadlinePassed` once time is up, so a server
    trickling a byte at a time cannot hold a caller for ever.
    """
    if response.is_stream_consumed:  # built in memory (an in-process transport): its body is already here, inflated
        if len(response.content) > cap:
            raise AnswerTooLarge
        return response.content
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    inflate = zlib.decompressobj(32 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip", "deflate") else None
    chunks: list[bytes] = []
    size = 0
    for raw in response.iter_raw():
        pieces = [raw]
        if inflate is not None:
            pieces = []
            data = raw
            while data:
                try:
                    out = inflate.decompress(data, cap + 1 - size)
                except zlib.error:
                    raise AnswerTooLarge from None  # unreadable as sent: treated like any bad answer
                pieces.append(out)
                size += len(out)
                if size > cap:
                    raise AnswerTooLarge
                data = inflate.unconsumed_tail
            size -= sum(len(piece) for piece in pieces)
        for piece in pieces:
            size += len(piece)
            if size > cap:
                raise AnswerTooLarge
            chunks.append(piece)
        if remaining() <= 0:
            raise DeadlinePassed
    return b"".join(chunks)


#: The most of one read API answer kept (``perf-sdk kpis``, ``publish``, ``check``): a KPI read is kilobytes, and a
#: hostile or broken server's gigabyte is cut off.
MAX_READ_BYTES: Final = 64 * 2**20


def bounded_get(
    client: httpx.Client, url: str, *, params: Any = None, headers: Mapping[str, str]
) -> tuple[httpx.Response, bytes]:
    """``GET url``: the answer and its body, bounded in size and in time, as the uploader's answers are.

    At most :data:`MAX_READ_BYTES` once inflated (:class:`TransportError`
    past it), within ``DEADLINE_FACTOR`` times the client's read timeout for
    the whole answer (:class:`RetryableError` past it): a server that trickles
    a byte a second cannot hold ``perf-sdk publish`` for ever. httpx's own
    errors are left to the caller.
    """
    read = client.timeout.read
    limit = DEADLINE_FACTOR * (read if read is not None else 30.0)
    deadline = time.monotonic() + limit
    asked = {"Accept-Encoding": "gzip", **headers}  # nothing read_bounded cannot inflate a step at a time
    with client.stream("GET", url, params=params, headers=asked) as response:
        try:
            content = read_bounded(response, MAX_READ_BYTES, lambda: deadline - time.monotonic())
        except AnswerTooLarge:
            raise TransportError(
                f"{url} answered more than {MAX_READ_BYTES // 2**20} MiB, or a body that cannot be inflated",
                status=response.status_code,
                reason="answer too large",
            ) from None
        except DeadlinePassed:
            raise RetryableError(
                f"{url} did not finish answering within {limit:g} s", reason=f"no complete answer within {limit:g} s"
            ) from None
    return response, content


class HttpTransport:
    """POST ``/data/<service>/<data_type>`` with a bearer token per data set.

    One ``httpx.Client`` (connection kept alive), TLS verified against the
    system's CAs or ``ca_bundle``; bodies above ``gzip_threshold`` bytes are
    gzip-compressed. ``deadline`` (default ``3 * timeout``) bounds a whole request;
    ``max_response_bytes`` bounds what is read of an answer.
    """

    def __init__(
        self,
        endpoint: str,
        service: str,
        tokens: dict[str, str | None],
        *,
        default_token: str | None = None,
        timeout: float = 10.0,
        deadline: float | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        gzip_threshold: int = 32_768,
        ca_bundle: Path | None = None,
        redact: Iterable[str | None] = (),
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.service = service
        self._tokens = dict(tokens)
        self._default_token = default_token
        self._secrets = (*self._tokens.values(), default_token, *redact)
        self.gzip_threshold = gzip_threshold
        self.deadline = deadline if deadline is not None else DEADLINE_FACTOR * timeout
        self.max_response_bytes = max_response_bytes
        self._clock = clock
        self._local = threading.local()
        # Imported here, on the writer thread that builds the transport, not with the module: where click
        # is installed, `import httpx` also imports its command line (click, rich, pygments), ~0.4 s.
        import httpx

        verify: ssl.SSLContext | bool = True
        if ca_bundle is not None:
            verify = ssl.create_default_context(cafile=str(ca_bundle))
        elif self.endpoint.startswith("http://"):
            # No TLS on this connection at all (redirects are not followed), so skip
            # loading a CA bundle: it holds the GIL for tens of milliseconds.
            verify = False
        if client is None:
            pool = httpx.HTTPTransport(
                verify=verify, limits=httpx.Limits(max_keepalive_connections=2, max_connections=4)
            )
            _bound_by_deadline(pool, self._remaining)
            client = httpx.Client(
                transport=pool,
                timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
                # Answers are small JSON: asking for them uncompressed means a gzip bomb cannot inflate
                # past the size cap between two reads.
                headers={"User-Agent": USER_AGENT, "Content-Type": "application/json", "Accept-Encoding": "identity"},
                follow_redirects=False,
            )
        self._client = client

    def __repr__(self) -> str:
        return f"HttpTransport(endpoint={self.endpoint!r}, service={self.service!r}, tokens=<redacted>)"

    def url(self, data_type: str) -> str:
        return f"{self.endpoint}/data/{self.service}/{data_type}"

    def scrub(self, text: str) -> str:
        """``text`` without this transport's tokens or ``redact`` values."""
        return scrub(text, self._secrets)

    def send(self, data_type: str, body: bytes) -> None:
        compressed = bool(self.gzip_threshold) and len(body) > self.gzip_threshold
        self._post(data_type, gzip_member(body) if compressed else body, compressed)

    def send_gzip(self, data_type: str, body: bytes) -> None:
        """Store ``body``, a JSON array of records already gzip-compressed (the spool's packed segments).

        The uploader calls it instead of :meth:`send` for packed segments, and
        only on a transport whose ``send`` is this class's own (a subclass that
        overrides ``send`` gets JSON, as the seam promises).
        """
        self._post(data_type, body, True)

    def _post(self, data_type: str, body: bytes, compressed: bool) -> None:
        # No local variable of this frame holds the token: an exception raised here carries this frame in its
        # traceback, and error reporters that capture local variables (Sentry) would ship it.
        url = self.url(data_type)
        import httpx  # already imported by __init__: a dictionary look-up

        self._local.deadline = self._clock() + self.deadline
        # The error is raised after the except blocks, not in them: raised inside, it would keep httpx's exception
        # as its __context__ (``from None`` only hides it from printed tracebacks), and that exception's frames
        # hold the request's headers, token included, for any hook or reporter that follows the chain.
        failed: RetryableError | None = None
        try:
            with self._client.stream("POST", url, content=body, headers=self._headers(data_type, compressed)) as answer:
                content = self._read(answer)
                status, answer_headers = answer.status_code, answer.headers
        except (DeadlinePassed, httpx.TimeoutException) as exc:
            if self._remaining() <= 0:
                failed = RetryableError(
                    f"{url} did not finish answering within {self.deadline:g} s (the whole request's deadline; "
                    "a slow or stalled endpoint)",
                    reason=f"no complete answer within {self.deadline:g} s",
                )
            else:
                failed = RetryableError(
                    f"no answer from {url} in time ({type(exc).__name__})", reason="no answer in time"
                )
        except AnswerTooLarge:
            failed = RetryableError(
                f"{url} answered with more than {self.max_response_bytes:,} bytes; perf_sdk stopped reading "
                "(the platform answers a small JSON object: a proxy or the endpoint is misbehaving)",
                reason="answer too large",
            )
        except (httpx.TransportError, httpx.StreamError, ssl.SSLError, OSError) as exc:
            failed = RetryableError(
                f"could not reach {url}: {type(exc).__name__}: {self._safe(exc)}", reason=_reason(exc)
            )
        finally:
            self._local.deadline = None
        if failed is not None:
            raise failed
        self._verdict(url, status, answer_headers, content)

    def _headers(self, data_type: str, compressed: bool) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        token = self._tokens.get(data_type) or self._default_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if compressed:
            headers["Content-Encoding"] = "gzip"
        return headers

    def _remaining(self) -> float:
        """Seconds left of the current request on this thread (infinite outside one)."""
        deadline: float | None = getattr(self._local, "deadline", None)
        return float("inf") if deadline is None else deadline - self._clock()

    def _read(self, response: httpx.Response) -> bytes:
        """The answer's body, up to the size cap and within the deadline (:func:`read_bounded`)."""
        return read_bounded(response, self.max_response_bytes, self._remaining)

    def _verdict(self, url: str, status: int, headers: httpx.Headers, content: bytes) -> None:
        body = _json(content)
        if status == 200:
            if isinstance(body, dict) and body.get("status") == "ok":
                return
            excerpt = self._scrubbed(content, 100)
            raise RetryableError(
                f"{url} answered 200 without a clear success ({excerpt!r})",
                status=status,
                messages=self._messages(body, content),
            )
        messages = self._messages(body, content)
        detail = f": {'; '.join(messages[:3])}" if messages else ""
        error = error_class_for_status(status)
        if error is RetryableError:
            raise RetryableError(
                f"{url} answered {status}{detail}",
                status=status,
                messages=messages,
                retry_after=parse_retry_after(headers.get("Retry-After")),
            )
        raise error(f"{url} answered {status}{detail}", status=status, messages=messages)

    def _messages(self, body: Any, content: bytes) -> list[str]:
        """The platform's own words, scrubbed, each at most 500 characters."""
        if body is _NOT_JSON:
            text = self._scrubbed(content, 200).strip()
            return [text] if text else []
        elif isinstance(body, dict) and isinstance(body.get("messages"), list):
            found = [str(m) for m in body["messages"][:20]]
        elif isinstance(body, dict) and body.get("message"):
            found = [str(body["message"])]
        else:
            found = []
        return [self.scrub(m[:_SCRUB_WINDOW])[:500] for m in found]

    def _scrubbed(self, content: bytes, length: int) -> str:
        """The start of a server's answer, scrubbed *before* it is cut, so no token survives half-cut."""
        return self.scrub(content[:_SCRUB_WINDOW].decode("utf-8", "replace"))[:length]

    def _safe(self, exc: BaseException) -> str:
        """An exception's text without anything that looks like a credential (scrubbed, then cut)."""
        return self.scrub(str(exc)[:_SCRUB_WINDOW])[:200]

    def close(self) -> None:
        self._client.close()


_NOT_JSON: Final[Any] = object()
#: How much of a server's text is scrubbed before an excerpt is cut from it: far more than any token,
#: so a token that begins inside the excerpt is wholly inside what was scrubbed.
_SCRUB_WINDOW: Final = 65_536

#: Words of a socket error -> what a person reads in "waiting for ...: <reason>".
_REASONS: Final = (
    ("refused", "connection refused"),
    ("name or service not known", "host not found"),
    ("nodename nor servname", "host not found"),
    ("temporary failure in name resolution", "host not found"),
    ("certificate", "TLS certificate not trusted"),
    ("reset", "connection reset"),
    ("network is unreachable", "network unreachable"),
)


def _reason(exc: BaseException) -> str:
    text = str(exc).lower()
    for words, reason in _REASONS:
        if words in text:
            return reason
    return f"cannot connect ({type(exc).__name__})"


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError):
        return _NOT_JSON


# -- the whole-request deadline, at the socket ---------------------------------------------------


def _bound_by_deadline(transport: httpx.HTTPTransport, remaining: Callable[[], float]) -> None:
    """Make every socket operation of ``transport`` wait at most what is left of the request.

    httpx has per-operation time-outs only; a deadline needs the network backend
    under its connection pool. httpx offers no public way to give one, so this
    wraps the pool's backend when it has the expected shape; otherwise the body
    loop's own deadline check is what remains (headers are then bounded by the
    per-read timeout alone).
    """
    import httpcore  # with httpx, when a transport is built: not at import time

    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _deadline_backend_class()(backend, remaining)  # type: ignore[union-attr]


def _bounded(timeout: float | None, remaining: Callable[[], float], error: type[Exception]) -> float:
    left = remaining()
    if left <= 0:
        raise error("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)


@functools.cache
def _deadline_backend_class() -> Callable[[httpcore.NetworkBackend, Callable[[], float]], httpcore.NetworkBackend]:
    """The backend wrapper, defined on first use so that importing this module does not import httpcore."""
    import httpcore

    class DeadlineStream(httpcore.NetworkStream):
        def __init__(self, inner: httpcore.NetworkStream, remaining: Callable[[], float]) -> None:
            self._inner = inner
            self._remaining = remaining

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._inner.read(max_bytes, _bounded(timeout, self._remaining, httpcore.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._inner.write(buffer, _bounded(timeout, self._remaining, httpcore.WriteTimeout))

        def close(self) -> None:
            self._inner.close()

        def start_tls(
            self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
        ) -> httpcore.NetworkStream:
            bounded = _bounded(timeout, self._remaining, httpcore.ConnectTimeout)
            return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded), self._remaining)

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class DeadlineBackend(httpcore.NetworkBackend):
        def __init__(self, inner: httpcore.NetworkBackend, remaining: Callable[[], float]) -> None:
            self._inner = inner
            self._remaining = remaining

        def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: typing.Iterable[Any] | None = None,
        ) -> httpcore.NetworkStream:
            bounded = _bounded(timeout, self._remaining, httpcore.ConnectTimeout)
            stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
            return DeadlineStream(stream, self._remaining)

        def connect_unix_socket(
            self, path: str, timeout: float | None = None, socket_options: typing.Iterable[Any] | None = None
        ) -> httpcore.NetworkStream:
            bounded = _bounded(timeout, self._remaining, httpcore.ConnectTimeout)
            return DeadlineStream(self._inner.connect_unix_socket(path, bounded, socket_options), self._remaining)

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    return DeadlineBackend
