"""Two ``perf-sdk serve`` processes on one PostgreSQL database, the SDK writing to both at once: the rollup stays exact.

Two trackers (one per server, the same service and secret, so the same
transaction gets the same ``_id`` from both) record the same transactions at
the same time with different counts, channels and hours, twice over (the
second round replaces every record again). Whatever order the two processes'
transactions land in, each stored record is one writer's whole version, and
the hourly rollup equals the records exactly: cell by cell in SQL, and through
the read API's rollup-served grouped queries against a sum in Python.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

import perf_sdk
from perf_sdk.platform import _query
from perf_sdk.platform._periods import US_PER_HOUR
from perf_sdk.platform._query import SENTINEL_HOUR, parse_query
from tests.servers import wait_ready

TOKEN = "race-token"
SECRET = "race-secret-0123456789abcdef"
SERVICE = "race"
N = 300  # transactions; every second one also completes
T0 = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
QUERIES = (
    "group_by=stage&collect=count:sum&period=month",
    "group_by=channel&collect=count:sum&period=week",
    "group_by=stage&group_by=channel&collect=count:sum&period=quarter",
)


def _serve(url: str, log: Path) -> subprocess.Popen[bytes]:
    code = "import sys; from perf_sdk.cli import main; sys.exit(main())"
    argv = [sys.executable, "-c", code, "serve", "--port", "0", "--db", url, "--token", TOKEN]
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _address(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> str:
    """The URL ``perf-sdk serve --port 0`` printed (it binds before printing: no port race)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        match = re.search(r"listening on (http://\S+)", text)
        if match:
            return match.group(1)
        assert proc.poll() is None, f"perf-sdk serve exited ({proc.returncode}):\n{text}"
        time.sleep(0.05)  # another process's output: nothing to wait on but the file
    raise AssertionError(f"perf-sdk serve did not start in {timeout}s:\n{log.read_text(errors='replace')}")


@pytest.fixture
def two_servers(postgres_url: str, tmp_path: Path) -> Iterator[list[str]]:
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        logs = [tmp_path / f"serve-{n}.log" for n in range(2)]
        procs += [_serve(postgres_url, log) for log in logs]
        urls += [_address(proc, log) for proc, log in zip(procs, logs, strict=True)]
        for url, proc in zip(urls, procs, strict=True):
            wait_ready(f"{url}/_status", proc, timeout=60.0)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _record_all(tracker: perf_sdk.Tracker, barrier: threading.Barrier, count: int, channel: str, shift: int) -> None:
    barrier.wait(timeout=60)
    for i in range(N):
        at = T0 + timedelta(hours=(i % 40) * 37 + shift)
        tracker.start(f"txn-{i}", channel=channel, at=at, count=count)
        if i % 2 == 0:
            tracker.complete(f"txn-{i}", channel=channel, at=at + timedelta(minutes=30), count=count)


def _round(trackers: list[perf_sdk.Tracker], versions: list[tuple[int, str, int]]) -> None:
    """Both trackers record every transaction at once, then both flush at once."""
    barrier = threading.Barrier(len(trackers))
    threads = [
        threading.Thread(target=_record_all, args=(t, barrier, *v)) for t, v in zip(trackers, versions, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    flushed: list[Any] = [None, None]

    def flush(n: int) -> None:
        flushed[n] = trackers[n].flush(timeout=120)

    flushers = [threading.Thread(target=flush, args=(n,)) for n in range(len(trackers))]
    for thread in flushers:
        thread.start()
    for thread in flushers:
        thread.join(timeout=180)
    assert all(flushed), flushed


def _expected(records: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """The grouped answer computed in Python from the stored records (the row table's path)."""
    from perf_sdk.platform._store import Store, prepare

    store = Store()
    try:
        store.write(SERVICE, "transactions", prepare(records))
        store_answer = store.read(SERVICE, "transactions", parse_query(_items(query)))
    finally:
        store.close()
    assert store_answer is not None
    return store_answer


def _items(query: str) -> list[tuple[str, str]]:
    return [(k, v) for k, _, v in (part.partition("=") for part in query.split("&"))]


def test_two_servers_racing_on_the_same_ids_keep_the_rollup_exact(
    two_servers: list[str], postgres_url: str, tmp_path: Path
) -> None:
    import psycopg

    trackers = [
        perf_sdk.Tracker(
            service=SERVICE, endpoint=url, token=TOKEN, secret=SECRET, spool_dir=tmp_path / f"spool-{n}", strict=True
        )
        for n, url in enumerate(two_servers)
    ]
    try:
        # Round 1 creates the records (both insert the same ids at once); round 2 replaces every one of them.
        _round(trackers, [(1, "digital", 0), (2, "phone", 5)])
        _round(trackers, [(3, "paper", 11), (4, "other", 1)])
    finally:
        for tracker in trackers:
            tracker.close(timeout=30)

    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT id FROM datasets WHERE grp = %s AND typ = 'transactions'", (SERVICE,)).fetchone()
        assert row is not None
        ds = row[0]
        for table, time, unit in (("rollup", "hour", US_PER_HOUR), ("rollup_day", "day", 24 * US_PER_HOUR)):
            rollup = conn.execute(f"SELECT {time}, dims, n FROM {table} WHERE ds = %s", (ds,)).fetchall()
            from_records = conn.execute(
                f"SELECT CASE WHEN ts IS NULL THEN {SENTINEL_HOUR} ELSE floor(ts / {unit}.0)::bigint END, "
                "coalesce(dims, body), count(*) FROM records WHERE ds = %s GROUP BY 1, 2",
                (ds,),
            ).fetchall()
            assert sum(n for _, _, n in rollup) == N + N // 2
            assert Counter({(h, d): n for h, d, n in rollup}) == Counter({(h, d): n for h, d, n in from_records})

    records = httpx.get(f"{two_servers[0]}/data/{SERVICE}/transactions", timeout=30).json()["data"]
    assert len(records) == N + N // 2
    versions = Counter((r["count"], r["channel"]) for r in records)
    assert set(versions) <= {(3, "paper"), (4, "other")}, versions  # each record one writer's whole version

    for query in QUERIES:
        expected = _expected(records, query)
        for url in two_servers:
            answer = httpx.get(f"{url}/data/{SERVICE}/transactions?{query}", timeout=30).json()["data"]
            assert answer == expected, query
    total = sum(r["count"] for r in records)
    assert sum(item["count:sum"] for item in _expected(records, QUERIES[0])) == total


def test_the_grouped_queries_checked_are_served_by_the_rollup(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queries above read the rollup, not the row table (else the test would not check it)."""
    from perf_sdk.platform._postgres import PostgresStore
    from perf_sdk.platform._store import prepare

    store = PostgresStore(postgres_url)
    served: list[bool] = []
    real = PostgresStore._rollup_serves

    def spy(self: PostgresStore, *args: Any) -> bool:
        served.append(real(self, *args))
        return served[-1]

    monkeypatch.setattr(PostgresStore, "_rollup_serves", spy)
    try:
        record = {"_timestamp": "2026-01-05T09:00:00Z", "stage": "started", "channel": "digital", "count": 1}
        store.write(SERVICE, "transactions", prepare([record]))
        for query in QUERIES:
            assert store.read(SERVICE, "transactions", _query.parse_query(_items(query)))
    finally:
        store.close()
    assert served == [True] * len(QUERIES)
