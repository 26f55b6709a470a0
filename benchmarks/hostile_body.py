"""Peak memory of the SDK's process when an endpoint answers with a 300 MB body.

    python benchmarks/hostile_body.py [--megabytes 300] [--kind length|chunked]

A hostile or broken endpoint (a misconfigured proxy, an attacker) answers the
upload with a huge body. The server runs in this process; each client runs in a
process of its own, so its peak RSS (``ru_maxrss``) counts the client alone:

* ``perf_sdk``: ``HttpTransport.send``, which stops reading at its size cap
  (``MAX_RESPONSE_BYTES``, 4 MiB) and reports a retryable error;
* ``unbounded``: what the SDK did before the cap, ``httpx.Client.post`` reading
  the whole answer into memory (for comparison).

Before the cap the SDK's process grew to about 1.2 GB here; with it, its peak is
the interpreter, httpx and a few MB.
"""

from __future__ import annotations

import sys

# benchmarks/platform.py would shadow the standard library's `platform` module.
if sys.path and sys.path[0] == __import__("os").path.dirname(__import__("os").path.abspath(__file__)):
    del sys.path[0]

import argparse
import asyncio
import contextlib
import json
import subprocess
import threading

CLIENT = """
import json, resource, sys, time
kind, url = sys.argv[1], sys.argv[2]
started = time.perf_counter()
outcome = "ok"
if kind == "perf_sdk":
    from perf_sdk._transport import HttpTransport
    t = HttpTransport(url, "svc", {"transactions": "tok-benchmark-123"}, timeout=30.0, deadline=120.0)
    try:
        t.send("transactions", b'[{"_id": "a"}]')
    except Exception as exc:
        outcome = type(exc).__name__ + ": " + str(exc)[:120]
    finally:
        t.close()
else:
    import httpx
    with httpx.Client(timeout=30.0) as client:
        response = client.post(url + "/data/svc/transactions", content=b'[{"_id": "a"}]')
        outcome = f"read {len(response.content):,} bytes"
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_rss_mb": peak_kb / 1024, "seconds": time.perf_counter() - started, "outcome": outcome}))
"""


def serve(size: int, kind: str) -> tuple[str, asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    address: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            chunk = b"x" * (1 << 20)
            if kind == "chunked":
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for _ in range(size // len(chunk)):
                    writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
                for _ in range(size // len(chunk)):
                    writer.write(chunk)
                    await writer.drain()
            await writer.drain()
        writer.close()

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
        address.append(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        ready.set()
        loop.run_forever()
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(30)
    return address[0], loop, thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=int, default=300)
    parser.add_argument("--kind", choices=("length", "chunked"), default="length")
    args = parser.parse_args()
    url, loop, thread = serve(args.megabytes << 20, args.kind)
    try:
        print(f"hostile endpoint: {args.megabytes} MB body ({args.kind}); each client in its own process")
        for client in ("perf_sdk", "unbounded"):
            done = subprocess.run(
                [sys.executable, "-c", CLIENT, client, url], capture_output=True, text=True, timeout=600, check=True
            )
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"  {client:10} peak RSS {figures['peak_rss_mb']:8.1f} MB  {figures['seconds']:6.2f} s  "
                f"{figures['outcome']}"
            )
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


if __name__ == "__main__":
    main()
