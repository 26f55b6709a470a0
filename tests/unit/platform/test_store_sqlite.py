"""The SQLite store's speed work keeps every guarantee: same checks, same stored form, exact rollups, old databases.

Each test pins what a faster path must not change: the time read once is the
time the lenient parser reads; the record checks give the same messages; the
daily rollup (which serves reads over whole days) always equals the hourly one
and the raw records, through upserts and in a database made before it existed.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from perf_sdk._protocol import parse_lenient_timestamp, platform_record_problems
from perf_sdk.platform import _periods
from perf_sdk.platform._query import ROWS, parse_query
from perf_sdk.platform._store import InvalidRecords, Store, _time_us, dumps, prepare

TIMES = [
    "2025-03-04T05:06:07Z",
    "2024-02-29T23:59:59Z",  # a leap day
    "1969-12-31T23:59:59Z",  # before the epoch
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2025-02-29T00:00:00Z",  # no such day
    "2025-13-01T00:00:00Z",
    "2025-01-01T24:00:00Z",
    "2025-01-01T00:60:00Z",
    "2025-01-01T00:00:60Z",
    "0000-01-01T00:00:00Z",
    "2025-01-01T00:00:00+01:00",
    "2025-01-01T00:00:00.250Z",
    "2025-01-01 10:00:00Z",
    "2025-01-01",
    "2025-01-01T10:00:00",
    "2025-01-01T10:00:00z",
    "२०२५-01-01T00:00:00Z",  # Devanagari digits: \d would take them without re.ASCII
    "2025-01-01T00:00:00Z ",
    "not a time",
]


@pytest.mark.parametrize("text", TIMES)
def test_a_time_is_read_as_the_lenient_parser_reads_it(text: str) -> None:
    dt = parse_lenient_timestamp(text)
    assert _time_us(text) == (None if dt is None else _periods.to_us(dt))


BAD = [
    {"_timestamp": "2025-02-29T00:00:00Z", "Bad Key": 1, "_id": "a b"},
    {"_timestamp": 20250101, "count": 1},
    {"_timestamp": ["2025-01-01"], "_start_at": "nope"},
    {"_start_at": "2025-01-01T00:00:00Z", "_end_at": "2025-13-01", "x": {"nested": 1}},
    {"_timestamp": "2025-01-01T00:00:00Z", "_id": "", "_other": 1, "n": float("nan")},
    {"_timestamp": "2025-01-01T00:00:00Z", "text": "\udc80"},
    "not a record",
]


@pytest.mark.parametrize("record", BAD)
def test_the_checks_give_the_record_rules_messages_in_their_order(record: Any) -> None:
    with pytest.raises(InvalidRecords) as caught:
        prepare([{"count": 1}, record])
    assert caught.value.messages == [f"record 1: {p}" for p in platform_record_problems(record)]


def test_out_of_range_times_and_wide_integers_are_still_refused() -> None:
    with pytest.raises(InvalidRecords) as caught:
        prepare([{"_timestamp": "0001-01-01T00:00:00+01:00", "nn": 2**63}])
    assert caught.value.messages == [
        "record 0: the value for field 'nn' does not fit in 64 bits",
        "record 0: _timestamp is out of range once in UTC: '0001-01-01T00:00:00+01:00'",
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {"stage": "started", "count": 1, "channel": "digital"},
        {"b": True, "a": None, "c": 1.5, "d": -0.0, "e": 1e300, "f": 2**62},
        {"text": 'caf\u00e9 \u2603 \U0001f600 "quoted" \\ \n\t\x00', "Upper": "x"},
        {},
    ],
)
def test_stored_json_is_what_the_standard_encoder_writes(fields: dict[str, Any]) -> None:
    # Stored bodies are compared as text (rollup dimensions): a record must
    # encode as it did before, or its rollup row would not be found again.
    assert dumps(fields) == json.dumps(fields, sort_keys=True, separators=(",", ":"))


def test_the_sdk_form_and_the_lenient_forms_store_the_same_instant() -> None:
    forms = ["2025-06-01T12:00:00Z", "2025-06-01T12:00:00+00:00", "2025-06-01 13:00:00+0100", "2025-06-01T12:00:00"]
    stored = {p.ts for p in prepare([{"_timestamp": t} for t in forms])}
    assert stored == {_periods.to_us(parse_lenient_timestamp(forms[0]))}  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- rollups


BASE_US = 1_767_052_800_000_000  # 2025-12-30T00:00:00Z
DAY_US = 86_400_000_000


def _random_batches(seed: int, batches: int = 12, size: int = 60) -> list[list[dict[str, Any]]]:
    """Batches whose ``_id``\\ s recur (across batches and within one), moving between hours, days and contents."""
    rng = random.Random(seed)
    ids = [f"{i:032x}" for i in range(150)]
    out = []
    for _ in range(batches):
        batch = []
        for _ in range(size):
            record: dict[str, Any] = {"_id": rng.choice(ids), "stage": rng.choice(["started", "completed"])}
            record["count"] = rng.choice([1, 2, 3])
            if rng.random() < 0.9:  # some without a time: they count in the sentinel hour and day
                # Around the turn of 2026 (days, weeks, months, a quarter and a year
                # change), a few in 1960: days before the epoch floor downwards.
                day = rng.randrange(-3, 70) - (0 if rng.random() < 0.9 else 24_000)
                us = BASE_US + day * DAY_US + rng.randrange(86_400) * 1_000_000
                record["_timestamp"] = _periods.iso(us)
            if rng.random() < 0.2:
                record["hashed"] = os.urandom(32).hex()  # wide: left out of the rollup's dimensions
            batch.append(record)
        out.append(batch)
    return out


def _rollups(store: Store) -> tuple[dict[tuple[int, int, str], int], ...]:
    """The hourly and daily rollups as stored, and both as recounted from the records."""
    conn = store._conn
    hourly = {(ds, h, d): n for ds, h, d, n in conn.execute("SELECT ds, hour, dims, n FROM rollup")}
    daily = {(ds, h, d): n for ds, h, d, n in conn.execute("SELECT ds, day, dims, n FROM rollup_day")}
    recount_h: dict[tuple[int, int, str], int] = {}
    recount_d: dict[tuple[int, int, str], int] = {}
    for ds, ts, dims in conn.execute("SELECT ds, ts, coalesce(dims, body) FROM records"):
        hour = -(2**40) if ts is None else ts // _periods.US_PER_HOUR
        day = hour if ts is None else ts // (24 * _periods.US_PER_HOUR)
        recount_h[ds, hour, dims] = recount_h.get((ds, hour, dims), 0) + 1
        recount_d[ds, day, dims] = recount_d.get((ds, day, dims), 0) + 1
    return hourly, daily, recount_h, recount_d


@pytest.mark.parametrize("seed", range(4))
def test_upserts_keep_both_rollups_exact(tmp_path: Path, seed: int) -> None:
    store = Store(tmp_path / "store.db")
    for batch in _random_batches(seed):
        store.write("svc", "transactions", prepare(batch))
        hourly, daily, recount_h, recount_d = _rollups(store)
        assert hourly == recount_h
        assert daily == recount_d
    assert store.count("svc", "transactions") == len({r["_id"] for b in _random_batches(seed) for r in b})
    store.close()


QUERIES = [
    "group_by=stage&collect=count:sum",
    "group_by=stage&period=month&collect=count:sum",
    "group_by=stage&period=quarter&collect=count:sum&collect=count:mean&collect=count:set",
    "group_by=stage&period=day&collect=count:sum&start_at=2026-01-05T00:00:00Z&end_at=2026-02-02T00:00:00Z",
    "period=week&collect=count:sum&start_at=2025-12-29T00:00:00Z&end_at=2026-02-02T00:00:00Z",
    "period=hour&collect=count:sum&start_at=2026-01-05T00:00:00Z&end_at=2026-01-06T00:00:00Z",
    "group_by=stage&period=month&collect=count:sum&filter_by=count:2",
    "group_by=stage&collect=count:sum&start_at=2026-01-05T06:00:00Z&end_at=2026-01-20T00:00:00Z",
    "group_by=stage&collect=count:count&start_at=2026-01-05T00:00:00Z",
]


@pytest.mark.parametrize("params", QUERIES)
def test_grouped_reads_from_the_rollups_equal_reads_of_the_raw_records(tmp_path: Path, params: str) -> None:
    store = Store(tmp_path / "store.db")
    for batch in _random_batches(7):
        store.write("svc", "transactions", prepare(batch))
    query = parse_query(httpx.QueryParams(params).multi_items(), raw_queries_allowed=True)
    answer = store.read("svc", "transactions", query)
    store._source = lambda *_: ROWS  # type: ignore[method-assign]
    assert answer == store.read("svc", "transactions", query)
    store.close()


@pytest.mark.parametrize(
    ("params", "table"),
    [
        (
            "group_by=stage&period=month&collect=count:sum&start_at=2025-10-01T00:00:00Z&end_at=2026-01-01T00:00:00Z",
            "rollup_day",
        ),
        ("group_by=stage&collect=count:sum", "rollup_day"),
        ("period=hour&collect=count:sum&start_at=2026-01-05T00:00:00Z&end_at=2026-01-06T00:00:00Z", "rollup"),
        ("group_by=stage&collect=count:sum&start_at=2026-01-05T06:00:00Z", "rollup"),
        ("group_by=stage&collect=count:sum&start_at=2026-01-05T06:30:00Z", "records"),
        ("group_by=stage&collect=hashed", "records"),
    ],
)
def test_a_read_uses_the_smallest_table_that_answers_it(tmp_path: Path, params: str, table: str) -> None:
    store = Store(tmp_path / "store.db")
    store.write("svc", "transactions", prepare(_random_batches(1)[0]))
    query = parse_query(httpx.QueryParams(params).multi_items(), raw_queries_allowed=True)
    ds = store.dataset_id("svc", "transactions")
    assert ds is not None
    assert store._source(store._conn, ds, query).table == table
    store.close()


def test_a_database_from_before_the_daily_rollup_opens_and_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = Store(path)
    for batch in _random_batches(3):
        store.write("svc", "transactions", prepare(batch))
    queries = [parse_query(httpx.QueryParams(p).multi_items(), raw_queries_allowed=True) for p in QUERIES]
    before = [store.read("svc", "transactions", q) for q in queries]
    store.close()
    # What an older version made: no daily rollup, no trigger keeping it.
    conn = sqlite3.connect(path)
    conn.executescript("DROP TRIGGER records_replaced_day; DROP TABLE rollup_day;")
    conn.close()

    store = Store(path)
    assert [store.read("svc", "transactions", q) for q in queries] == before
    hourly, daily, recount_h, recount_d = _rollups(store)
    assert (hourly, daily) == (recount_h, recount_d)
    store.close()


def test_writes_by_an_older_version_are_found_and_the_daily_rollup_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    store = Store(path)
    store.write("svc", "transactions", prepare([{"_id": "a", "_timestamp": "2026-01-01", "count": 1}]))
    store.close()
    # An older version adds a record to the rows and the hourly rollup only.
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO records (ds, id, ts, body) VALUES (1, 'b', 0, '{\"count\":2}')")
    conn.execute("INSERT INTO rollup (ds, hour, dims, n) VALUES (1, 0, '{\"count\":2}', 1)")
    conn.commit()
    conn.close()
    store = Store(path)
    hourly, daily, recount_h, recount_d = _rollups(store)
    assert (hourly, daily) == (recount_h, recount_d)
    store.close()


def test_the_wal_is_checkpointed_off_the_write_path(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    batch = [{"_id": os.urandom(16).hex(), "_timestamp": "2026-01-01T00:00:00Z", "count": 1} for _ in range(2000)]
    store.write("svc", "transactions", prepare(batch))
    checkpointer = store._checkpointer
    assert checkpointer is not None
    store.close()  # waits for the checkpoint thread, which closes its connection
    assert not checkpointer._thread.is_alive()
    reopened = Store(tmp_path / "store.db")
    assert reopened.count("svc", "transactions") == 2000
    reopened.close()


def test_a_read_sees_one_snapshot_from_its_first_statement_to_its_last(tmp_path: Path) -> None:
    # Each statement of a read (the data set, wide fields, the span, the sums) had a snapshot of its own: with a
    # write committing between them, 194 of 2,999 reads answered one record of a two-record write.
    from perf_sdk.platform._store import Store, prepare

    store = Store(str(tmp_path / "p.db"))
    store.write("svc", "t", prepare([{"_id": "a", "_timestamp": "2026-01-05T10:00:00Z", "count": 1}]))
    with store._reader() as conn:
        first = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        store.write("svc", "t", prepare([{"_id": "b", "_timestamp": "2026-01-05T10:00:00Z", "count": 1}]))
        assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == first == 1
    assert store.count("svc", "t") == 2
    store.close()
