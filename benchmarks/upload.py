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


def start_sink() -> tuple[subprocess.Popen[bytes], str]:
    """The trivial loopback sink of benchmarks/_sink.py: what the SDK alone can deliver."""
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_sink.py")), str(port_file)])
    deadline = time.monotonic() + 10
    while not (port_file.exists() and port_file.read_text()):
        if time.monotonic() > deadline:
            raise RuntimeError("sink did not start")
        time.sleep(0.01)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def stored(url: str, service: str) -> int:
    query = "group_by=stage&collect=count:sum"
    with urllib.request.urlopen(f"{url}/data/{service}/transactions?{query}") as r:
        return sum(int(row["_count"]) for row in json.loads(r.read())["data"])


def run(url: str, records: int, batch_size: int, work: Path) -> dict[str, float | str]:
    tracker = perf_sdk.Tracker(
        service="bench-upload",
        endpoint=url,
        token="bench",
        secret="s" * 32,
        spool_dir=work / f"spool-{time.monotonic_ns()}",
        batch_size=batch_size,
        max_queue=max(50_000, records),
    )
    ids = [f"txn-{i}" for i in range(records)]
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
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return {"calls": calls, "elapsed": elapsed, "cpu_us": cpu / records * 1e6, "result": str(result)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    sink, sink_url = start_sink()
    try:
        alone = run(sink_url, args.records, args.batch_size, work)
    finally:
        sink.terminate()
    platform, url = start_platform(work / "platform.sqlite")
    try:
        full = run(url, args.records, args.batch_size, work)
        held = stored(url, "bench-upload")
    finally:
        platform.terminate()
        platform.wait(10)
    n = args.records
    print(f"\n{n:,} records, batches of {args.batch_size}; each server in its own process")
    print(f"{'to':34} {'calls s':>8} {'delivered s':>12} {'records/s':>10} {'client CPU µs/rec':>18}")
    for name, r in (("a trivial loopback sink (SDK alone)", alone), ("the local platform (perf-sdk serve)", full)):
        print(
            f"{name:34} {r['calls']:8.2f} {r['elapsed']:12.2f} {n / float(r['elapsed']):10,.0f} {float(r['cpu_us']):18.2f}"
        )
    print(f"target >= 50,000 records/s to the local platform; the platform holds {held:,} records")


if __name__ == "__main__":
    main()
