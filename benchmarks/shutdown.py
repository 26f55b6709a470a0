"""How long ``close()`` takes to persist a queue of accepted records (issue 12 item 1).

    python benchmarks/shutdown.py [--records 50000] [--runs 5]

The platform never answers (a transport that blocks), so nothing is delivered:
every record must go from the in-memory queue to the spool on disk before
``close(timeout=0)`` returns. The figure is the whole ``close()``, from the call
to its return, with the records counted in the spool file afterwards.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

import perf_sdk


class Silent:
    """A platform that never answers (until the benchmark ends)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def send(self, data_type: str, body: bytes) -> None:
        self.release.wait(60)
        raise perf_sdk.RetryableError("no answer")

    def close(self) -> None:
        self.release.set()


def spooled(spool_dir: Path) -> int:
    total = 0
    for path in spool_dir.glob("*.spool"):
        with sqlite3.connect(path) as conn:
            total += conn.execute("SELECT COALESCE(SUM(n), 0) FROM segments").fetchone()[0]
    return total


def run(records: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        spool_dir = Path(tmp) / "spool"
        transport = Silent()
        tracker = perf_sdk.Tracker(
            service="bench", secret="s" * 32, spool_dir=spool_dir, transport=transport, commit_interval=1.0
        )
        tracker.open()
        for i in range(records):
            tracker.complete(f"t{i}")
        started = time.perf_counter()
        result = tracker.close(timeout=0.0)
        elapsed = time.perf_counter() - started
        transport.release.set()
        assert result.unpersisted == 0, result
        return elapsed, spooled(spool_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        elapsed, on_disk = run(args.records)
        times.append(elapsed)
        print(
            f"close(timeout=0) with {args.records:,} queued: {elapsed * 1000:7.1f} ms, {on_disk:,} records in the spool"
        )
    print(f"median {statistics.median(times) * 1000:.1f} ms, best {min(times) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
