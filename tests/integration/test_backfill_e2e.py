"""Backfill against the local platform: stored once however often it runs, and after a kill -9."""

from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from perf_sdk._backfill import backfill
from tests.conftest import FAST, SECRET, SERVICE

pytest.importorskip("uvicorn")
from perf_sdk.platform import LocalPlatform

TOKEN = "e2e-token"
CHANNELS = ("digital", "phone", "paper", "face_to_face", "other")


@pytest.fixture
def platform() -> Iterator[LocalPlatform]:
    with LocalPlatform(token=TOKEN) as p:
        yield p


def write_history(path: Path, rows: int) -> int:
    """A transactions CSV; returns the sum of its counts."""
    total = 0
    with path.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["timestamp", "stage", "channel", "count"])
        for i in range(rows):
            count = i % 7 + 1
            total += count
            w.writerow(
                [
                    f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00",
                    ("started", "completed")[i % 2],
                    CHANNELS[i % 5],
                    count,
                ]
            )
    return total


def stored(platform: LocalPlatform, data_type: str = "transactions") -> tuple[int, int]:
    records = platform.records(SERVICE, data_type)
    return len(records), sum(int(r["count"]) for r in records)


def test_run_twice_stores_once(platform: LocalPlatform, tmp_path: Path) -> None:
    file = tmp_path / "history.csv.gz"
    plain = tmp_path / "history.csv"
    total = write_history(plain, 2_000)
    file.write_bytes(gzip.compress(plain.read_bytes()))
    options = {"service": SERVICE, "endpoint": platform.url, "token": TOKEN, "secret": SECRET, "tracker_options": FAST}
    first = backfill(file, spool_dir=tmp_path / "a", **options)  # type: ignore[arg-type]
    assert first.delivered == 2_000 and first.exit_status == 0
    second = backfill(file, spool_dir=tmp_path / "b", **options)  # another machine: its own spool
    assert second.delivered == 2_000
    assert stored(platform) == (2_000, total)


def test_the_same_history_in_another_dress_stores_once(platform: LocalPlatform, tmp_path: Path) -> None:
    """An Excel re-save, a title row, a gzipped copy, a renamed file with --source-name: each row stored once."""
    from perf_sdk.cli import main

    plain = tmp_path / "history.csv"
    total = write_history(plain, 500)
    text = plain.read_text()
    dressed = {
        "excel/history.csv": ("\ufeff" + text.replace("\r\n", "\n").replace("\n", "\r\n")).encode(),
        "title/history.csv": ("Transactions export, Dept X\n" + text).encode(),
        "gz/history.csv.gz": gzip.compress(text.encode()),
    }
    options = {"service": SERVICE, "endpoint": platform.url, "token": TOKEN, "secret": SECRET, "tracker_options": FAST}
    assert backfill(plain, spool_dir=tmp_path / "spool", **options).delivered == 500  # type: ignore[arg-type]
    for name, data in dressed.items():
        file = tmp_path / name
        file.parent.mkdir()
        file.write_bytes(data)
        summary = backfill(file, spool_dir=tmp_path / "spool", **options)  # type: ignore[arg-type]
        assert summary.delivered == 500 and stored(platform) == (500, total), name
    renamed = tmp_path / "history-2025.csv"
    renamed.write_text(text)
    argv = ["backfill", str(renamed), "--service", SERVICE, "--endpoint", platform.url, "--token", TOKEN]
    assert main([*argv, "--spool-dir", str(tmp_path / "spool"), "--quiet", "--source-name", "history.csv"]) == 0
    assert stored(platform) == (500, total)


def test_wide_satisfaction_and_costs(platform: LocalPlatform, tmp_path: Path) -> None:
    sat = tmp_path / "satisfaction.csv"
    sat.write_text("_timestamp;rating_1;rating_2;rating_3;rating_4;rating_5;total\n2026-01-05T00:00:00Z;1;2;3;4;5;15\n")
    costs = tmp_path / "costs.jsonl"
    costs.write_text(json.dumps({"period": "2026-Q1", "amount_pence": "£1,250.50", "cost_type": "staff"}) + "\n")
    options = {
        "service": SERVICE,
        "endpoint": platform.url,
        "token": TOKEN,
        "secret": SECRET,
        "spool_dir": tmp_path / "s",
    }
    assert backfill(sat, **options).records == 5  # type: ignore[arg-type]
    assert backfill(costs, amount_unit="pounds", **options).records == 1  # type: ignore[arg-type]
    assert stored(platform, "satisfaction") == (5, 15)
    assert [r["amount_pence"] for r in platform.records(SERVICE, "costs")] == [125050]


def test_kill_9_mid_backfill_then_rerun_stores_every_row_once(platform: LocalPlatform, tmp_path: Path) -> None:
    file = tmp_path / "big.csv"
    rows = 60_000
    total = write_history(file, rows)
    spool = tmp_path / "spool"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERF_SDK_")}
    env.update(PERF_SDK_SERVICE=SERVICE, PERF_SDK_SECRET=SECRET, PERF_SDK_TOKEN=TOKEN, PERF_SDK_SPOOL_DIR=str(spool))
    command = [
        sys.executable,
        "-m",
        "perf_sdk",
        "backfill",
        str(file),
        "--quiet",
        "--json",
        "--checkpoint-every",
        "0.1",
    ]
    # First run: the platform is unreachable (a closed port), so the uploader keeps retrying while the
    # reader spools and checkpoints; it is killed as soon as a checkpoint shows it mid-way.
    dead = subprocess.Popen(
        [*command, "--endpoint", "http://127.0.0.1:9"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoints = spool / "backfill"
    deadline = time.monotonic() + 30
    state: dict[str, object] = {}
    while time.monotonic() < deadline and dead.poll() is None:
        found = list(checkpoints.glob("*.json")) if checkpoints.is_dir() else []
        if found:
            try:
                state = json.loads(found[0].read_text())
            except (OSError, ValueError):
                continue  # being replaced
            if int(state["row"]) > 1:  # type: ignore[call-overload]
                break
        time.sleep(0.01)
    dead.send_signal(signal.SIGKILL)
    dead.wait(10)
    assert state and not state["reading_done"], "the first run was not caught mid-way"
    assert platform.count(SERVICE, "transactions") == 0

    done = subprocess.run([*command, "--endpoint", platform.url], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["resumed_from"] >= int(state["row"])  # type: ignore[call-overload]
    assert summary["rows_read"] == rows and summary["complete"]
    assert stored(platform) == (rows, total)


def test_a_real_workbook_without_a_secret_lands_in_its_months(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: a finance-style workbook (title rows, Month date cells in summer time, channel names, a Total,
    £ cells) stored by the local platform as the figures it shows, with no secret configured anywhere."""
    openpyxl = pytest.importorskip("openpyxl")
    from datetime import datetime

    monkeypatch.delenv("PERF_SDK_SECRET", raising=False)
    book = openpyxl.Workbook()
    sheet = book.active
    for row in (
        ["Apply for a licence: completed applications by channel"],
        [],
        ["Month", "Online", "Telephone", "By post", "In person", "Total"],
        [datetime(2025, 4, 1), 900, 50, 30, 20, 1000],
        [datetime(2025, 5, 1), 950, 40, None, 10, 1000],
    ):
        sheet.append(row)
    for ref in ("A4", "A5"):
        sheet[ref].number_format = "mmm-yy"
    costs = book.create_sheet("Costs")
    costs.append(["period", "amount_pence", "cost_type"])
    costs.append(["2025-Q2", 125000.0, "staff"])
    costs.append(["2025-Q2", 48250.5, "it"])
    costs["B2"].number_format = costs["B3"].number_format = '"£"#,##0.00'
    file = tmp_path / "finance.xlsx"
    book.save(file)

    options = {"service": SERVICE, "endpoint": platform.url, "token": TOKEN, "spool_dir": tmp_path / "s"}
    channels = backfill(file, tracker_options=FAST, **options)  # type: ignore[arg-type]
    assert channels.exit_status == 0 and channels.delivered == 7
    money = backfill(file, sheet="Costs", tracker_options=FAST, **options)  # type: ignore[arg-type]
    assert money.exit_status == 0 and money.delivered == 2

    records = platform.records(SERVICE, "transactions")
    by_month: dict[str, int] = {}
    for r in records:
        by_month[r["_timestamp"][:7]] = by_month.get(r["_timestamp"][:7], 0) + int(r["count"])
    assert by_month == {"2025-04": 1000, "2025-05": 1000}
    assert sorted(r["amount_pence"] for r in platform.records(SERVICE, "costs")) == [4_825_050, 12_500_000]


def test_backfilled_and_live_records_are_told_apart_on_the_published_page(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """Issue 15: six months loaded from a file, three sent live; the page's notes say how much was backfilled."""
    from datetime import datetime, timezone

    import httpx

    import perf_sdk
    from perf_sdk._publish import publish

    history = tmp_path / "history.csv"
    lines = ["period,stage,channel,count"]
    for month in range(4, 10):  # April to September 2025
        lines += [f"2025-{month:02d},started,digital,1000", f"2025-{month:02d},completed,digital,800"]
        lines.append(f"2025-{month:02d},completed,phone,100")
    history.write_text("\n".join(lines) + "\n", encoding="utf-8")
    options = {"service": SERVICE, "endpoint": platform.url, "token": TOKEN, "secret": SECRET, "tracker_options": FAST}
    loaded = backfill(history, spool_dir=tmp_path / "backfill", **options)  # type: ignore[arg-type]
    assert loaded.exit_status == 0 and loaded.delivered == 18

    tracker = perf_sdk.Tracker(
        service=SERVICE, endpoint=platform.url, token=TOKEN, secret=SECRET, spool_dir=tmp_path / "live", **FAST
    )
    try:
        for month in (10, 11, 12):  # October to December 2025, live: 30 started and 20 completed a month
            for n in range(30):
                at = datetime(2025, month, 1 + n % 28, 12, tzinfo=timezone.utc)
                tracker.start(f"t-{month}-{n}", at=at)
                if n < 20:
                    tracker.complete(f"t-{month}-{n}", at=at)
        assert tracker.flush(timeout=60.0), "the live records were not all stored within 60 s"
    finally:
        tracker.close(timeout=60.0)

    records = platform.records(SERVICE, "transactions")
    assert len(records) == 18 + 150
    assert {r.get("origin") for r in records if r["_timestamp"] < "2025-10"} == {"backfill"}
    assert {r.get("origin") for r in records if r["_timestamp"] >= "2025-10"} == {None}  # live: no origin
    again = backfill(history, spool_dir=tmp_path / "again", **options)  # type: ignore[arg-type]
    assert again.delivered == 18 and len(platform.records(SERVICE, "transactions")) == 168  # upserted

    note = (
        "5,400 of the 5,460 completed transactions and 6,000 of the 6,090 started transactions in these figures "
        "were loaded from earlier records (backfilled) rather than sent live by the service. "
        "Backfilled months: April 2025 to September 2025."
    )
    out = tmp_path / "site"
    publish(out, read_endpoint=platform.url, service=SERVICE, published_at="2026-01-10T09:00:00Z")
    page = (out / SERVICE / "index.html").read_text("utf-8")
    assert f"<li>{note}</li>" in page
    monthly = tmp_path / "monthly"
    publish(monthly, read_endpoint=platform.url, service=SERVICE, published_at="2026-01-10T09:00:00Z", period="month")
    assert f"<li>{note}</li>" in (monthly / SERVICE / "index.html").read_text("utf-8")

    with httpx.Client(base_url=platform.url, timeout=60) as client:  # the live site renders the same note
        deadline = time.monotonic() + 120
        live = client.get(f"/performance/{SERVICE}/")
        while live.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.5)
            live = client.get(f"/performance/{SERVICE}/")
    assert live.status_code == 200, live.text
    assert f"<li>{note}</li>" in live.text
