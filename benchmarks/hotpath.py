"""The cost of recording, to the caller and to the process: perf_sdk beside Segment and PostHog.

    python benchmarks/hotpath.py [--records 200000]

For each library, in one run, against the same loopback sink (a separate
process, so its CPU is not counted):

(a) the caller's median and p99 time per call (``Tracker.complete`` /
    ``analytics.track`` / ``posthog.capture``) while the uploader is live;
(b) process CPU per record from the first call until the sink has received
    everything (background validation, spooling and upload included).

``--rounds N`` (default 3) runs the libraries N times, interleaved, and prints
each figure's median with its range; the CPU ratio is taken within each round
(the same machine load for both), so a busy machine moves it less than either.

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


def bench_perf_sdk(n: int, url: str, tag: str = "") -> dict[str, Any]:
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
    ids = [f"txn-{tag}{i}" for i in range(n)]  # new ids each round: the sink counts unique _ids
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


def _median(runs: list[dict[str, Any]], key: str) -> float:
    values = sorted(run[key] for run in runs)
    return float(values[len(values) // 2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rss-records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of every library (default 3)")
    args = parser.parse_args()
    sink, url = start_sink()
    rounds: list[list[dict[str, Any]]] = []
    try:
        for r in range(args.rounds):
            rounds.append(
                [
                    row
                    for row in (
                        bench_perf_sdk(args.records, url, tag=f"{r}-"),
                        bench_segment(args.records, url),
                        bench_posthog(args.records, url),
                    )
                    if row
                ]
            )
    finally:
        sink.terminate()
    print(
        f"\n{args.records:,} calls each, {args.rounds} round(s), loopback sink in its own process, "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}; medians of the rounds (range)\n"
    )
    print(f"{'library':28} {'median µs':>10} {'p99 µs':>9} {'CPU µs/record':>25} {'delivered':>10} {'wall s':>7}")
    for i, first in enumerate(rounds[0]):
        runs = [rnd[i] for rnd in rounds]
        cpu_runs = sorted(run["cpu_us_per_record"] for run in runs)
        span = f"({cpu_runs[0]:.2f} to {cpu_runs[-1]:.2f})" if len(runs) > 1 else ""
        print(
            f"{first['library']:28} {_median(runs, 'median_us'):10.2f} {_median(runs, 'p99_us'):9.2f} "
            f"{_median(runs, 'cpu_us_per_record'):8.2f} {span:>16} {min(run['delivered'] for run in runs):10,} "
            f"{_median(runs, 'wall_s'):7.1f}"
        )
    for i, first in enumerate(rounds[0][1:], start=1):
        ratios = sorted(rnd[0]["cpu_us_per_record"] / rnd[i]["cpu_us_per_record"] for rnd in rounds)
        latency = _median([rnd[i] for rnd in rounds], "median_us") / _median([rnd[0] for rnd in rounds], "median_us")
        print(
            f"  perf_sdk vs {first['library'].split()[0]}: median call 1/{latency:.0f}, CPU per record "
            f"{ratios[len(ratios) // 2]:.3f}x theirs (rounds: {', '.join(f'{x:.3f}' for x in ratios)})"
        )
    rss = bench_rss_platform_down(args.rss_records)
    print(
        f"\nperf_sdk, platform down: {rss['records']:,} records accepted, {rss['on_disk']:,} on disk, "
        f"{rss['refused']} refused, RSS growth {rss['rss_growth_mb']:.1f} MB"
    )


if __name__ == "__main__":
    main()
