"""A backfill of the files a service really has, on its first day (issue 17 items 3, 4, 5, 10, 13).

Spreadsheet exports with a title above the header, blank counts, a typo'd year,
no secret where none is needed, and a summary that does not talk nonsense.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import perf_sdk
from perf_sdk._backfill import BackfillOptions, BackfillSummary, backfill, run_backfill
from perf_sdk._backfill_columns import looks_like_header, plan_columns
from perf_sdk._errors import ConfigurationError
from perf_sdk.cli import main
from perf_sdk.cli._backfill import timing
from tests.conftest import FAST, SERVICE


class MemoryPlatform:
    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def send(self, data_type: str, body: bytes) -> None:
        with self.lock:
            for record in json.loads(body):
                self.records[record["_id"]] = record

    def close(self) -> None:
        pass


@pytest.fixture
def no_secret_tracker(spool_dir: Path) -> Iterator[tuple[perf_sdk.Tracker, MemoryPlatform]]:
    platform = MemoryPlatform()
    t = perf_sdk.Tracker(
        service=SERVICE, endpoint="http://127.0.0.1:9", token="t", spool_dir=spool_dir, transport=platform, **FAST
    )
    yield t, platform
    t.close(timeout=2.0)


def _rejects(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# -- item 3: a blank count is no data, never 1 -----------------------------------------------------


def test_a_blank_count_in_a_narrow_row_is_rejected_not_counted_as_one(tmp_path: Path) -> None:
    file = tmp_path / "daily.csv"
    file.write_text(
        "timestamp,stage,channel,count\n"
        "2026-01-05T10:00:00Z,completed,digital,40\n"
        "2026-01-06T10:00:00Z,completed,digital,\n"
        "2026-01-07T10:00:00Z,completed,digital\n"
    )
    rejects = tmp_path / "rejects.csv"
    summary = backfill(file, service=SERVICE, dry_run=True, rejects=rejects)
    assert summary.by_dataset[f"{SERVICE}/transactions"].count == 40
    rows = _rejects(rejects)
    assert [(r["row"], r["field"]) for r in rows] == [("3", "count"), ("4", "count")]
    assert "blank" in rows[0]["rule"] and "not one event" in rows[0]["rule"]


@pytest.mark.parametrize("data_type", ["satisfaction", "costs"])
def test_a_blank_count_is_rejected_in_every_narrow_type(tmp_path: Path, data_type: str) -> None:
    file = tmp_path / "h.csv"
    if data_type == "satisfaction":
        file.write_text("timestamp,rating,channel,count\n2026-01-05,5,digital,\n2026-01-05,4,digital,2\n")
    else:
        file.write_text("period,amount_pence,cost_type,count\n2026-Q1,100,staff,\n2026-Q2,100,staff,3\n")
    summary = backfill(file, service=SERVICE, dry_run=True)
    assert (summary.accepted, summary.rejected) == (1, 1)


def test_a_json_line_without_a_count_is_one_event_but_a_null_count_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "h.jsonl"
    lines = [
        {"timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital"},
        {"timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": None},
    ]
    file.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    summary = backfill(file, service=SERVICE, dry_run=True)
    assert (summary.accepted, summary.rejected, summary.records) == (1, 1, 1)


# -- item 4: the header a spreadsheet really has ----------------------------------------------------


def test_a_csv_export_with_a_title_and_notes_above_the_header(tmp_path: Path) -> None:
    file = tmp_path / "monthly.csv"
    file.write_text(
        "Apply for a licence - transactions by channel\n"
        "Notes: provisional, see the methodology page, figures rounded\n"
        "\n"
        "Month,Online,Telephone,Post,In person,Total\n"
        "2025-04,900,50,30,20,1000\n"
        "April 2025,1,0,0,0,1\n"
        "2025-05,950,40,,10,999\n"
    )
    summary = backfill(file, service=SERVICE, dry_run=True)
    assert summary.header_row == 4 and summary.shape == "wide-transactions"
    assert (summary.accepted, summary.rejected) == (2, 1)  # May's total is one short of its channels
    assert summary.by_period["2025-04"].count == 1001
    assert summary.by_channel["phone"].count == 50


def test_without_a_header_like_row_the_first_row_is_the_header_and_its_error_is_clear(tmp_path: Path) -> None:
    file = tmp_path / "h.csv"
    file.write_text("Report title\nwhen,what,how\n2026-01-05,started,digital\n")
    with pytest.raises(ConfigurationError, match="no column that tells the data type"):
        backfill(file, service=SERVICE, dry_run=True)


def test_looks_like_header_counts_known_columns_after_the_map() -> None:
    assert looks_like_header(["Month", "Online", "Telephone"])
    assert not looks_like_header(["Apply for a licence: transactions by channel"])
    assert not looks_like_header(["When", "What"])
    assert looks_like_header(["When", "What"], {"When": "timestamp", "What": "stage"})


def test_channel_values_as_people_write_them(tmp_path: Path) -> None:
    file = tmp_path / "h.csv"
    file.write_text("timestamp,stage,channel\n2026-01-05,started,Online\n2026-01-05,started,By post\n")
    summary = backfill(file, service=SERVICE, dry_run=True)
    assert summary.rejected == 0 and set(summary.by_channel) == {"digital", "paper"}


def test_the_plan_says_how_each_column_is_read() -> None:
    plan = plan_columns(["Month", "Online", "Total", "Notes"], ignore_extra=True)
    readings = dict(plan.readings)
    assert readings["Online"].startswith("channel digital")
    assert "not counted again" in readings["Total"]
    assert readings["Notes"] == "read past (--ignore-extra)"


def test_dry_run_prints_how_each_column_was_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "monthly.csv"
    file.write_text("Title\nMonth,Online,Telephone,Total\n2025-04,9,1,10\n")
    assert main(["backfill", str(file), "--service", SERVICE, "--dry-run", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "header on row 2" in out
    assert re.search(r"Online -> channel digital", out) and re.search(r"Total -> total: checked", out)


# -- item 5: future times are rejects -----------------------------------------------------------------


def test_future_timestamps_beyond_the_clock_skew_allowance_are_rejects(tmp_path: Path) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    file = tmp_path / "h.csv"
    file.write_text(
        "timestamp,stage,channel,count\n"
        "2026-03-01T12:04:00Z,started,digital,1\n"  # within 5 minutes: another clock running fast
        "2026-03-01T12:06:00Z,started,digital,1\n"
        "2062-03-01T10:00:00Z,started,digital,1\n"  # a typo'd year
    )
    rejects = tmp_path / "rejects.csv"
    summary = run_backfill(file, BackfillOptions(service=SERVICE, dry_run=True, rejects=rejects, now=now))
    assert (summary.accepted, summary.rejected) == (1, 2)
    rows = _rejects(rejects)
    assert [(r["row"], r["field"]) for r in rows] == [("3", "timestamp"), ("4", "timestamp")]
    assert "in the future" in rows[0]["rule"] and "5 minutes" in rows[0]["rule"]


def test_a_cost_for_a_period_not_begun_is_a_reject(tmp_path: Path) -> None:
    file = tmp_path / "costs.csv"
    file.write_text("period,amount_pence,cost_type\n2026-Q1,100,staff\n2026-Q2,100,staff\n")
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    rejects = tmp_path / "rejects.csv"
    summary = run_backfill(file, BackfillOptions(service=SERVICE, dry_run=True, now=now, rejects=rejects))
    assert (summary.accepted, summary.rejected) == (1, 1)
    assert [(r["row"], r["field"], r["value"]) for r in _rejects(rejects)] == [
        ("3", "period", "2026-04-01T00:00:00+00:00")
    ]


# -- item 10: the secret only when something must be hashed ------------------------------------------


def test_a_backfill_without_transaction_ids_needs_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_secret_tracker: tuple[perf_sdk.Tracker, MemoryPlatform]
) -> None:
    monkeypatch.delenv("PERF_SDK_SECRET", raising=False)
    file = tmp_path / "h.csv"
    file.write_text("timestamp,stage,channel\n2026-01-05T10:00:00Z,started,digital\n")
    assert backfill(file, service=SERVICE, dry_run=True).accepted == 1
    tracker, platform = no_secret_tracker
    summary = backfill(file, tracker=tracker)
    assert summary.delivered == 1 and len(platform.records) == 1


def test_the_first_row_to_hash_without_a_secret_is_a_cli_error_naming_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PERF_SDK_SECRET", raising=False)
    file = tmp_path / "h.jsonl"
    lines = [
        {"timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital"},
        {"timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "transaction_id": "t-1"},
    ]
    file.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert main(["backfill", str(file), "--service", SERVICE, "--dry-run", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "row 2 has a transaction_id" in err and "--secret" in err and "PERF_SDK_SECRET" in err
    column = tmp_path / "h.csv"
    column.write_text("timestamp,stage,channel,transaction_id\n2026-01-05,started,digital,t-1\n")
    assert main(["backfill", str(column), "--service", SERVICE, "--dry-run", "--quiet"]) == 2
    assert "--secret" in capsys.readouterr().err


def test_a_switched_off_tracker_is_refused_rather_than_dropping_the_history(tmp_path: Path, spool_dir: Path) -> None:
    file = tmp_path / "h.csv"
    file.write_text("timestamp,stage,channel\n2026-01-05T10:00:00Z,started,digital\n")
    with perf_sdk.Tracker(service=SERVICE, enabled=False, spool_dir=spool_dir) as off:
        with pytest.raises(ConfigurationError, match="switched off"):
            backfill(file, tracker=off)


# -- item 13: no rate from a fraction of a second ------------------------------------------------------


def test_the_summary_gives_no_rate_for_a_run_shorter_than_a_second() -> None:
    short = BackfillSummary(service=SERVICE, data_type="transactions", source="h.csv", rows_read=30, elapsed=0.0331)
    assert timing(short) == "30 rows in 0.03 s"
    long = BackfillSummary(service=SERVICE, data_type="transactions", source="h.csv", rows_read=9060, elapsed=10.0)
    assert timing(long) == "10.0 s, 906 rows/s"


def test_the_printed_summary_of_a_quick_run_has_no_rows_per_second(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "h.csv"
    file.write_text("timestamp,stage,channel\n2026-01-05T10:00:00Z,started,digital\n")
    assert main(["backfill", str(file), "--service", SERVICE, "--dry-run", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "1 row in" in out and "rows/s" not in out
