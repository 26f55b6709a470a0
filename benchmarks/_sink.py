"""A loopback HTTP sink for benchmarks: answers every POST at once and counts what arrived.

Run as its own process (``python benchmarks/_sink.py PORT_FILE``) so its CPU is
not charged to the client being measured. It understands the three payloads it
is sent: a JSON list (the Performance Platform), ``{"batch": [...]}`` (Segment,
PostHog). ``GET /_count`` answers ``{"events": N, "unique_ids": M}``; ids are the
platform's ``_id``, so a re-sent record is counted once in ``unique_ids``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import sys


class Sink:
    def __init__(self) -> None:
        self.events = 0
        self.ids: set[str] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "GET" and path.startswith("/_count"):
                    payload = json.dumps({"events": self.events, "unique_ids": len(self.ids)}).encode()
                else:
                    if headers.get("content-encoding") == "gzip":
                        body = gzip.decompress(body)
                    self.count(json.loads(body) if body else [])
                    payload = b'{"status":"ok"}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(payload)).encode()
                    + b"\r\n\r\n"
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def count(self, data: object) -> None:
        items = data.get("batch", []) if isinstance(data, dict) else data
        if not isinstance(items, list):
            items = [items]
        self.events += len(items)
        for item in items:
            if isinstance(item, dict) and "_id" in item:
                self.ids.add(item["_id"])


async def main(port_file: str) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sink = Sink()
    server = await asyncio.start_server(sink.handle, sock=sock)
    with open(port_file, "w") as f:
        f.write(str(sock.getsockname()[1]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
