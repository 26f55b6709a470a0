"""Excel workbooks as services really have them: decompression bombs, date and currency cells.

The workbooks are made here with openpyxl (and, for the bomb, zipfile), so
every case says exactly which cell formats it is about.
"""

from __future__ import annotations

import io
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from perf_sdk import _backfill_readers
from perf_sdk._backfill import backfill
from perf_sdk._errors import ConfigurationError
from tests.conftest import SERVICE

openpyxl = pytest.importorskip("openpyxl")
SHARED_STRINGS_TYPE = (
    b'<Override PartName="/xl/sharedStrings.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml" />'
)


def _workbook_bytes(rows: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _bomb(path: Path, *, part: str = "xl/sharedStrings.xml", inflated: int = 300 * 1024 * 1024) -> Path:
    """A real workbook whose ``part`` is replaced by one that inflates to ``inflated`` bytes."""
    good = zipfile.ZipFile(io.BytesIO(_workbook_bytes([["timestamp", "stage", "channel"]])))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for info in good.infolist():
            if info.filename == "[Content_Types].xml":  # so openpyxl reads the part, as it would a real one
                types = good.read(info.filename).replace(b"</Types>", SHARED_STRINGS_TYPE + b"</Types>")
                out.writestr(info.filename, types)
            elif info.filename != part:
                out.writestr(info.filename, good.read(info.filename))
        with out.open(part, "w", force_zip64=True) as handle:
            handle.write(
                b'<?xml version="1.0"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            )
            block = (b"<si><t>" + b"A" * 1000 + b"</t></si>") * 1000
            written = 0
            while written < inflated:
                handle.write(block)
                written += len(block)
            handle.write(b"</sst>")
    return path


def test_a_shared_strings_bomb_is_refused_before_openpyxl_inflates_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = _bomb(tmp_path / "history.xlsx")
    assert file.stat().st_size < 2 * 1024 * 1024

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("openpyxl must not open a bomb")

    monkeypatch.setattr(openpyxl, "load_workbook", never)
    with pytest.raises(ConfigurationError) as caught:
        _backfill_readers.open_source(file)
    message = str(caught.value)
    assert "history.xlsx" in message and "xl/sharedStrings.xml" in message
    assert f"{_backfill_readers.XLSX_MAX_LOADED_PART_BYTES:,}" in message


def test_a_part_under_the_size_cap_that_inflates_too_many_times_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_backfill_readers, "XLSX_MAX_LOADED_PART_BYTES", 10**12)
    file = _bomb(tmp_path / "ratio.xlsx", inflated=40 * 1024 * 1024)
    with pytest.raises(ConfigurationError, match=r"ratio\.xlsx: part xl/sharedStrings\.xml inflates .* limit of 100:1"):
        _backfill_readers.open_source(file)


def test_the_backfill_command_reports_a_bomb_as_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from perf_sdk.cli import main

    file = _bomb(tmp_path / "bomb.xlsx")
    assert main(["backfill", str(file), "--service", SERVICE, "--dry-run", "--quiet"]) == 2
    assert "bomb.xlsx" in capsys.readouterr().err


def test_an_ordinary_workbook_passes_the_check(tmp_path: Path) -> None:
    file = tmp_path / "ok.xlsx"
    file.write_bytes(
        _workbook_bytes([["timestamp", "stage", "channel"], *[["2026-01-05T10:00:00Z", "started", "digital"]] * 500])
    )
    assert backfill(file, service=SERVICE, dry_run=True).accepted == 500


# -- what the cells' formats say (issue 17 items 1, 2 and 4) ------------------------------------------


def _save(path: Path, rows: list[list[object]], formats: dict[str, str] | None = None) -> Path:
    """A workbook with ``rows``; ``formats`` sets number formats by cell (``{"B3": '"£"#,##0.00'}``)."""
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    for ref, number_format in (formats or {}).items():
        sheet[ref].number_format = number_format
    book.save(path)
    return path


def test_a_date_cell_in_summer_time_stays_in_its_month(tmp_path: Path) -> None:
    file = _save(
        tmp_path / "daily.xlsx",
        [
            ["Date", "Stage", "Channel", "Count"],
            [datetime(2025, 4, 1), "completed", "digital", 10],  # 1 April, British Summer Time
            [datetime(2025, 4, 1), "completed", "digital", 3],  # the same day as a date-and-time cell
            [datetime(2025, 4, 1, 0, 30), "completed", "digital", 2],
        ],
        {"A2": "dd/mm/yyyy", "A3": "dd/mm/yyyy hh:mm", "A4": "dd/mm/yyyy hh:mm"},
    )
    summary = backfill(file, service=SERVICE, dry_run=True, column_map={"Date": "timestamp"})
    assert summary.rejected == 0
    # the date cell is that day (noon in London): April; the time cells are the moments they say
    assert summary.by_period["2025-04"].count == 10
    assert summary.by_period["2025-03"].count == 5


def test_date_cells_build_noon_local_timestamps(tmp_path: Path) -> None:
    from tests.unit.test_backfill_readers import build

    file = _save(
        tmp_path / "h.xlsx",
        [["timestamp", "stage", "channel"], [datetime(2025, 4, 1), "started", "digital"]],
        {"A2": "d mmmm yyyy"},
    )
    records, rejects, _ = build(file)
    assert rejects == [] and records[0]["_timestamp"] == "2025-04-01T11:00:00+00:00"


def test_currency_cells_are_pounds_and_other_fractions_are_refused_with_the_hint(tmp_path: Path) -> None:
    pounds = '"£"#,##0.00'
    file = _save(
        tmp_path / "costs.xlsx",
        [
            ["period", "amount_pence", "cost_type"],
            ["2025-Q1", 125000.00, "staff"],
            ["2025-Q2", 48250.5, "staff"],
            ["2025-Q3", 99.5, "it"],  # a plain number with pence in it: neither unit is safe to guess
            ["2025-Q4", 125000, "it"],  # a plain whole number: pence, as always
            ["2026-Q1", 10, "accommodation"],
        ],
        {"B2": pounds, "B3": pounds, "B6": "[$£-809]#,##0.00"},
    )
    rejects = tmp_path / "rejects.csv"
    summary = backfill(file, service=SERVICE, dry_run=True, rejects=rejects)
    assert summary.accepted == 4 and summary.rejected == 1
    assert summary.by_period["2025-01"].amount_pence == 12_500_000
    assert summary.by_period["2025-04"].amount_pence == 4_825_050
    assert summary.by_period["2025-10"].amount_pence == 125_000
    assert summary.by_period["2026-01"].amount_pence == 1_000
    text = rejects.read_text()
    assert "99.5" in text and "--amount-unit pounds" in text


def test_a_cell_in_another_currency_is_refused(tmp_path: Path) -> None:
    file = _save(
        tmp_path / "usd.xlsx",
        [["period", "amount_pence", "cost_type"], ["2025-Q1", 100.0, "staff"]],
        {"B2": '"$"#,##0.00'},
    )
    rejects = tmp_path / "rejects.csv"
    assert backfill(file, service=SERVICE, dry_run=True, rejects=rejects).rejected == 1
    assert "amounts must be in pounds" in rejects.read_text()


def test_a_real_monthly_sheet_title_rows_channel_names_and_a_checked_total(tmp_path: Path) -> None:
    file = _save(
        tmp_path / "monthly.xlsx",
        [
            ["Apply for a licence: transactions by channel"],
            ["Source: case management system. Figures are provisional."],
            [],
            ["Month", "Online", "Telephone", "By post", "In person", "Total"],
            [datetime(2025, 4, 1), 900, 50, 30, 20, 1000],
            [datetime(2025, 5, 1), 950, 40, None, 10, 1000],
            [datetime(2025, 6, 1), 1, 1, 1, 1, 5],  # the total disagrees: the row is refused
        ],
        {"A5": "mmm-yy", "A6": "mmm-yy", "A7": "mmm-yy"},
    )
    rejects = tmp_path / "rejects.csv"
    summary = backfill(file, service=SERVICE, dry_run=True, rejects=rejects)
    assert summary.shape == "wide-transactions" and summary.header_row == 4
    assert (summary.accepted, summary.rejected) == (2, 1)
    assert summary.by_period["2025-04"].count == 1000 and summary.by_period["2025-05"].count == 1000
    assert summary.by_channel["digital"].count == 1850 and summary.by_channel["paper"].count == 30
    assert "face_to_face" in summary.by_channel and "total" not in summary.by_channel
    readings = dict(summary.columns)
    assert readings["Online"].startswith("channel digital") and readings["By post"].startswith("channel paper")
    assert "not counted again" in readings["Total"] and readings["Month"].startswith("period")
    assert "must equal digital + phone + paper + face_to_face (4)" in rejects.read_text()


def test_plain_reading_of_a_workbook_gives_pence_for_pound_cells_and_days_for_date_cells(tmp_path: Path) -> None:
    from datetime import date

    file = _save(
        tmp_path / "k.xlsx",
        [["period", "amount_pence", "cost_type", "when"], ["2025-Q1", 1250.5, "staff", datetime(2025, 4, 1)]],
        {"B2": '"£"#,##0.00', "D2": "yyyy-mm-dd"},
    )
    (row,) = list(_backfill_readers.iter_records_file(file))
    assert row["amount_pence"] == 125_050 and row["when"] == date(2025, 4, 1)


def test_a_formula_with_no_saved_value_is_named_not_called_blank(tmp_path: Path) -> None:
    """openpyxl (and other programs) write formulas without calculating them: the reject says so, and what to do."""
    import csv

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Export of 2025"])  # a title row: the sheet's row numbers are what is asked about
    sheet.append(["timestamp", "stage", "channel", "count"])
    sheet.append([datetime(2025, 4, 1, 10), "started", "digital", 10])
    sheet.append([datetime(2025, 4, 1, 10), "started", "digital", "=5*2"])
    sheet.append([datetime(2025, 4, 1, 10), "completed", "phone", None])  # a blank cell is still blank
    sheet.append(["=A3", "completed", "digital", 4])
    sheet.append([datetime(2025, 4, 2, 10), "completed", "digital", "=B3"])
    file = tmp_path / "t.xlsx"
    book.save(file)
    summary = backfill(file, service=SERVICE, dry_run=True)
    assert (summary.accepted, summary.rejected) == (1, 4)
    with Path(f"{file}.rejects.csv").open(newline="") as handle:
        rows = [(r["row"], r["field"], r["rule"]) for r in csv.DictReader(handle)]
    assert [(n, f) for n, f, _ in rows] == [("4", "count"), ("5", "count"), ("6", "timestamp"), ("7", "count")]
    formula = [n for n, _, rule in rows if rule.startswith("is a formula with no saved value")]
    assert formula == ["4", "6", "7"]
    assert "open the workbook in Excel and save it, or export the sheet to CSV" in rows[0][2]
    assert rows[1][2].startswith("is blank")
