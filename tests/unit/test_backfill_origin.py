"""Backfilled records say so (``origin: "backfill"``), and saying so changes no record's ``_id``.

The ids below were computed by the backfill before it marked its records: re-running a
backfill over records sent by an earlier version must upsert the same records, never add
a second copy beside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import perf_sdk
from perf_sdk._backfill import backfill
from perf_sdk._backfill_rows import BACKFILL_ORIGIN, ORIGIN_FIELD
from perf_sdk._protocol import record_problems
from perf_sdk._records import validate_records
from tests.conftest import FAST, SECRET, SERVICE
from tests.unit.test_backfill_first_day import MemoryPlatform

#: One file per road through the row builder: the narrow fast path and its slow path (a naive time, a
#: period label), transaction ids (the Tracker's ids), costs (their natural ids), both wide shapes, JSONL.
FILES: dict[str, tuple[str, dict[str, Any]]] = {
    "transactions.csv": (
        "timestamp,stage,channel,count\n"
        "2025-04-01T09:00:00Z,started,digital,1320\n"
        "2025-04-01T09:00:00Z,completed,digital,1104\n"
        "2025-04-02 09:00,completed,Telephone,212\n"
        "2025-05-01T09:00:00Z,started,digital,1400\n",
        {},
    ),
    "periods.csv": ("period,stage,channel,count\n2025-06,completed,paper,40\n2025-07,completed,paper,35\n", {}),
    "journeys.csv": (
        "timestamp,stage,channel,transaction_id\n"
        "2025-04-03T10:00:00Z,started,digital,abc-1\n"
        "2025-04-03T10:05:00Z,completed,digital,abc-1\n",
        {},
    ),
    "answers.csv": (
        "timestamp,rating,channel,count\n2025-04-05T12:00:00Z,5,digital,30\n2025-04-05T12:00:00Z,2,phone,4\n",
        {},
    ),
    "costs.csv": (
        "period,amount_pence,cost_type,channel\n2025-Q2,12500000,staff,all\n2025-04,48000,it,digital\n",
        {},
    ),
    "by-channel.csv": (
        "period,digital,phone,paper\n2025-04,1104,212,40\n2025-05,1200,190,35\n",
        {"shape": "wide-transactions"},
    ),
    "ratings.csv": (
        "timestamp,rating_1,rating_2,rating_3,rating_4,rating_5\n2025-04-30,3,4,10,40,55\n",
        {"shape": "wide-satisfaction"},
    ),
    "events.jsonl": (
        '{"timestamp": "2025-04-09T08:00:00Z", "stage": "started", "channel": "digital", "count": 3}\n'
        '{"timestamp": "2025-04-09T08:00:00Z", "stage": "completed", "channel": "digital", "count": 2}\n',
        {},
    ),
}

#: ``{file: sorted ids}`` as the backfill gave them before records carried their origin.
IDS_BEFORE_THE_MARKER: dict[str, list[str]] = {
    "answers.csv": [
        "0c5a91ef00000000023ef182ee686e51",
        "0c5a91ef000000000310b411365316ee",
    ],
    "by-channel.csv": [
        "0480d1410000000002558fac6bb1c8d5",
        "0480d1410000000002a4220b989a724c",
        "0480d1410000000002fc59727cca95ae",
        "0480d1410000000003535e5fe406950f",
        "0480d141000000000371fa63fd965df3",
        "0480d1410000000003e3a427b394bbfb",
    ],
    "costs.csv": [
        "0ff8febb11017301d8c13ba58a5c6fc2",
        "897a4ec96ce356ee7c7a5ea95db84bef",
    ],
    "events.jsonl": [
        "69a01fe80000000001e7b3f4d5b07fd9",
        "69a01fe80000000002f6d2ade5243cc8",
    ],
    "journeys.csv": [
        "b6cb27682dcfab556d59ca448fe069c4",
        "f5e0cc7e12f6b6310edc77f0f5a3282e",
    ],
    "periods.csv": [
        "282bdb22000000000226b07d739677d3",
        "282bdb220000000003341473e7d99ef0",
    ],
    "ratings.csv": [
        "1d5a4f27000000000205bb482b277784",
        "1d5a4f270000000002999650cd19054e",
        "1d5a4f270000000002d5eaa961176e1e",
        "1d5a4f270000000002e7eae2f3668e2a",
        "1d5a4f270000000002ef41527440952c",
    ],
    "transactions.csv": [
        "14d459fe0000000002bb579538a6daf4",
        "14d459fe0000000003c1141d3bf877b6",
        "14d459fe00000000042ffea05d08c90b",
        "14d459fe00000000052dce2483d3877d",
    ],
}


def _backfilled(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    text, options = FILES[name]
    file = tmp_path / name
    file.write_text(text, encoding="utf-8")
    memory = MemoryPlatform()  # keeps what it is sent by _id: the platform's upsert
    tracker = perf_sdk.Tracker(
        service=SERVICE, secret=SECRET, spool_dir=tmp_path / f"spool-{name}", transport=memory, **FAST
    )
    try:
        summary = backfill(file, tracker=tracker, **options)
    finally:
        tracker.close(timeout=60.0)
    assert summary.exit_status == 0 and summary.delivered == len(memory.records), summary
    return sorted(memory.records.values(), key=lambda r: r["_id"])


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_marker_changes_no_id(tmp_path: Path, name: str) -> None:
    records = _backfilled(tmp_path, name)
    assert [r["_id"] for r in records] == IDS_BEFORE_THE_MARKER[name]


def test_every_backfilled_record_is_marked_and_nothing_else_changes(tmp_path: Path) -> None:
    records = _backfilled(tmp_path, "transactions.csv")
    assert {r[ORIGIN_FIELD] for r in records} == {BACKFILL_ORIGIN}
    assert [sorted(r) for r in records] == [sorted(["_id", "_timestamp", "count", "stage", "channel", "origin"])] * 4
    assert [r["count"] for r in records] == [1320, 1104, 212, 1400]


def test_a_rerun_over_records_sent_before_the_marker_replaces_them(tmp_path: Path) -> None:
    """What an earlier version stored (the same ids, no marker) is upserted, not stored a second time."""
    before = {i: {"_id": i, "count": 1} for i in IDS_BEFORE_THE_MARKER["by-channel.csv"]}
    after = {r["_id"]: r for r in _backfilled(tmp_path, "by-channel.csv")}
    assert set(after) == set(before)
    assert {**before, **after} == after


def test_the_platform_rules_accept_the_marker() -> None:
    from perf_sdk._protocol import platform_record_problems

    record = {
        "_id": "0480d1410000000002558fac6bb1c8d5",
        "_timestamp": "2025-04-01T00:00:00+00:00",
        "count": 212,
        "stage": "completed",
        "channel": "phone",
        ORIGIN_FIELD: BACKFILL_ORIGIN,
    }
    assert record_problems(record) == [] and platform_record_problems(record) == []
    good, bad = validate_records("transactions", [record])
    assert bad == [] and good[0][ORIGIN_FIELD] == BACKFILL_ORIGIN
