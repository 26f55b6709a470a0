"""Hostile or broken endpoints (issue 12, item 5): a real misbehaving server on loopback.

Each server below answers the SDK's POST as a broken proxy or an attacker might:
a 300 MB body, a chunked body that never ends, a body trickling one byte every
half second, an error message echoing the ``Authorization`` header. The SDK must
stop reading at a size cap, end a request at its deadline, report each as an
error (``health()``, ``on_error``) and retry it, and never let a token the server
echoes reach a log, an exception, ``health()`` or the dead-letter table.

No wall-clock or memory thresholds here: a test waits (with generous deadlines)
for the outcome; the memory figure is in ``benchmarks/hostile_body.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

import perf_sdk
from perf_sdk import RetryableError
from perf_sdk._spool import Spool
from perf_sdk._transport import HttpTransport

TOKEN = "tok-hostile-0123456789"
SECRET = "hmac-secret-abcdefghijklmnop"
WAIT = 60.0

Handler = Callable[[asyncio.StreamWriter, dict[str, str]], Coroutine[Any, Any, None]]


class HostileServer:
    """An asyncio HTTP/1.1 server on its own thread, answering every request with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[dict[str, str]] = []
        self.bytes_sent = 0
        self.disconnected = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        assert self._ready.wait(WAIT)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(headers)
                await self.handler(writer, headers)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.CancelledError):
            pass  # the client hung up, or the test is over (a task that ends quietly, not a logged traceback)
        finally:
            self.disconnected.set()
            writer.close()

    async def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.bytes_sent += len(data)


def huge_body(server_box: list[HostileServer], size: int = 300 << 20) -> Handler:
    async def handler(writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        server = server_box[0]
        await server.write(writer, f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        chunk = b"x" * (1 << 16)
        for _ in range(size // len(chunk)):
            await server.write(writer, chunk)

    return handler


def endless_chunked(server_box: list[HostileServer]) -> Handler:
    async def handler(writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        server = server_box[0]
        await server.write(writer, b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"y" * (1 << 16)
        while True:
            await server.write(writer, b"%x\r\n%s\r\n" % (len(chunk), chunk))

    return handler


def trickle(server_box: list[HostileServer], every: float = 0.5) -> Handler:
    async def handler(writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        server = server_box[0]
        await server.write(writer, b'HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{"status": ')
        while True:
            await asyncio.sleep(every)
            await server.write(writer, b" ")

    return handler


def trickle_headers(server_box: list[HostileServer], every: float = 0.2) -> Handler:
    async def handler(writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        server = server_box[0]
        await server.write(writer, b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while True:
            await asyncio.sleep(every)
            await server.write(writer, b"a")

    return handler


def echo_authorization(status: int) -> Handler:
    async def handler(writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        token = auth.split()[-1] if auth else ""
        body = json.dumps(
            {
                "messages": [
                    f"forbidden: you sent Authorization: {auth}",
                    f"token {token} is not valid for this data set",
                    f"debug: headers={json.dumps(headers)}",
                ]
            }
        ).encode()
        writer.write(
            f"HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    return handler


@contextlib.contextmanager
def serve(make: Callable[[list[HostileServer]], Handler]) -> Iterator[HostileServer]:
    box: list[HostileServer] = []
    server = HostileServer(make(box))
    box.append(server)
    with server:
        yield server


def send_in_thread(transport: HttpTransport) -> BaseException | None:
    """Send once on another thread and wait for it (the test fails, not hangs, if it never ends)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            transport.send("transactions", b'[{"_id": "a"}]')
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "send() never returned"
    return outcome[0]


# -- the transport alone --------------------------------------------------------------------------


def test_a_300_mb_body_is_cut_off_at_the_cap_and_retryable() -> None:
    with serve(huge_body) as server:
        transport = HttpTransport(server.url, "svc", {"transactions": TOKEN}, max_response_bytes=1 << 20)
        try:
            error = send_in_thread(transport)
        finally:
            transport.close()
        assert isinstance(error, RetryableError)
        assert "more than 1,048,576 bytes" in str(error)
        assert server.disconnected.wait(WAIT)
    assert server.bytes_sent < 300 << 20  # the client hung up long before the end


def test_an_endless_chunked_body_is_cut_off_at_the_cap() -> None:
    with serve(endless_chunked) as server:
        transport = HttpTransport(server.url, "svc", {"transactions": TOKEN}, max_response_bytes=1 << 20)
        try:
            error = send_in_thread(transport)
        finally:
            transport.close()
        assert isinstance(error, RetryableError)
        assert "more than" in str(error)
        assert server.disconnected.wait(WAIT)


def test_a_trickling_body_ends_at_the_request_deadline() -> None:
    # Each byte arrives well within the per-read timeout; only a whole-request deadline ends it.
    with serve(trickle) as server:
        transport = HttpTransport(server.url, "svc", {"transactions": TOKEN}, timeout=5.0, deadline=2.0)
        try:
            error = send_in_thread(transport)
        finally:
            transport.close()
        assert isinstance(error, RetryableError)
        assert "deadline" in str(error)
        assert server.bytes_sent > 0


def test_trickling_headers_end_at_the_request_deadline() -> None:
    # The deadline holds at the socket, before there is a body to count: headers a byte at a time.
    with serve(trickle_headers) as server:
        transport = HttpTransport(server.url, "svc", {"transactions": TOKEN}, timeout=5.0, deadline=2.0)
        try:
            error = send_in_thread(transport)
        finally:
            transport.close()
        assert isinstance(error, RetryableError)
        assert "deadline" in str(error)


@pytest.mark.parametrize("status", [400, 401, 500])
def test_an_echoed_authorization_header_is_scrubbed_from_the_error(status: int) -> None:
    with serve(lambda box: echo_authorization(status)) as server:
        transport = HttpTransport(server.url, "svc", {"transactions": TOKEN}, redact=[SECRET])
        try:
            error = send_in_thread(transport)
        finally:
            transport.close()
        assert server.requests[0]["authorization"] == f"Bearer {TOKEN}"  # the server did see it
    assert error is not None
    assert TOKEN not in str(error) and TOKEN not in repr(error)
    assert all(TOKEN not in m for m in getattr(error, "messages", []))
    assert "<redacted>" in str(error)


# -- through a Tracker: health(), on_error, logs, the dead-letter table, close() ----------------------


def tracker_for(url: str, tmp_path: Path, errors: list[BaseException], seen: threading.Event) -> perf_sdk.Tracker:
    def on_error(error: BaseException, records: list[dict[str, Any]]) -> None:
        errors.append(error)
        seen.set()

    return perf_sdk.Tracker(
        service="svc",
        endpoint=url,
        token=TOKEN,
        secret=SECRET,
        spool_dir=tmp_path,
        timeout=1.0,
        retry_initial=0.05,
        retry_max=0.2,
        on_error=on_error,
    )


def test_a_trickling_endpoint_shows_in_health_and_does_not_outlive_close(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    seen = threading.Event()
    earlier = set(threading.enumerate())  # other tests' threads are not this test's business
    with serve(lambda box: trickle(box, every=0.2)) as server:
        tracker = tracker_for(server.url, tmp_path, errors, seen)
        try:
            tracker.complete("t-1", channel="digital")
            tracker.flush(timeout=0.1)
            assert seen.wait(WAIT), "the stalled request was never reported"
            assert isinstance(errors[0], RetryableError)
            assert "deadline" in str(errors[0])
            health = tracker.health()
            assert health.last_error is not None and "deadline" in health.last_error
            assert health.spool_depth == 1  # kept on disk, to be retried
        finally:
            tracker.close(timeout=1.0)
        # close() bounds its wait for the platform; the stalled request ends at its deadline, so the
        # uploader thread ends too instead of outliving the tracker.
        for thread in set(threading.enumerate()) - earlier:
            if thread.name == "perf-sdk-uploader":
                thread.join(WAIT)
                assert not thread.is_alive(), "the uploader outlived close()"


def test_an_endpoint_echoing_the_token_leaks_it_nowhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    errors: list[BaseException] = []
    seen = threading.Event()
    caplog.set_level(logging.DEBUG, logger="perf_sdk")
    with serve(lambda box: echo_authorization(400)) as server:
        tracker = tracker_for(server.url, tmp_path / "spool", errors, seen)
        try:
            tracker.complete("t-1", channel="digital")
            result = tracker.flush(timeout=WAIT)
            assert result.dead_letters == 1  # the platform's 400 for a lone record: dead-lettered
            assert seen.wait(WAIT)
            health = tracker.health()
        finally:
            tracker.close(timeout=1.0)
    assert errors and all(TOKEN not in str(e) and TOKEN not in repr(e) for e in errors)
    assert health.last_error is None or TOKEN not in health.last_error
    assert TOKEN not in caplog.text
    assert "<redacted>" in caplog.text
    spool = Spool(tmp_path / "spool")
    try:
        dead = spool.dead()
    finally:
        spool.close()
    dead_text = repr(dead)
    for path in (tmp_path / "spool").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in dead_text


def test_an_endpoint_echoing_the_token_in_a_5xx_leaks_it_nowhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[BaseException] = []
    seen = threading.Event()
    caplog.set_level(logging.DEBUG, logger="perf_sdk")
    with serve(lambda box: echo_authorization(503)) as server:
        tracker = tracker_for(server.url, tmp_path, errors, seen)
        try:
            tracker.complete("t-1", channel="digital")
            tracker.flush(timeout=0.1)
            assert seen.wait(WAIT)
            health = tracker.health()
        finally:
            tracker.close(timeout=1.0)
    assert health.last_error is not None and "503" in health.last_error
    assert TOKEN not in health.last_error
    assert all(TOKEN not in str(e) for e in errors)
    assert TOKEN not in caplog.text


def test_an_unreachable_platform_says_what_delivery_waits_for(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    errors: list[BaseException] = []
    seen = threading.Event()
    tracker = tracker_for(f"http://127.0.0.1:{port}", tmp_path, errors, seen)
    try:
        tracker.complete("t-1", channel="digital")
        result = tracker.flush(timeout=0.1)
        assert result.timed_out
        assert seen.wait(WAIT)
        waiting = tracker.health().waiting_for
        assert waiting is not None
        assert waiting.startswith(f"waiting for http://127.0.0.1:{port}: connection refused, retry ")
        assert waiting.endswith("; records are safe on disk")
    finally:
        tracker.close(timeout=0.5)


def test_backfill_stops_after_wait_saying_what_it_waited_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from perf_sdk.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    history = tmp_path / "history.csv"
    history.write_text("timestamp,stage,channel,count\n2026-01-05,started,digital,3\n2026-01-05,completed,digital,2\n")
    spool = tmp_path / "spool"
    argv = ["backfill", "--service", "svc", "--endpoint", f"http://127.0.0.1:{port}", "--token", TOKEN]
    argv += ["--spool-dir", str(spool), "--wait", "5", "--quiet", str(history)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "stopped waiting after 5 s" in err
    assert f"waiting for http://127.0.0.1:{port}: connection refused, retry " in err
    assert "record(s) are safe on disk" in err and "Run the same command again" in err
    assert f"perf-sdk spool status --spool-dir {spool}" in err
    assert TOKEN not in err


# -- the read API's client (perf-sdk kpis, publish, check) --------------------------------------------


def _read_in_thread(url: str, timeout: float = 30.0) -> BaseException | None:
    """``counts_from_read_api`` once on another thread (the test fails, not hangs, if it never ends)."""
    from datetime import date

    from perf_sdk._kpi_sources import counts_from_read_api

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            counts_from_read_api(url, "svc", start=date(2025, 1, 1), end=date(2025, 4, 1), token=TOKEN, timeout=timeout)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT * 2)
    assert not thread.is_alive(), "the read never returned"
    return outcome[0]


def test_a_read_answer_trickling_a_byte_at_a_time_ends_at_its_deadline() -> None:
    # perf-sdk publish, kpis and check waited for as long as the body lasted: httpx's timeout is per read.
    with serve(trickle) as server:
        error = _read_in_thread(server.url, timeout=1.0)
    assert isinstance(error, RetryableError)
    assert "did not finish answering within 3 s" in str(error)


def test_a_huge_read_answer_is_cut_off_at_the_cap() -> None:
    # 130 MB of groups took publish to 1 GB of RSS; 100 MB took check to 568 MB and "all well".
    with serve(huge_body) as server:
        error = _read_in_thread(server.url)
        assert isinstance(error, perf_sdk.TransportError) and "answered more than 64 MiB" in str(error)
        assert server.disconnected.wait(WAIT)
    assert server.bytes_sent < 300 << 20


@pytest.mark.parametrize("shift", [0, 1, 7, 20])
def test_a_token_echoed_across_the_read_errors_cut_is_scrubbed(shift: int) -> None:
    # The excerpt was cut at 300 characters before scrubbing: a token straddling the cut printed all but its tail.
    async def handler(writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        body = ("x" * (300 - len(TOKEN) + shift) + headers["authorization"].split()[-1] + " rest").encode()
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    with serve(lambda box: handler) as server:
        error = _read_in_thread(server.url)
    assert isinstance(error, perf_sdk.TransportError)
    assert not any(TOKEN[i : i + 6] in str(error) for i in range(len(TOKEN) - 5))
