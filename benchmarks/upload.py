"""Records per second delivered to the local platform, end to end.

    python benchmarks/upload.py [--records 300000]

The local platform runs as ``perf-sdk serve`` in its own process (as it would in
production: the platform's CPU is not the service's). The clock runs from the
first recording call until ``flush()`` returns, i.e. until the platform has
answered 200 for every record; the platform is then asked how many it holds.
Target: at least 50,000 records/s on a 2-core machine.
"""

from __future__ import annotations

import sys

# benchmarks/platform.py would shadow the standard library's `platform` module.
if sys.path and sys.path[0] == __import__("os").path.dirname(__import__("os").path.abspath(__file__)):
    del sys.path[0]

import argparse
import json
import resource
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import perf_sdk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_platform(db: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "perf_sdk", "serve", "--port", str(port), "--token", "bench", "--db", str(db)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_status", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the local platform did not start")


def stored(url: str, service: str) -> int:
    query = "group_by=stage&collect=count:sum"
    with urllib.request.urlopen(f"{url}/data/{service}/transactions?{query}") as r:
        return sum(int(row["_count"]) for row in json.loads(r.read())["data"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    platform, url = start_platform(work / "platform.sqlite")
    try:
        tracker = perf_sdk.Tracker(
            service="bench-upload",
            endpoint=url,
            token="bench",
            secret="s" * 32,
            spool_dir=work / "spool",
            batch_size=args.batch_size,
            max_queue=max(50_000, args.records),
        )
        ids = [f"txn-{i}" for i in range(args.records)]
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        for i, txn in enumerate(ids):
            if i % 2:
                tracker.complete(txn, channel="digital")
            else:
                tracker.start(txn, channel="phone")
        calls = time.perf_counter() - t0
        result = tracker.flush(timeout=600)
        elapsed = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        tracker.close()
        held = stored(url, "bench-upload")
    finally:
        platform.terminate()
        platform.wait(10)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    print(f"\n{args.records:,} records, batches of {args.batch_size}, local platform in its own process")
    print(f"  recording calls:     {calls:6.2f} s")
    print(f"  delivered (flush):   {elapsed:6.2f} s   -> {args.records / elapsed:,.0f} records/s   (target >= 50,000)")
    print(f"  client CPU:          {cpu / args.records * 1e6:6.2f} µs per record")
    print(f"  platform holds:      {held:,} records   flush: {result}")


if __name__ == "__main__":
    main()
