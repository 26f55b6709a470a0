"""How long ``perf-sdk check`` and ``kpis --around`` take against the local platform, by history size.

Loads N days of history (every day: started/completed in four channels, five
ratings, a monthly cost; plus a custom data set for an other KPI) into a local
platform over loopback, then times ``check()`` (daily buckets for the day, week,
month and quarter rules, their baselines, freshness) and ``kpis_around()``.
Prints figures; asserts nothing about time (this machine is shared).

    python -P benchmarks/check.py [DAYS ...]     # default: 120 400 (-P: benchmarks/platform.py is not the stdlib)
"""

from __future__ import annotations

import random
import sys
import time
from datetime import date, datetime, timedelta, timezone

import httpx

from perf_sdk._around import kpis_around
from perf_sdk._check import check
from perf_sdk._definition import parse_definition
from perf_sdk.platform import LocalPlatform

SVC = "bench-service"
DEFINITION = parse_definition(
    """
[targets]
completion_rate = {min = 0.8}
[kpis.no_call]
name = "No call"
definition = "completed without calling"
why = "calls are costly"
compute = "ratio"
numerator = {data_type = "outcomes", where = {called = false}}
denominator = {data_type = "outcomes"}
"""
)


def load(platform: LocalPlatform, days: int, end: date) -> int:
    rng = random.Random(days)
    batches: dict[str, list[dict[str, object]]] = {"transactions": [], "satisfaction": [], "costs": [], "outcomes": []}
    for d in range(days):
        day = end - timedelta(days=days - d)
        ts = f"{day.isoformat()}T12:00:00Z"
        for channel in ("digital", "phone", "paper", "face_to_face"):
            started = rng.randint(50, 500)
            for stage, n in (("started", started), ("completed", int(started * rng.uniform(0.6, 0.9)))):
                batches["transactions"].append(
                    {"_id": f"t{d}{channel}{stage}", "_timestamp": ts, "stage": stage, "channel": channel, "count": n}
                )
        for rating in range(1, 6):
            batches["satisfaction"].append(
                {
                    "_id": f"s{d}{rating}",
                    "_timestamp": ts,
                    "rating": rating,
                    "channel": "digital",
                    "count": rng.randint(1, 20),
                }
            )
        for called in (True, False):
            batches["outcomes"].append(
                {"_id": f"o{d}{called}", "_timestamp": ts, "called": called, "count": rng.randint(5, 50)}
            )
        if day.day == 1:
            batches["costs"].append(
                {
                    "_id": f"c{d}",
                    "_timestamp": f"{day.isoformat()}T00:00:00Z",
                    "period": "month",
                    "amount_pence": 1_000_000,
                    "channel": "all",
                    "cost_type": "staff",
                    "count": 1,
                }
            )
    batches["marks"] = [
        {
            "_id": "m",
            "_timestamp": f"{(end - timedelta(days=30)).isoformat()}T09:00:00Z",
            "label": "release",
            "count": 1,
        }
    ]
    total = 0
    with httpx.Client(base_url=platform.url, headers={"Authorization": "Bearer t"}, timeout=60) as client:
        for data_type, records in batches.items():
            for i in range(0, len(records), 5000):
                client.post(f"/data/{SVC}/{data_type}", json=records[i : i + 5000]).raise_for_status()
            total += len(records)
    return total


def main(sizes: list[int]) -> None:
    now = datetime(2026, 3, 16, 9, tzinfo=timezone.utc)
    for days in sizes:
        with LocalPlatform(token="t") as p:
            records = load(p, days, now.date())
            timings = []
            for _ in range(3):
                t0 = time.perf_counter()
                report = check(read_endpoint=p.url, service=SVC, definition=DEFINITION, now=now)
                timings.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            kpis_around("release", read_endpoint=p.url, service=SVC, window=28)
            around = time.perf_counter() - t0
            print(
                f"{days:5d} days, {records:7,d} records: check {min(timings) * 1000:7.1f} ms (best of 3, "
                f"{len(report.comparisons)} comparisons, {len(report.findings)} findings); "
                f"kpis --around {around * 1000:6.1f} ms"
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [120, 400])
