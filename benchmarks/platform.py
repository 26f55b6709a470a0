"""Benchmark of the local Performance Platform as the SDK uses it: ingest curve, KPI queries, server memory.

    python benchmarks/platform.py [--records N] [--every N] [--batch N] [--db PATH] [--query-only]
                                  [--runs N] [--compare-rows]

1. Ingest: ``perf-sdk serve`` in its own process (a fresh SQLite file, or
   ``--db``), one client posting what the SDK's uploader posts: batches of
   5,000 transaction records encoded as the SDK's transport sends them
   (compact JSON, gzip level 1, ``Content-Encoding: gzip``), each record with
   a random 32-hex ``_id`` and a ``_timestamp`` in order through 2025 (as an
   uploader replays its spool). A thread builds the next batch while one is
   in flight, so the client is not what is measured. Every ``--every``
   records stored (default 1,000,000) it prints the rate over that slice,
   the server's CPU time per record (steadier than the rate on a shared
   machine) and its RSS: the curve shows whether ingest slows as the
   database grows.
2. Query: the exact requests ``perf-sdk kpis --period quarter`` and
   ``--period month`` send for 2025 (captured from
   :func:`perf_sdk.kpis` itself: ``period=month``, ``group_by`` stage and
   channel, ``collect=count:sum``, over its look-back window), each timed
   ``--runs`` times over HTTP; prints the median and best, and the whole
   ``kpis()`` call (three data sets). The answer is checked against the
   number of records stored.
3. Memory: the server's peak RSS (``VmHWM``) over the whole run.

Runs against whichever ``perf_sdk`` is importable, so the same script measures
an older tree: ``PYTHONPATH=/tmp/old/src python benchmarks/platform.py``.
``--compare-rows`` also times the quarterly aggregation over the row table in
process (what the rollup saves). ``--ingest N`` is the former name of
``--records``. The machine's other load makes figures noisy: compare runs made
back to back.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path and the file's name would
# shadow the standard library's ``platform`` module (which pydantic imports).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import gzip
import os
import queue
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timezone

import httpx

TOKEN = "bench-token"
GROUP, TYPE = "bench-service", "transactions"
CHANNELS = ("digital", "phone", "paper", "face_to_face", "other")
YEAR_START_S = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp())
YEAR_S = 365 * 24 * 3600
KPI_START, KPI_END = date(2025, 1, 1), date(2025, 12, 31)


# ----------------------------------------------------------------------------- server


#: ``perf-sdk serve`` through whichever perf_sdk is importable (the console script would pin one tree).
_SERVE = "import sys; from perf_sdk.cli import main; sys.exit(main())"


class Server:
    """``perf-sdk serve`` in its own process (the importable perf_sdk), on a free loopback port."""

    def __init__(self, db: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE, "serve", "--port", "0", "--db", db, "--token", TOKEN],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if "listening on " not in first:
            self.close()
            raise RuntimeError(f"the server did not start: {first!r}")
        self.url = first.split("listening on ", 1)[1].strip()
        # Drain the rest of its output so that it never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        for _ in range(100):
            try:
                if httpx.get(f"{self.url}/_status", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    def memory(self, field: str) -> int:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the server, in bytes (0 where /proc is missing)."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def cpu(self) -> float:
        """CPU seconds the server has used (user + system, every thread; 0 where /proc is missing).

        Less bent by other load on the machine than wall-clock rates: the figure
        to compare between runs on a shared machine.
        """
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- ingest


def _batches(first: int, n: int, total: int, size: int) -> Iterator[tuple[int, bytes]]:
    """``(count, gzip body)`` of records ``first`` to ``first + n``, as the SDK's transport sends them.

    The uploader's encoding (compact JSON, keys as the SDK writes them) and the
    transport's gzip (level 1), built from a template: a dict and
    ``json.dumps`` per record would make the client, not the server, the
    limit on this two-core machine.
    """
    hours: dict[int, str] = {}
    for start in range(first, first + n, size):
        stop = min(start + size, first + n)
        ids = os.urandom(16 * (stop - start)).hex()
        items = []
        for k, i in enumerate(range(start, stop)):
            second = YEAR_START_S + i * YEAR_S // total
            hour = second - second % 3600
            prefix = hours.get(hour)
            if prefix is None:
                prefix = hours[hour] = datetime.fromtimestamp(hour, timezone.utc).strftime("%Y-%m-%dT%H:")
            items.append(
                f'{{"_id":"{ids[32 * k : 32 * k + 32]}","_timestamp":"{prefix}{second % 3600 // 60:02d}:'
                f'{second % 60:02d}Z","count":1,"stage":"{"started" if i % 2 else "completed"}",'
                f'"channel":"{CHANNELS[i // 2 % 5]}"}}'
            )
        yield len(items), gzip.compress(f"[{','.join(items)}]".encode(), compresslevel=1)


def _stored(client: httpx.Client) -> int:
    read = client.get(f"/data/{GROUP}/{TYPE}", params={"period": "year", "collect": "count:sum"})
    if read.status_code == 404:
        return 0
    read.raise_for_status()
    return sum(p["_count"] for p in read.json()["data"])


def ingest(server: Server, n: int, every: int, size: int) -> list[tuple[int, float, int]]:
    """Post ``n`` records; ``(stored, rate over the last slice, RSS)`` every ``every`` records stored.

    Each line also gives the server's CPU time per record over the slice.
    """
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", "Content-Encoding": "gzip"}
    client = httpx.Client(base_url=server.url, timeout=300, headers=headers)
    already = _stored(client)
    if already:
        print(f"ingest: the database already holds {already:,} records; adding {n:,}")
    bodies: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=4)

    def produce() -> None:
        for item in _batches(already, n, already + n, size):
            bodies.put(item)
        bodies.put(None)

    threading.Thread(target=produce, daemon=True).start()
    curve: list[tuple[int, float, int]] = []
    posted, posted_at_mark = 0, 0
    mark = started = time.perf_counter()
    cpu_mark, cpu_start, own_mark = server.cpu(), server.cpu(), time.process_time()
    next_mark = every
    while (item := bodies.get()) is not None:
        count, body = item
        client.post(f"/data/{GROUP}/{TYPE}", content=body).raise_for_status()
        posted += count
        if posted >= next_mark or posted == n:
            now = time.perf_counter()
            rate, rss, cpu, own = (
                (posted - posted_at_mark) / (now - mark),
                server.memory("VmRSS"),
                server.cpu(),
                time.process_time(),
            )
            curve.append((already + posted, rate, rss))
            done = posted - posted_at_mark
            print(
                f"  {already + posted:>12,} stored  {rate:>9,.0f} rec/s  "
                f"server CPU {(cpu - cpu_mark) / done * 1e6:5.1f} us/rec (client {(own - own_mark) / done * 1e6:4.1f})  "
                f"RSS {rss / 2**20:7.1f} MiB  ({now - started:7.1f} s)",
                flush=True,
            )
            mark, posted_at_mark, next_mark, cpu_mark, own_mark = now, posted, next_mark + every, cpu, own
    print(f"ingest: server CPU {(server.cpu() - cpu_start) / n * 1e6:.1f} us/rec overall")
    stored = _stored(client)
    client.close()
    assert stored == already + n, (stored, already + n)
    return curve


# ----------------------------------------------------------------------------- queries


def _kpi_requests(url: str, period: str) -> tuple[list[float], str]:
    """Time one ``kpis()`` call and capture the transactions request it sends."""
    from perf_sdk import kpis

    sent: list[str] = []
    with httpx.Client(timeout=300, event_hooks={"request": [lambda r: sent.append(str(r.url))]}) as client:
        start = time.perf_counter()
        kpis(url, service=GROUP, period=period, start=KPI_START, end=KPI_END, client=client)
        elapsed = time.perf_counter() - start
    transactions = next(u for u in sent if f"/data/{GROUP}/{TYPE}?" in u)
    return [elapsed], transactions


def query_times(server: Server, runs: int, expected: int) -> None:
    for period in ("quarter", "month"):
        whole, request = _kpi_requests(server.url, period)
        times = []
        with httpx.Client(timeout=300) as client:
            for _ in range(runs):
                start = time.perf_counter()
                response = client.get(request)
                times.append(time.perf_counter() - start)
                response.raise_for_status()
            groups = response.json()["data"]
            for _ in range(runs - 1):
                whole += _kpi_requests(server.url, period)[0]
        total = sum(g["_count"] for g in groups)
        assert total == expected, (total, expected)
        print(f"query (perf-sdk kpis --period {period}): {request.split('?', 1)[1]}")
        print(
            f"  transactions request: median {statistics.median(times) * 1000:.1f} ms, "
            f"best {min(times) * 1000:.1f} ms ({runs} runs, HTTP; {len(groups)} groups, {total:,} records)"
        )
        print(f"  whole kpis() call:    median {statistics.median(whole) * 1000:.1f} ms")


def rows_time(db: str) -> float:
    """The quarterly aggregation forced onto the row table, in process (no HTTP)."""
    from perf_sdk.platform import _periods, _query, _store

    store = _store.Store(db)
    try:
        params = "group_by=stage&group_by=channel&period=quarter&collect=count:sum"
        params += "&start_at=2025-01-01T00:00:00Z&end_at=2026-01-01T00:00:00Z"
        query = _query.parse_query(httpx.QueryParams(params).multi_items())
        ds = store.dataset_id(GROUP, TYPE)
        assert ds is not None and query.period is not None
        assert query.start_at is not None and query.end_at is not None
        periods = _periods.span(query.period, query.start_at, query.end_at, 100)
        bounds = [(_periods.to_us(lo), _periods.to_us(hi)) for lo, hi in periods]
        sql, args = _query.aggregate_sql(query, _query.ROWS, ds, bounds)
        start = time.perf_counter()
        store._conn.execute(sql, args).fetchall()
        return time.perf_counter() - start
    finally:
        store.close()


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000, help="records to ingest (default 10,000,000)")
    parser.add_argument("--ingest", type=int, dest="records", help=argparse.SUPPRESS)  # the former name
    parser.add_argument("--every", type=int, default=1_000_000, help="print the rate every N records stored")
    parser.add_argument("--batch", type=int, default=5_000, help="records per request (the SDK's default 5,000)")
    parser.add_argument("--db", help="keep the database here (records are added to what it holds)")
    parser.add_argument("--query-only", action="store_true", help="only time the queries over --db")
    parser.add_argument("--runs", type=int, default=7, help="runs of each query (the median is reported)")
    parser.add_argument("--compare-rows", action="store_true", help="also time the query over the row table")
    args = parser.parse_args()
    if args.query_only and not args.db:
        parser.error("--query-only needs --db")

    import perf_sdk

    print(f"perf_sdk from {Path(perf_sdk.__file__).parent}")
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "platform.db")
        with Server(db) as server:
            if not args.query_only:
                print(
                    f"ingest: {args.records:,} records, batches of {args.batch:,} (gzip, random _id), "
                    "perf-sdk serve in its own process"
                )
                start = time.perf_counter()
                curve = ingest(server, args.records, args.every, args.batch)
                elapsed = time.perf_counter() - start
                rates = [rate for _, rate, _ in curve]
                print(
                    f"ingest: {args.records / elapsed:,.0f} rec/s overall; slices from {min(rates):,.0f} "
                    f"to {max(rates):,.0f} rec/s (last/first {rates[-1] / rates[0]:.2f})"
                )
            with httpx.Client(base_url=server.url, timeout=300) as client:
                stored = _stored(client)
            query_times(server, args.runs, stored)
            print(f"server peak RSS: {server.memory('VmHWM') / 2**20:.1f} MiB")
        if args.compare_rows:
            print(f"quarterly query over the row table instead of the rollup: {rows_time(db):.2f} s")
        size = sum(f.stat().st_size for f in Path(db).parent.glob(Path(db).name + "*"))
        print(f"database size: {size / 2**20:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
