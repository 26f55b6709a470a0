"""The cost of recording, to the caller and to the process: perf_sdk beside Segment and PostHog.

    python benchmarks/hotpath.py [--records 200000]

For each library, in one run, against the same loopback sink (a separate
process, so its CPU is not counted):

(a) the caller's median and p99 time per call (``Tracker.complete`` /
    ``analytics.track`` / ``posthog.capture``) while the uploader is live;
(b) process CPU per record from the first call until the sink has received
    everything (background validation, spooling and upload included).

Plus perf_sdk's RSS growth for 1M records accepted while the platform is down.
Segment and PostHog are installed for the benchmark only
(``pip install segment-analytics-python posthog``); without them their rows are skipped.
"""

from __future__ import annotations

import sys

# benchmarks/platform.py would shadow the standard library's `platform` module.
if sys.path and sys.path[0] == __import__("os").path.dirname(__import__("os").path.abspath(__file__)):
    del sys.path[0]

import argparse
import gc
import json
import os
import resource
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def start_sink() -> tuple[subprocess.Popen[bytes], str]:
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen([sys.executable, str(HERE / "_sink.py"), str(port_file)])
    deadline = time.monotonic() + 10
    while not (port_file.exists() and port_file.read_text()):
        if time.monotonic() > deadline:
            raise RuntimeError("sink did not start")
        time.sleep(0.01)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def sink_count(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/_count") as r:
        return json.loads(r.read())


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(
    name: str, call: Callable[[int], Any], drain: Callable[[], None], n: int, url: str, key: str
) -> dict[str, Any]:
    before = sink_count(url)[key]
    lat = [0] * n
    pc = time.perf_counter_ns
    gc.collect()
    c0, w0 = cpu(), time.perf_counter()
    for i in range(n):
        t = pc()
        call(i)
        lat[i] = pc() - t
    calls_wall = time.perf_counter() - w0
    drain()
    deadline = time.monotonic() + 600
    while sink_count(url)[key] - before < n and time.monotonic() < deadline:
        time.sleep(0.01)
    c1, w1 = cpu(), time.perf_counter()
    got = sink_count(url)[key] - before
    lat.sort()
    return {
        "library": name,
        "median_us": lat[n // 2] / 1000,
        "p99_us": lat[int(n * 0.99)] / 1000,
        "calls_s": calls_wall,
        "cpu_us_per_record": (c1 - c0) / n * 1e6,
        "delivered": got,
        "wall_s": w1 - w0,
    }


def bench_perf_sdk(n: int, url: str) -> dict[str, Any]:
    import perf_sdk

    tracker = perf_sdk.Tracker(
        service="bench",
        endpoint=url,
        token="t",
        secret="s" * 32,
        spool_dir=tempfile.mkdtemp(),
        max_queue=max(n, 50_000),
    )
    tracker.complete("warm-up")
    tracker.flush(10)
    complete = tracker.complete
    ids = [f"txn-{i}" for i in range(n)]
    result = measure(
        "perf_sdk Tracker.complete", lambda i: complete(ids[i]), lambda: tracker.flush(600), n, url, "unique_ids"
    )
    result["refused"] = tracker.stats.refused
    tracker.close()
    return result


def bench_segment(n: int, url: str) -> dict[str, Any] | None:
    try:
        from segment.analytics.client import Client
    except ImportError:
        return None
    client = Client("write-key", host=url, max_queue_size=n + 10, upload_size=100)
    track = client.track
    users = [f"user-{i}" for i in range(n)]
    result = measure(
        "Segment analytics.track",
        lambda i: track(users[i], "Transaction completed", {"channel": "digital"}),
        client.flush,
        n,
        url,
        "events",
    )
    client.shutdown()
    return result


def bench_posthog(n: int, url: str) -> dict[str, Any] | None:
    try:
        from posthog import Posthog
    except ImportError:
        return None
    client = Posthog("project-key", host=url, max_queue_size=n + 10, flush_at=100, enable_local_evaluation=False)
    capture = client.capture
    users = [f"user-{i}" for i in range(n)]
    result = measure(
        "PostHog capture",
        lambda i: capture("transaction completed", distinct_id=users[i], properties={"channel": "digital"}),
        client.flush,
        n,
        url,
        "events",
    )
    client.shutdown()
    return result


def bench_rss_platform_down(n: int) -> dict[str, Any]:
    import perf_sdk

    tracker = perf_sdk.Tracker(
        service="bench", endpoint="http://127.0.0.1:9", token="t", secret="s" * 32, spool_dir=tempfile.mkdtemp()
    )
    tracker.complete("warm-up")
    tracker.persist(10)
    gc.collect()
    before = rss_mb()
    ids = (f"txn-{i}" for i in range(n))
    complete = tracker.complete
    for txn in ids:
        complete(txn)
    tracker.persist(120)
    gc.collect()
    after = rss_mb()
    depth = tracker.health().spool_depth
    refused = tracker.stats.refused
    tracker.close(0.1)
    return {"records": n, "rss_growth_mb": after - before, "on_disk": depth, "refused": refused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rss-records", type=int, default=1_000_000)
    args = parser.parse_args()
    sink, url = start_sink()
    try:
        rows = [
            r
            for r in (
                bench_perf_sdk(args.records, url),
                bench_segment(args.records, url),
                bench_posthog(args.records, url),
            )
            if r
        ]
    finally:
        sink.terminate()
    print(
        f"\n{args.records:,} calls each, loopback sink in its own process, {os.cpu_count()} cores, Python {sys.version.split()[0]}\n"
    )
    print(f"{'library':28} {'median µs':>10} {'p99 µs':>9} {'CPU µs/record':>14} {'delivered':>10} {'wall s':>7}")
    for r in rows:
        print(
            f"{r['library']:28} {r['median_us']:10.2f} {r['p99_us']:9.2f} {r['cpu_us_per_record']:14.2f} "
            f"{r['delivered']:10,} {r['wall_s']:7.1f}"
        )
    ours = rows[0]
    for peer in rows[1:]:
        print(
            f"  perf_sdk vs {peer['library'].split()[0]}: median 1/{peer['median_us'] / ours['median_us']:.0f}, "
            f"CPU 1/{peer['cpu_us_per_record'] / ours['cpu_us_per_record']:.1f}"
        )
    rss = bench_rss_platform_down(args.rss_records)
    print(
        f"\nperf_sdk, platform down: {rss['records']:,} records accepted, {rss['on_disk']:,} on disk, "
        f"{rss['refused']} refused, RSS growth {rss['rss_growth_mb']:.1f} MB"
    )


if __name__ == "__main__":
    main()
