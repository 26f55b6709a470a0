"""Benchmark of the local Performance Platform: ingest rate and a KPI query over 10M records.

    python benchmarks/platform.py [--records N] [--ingest N] [--db PATH] [--compare-rows]

1. Ingest: a server in a subprocess (``LocalPlatform``, uvicorn, a fresh SQLite
   file), one client (httpx, keep-alive) posting perf_sdk-shaped transaction
   records (random 32-hex ``_id``, timestamps in order, as an uploader replays
   its spool) in batches of 500. Prints records/s.
2. Query: ``--records`` (default 10,000,000) transaction records over a year,
   bulk-loaded straight into a SQLite file by SQL to save time. The stored form
   is checked first: a sample written through the platform's own write path
   must produce byte-identical rows and rollup. Then a server in a subprocess
   answers the quarterly KPI query
   ``group_by=stage&group_by=channel&period=quarter&collect=count:sum`` over
   that year; prints the best and median of several runs, end to end over HTTP.
   ``--compare-rows`` also times the same aggregation over the row table (what
   the rollup saves). ``--db PATH`` keeps the loaded database for later runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path and the file's name would
# shadow the standard library's ``platform`` module (which pydantic imports).
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone

import httpx

from perf_sdk.platform import _periods, _query, _store

TOKEN = "bench-token"
GROUP, TYPE = "bench-service", "transactions"
CHANNELS = ("digital", "phone", "paper", "face_to_face", "other")
YEAR_START = datetime(2025, 1, 1, tzinfo=timezone.utc)
YEAR_US = 365 * 24 * 3600 * 1_000_000
KPI_QUERY = (
    "group_by=stage&group_by=channel&period=quarter&collect=count:sum"
    "&start_at=2025-01-01T00:00:00Z&end_at=2026-01-01T00:00:00Z"
)


# ----------------------------------------------------------------------------- server


def _serve(db: str) -> None:
    """Child process: serve ``db`` until stdin closes."""
    from perf_sdk.platform import LocalPlatform

    with LocalPlatform(db, token=TOKEN) as platform:
        print(platform.url, flush=True)
        sys.stdin.read()


class Server:
    """The platform in a subprocess, so that client and server each have a core."""

    def __init__(self, db: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", db],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url:
            raise RuntimeError("the server did not start")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- ingest


def ingest(n: int) -> float:
    """Records per second posting ``n`` records in batches of 500 to a fresh platform."""
    step = timedelta(seconds=max(YEAR_US // 1_000_000 // max(n, 1), 1))
    batches = []
    for b in range(0, n, 500):
        batches.append(
            [
                {
                    "_id": os.urandom(16).hex(),
                    "_timestamp": (YEAR_START + step * i).isoformat().replace("+00:00", "Z"),
                    "stage": "started" if i % 2 else "completed",
                    "channel": CHANNELS[i // 2 % 5],
                    "count": 1,
                }
                for i in range(b, min(b + 500, n))
            ]
        )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        tempfile.TemporaryDirectory() as tmp,
        Server(str(Path(tmp) / "ingest.db")) as server,
        httpx.Client(base_url=server.url, headers=headers) as client,
    ):
        client.post(f"/data/{GROUP}/warm-up", json={"count": 1}).raise_for_status()
        start = time.perf_counter()
        for batch in batches:
            client.post(f"/data/{GROUP}/{TYPE}", json=batch).raise_for_status()
        elapsed = time.perf_counter() - start
        read = client.get(f"/data/{GROUP}/{TYPE}", params={"period": "year", "collect": "count:sum"})
        stored = sum(p["_count"] for p in read.json()["data"])
        assert stored == n, (stored, n)
    return n / elapsed


# ----------------------------------------------------------------------------- bulk load

# Record i of the bulk data set: what the SQL below stores, and what a client would send.
_BULK_SQL = """
WITH RECURSIVE c(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM c WHERE i + 1 < :last)
INSERT INTO records (ds, id, ts, body, dims)
SELECT :ds,
       printf('%032x', i),
       :t0 + i * :step,
       json_object(
           'channel', CASE i / 2 % 5 WHEN 0 THEN 'digital' WHEN 1 THEN 'phone' WHEN 2 THEN 'paper'
                                      WHEN 3 THEN 'face_to_face' ELSE 'other' END,
           'count', 1 + i % 3,
           'stage', CASE i % 2 WHEN 0 THEN 'completed' ELSE 'started' END),
       NULL
FROM c
"""
_ROLLUP_SQL = """
INSERT INTO rollup (ds, hour, dims, n)
SELECT ds, ts / 3600000000, body, COUNT(*) FROM records WHERE ds = :ds GROUP BY 2, 3
"""


def _step(n: int) -> int:
    """Microseconds between bulk records: whole seconds (``_timestamp`` has no fraction)."""
    return max(YEAR_US // n // 1_000_000, 1) * 1_000_000


def _bulk_record(i: int, step: int) -> dict[str, object]:
    ts = _periods.from_us(_periods.to_us(YEAR_START) + i * step)
    return {
        "_id": f"{i:032x}",
        "_timestamp": ts.isoformat(),
        "channel": CHANNELS[i // 2 % 5],
        "count": 1 + i % 3,
        "stage": "completed" if i % 2 == 0 else "started",
    }


def _bulk(store: _store.Store, group: str, type_: str, n: int, step: int) -> None:
    conn = store._conn
    ds = store.create(group, type_)
    t0 = _periods.to_us(YEAR_START)
    chunk = 1_000_000
    for first in range(0, n, chunk):
        conn.execute("BEGIN")
        conn.execute(_BULK_SQL, {"first": first, "last": min(first + chunk, n), "ds": ds, "t0": t0, "step": step})
        conn.execute("COMMIT")
        print(f"  loaded {min(first + chunk, n):,} records", flush=True)
    conn.execute("BEGIN")
    conn.execute(_ROLLUP_SQL, {"ds": ds})
    conn.execute("COMMIT")


def _tables(store: _store.Store, group: str, type_: str) -> tuple[list[tuple[object, ...]], ...]:
    ds = store.dataset_id(group, type_)
    conn = store._conn
    records = conn.execute("SELECT id, ts, body, dims FROM records WHERE ds = ? ORDER BY id", (ds,)).fetchall()
    rollup = conn.execute("SELECT hour, dims, n FROM rollup WHERE ds = ? ORDER BY 1, 2", (ds,)).fetchall()
    return records, rollup


def check_bulk_form(db: str) -> None:
    """The bulk loader stores exactly what the write path stores (rows and rollup)."""
    store = _store.Store(db)
    try:
        n = 5_000
        step = _step(n)
        _bulk(store, "check", "bulk", n, step)
        records = [_bulk_record(i, step) for i in range(n)]
        for first in range(0, n, 500):
            store.write("check", "written", _store.prepare(records[first : first + 500]))
        assert _tables(store, "check", "bulk") == _tables(store, "check", "written"), "bulk form differs"
        for type_ in ("bulk", "written"):
            store.empty("check", type_)
    finally:
        store.close()


def load(db: str, n: int) -> None:
    store = _store.Store(db)
    try:
        if store.count(GROUP, TYPE) == n:
            print(f"  reusing {n:,} records in {db}")
            return
        store.empty(GROUP, TYPE)
        _bulk(store, GROUP, TYPE, n, _step(n))
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()


def query_times(db: str, runs: int = 7) -> tuple[list[float], object]:
    with Server(db) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        times, answer = [], None
        for _ in range(runs):
            start = time.perf_counter()
            response = client.get(f"/data/{GROUP}/{TYPE}?{KPI_QUERY}")
            times.append(time.perf_counter() - start)
            response.raise_for_status()
            answer = response.json()
    return times, answer


def rows_time(db: str) -> float:
    """The same aggregation forced onto the row table, in process (no HTTP)."""
    store = _store.Store(db)
    try:
        query = _query.parse_query(httpx.QueryParams(KPI_QUERY).multi_items())
        ds = store.dataset_id(GROUP, TYPE)
        assert ds is not None
        assert query.period is not None and query.start_at is not None and query.end_at is not None
        periods = _periods.span(query.period, query.start_at, query.end_at, 100)
        bounds = [(_periods.to_us(lo), _periods.to_us(hi)) for lo, hi in periods]
        sql, params = _query.aggregate_sql(query, _query.ROWS, ds, bounds)
        start = time.perf_counter()
        store._conn.execute(sql, params).fetchall()
        return time.perf_counter() - start
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000_000, help="records for the query benchmark")
    parser.add_argument("--ingest", type=int, default=200_000, help="records for the ingest benchmark")
    parser.add_argument("--db", help="keep the query database here (reused when it holds --records)")
    parser.add_argument("--compare-rows", action="store_true", help="also time the query over the row table")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve)
        return 0

    print(f"ingest: {args.ingest:,} records in batches of 500, one client, server in a subprocess")
    rate = ingest(args.ingest)
    print(f"ingest: {rate:,.0f} records/s")

    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "query.db")
        check_bulk_form(db)
        print(f"query: loading {args.records:,} records over 2025 (bulk SQL, same stored form as the write path)")
        start = time.perf_counter()
        load(db, args.records)
        print(f"  loaded in {time.perf_counter() - start:.1f} s")
        times, answer = query_times(db)
        print(f"query: {KPI_QUERY}")
        print(f"query: best {min(times) * 1000:.1f} ms, median {statistics.median(times) * 1000:.1f} ms (HTTP)")
        groups = answer["data"] if isinstance(answer, dict) else []
        total = sum(g["_count"] for g in groups)
        print(f"  {len(groups)} groups, {total:,} records counted")
        assert total == args.records, total
        if args.compare_rows:
            print(f"query over the row table instead of the rollup: {rows_time(db):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
