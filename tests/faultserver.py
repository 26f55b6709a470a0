"""A fault-injecting Performance Platform write API for tests, on loopback.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length, gzip bodies) to be a
real peer for httpx, stores records by ``(data set, _id)`` like backdrop (upsert),
and, with a seeded schedule, answers a share of requests with a fault:

``500``, ``502``, ``503``, ``429`` (with or without ``Retry-After``), a dropped
connection before answering, a dropped connection *after* storing the batch,
a slow answer past the client's time-out, a truncated answer, a non-JSON
answer, and a ``200`` whose body is an error.

Runs on its own thread with its own event loop; ``stop()`` returns at once.
Tests wait for what the server has seen with :meth:`FaultServer.wait_for_requests`
(an event, not a sleep). Benchmarks run it as its own process, so that its CPU
and the records it stores are not charged to the SDK being measured:
``python -m tests.faultserver PLAN_JSON`` prints its port, and ``GET /_count``
answers ``{"records": N, "count_sum": S, "requests": R}``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import socket
import ssl
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FAULTS = (
    "500",
    "502",
    "503",
    "429",
    "429-retry-after",
    "503-retry-after",
    "drop-before",
    "drop-after-store",
    "slow",
    "truncated",
    "non-json",
    "200-error-body",
)


@dataclass
class FaultPlan:
    """Which faults, how often (0..1), from which seed. ``faults`` empty means none."""

    rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    seed: int = 1
    slow_seconds: float = 3.0
    retry_after: str = "0"
    #: Statuses to answer every request with (e.g. 401), overriding everything.
    always: int | None = None
    #: Largest body accepted (as sent), else 413.
    max_body: int = 50_000_000
    #: Record ids that the platform refuses with 400 wherever they appear.
    poison_ids: frozenset[str] = frozenset()


@dataclass
class FaultServer:
    plan: FaultPlan = field(default_factory=FaultPlan)
    token: str = "test-token"
    host: str = "127.0.0.1"
    #: Serve HTTPS with this context (a trustme certificate in the TLS tests).
    ssl_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        self.store: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests = 0
        self.faults_injected: Counter[str] = Counter()
        self.writes_seen = 0
        self._rng = random.Random(self.plan.seed)
        self._lock = threading.Lock()
        #: Notified whenever ``requests`` grows (see :meth:`wait_for_requests`).
        self._seen = threading.Condition(self._lock)
        self._loop = asyncio.new_event_loop()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, 0))
        self.port = self._sock.getsockname()[1]
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-server")
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        host = "localhost" if self.ssl_context is not None else self.host
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> FaultServer:
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def _close() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # views ---------------------------------------------------------------------------------------
    def records(self, data_type: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for (ds, _), r in self.store.items() if data_type is None or ds.endswith("/" + data_type)]

    def count_sum(self, data_type: str | None = None) -> int:
        return sum(int(r.get("count", 1)) for r in self.records(data_type))

    def wait_for_requests(self, n: int = 1, timeout: float = 60.0) -> bool:
        """Until the server has received ``n`` write requests (faulty or not); False after ``timeout``."""
        with self._seen:
            return self._seen.wait_for(lambda: self.requests >= n, timeout)

    # server ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def _serve() -> None:
            self._server = await asyncio.start_server(self._handle, sock=self._sock, ssl=self.ssl_context)
            self._started.set()

        self._loop.run_until_complete(_serve())
        self._loop.run_forever()
        self._loop.close()

    def _pick_fault(self) -> str | None:
        with self._seen:
            self.requests += 1
            self._seen.notify_all()
            if self.plan.rate and self._rng.random() < self.plan.rate:
                fault = self._rng.choice(self.plan.faults)
                self.faults_injected[fault] += 1
                return fault
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                if not await self._respond(method, path, headers, body, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _respond(
        self, method: str, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        if method == "GET" and path == "/_status":
            return await self._send(writer, 200, {"status": "ok"})
        if method == "GET" and path == "/_count":  # for benchmarks, which run the server in its own process
            counts = {"records": len(self.store), "count_sum": self.count_sum(), "requests": self.requests}
            return await self._send(writer, 200, counts)
        parts = path.strip("/").split("/")
        if method != "POST" or len(parts) != 3 or parts[0] != "data":
            return await self._send(writer, 404, {"status": "error", "message": "not found"})
        dataset = f"{parts[1]}/{parts[2]}"
        if self.plan.always is not None:
            return await self._send(writer, self.plan.always, {"status": "error", "message": "configured failure"})
        if headers.get("authorization") != f"Bearer {self.token}":
            return await self._send(
                writer, 401, {"status": "error", "message": "unauthorized"}, {"WWW-Authenticate": "bearer"}
            )
        if len(body) > self.plan.max_body:
            return await self._send(writer, 413, {"status": "error", "message": "too large"})
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        fault = self._pick_fault()
        if fault == "drop-before":
            return False
        if fault in ("500", "502", "503", "429"):
            return await self._send(writer, int(fault), {"status": "error", "message": "injected"})
        if fault in ("429-retry-after", "503-retry-after"):
            return await self._send(
                writer,
                int(fault[:3]),
                {"status": "error", "message": "slow down"},
                {"Retry-After": self.plan.retry_after},
            )
        if fault == "slow":
            await asyncio.sleep(self.plan.slow_seconds)
            return False
        try:
            records = json.loads(body)
        except ValueError:
            return await self._send(writer, 400, {"messages": ["could not parse JSON"]})
        records = records if isinstance(records, list) else [records]
        poisoned = [r.get("_id") for r in records if r.get("_id") in self.plan.poison_ids]
        if poisoned:
            return await self._send(writer, 400, {"messages": [f"record {p} is refused" for p in poisoned]})
        with self._lock:
            self.writes_seen += len(records)
            for record in records:
                self.store[(dataset, record["_id"])] = record
        if fault == "drop-after-store":
            return False
        if fault == "truncated":
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{"sta')
            await writer.drain()
            return False
        if fault == "non-json":
            return await self._send_raw(writer, 200, b"<html>proxy says hi</html>", "text/html")
        if fault == "200-error-body":
            return await self._send(writer, 200, {"status": "error", "message": "maybe"})
        return await self._send(writer, 200, {"status": "ok"})

    async def _send(
        self, writer: asyncio.StreamWriter, status: int, payload: Any, extra: dict[str, str] | None = None
    ) -> bool:
        return await self._send_raw(writer, status, json.dumps(payload).encode(), "application/json", extra)

    async def _send_raw(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        ctype: str,
        extra: dict[str, str] | None = None,
    ) -> bool:
        head = [f"HTTP/1.1 {status} X", f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return True


def main(argv: list[str]) -> None:
    """Serve a :class:`FaultPlan` (JSON of its fields) until stdin closes; prints the port first."""
    fields = json.loads(argv[1]) if len(argv) > 1 else {}
    token = fields.pop("token", "test-token")
    if "faults" in fields:
        fields["faults"] = tuple(fields["faults"])
    server = FaultServer(FaultPlan(**fields), token=token)
    with server:
        print(server.port, flush=True)
        sys.stdin.read()  # the parent closes our stdin (or dies) to stop us


if __name__ == "__main__":
    main(sys.argv)
