"""Benchmark of ``perf-sdk publish``: 1,000 services x 5 years of monthly data, through the read API.

    python benchmarks/publish.py [--services 1000] [--years 5] [--workers 4] [--keep DIR] [--profile OUT.prof]

1. Starts the local platform in a subprocess (``python -m perf_sdk serve``, a
   fresh SQLite file, or the one in ``--keep DIR`` when it already holds the
   data) so the server's CPU does not compete for our GIL.
2. Loads each service's months: 8 transactions records (started and completed
   in four channels), 5 satisfaction records (one per rating) and a monthly
   cost, as aggregated records (``count``), three POSTs a service.
3. Times :func:`perf_sdk._publish.publish` reading every service the platform
   lists through its read API (three monthly-sum queries a service) and
   writing the whole site, then prints the time (target: 60 s on a 2-core
   machine), the services list page's size (target: under 500 KB at 1,000
   services), the largest service page and the number and total size of the files.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# benchmarks/platform.py would shadow the standard library's platform module (imported by uuid, via httpx)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402

TOKEN = "bench-token"
CHANNELS = ("digital", "phone", "paper", "face_to_face")
ORGANISATIONS = tuple(f"Department {n:02d}" for n in range(1, 25))


class Platform:
    """``perf-sdk serve`` in a subprocess on a free port, with its own SQLite file."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "perf_sdk", "serve", "--port", "0", "--db", str(db), "--token", TOKEN],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"(http://\S+)", line)
        if m is None:
            self.proc.kill()
            raise RuntimeError(f"the platform did not start: {line!r}")
        self.url = m.group(1)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _service(n: int) -> str:
    return f"service-{n:04d}"


def _records(n: int, years: int) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(n)
    out: dict[str, list[dict[str, Any]]] = {"transactions": [], "satisfaction": [], "costs": []}
    size = rng.randint(200, 20_000)
    for i in range(years * 12):
        year, month = 2021 + i // 12, i % 12 + 1
        ts = f"{year}-{month:02d}-15T12:00:00Z"
        for c, channel in enumerate(CHANNELS):
            started = max(1, int(size * (0.6 if channel == "digital" else 0.15) * rng.uniform(0.8, 1.2)))
            done = int(started * rng.uniform(0.5, 0.95))
            out["transactions"] += [
                {"_id": f"s{i}-{c}", "_timestamp": ts, "stage": "started", "channel": channel, "count": started},
                {"_id": f"c{i}-{c}", "_timestamp": ts, "stage": "completed", "channel": channel, "count": done},
            ]
        for rating in range(1, 6):
            out["satisfaction"].append(
                {"_id": f"r{i}-{rating}", "_timestamp": ts, "rating": rating, "channel": "digital",
                 "count": rng.randint(0, size // 20)}
            )  # fmt: skip
        out["costs"].append(
            {"_id": f"k{i}", "_timestamp": f"{year}-{month:02d}-01T00:00:00Z", "period": "month",
             "amount_pence": size * rng.randint(100, 900), "channel": "all", "cost_type": "staff", "count": 1}
        )  # fmt: skip
    return out


def load(url: str, services: int, years: int) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as client:
        for n in range(services):
            for data_type, items in _records(n, years).items():
                response = client.post(f"/data/{_service(n)}/{data_type}", json=items)
                response.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4, help="read API requests in flight (default: 4)")
    parser.add_argument("--keep", type=Path, help="directory to keep (and reuse) the platform's database in")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the publish here")
    args = parser.parse_args()

    from perf_sdk._publish import publish

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = args.keep or tmp
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / f"platform-{args.services}x{args.years}.sqlite"
        fresh = not db.exists()
        platform = Platform(db)
        try:
            if fresh:
                t = time.perf_counter()
                load(platform.url, args.services, args.years)
                records = args.services * args.years * 12 * 14
                print(f"loaded {records:,} records for {args.services:,} services in {time.perf_counter() - t:.1f} s")
            out = tmp / "site"
            profiler = None
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            t = time.perf_counter()
            result = publish(out, read_endpoint=platform.url, published_at="2026-01-10T09:00:00Z", workers=args.workers)
            elapsed = time.perf_counter() - t
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
        finally:
            platform.close()
        sizes = {name: (out / name).stat().st_size for name in result.files}
        pages = [s for name, s in sizes.items() if name.count("/") == 1 and name.endswith("/index.html")]
        print(f"published {len(result.services):,} services ({args.years} years of monthly data) in {elapsed:.1f} s")
        print(f"  services list index.html: {sizes['index.html'] / 1000:.0f} KB")
        print(f"  largest service page: {max(pages) / 1000:.0f} KB")
        print(f"  {len(sizes):,} files, {sum(sizes.values()) / 1e6:.1f} MB in all")
        print(
            f"  target: <= 60 s and a list page < 500 KB: {'met' if elapsed <= 60 and sizes['index.html'] < 500_000 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
