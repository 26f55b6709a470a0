"""``/_status`` latency of the local platform while four heavy reads run.

Usage::

    python benchmarks/platform_status_under_load.py [--records 40000] [--seconds 20]

Starts a :class:`~perf_sdk.platform.LocalPlatform` (SQLite file, loopback),
writes ``--records`` records over a year with 20 values of one field, then
keeps four threads asking the heaviest read the limits allow (``period=hour``
over the year, ``group_by`` that field: 8,760 periods x 20 groups) while a
fifth asks ``/_status`` every 50 ms and a sixth posts a record every 100 ms.
Prints the latency of ``/_status`` idle and under load, and of the writes
(median, 95th percentile, worst), the heavy read's time and size, and what the
issue's attack (``duration=99999`` hours) gets now.

Figures, not a test: they depend on the machine. The issue's target is
``/_status`` under a second while four heavy reads run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from pathlib import Path

# This folder holds a platform.py of its own, which would shadow the standard library's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402

from perf_sdk.platform import LocalPlatform  # noqa: E402

HEAVY = {
    "period": "hour",
    "start_at": "2025-01-01T00:00:00Z",
    "end_at": "2026-01-01T00:00:00Z",
    "group_by": "flavour",
    "collect": "count:sum",
}
ATTACK = {"period": "hour", "duration": "99999", "group_by": "flavour", "collect": "count:sum"}


def _load(client: httpx.Client, url: str, records: int) -> None:
    rng = random.Random(2026)
    start = 1_735_689_600  # 2025-01-01T00:00:00Z
    batch: list[dict[str, object]] = []
    for i in range(records):
        at = time.gmtime(start + rng.randrange(365 * 24) * 3600)
        batch.append(
            {
                "_id": f"r{i}",
                "_timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", at),
                "flavour": f"f{i % 20:02d}",
                "count": 1,
            }
        )
        if len(batch) == 5000:
            client.post(url, json=batch).raise_for_status()
            batch = []
    if batch:
        client.post(url, json=batch).raise_for_status()


def _status_latencies(base: str, stop: threading.Event, seconds: float) -> list[float]:
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    with httpx.Client(base_url=base, timeout=60) as client:
        while time.perf_counter() < deadline and not stop.is_set():
            began = time.perf_counter()
            client.get("/_status").raise_for_status()
            out.append(time.perf_counter() - began)
            time.sleep(0.05)
    return out


def _write_latencies(url: str, token: str, stop: threading.Event, seconds: float) -> list[float]:
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    record = {"_timestamp": "2025-06-01T12:00:00Z", "flavour": "f00", "count": 1}
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        n = 0
        while time.perf_counter() < deadline and not stop.is_set():
            began = time.perf_counter()
            client.post(url, json=record | {"_id": f"w{n}"}).raise_for_status()
            out.append(time.perf_counter() - began)
            n += 1
            time.sleep(0.1)
    return out


def _summary(label: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return (
        f"{label:24} n={len(ms):4}  median {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms  worst {ms[-1]:7.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with LocalPlatform() as platform:
        url = f"{platform.url}/data/bench/flavours"
        auth = {"Authorization": f"Bearer {platform.token}"}
        with httpx.Client(headers=auth, timeout=120) as client:
            _load(client, url, args.records)
            began = time.perf_counter()
            heavy = client.get(url, params=HEAVY)
            heavy.raise_for_status()
            print(
                f"heavy read alone: {time.perf_counter() - began:.2f} s, {len(heavy.content) / 1e6:.1f} MB, "
                f"{len(heavy.json()['data'])} groups x {len(heavy.json()['data'][0]['values'])} periods"
            )
            attack = client.get(url, params=ATTACK)
            print(f"the issue's attack (duration=99999 hours): {attack.status_code} {attack.json()['message']}")

        idle = _status_latencies(platform.url, threading.Event(), 3.0)
        print(_summary("/_status idle", idle))

        stop = threading.Event()
        reads: list[float] = []

        def reader() -> None:
            with httpx.Client(timeout=300) as client:
                while not stop.is_set():
                    began = time.perf_counter()
                    client.get(url, params=HEAVY).raise_for_status()
                    reads.append(time.perf_counter() - began)

        threads = [threading.Thread(target=reader, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # let all four get going
        writes: list[float] = []
        writer = threading.Thread(
            target=lambda: writes.extend(_write_latencies(url, platform.token or "", stop, args.seconds)), daemon=True
        )
        writer.start()
        loaded = _status_latencies(platform.url, stop, args.seconds)
        writer.join(300)
        stop.set()
        for t in threads:
            t.join(300)
        print(_summary("/_status, 4 heavy reads", loaded))
        print(_summary("POST, 4 heavy reads", writes))
        if reads:
            print(f"heavy reads completed meanwhile: {len(reads)}, median {statistics.median(reads):.2f} s each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
