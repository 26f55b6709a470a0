"""The reliability suite's figures: the caller's slowest call, the SDK's memory, how long shutdown takes.

    python benchmarks/reliability.py [--threads 8] [--per-thread 125000] [--only load,faults,shutdown]

The tests in ``tests/reliability`` assert behaviour only (every accepted record
stored exactly once, no wait outlasting its timeout by the platform's time):
wall-clock and memory figures depend on how busy the machine is, so they live
here, printed, never asserted. The fault-injecting platform (``tests/faultserver.py``)
runs in a process of its own, so that neither its CPU nor the records it stores
are charged to the SDK being measured (in the test suite it shares the process,
and its million stored records would count as the SDK's memory).

``load``: threads record flat out against a platform that is slow and failing
(20% of requests); peak RSS of this process (sampled every 20 ms) above its level
before the first record, the slowest call, records/s until the platform holds
everything. ``faults``: the slowest recording call while each fault of the
fault table is injected in half the requests (the table's "max host call"
column). ``shutdown``: how long ``flush(0.5)`` and ``close(0.5)`` take with the
platform hanging, how long a process takes to exit with the platform hanging
(``exit_timeout`` is 2 s). ``benchmarks/shutdown.py`` measures how long
``close()`` takes to persist 50,000 queued records.
"""

from __future__ import annotations

import sys

# benchmarks/platform.py would shadow the standard library's `platform` module.
if sys.path and sys.path[0] == __import__("os").path.dirname(__import__("os").path.abspath(__file__)):
    del sys.path[0]

import argparse
import contextlib
import json
import logging
import os
import resource
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.faultserver (the platform), run from any directory

from tests.faultserver import FAULTS  # noqa: E402

import perf_sdk  # noqa: E402

SERVICE = "apply-for-a-licence"
SECRET = "benchmark-secret-0123456789"
TOKEN = "test-token"
FAST = {"retry_initial": 0.01, "retry_max": 0.05, "pause_seconds": 0.2}


@contextlib.contextmanager
def platform(**plan: Any) -> Iterator[str]:
    """A fault server in its own process; yields its URL. It stops when its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.faultserver", json.dumps(plan)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def counts(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/_count", timeout=60) as answer:
        return dict(json.load(answer))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tracker(url: str, spool_dir: str, **options: Any) -> perf_sdk.Tracker:
    settings: dict[str, Any] = {**FAST, **options}
    return perf_sdk.Tracker(service=SERVICE, endpoint=url, token=TOKEN, secret=SECRET, spool_dir=spool_dir, **settings)


def bench_load(threads: int, per_thread: int) -> None:
    plan = {"rate": 0.2, "faults": ["500", "503-retry-after", "drop-after-store", "slow"], "seed": 5}
    with platform(**plan, slow_seconds=0.5) as url, tempfile.TemporaryDirectory() as spool_dir:
        t = tracker(url, spool_dir, timeout=0.3, max_queue=50_000, max_block=60.0)
        t.open()
        before = rss_mb()
        peak = [before]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.02):
                peak[0] = max(peak[0], rss_mb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        worst = [0] * threads

        def work(n: int) -> None:
            pc = time.perf_counter_ns
            complete = t.complete
            for i in range(per_thread):
                start = pc()
                complete(f"{n}-{i}")
                worst[n] = max(worst[n], pc() - start)

        started = time.perf_counter()
        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        recorded = time.perf_counter() - started
        result = t.flush(600)
        delivered = time.perf_counter() - started
        sampling.set()
        sampler.join()
        t.close(10)
        held = counts(url)
    total = threads * per_thread
    print(f"\nload: {threads} threads x {per_thread:,} records, platform slow and failing (20%), in its own process")
    print(f"  recorded in {recorded:.1f} s; all stored in {delivered:.1f} s ({total / delivered:,.0f} records/s)")
    print(f"  slowest recording call: {max(worst) / 1e6:.1f} ms (waiting for room in the queue once it is full)")
    print(f"  RSS: {before:.0f} MB before, peak {peak[0]:.0f} MB (+{peak[0] - before:.0f} MB)")
    print(f"  platform holds {held['records']:,} records, count sum {held['count_sum']:,}; flush: {result}")


def bench_faults(n: int = 3000) -> None:
    print(f"\nfaults: slowest recording call, {n:,} calls, each fault in 50% of requests (platform in its own process)")
    print(f"  {'fault':20} {'max host call µs':>17} {'stored':>8}")
    for fault in FAULTS:
        plan = {"rate": 0.5, "faults": [fault], "seed": 11, "slow_seconds": 0.6, "retry_after": "0.05"}
        with platform(**plan) as url, tempfile.TemporaryDirectory() as spool_dir:
            t = tracker(url, spool_dir, timeout=0.3, batch_size=200)
            t.open()
            worst = 0
            pc = time.perf_counter_ns
            for i in range(n):
                start = pc()
                t.complete(f"t-{i}")
                worst = max(worst, pc() - start)
            t.flush(120)
            t.close(10)
            print(f"  {fault:20} {worst / 1000:17.1f} {counts(url)['records']:8,}")


def bench_shutdown() -> None:
    print("\nshutdown: the platform hangs (an hour) on every request")
    with platform(rate=1.0, faults=["slow"], slow_seconds=3600) as url:
        with tempfile.TemporaryDirectory() as spool_dir:
            t = tracker(url, spool_dir, timeout=3600)
            for i in range(100):
                t.complete(f"h-{i}")
            t.persist(60)
            for name, call in (("flush(0.5)", lambda: t.flush(0.5)), ("close(0.5)", lambda: t.close(0.5))):
                started = time.perf_counter()
                result = call()
                print(f"  {name} returned in {time.perf_counter() - started:.3f} s, pending {result.pending}")
        with tempfile.TemporaryDirectory() as spool_dir:
            code = (
                "import perf_sdk\n"
                f"t = perf_sdk.Tracker(service={SERVICE!r}, endpoint={url!r}, token={TOKEN!r}, secret={SECRET!r},"
                f" spool_dir={spool_dir!r}, timeout=3600)\n"
                "for i in range(1000): t.complete(f'x-{i}')\n"
            )
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import perf_sdk"], check=True)
            startup = time.perf_counter() - started
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
            print(
                f"  a process that recorded 1,000 records exits in {time.perf_counter() - started:.2f} s "
                f"(of which {startup:.2f} s start-up)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per-thread", type=int, default=125_000)
    parser.add_argument("--only", default="load,faults,shutdown", help="comma-separated: load, faults, shutdown")
    args = parser.parse_args()
    chosen = set(args.only.split(","))
    logging.getLogger("perf_sdk").addHandler(logging.NullHandler())  # the retries it logs are expected here
    print(f"Python {sys.version.split()[0]}, perf_sdk {perf_sdk.__version__}, {os.cpu_count()} CPUs")
    if "load" in chosen:
        bench_load(args.threads, args.per_thread)
    if "faults" in chosen:
        bench_faults()
    if "shutdown" in chosen:
        bench_shutdown()


if __name__ == "__main__":
    main()
