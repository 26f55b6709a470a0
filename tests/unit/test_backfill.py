"""The backfill engine: dry runs, reject files, stable ids, corrections, checkpoints and resuming."""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import perf_sdk
from perf_sdk._backfill import BackfillSummary, backfill
from perf_sdk._errors import ConfigurationError
from perf_sdk.cli import main
from tests.conftest import FAST, SECRET, SERVICE, TOKEN


class MemoryPlatform:
    """A transport that stores like the platform: upsert by ``_id``."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.requests = 0
        self.lock = threading.Lock()

    def send(self, data_type: str, body: bytes) -> None:
        with self.lock:
            self.requests += 1
            for record in json.loads(body):
                self.records[f"{data_type}:{record['_id']}"] = record

    def close(self) -> None:
        pass

    def total(self) -> int:
        return sum(r["count"] for r in self.records.values())


@pytest.fixture
def platform() -> MemoryPlatform:
    return MemoryPlatform()


@pytest.fixture
def tracker(platform: MemoryPlatform, spool_dir: Path) -> Iterator[perf_sdk.Tracker]:
    t = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=platform, **FAST)
    yield t
    t.close(timeout=2.0)


def history(tmp_path: Path, rows: int = 12, *, bad_every: int = 0, name: str = "history.csv") -> Path:
    file = tmp_path / name
    with file.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["timestamp", "stage", "channel", "count"])
        for i in range(rows):
            stage = "exploded" if bad_every and i % bad_every == bad_every - 1 else ("started", "completed")[i % 2]
            w.writerow([f"2026-0{1 + i % 3}-0{1 + i % 7}T10:{i % 60:02d}:00Z", stage, "digital", i % 4 + 1])
    return file


def test_dry_run_summarises_without_an_endpoint(tmp_path: Path) -> None:
    file = history(tmp_path, 12, bad_every=5)
    summary = backfill(file, service=SERVICE, dry_run=True)
    assert (summary.rows_read, summary.accepted, summary.rejected) == (12, 10, 2)
    assert summary.data_type == "transactions" and summary.records == 10
    assert summary.by_dataset[f"{SERVICE}/transactions"].records == 10
    assert set(summary.by_period) == {"2026-01", "2026-02", "2026-03"}
    assert summary.by_channel["digital"].count == sum(t.count for t in summary.by_period.values())
    assert summary.exit_status == 1 and summary.complete
    assert summary.rejects_path == Path(f"{file}.rejects.csv")
    assert not (tmp_path / "spool").exists()


def test_reject_file_content(tmp_path: Path) -> None:
    file = tmp_path / "h.csv"
    file.write_text(
        "timestamp;stage;channel;count\n"
        "2026-01-05;started;digital;1\n"
        "2026-01-05;started;pigeon;1\n"
        "someday;started;digital;1\n"
        '2026-01-05;started;digital;"1;5"\n'
    )
    summary = backfill(file, service=SERVICE, dry_run=True, rejects=tmp_path / "out" / "rejects.csv")
    with (tmp_path / "out" / "rejects.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["row"] for r in rows] == ["3", "4", "5"]
    assert [r["field"] for r in rows] == ["channel", "timestamp", "count"]
    assert rows[0]["value"] == "pigeon" and "digital" in rows[0]["rule"]
    assert rows[0]["line"] == "2026-01-05;started;pigeon;1"
    assert rows[2]["line"] == '2026-01-05;started;digital;"1;5"'
    assert summary.rejected == 3 and summary.accepted == 1


def test_a_clean_run_leaves_no_reject_file(tmp_path: Path) -> None:
    file = history(tmp_path, 5, bad_every=2)
    backfill(file, service=SERVICE, dry_run=True)
    assert Path(f"{file}.rejects.csv").exists()
    file.write_text(history(tmp_path, 5, name="clean.csv").read_text())
    summary = backfill(file, service=SERVICE, dry_run=True)
    assert summary.rejects_path is None and not Path(f"{file}.rejects.csv").exists()


def test_sends_through_the_tracker_and_ids_are_stable(
    tmp_path: Path, tracker: perf_sdk.Tracker, platform: MemoryPlatform
) -> None:
    file = history(tmp_path, 40)
    first = backfill(file, tracker=tracker, chunk_size=7)
    assert first.delivered == 40 and first.pending == 0 and first.exit_status == 0
    ids = set(platform.records)
    again = backfill(file, tracker=tracker, chunk_size=13)
    assert again.delivered == 40
    assert set(platform.records) == ids and len(ids) == 40
    assert platform.total() == sum(i % 4 + 1 for i in range(40))


def test_another_file_of_the_same_name_is_refused_until_it_is_named(
    tmp_path: Path, tracker: perf_sdk.Tracker, platform: MemoryPlatform
) -> None:
    # Ids derive from the file's name (so a moved history is stored once): north/phone.csv and south/phone.csv
    # shared ids, the second replaced the first's records, and both runs reported success (80 stored of 200).
    for office, count in (("north", 120), ("south", 80)):
        (tmp_path / office).mkdir()
        (tmp_path / office / "phone.csv").write_text(
            f"timestamp,stage,channel,count\n2026-01-05T10:00:00Z,completed,phone,{count}\n"
        )
    assert backfill(tmp_path / "north" / "phone.csv", tracker=tracker).delivered == 1
    for dry_run in (True, False):
        with pytest.raises(ConfigurationError, match=r"give it a name of its own: --source-name south-phone\.csv"):
            backfill(tmp_path / "south" / "phone.csv", tracker=tracker, dry_run=dry_run)
    assert platform.total() == 120
    backfill(tmp_path / "south" / "phone.csv", tracker=tracker, source_name="south-phone.csv")
    assert platform.total() == 200
    moved = tmp_path / "archive" / "phone.csv"  # the same history, moved: its records are the same records
    moved.parent.mkdir()
    moved.write_bytes((tmp_path / "north" / "phone.csv").read_bytes())
    assert backfill(moved, tracker=tracker).delivered == 1
    assert platform.total() == 200 and len(platform.records) == 2


def test_ids_do_not_depend_on_the_machine_or_the_format(tmp_path: Path, spool_dir: Path) -> None:
    file = history(tmp_path, 6)
    seen = []
    for copy in range(2):
        memory = MemoryPlatform()
        t = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir / str(copy), transport=memory, **FAST)
        try:
            backfill(file, tracker=t)
        finally:
            t.close(timeout=2.0)
        seen.append(set(memory.records))
    assert seen[0] == seen[1]


def test_a_corrected_count_replaces(tmp_path: Path, tracker: perf_sdk.Tracker, platform: MemoryPlatform) -> None:
    file = tmp_path / "h.csv"
    file.write_text("timestamp,stage,channel,count\n2026-01-05,started,digital,5\n2026-01-06,started,digital,7\n")
    backfill(file, tracker=tracker)
    file.write_text("timestamp,stage,channel,count\n2026-01-05,started,digital,5\n2026-01-06,started,digital,9\n")
    backfill(file, tracker=tracker)
    assert len(platform.records) == 2 and platform.total() == 14


def test_a_corrected_cost_replaces(tmp_path: Path, tracker: perf_sdk.Tracker, platform: MemoryPlatform) -> None:
    file = tmp_path / "costs.csv"
    file.write_text("period,amount_pence,cost_type\n2026-Q1,100000,staff\n")
    backfill(file, tracker=tracker)
    file.write_text("cost_type,period,amount_pence\nstaff,2026-Q1,125000\n")  # another layout, same cost
    backfill(file, tracker=tracker)
    assert [r["amount_pence"] for r in platform.records.values()] == [125000]
    tracker.cost(150000, period="2026-Q1", cost_type="staff")  # the live call agrees
    assert tracker.flush(5.0)
    assert [r["amount_pence"] for r in platform.records.values()] == [150000]


def test_the_same_cost_twice_in_one_file_is_refused_naming_both_rows(tmp_path: Path) -> None:
    # Both rows were "accepted" and the dry run said £1,700, but the platform keeps one cost per period, type
    # and channel: the second replaced the first, and £1,000 vanished with exit status 0.
    file = tmp_path / "costs.csv"
    file.write_text(
        "Costs 2026\nperiod,cost_type,amount_pence\n2026-Q1,staff,100000\n2026-Q1,staff,50000\n2026-Q1,it,20000\n"
    )
    summary = backfill(file, service=SERVICE, dry_run=True)  # the title row above the header is read past
    assert (summary.accepted, summary.rejected, summary.exit_status) == (2, 1, 1)
    assert summary.by_dataset[f"{SERVICE}/costs"].amount_pence == 120_000
    with Path(f"{file}.rejects.csv").open(newline="") as handle:
        [reject] = list(csv.DictReader(handle))
    assert reject["row"] == "4" and reject["field"] == "cost_type"
    assert reject["rule"].startswith("row 3 is already the staff cost of 2026-Q1 (all channels)")


def test_rows_from_a_script(tracker: perf_sdk.Tracker, platform: MemoryPlatform) -> None:
    rows = [{"timestamp": "2026-01-05", "rating": r, "channel": "digital", "count": 2} for r in (1, 5, 9)]
    summary = backfill(rows, tracker=tracker, source_name="survey-export")
    assert (summary.accepted, summary.rejected, summary.delivered) == (2, 1, 2)
    assert summary.data_type == "satisfaction" and summary.rejects_path is None


def interrupt_after(rows: int) -> Any:
    """A progress hook that presses Ctrl-C once, after ``rows`` rows."""
    pressed = []

    def hook(summary: BackfillSummary) -> None:
        if summary.rows_read >= rows and not pressed:
            pressed.append(True)
            raise KeyboardInterrupt

    return hook


def test_ctrl_c_then_resume_from_the_checkpoint(
    tmp_path: Path, tracker: perf_sdk.Tracker, platform: MemoryPlatform
) -> None:
    file = history(tmp_path, 100, bad_every=10)
    stopped = backfill(file, tracker=tracker, chunk_size=10, checkpoint_every=0, on_progress=interrupt_after(40))
    assert stopped.interrupted and stopped.exit_status == 130 and not stopped.complete
    assert stopped.checkpoint_path is not None and stopped.checkpoint_path.exists()
    state = json.loads(stopped.checkpoint_path.read_text())
    assert state["row"] == 41  # 40 data rows, and the header was row 1
    resumed = backfill(file, tracker=tracker, chunk_size=10, checkpoint_every=0)
    assert resumed.resumed_from == 41 and resumed.rows_skipped == 40
    assert (resumed.rows_read, resumed.accepted, resumed.rejected) == (100, 90, 10)  # totals over both runs
    assert resumed.complete and not resumed.checkpoint_path.exists()  # type: ignore[union-attr]
    assert len(platform.records) == 90
    with Path(f"{file}.rejects.csv").open(newline="") as handle:
        rejected_rows = [r["row"] for r in csv.DictReader(handle)]
    assert rejected_rows == [str(n) for n in range(11, 102, 10)]  # each once, none lost


def test_a_changed_file_starts_over(tmp_path: Path, tracker: perf_sdk.Tracker, platform: MemoryPlatform) -> None:
    file = history(tmp_path, 50)
    backfill(file, tracker=tracker, chunk_size=10, checkpoint_every=0, on_progress=interrupt_after(20))
    with file.open("a") as handle:
        handle.write("2026-04-01T00:00:00Z,started,phone,1\n")
    again = backfill(file, tracker=tracker, chunk_size=10)
    assert again.resumed_from is None and again.rows_read == 51 and len(platform.records) == 51


def test_service_mismatch_and_bad_options(tmp_path: Path, tracker: perf_sdk.Tracker) -> None:
    file = history(tmp_path, 2)
    with pytest.raises(ConfigurationError, match="service"):
        backfill(file, tracker=tracker, service="another-service")
    with pytest.raises(ConfigurationError, match="amount unit"):
        backfill(file, service=SERVICE, dry_run=True, amount_unit="guineas")
    with pytest.raises(ConfigurationError, match="no endpoint"):
        backfill(file, service=SERVICE, secret=SECRET, spool_dir=tmp_path / "s")
    tid = tmp_path / "tid.csv"
    tid.write_text("timestamp,stage,channel,transaction_id\n2026-01-05,started,digital,t-1\n")
    with pytest.raises(ConfigurationError, match="no secret"):
        backfill(tid, service=SERVICE, dry_run=True)


# -- the command ---------------------------------------------------------------------------------


def test_cli_dry_run_exit_statuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = history(tmp_path, 4, name="clean.csv")
    assert main(["backfill", str(clean), "--service", SERVICE, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 rows read, 4 accepted, 0 rejected" in out and "would send 4 transactions records" in out
    assert "2026-01" in out and "digital" in out
    dirty = history(tmp_path, 4, bad_every=2, name="dirty.csv")
    assert main(["backfill", str(dirty), "--service", SERVICE, "--dry-run", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["rejected"] == 2 and data["rejects_path"].endswith("dirty.csv.rejects.csv")


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "h.csv"
    file.write_text("when,what,how\n2026-01-05,started,digital\n")
    assert main(["backfill", str(file), "--service", SERVICE, "--dry-run"]) == 2
    assert "no column that tells the data type" in capsys.readouterr().err
    assert main(["backfill", str(file), "--service", SERVICE, "--dry-run", "--type", "transactions"]) == 2
    assert "unknown column(s) 'when', 'what', 'how'" in capsys.readouterr().err
    args = ["backfill", str(file), "--service", SERVICE, "--dry-run", "--map", "when=timestamp", "--map", "what=stage"]
    assert main([*args, "--map", "how=channel"]) == 0
    assert main([*args, "--map", "how"]) == 2
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["backfill", str(empty), "--service", SERVICE, "--dry-run"]) == 2
    assert "is empty" in capsys.readouterr().err


def test_cli_sends_with_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform: MemoryPlatform
) -> None:
    file = history(tmp_path, 3)
    monkeypatch.setenv("PERF_SDK_SERVICE", SERVICE)
    monkeypatch.setenv("PERF_SDK_SECRET", SECRET)
    monkeypatch.setenv("PERF_SDK_TOKEN", TOKEN)
    monkeypatch.setenv("PERF_SDK_SPOOL_DIR", str(tmp_path / "spool"))
    # no endpoint: a configuration error, exit 2, before anything is read
    assert main(["backfill", str(file), "--quiet"]) == 2


def _ids_of(file: Path, spool_dir: Path, **options: Any) -> tuple[set[str], int]:
    memory = MemoryPlatform()
    t = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory, **FAST)
    try:
        summary = backfill(file, tracker=t, **options)
        assert summary.exit_status == 0, summary
    finally:
        t.close(timeout=2.0)
    return set(memory.records), memory.total()


def test_ids_survive_title_rows_bom_crlf_and_gzip(tmp_path: Path, spool_dir: Path) -> None:
    """An Excel re-save, a title row added above the header or a gzipped copy is the same data: the same ids."""
    import gzip

    rows = "timestamp,stage,channel,count\n" + "".join(
        f"2026-0{m}-05T10:00:00Z,started,digital,10\n" for m in range(1, 7)
    )
    variants = {
        "plain": rows,
        "excel": "\ufeff" + rows.replace("\n", "\r\n"),
        "title": "Transactions export, Dept X\n\n" + rows,
    }
    seen = {}
    for folder, text in variants.items():
        (tmp_path / folder).mkdir()
        file = tmp_path / folder / "transactions.csv"
        file.write_text(text, encoding="utf-8", newline="")
        seen[folder] = _ids_of(file, spool_dir / folder)
    (tmp_path / "gz").mkdir()
    gz = tmp_path / "gz" / "transactions.csv.gz"
    gz.write_bytes(gzip.compress(rows.encode()))
    seen["gz"] = _ids_of(gz, spool_dir / "gz")
    assert all(value == seen["plain"] for value in seen.values()), seen
    assert seen["plain"][1] == 60 and len(seen["plain"][0]) == 6

    renamed = tmp_path / "transactions-2026.csv"
    renamed.write_text(rows, encoding="utf-8")
    assert _ids_of(renamed, spool_dir / "renamed")[0].isdisjoint(seen["plain"][0])  # documented: a new name, new ids
    assert _ids_of(renamed, spool_dir / "pinned", source_name="transactions.csv") == seen["plain"]


def test_ids_of_a_file_with_its_header_first_are_those_earlier_versions_gave(tmp_path: Path, spool_dir: Path) -> None:
    """Upgrading must not double count what was backfilled before: these ids are pinned."""
    file = tmp_path / "transactions.csv"
    file.write_text("timestamp,stage,channel,count\n2026-01-05T10:00:00Z,started,digital,10\n", encoding="utf-8")
    ids, _ = _ids_of(file, spool_dir)
    assert ids == {"transactions:14d459fe0000000002b70ba8d64c273a"}
    line = tmp_path / "t.jsonl"
    line.write_text('{"timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 3}\n')
    ids, _ = _ids_of(line, spool_dir / "jsonl")
    assert ids == {"transactions:c6f9516900000000012aa10016bdb482"}


def test_cli_source_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = history(tmp_path, 3)
    assert main(["backfill", str(file), "--service", SERVICE, "--dry-run", "--source-name", "old.csv"]) == 0


def test_reject_file_is_private_and_withholds_transaction_ids(tmp_path: Path) -> None:
    """Transaction ids leave the process only as HMACs: not in the reject file, which only its owner may read."""
    import os
    import stat

    file = tmp_path / "t.csv"
    file.write_text(
        "timestamp,stage,channel,count,transaction_id\n"
        "2026-01-05T10:00:00Z,started,digital,1,NI-AB123456C\n"
        "2026-01-05T10:00:00Z,strted,digital,1,NI-ZZ999999Z\n"
        "=cmd|' /C calc'!A0,started,digital,1,NI-QQ111111Q\n"
        "2026-01-05T10:00:00Z,started,digital,1,\n"
    )
    file.chmod(0o600)
    rejects = Path(f"{file}.rejects.csv")
    rejects.write_text("an old file, world-readable\n")
    rejects.chmod(0o644)
    summary = backfill(file, service=SERVICE, secret=SECRET, dry_run=True)
    assert summary.rejected == 2
    text = rejects.read_text()
    assert "NI-" not in text
    with rejects.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["line"] == "2026-01-05T10:00:00Z,strted,digital,1,<transaction id withheld>"
    assert rows[0]["value"] == "strted" and rows[1]["field"] == "timestamp"
    if os.name == "posix":
        assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
        rejects.unlink()
        backfill(file, service=SERVICE, secret=SECRET, dry_run=True)
        assert stat.S_IMODE(rejects.stat().st_mode) == 0o600


def test_jsonl_rejects_withhold_transaction_ids_even_in_broken_lines(tmp_path: Path) -> None:
    file = tmp_path / "t.jsonl"
    good = {"timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital"}
    file.write_text(
        json.dumps(good)
        + "\n"
        + json.dumps({**good, "stage": "strted", "transaction_id": "NI-ZZ999999Z"})
        + "\n"
        + '{"transaction_id": "NI-QQ111111Q", "stage": started}\n'
        + json.dumps({**good, "transaction_id": "NI-" + "X" * 1100})
        + "\n"
    )
    summary = backfill(file, service=SERVICE, secret=SECRET, dry_run=True)
    assert summary.rejected == 3
    with Path(f"{file}.rejects.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert "NI-" not in json.dumps(rows)
    assert json.loads(rows[0]["line"])["transaction_id"] == "<transaction id withheld>"
    assert rows[1]["field"] == "row" and "<transaction id withheld>" in rows[1]["value"]
    assert rows[1]["line"] == '{"transaction_id": "<transaction id withheld>", "stage": started}'
    assert rows[2]["field"] == "transaction_id" and rows[2]["value"] == "<transaction id withheld>"


def test_hostile_json_lines_are_rejects_not_tracebacks(tmp_path: Path) -> None:
    """A lone surrogate is written to the reject file as its escape; nesting past the recursion limit is a reject."""
    file = tmp_path / "t.jsonl"
    good = '{"timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 1}\n'
    file.write_text(
        good
        + '{"timestamp": "2026-01-05T10:00:00Z", "stage": "\\ud800", "channel": "digital", "count": 1}\n'
        + "[" * 100_000
        + "]" * 100_000
        + "\n"
        + '{"timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "transaction_id": "\\udfff"}\n'
        + good
    )
    summary = backfill(file, service=SERVICE, secret=SECRET, dry_run=True)
    assert (summary.accepted, summary.rejected) == (2, 3)
    with Path(f"{file}.rejects.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["row"], r["field"]) for r in rows] == [("2", "stage"), ("3", "row"), ("4", "transaction_id")]
    assert rows[0]["value"] == "\\ud800"
    assert "nested too deeply" in rows[1]["rule"] and rows[1]["line"].endswith("(190,000 more characters)")
    assert "surrogate" in rows[2]["rule"]


def test_a_deeply_nested_first_json_line_is_a_configuration_error(tmp_path: Path) -> None:
    file = tmp_path / "t.jsonl"
    file.write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(ConfigurationError, match="nested too deeply"):
        backfill(file, service=SERVICE, dry_run=True)
