"""Excel workbooks as services really have them: decompression bombs, date and currency cells.

The workbooks are made here with openpyxl (and, for the bomb, zipfile), so
every case says exactly which cell formats it is about.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from perf_sdk import _backfill_readers
from perf_sdk._backfill import backfill
from perf_sdk._errors import ConfigurationError
from tests.conftest import SERVICE

openpyxl = pytest.importorskip("openpyxl")


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
            if info.filename != part:
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
