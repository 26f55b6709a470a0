"""``perf-sdk kpis``: every format, and the exit statuses."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import pytest
import respx

from perf_sdk.cli import main
from perf_sdk.cli._kpis import format_table, print_table

NAMES = ("Completion rate", "User satisfaction", "Cost per transaction", "Digital take-up")
BASE = "http://127.0.0.1:8799"
SVC = "apply-for-a-licence"


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PERF_SDK_READ_ENDPOINT", "PERF_SDK_ENDPOINT", "PERF_SDK_SERVICE", "PERF_SDK_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def records_file(tmp_path: Path) -> Path:
    file = tmp_path / "records.jsonl"
    rows = [
        {"_timestamp": "2025-12-03T09:00:00Z", "stage": "started", "channel": "digital", "count": 10},
        {"_timestamp": "2025-12-03T09:00:00Z", "stage": "completed", "channel": "digital", "count": 5},
        {"_timestamp": "2026-01-05T09:00:00Z", "stage": "started", "channel": "digital", "count": 10},
        {"_timestamp": "2026-01-05T09:00:00Z", "stage": "completed", "channel": "digital", "count": 8},
        {"_timestamp": "2026-01-05T09:00:00Z", "stage": "completed", "channel": "paper", "count": 2},
        {"_timestamp": "2026-01-06T09:00:00Z", "rating": 4, "channel": "digital", "count": 3},
        {"_timestamp": "2026-01-06T09:00:00Z", "rating": 1, "channel": "digital", "count": 1},
        {"period": "2026-Q1", "amount_pence": 50_000, "cost_type": "staff", "channel": "all"},
    ]
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return file


def test_json_is_api_md_shape(records_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["kpis", "--file", str(records_file), "--service", SVC, "--format", "json", "--from", "2026-01-01"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["start"] for d in data] == ["2026-01-01"]
    q1 = data[0]
    assert q1["period"] == "quarter"
    assert q1["completion_rate"] == {"value": 0.8, "numerator": 8, "denominator": 10}
    assert q1["user_satisfaction"] == {"value": 0.75, "numerator": 3, "denominator": 4}
    assert q1["cost_per_transaction"] == {"value": 5000.0, "numerator": 50_000, "denominator": 10}
    assert q1["digital_take_up"] == {"value": 0.8, "numerator": 8, "denominator": 10}
    assert q1["change"]["completion_rate"] == pytest.approx(0.3)  # December's 50% counts as the previous


def test_monthly_json_with_to(records_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "kpis",
        "--file",
        str(records_file),
        "--period",
        "month",
        "--format",
        "json",
        "--to",
        "2026-01-31",
    ]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(d["period"], d["start"]) for d in data] == [("month", "2025-12-01"), ("month", "2026-01-01")]
    assert data[1]["cost_per_transaction"]["value"] is None  # a quarter's cost is not in a month


def test_csv(records_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kpis", "--file", str(records_file), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["label"] for r in rows] == ["2025-Q4", "2026-Q1"]
    assert rows[0]["cost_per_transaction_value"] == ""
    assert float(rows[1]["cost_per_transaction_value"]) == 5000.0


def test_table_when_piped_is_plain_text(records_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kpis", "--file", str(records_file), "--service", SVC]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    assert "2026-Q1" in out
    assert "80.0% (8 / 10)" in out
    assert "£50.00" in out
    assert "unknown" in out  # 2025-Q4 has no costs
    assert "\x1b[" not in out


def test_rich_table_keeps_the_names_whole(records_file: Path) -> None:
    from perf_sdk._kpi_sources import kpis

    report = kpis(path=records_file, service=SVC)
    buffer = io.StringIO()
    print_table(report, buffer, rich=True)
    out = buffer.getvalue()
    for name in NAMES:
        assert name in out
    assert "▲ 30.0 pts" in out
    assert all(name in format_table(report) for name in NAMES)


def test_output_file(records_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "kpis.json"
    assert main(["kpis", "--file", str(records_file), "--format", "json", "--output", str(out)]) == 0
    assert len(json.loads(out.read_text())) == 2
    table = tmp_path / "kpis.txt"
    assert main(["kpis", "--file", str(records_file), "--output", str(table)]) == 0
    assert "Digital take-up" in table.read_text()


def test_html_to_a_file_and_to_stdout(records_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "dash" / "index.html"
    assert main(["kpis", "--file", str(records_file), "--service", SVC, "--format", "html", "--output", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<svg" in text
    assert main(["kpis", "--file", str(records_file), "--format", "html"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


def test_read_api(capsys: pytest.CaptureFixture[str]) -> None:
    body = {
        "data": [
            {
                "stage": "started",
                "channel": "digital",
                "values": [{"_start_at": "2026-01-01T00:00:00+00:00", "_count": 1, "count:sum": 4}],
            },
            {
                "stage": "completed",
                "channel": "digital",
                "values": [{"_start_at": "2026-01-01T00:00:00+00:00", "_count": 1, "count:sum": 2}],
            },
        ]
    }
    with respx.mock(base_url=BASE) as router:
        router.get(f"/data/{SVC}/transactions").respond(json=body)
        router.get(f"/data/{SVC}/satisfaction").respond(404)
        router.get(f"/data/{SVC}/costs").respond(404)
        mark = {"_timestamp": "2026-02-02T09:00:00+00:00", "label": "release 1.4", "count": 1}
        marks = router.get(f"/data/{SVC}/marks").respond(json={"data": [mark]})
        argv = ["kpis", "--service", SVC, "--endpoint", BASE, "--format", "json", "--from", "2026-01-01"]
        code = main([*argv, "--to", "2026-03-31"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["completion_rate"] == {"value": 0.5, "numerator": 2, "denominator": 4}
    assert data[0]["user_satisfaction"]["value"] is None
    # the change markers of the range come along, in the period they fall in
    assert data[0]["marks"] == [{"label": "release 1.4", "at": "2026-02-02T09:00:00+00:00", "description": None}]
    assert dict(marks.calls.last.request.url.params) == {
        "start_at": "2025-10-01T00:00:00Z",
        "end_at": "2026-04-01T00:00:00Z",
    }


def test_unreachable_platform_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with respx.mock(base_url=BASE) as router:
        router.get(url__startswith=f"{BASE}/data/").mock(side_effect=httpx.ConnectError("refused"))
        code = main(["kpis", "--service", SVC, "--read-endpoint", BASE])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot reach the platform's read API" in err
    assert "Traceback" not in err


def test_unknown_service_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with respx.mock(base_url=BASE) as router:
        router.get(url__startswith=f"{BASE}/data/").respond(404)
        code = main(["kpis", "--service", "no-such-service", "--endpoint", BASE])
    assert code == 2
    assert "no data sets for service 'no-such-service'" in capsys.readouterr().err


def test_missing_configuration_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kpis", "--service", SVC]) == 2
    assert "PERF_SDK_READ_ENDPOINT" in capsys.readouterr().err


def test_a_file_that_cannot_be_read_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_timestamp": "2026-01-01T00:00:00Z", "rating": 7\n')
    assert main(["kpis", "--file", str(bad)]) == 2
    assert "line 1 is not JSON" in capsys.readouterr().err


def _with_odd_records(records_file: Path) -> Path:
    odd = [
        {"_timestamp": "2026-01-05T09:00:00Z", "stage": "in-progress", "channel": "digital", "count": 1},
        {"_timestamp": "2026-01-05T09:00:00Z", "stage": "completed", "channel": "digital", "count": -500},
        {"_timestamp": "2026-01-06T09:00:00Z", "rating": 7, "channel": "digital", "count": 1},
        {"_timestamp": "2026-01-06T09:00:00Z", "period": "fortnight", "amount_pence": 100},
        {"_timestamp": "2026-01-05T09:00:00Z", "stage": "completed", "channel": "web", "count": 2},
    ]
    with records_file.open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in odd))
    return records_file


def test_odd_records_are_a_data_note_never_a_failure(records_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kpis", "--file", str(records_file), "--period", "quarter"]) == 0
    clean = capsys.readouterr().out
    assert main(["kpis", "--file", str(_with_odd_records(records_file)), "--period", "quarter"]) == 0
    out = capsys.readouterr().out
    notes = out[out.index("Data notes") :].splitlines()
    assert notes[1:] == [
        "  1 costs record skipped: its period is not month, quarter or year (nor a label such as 2026-Q1) "
        "(e.g. 'fortnight')",
        "  1 satisfaction record skipped: its rating is not a whole number from 1 to 5 (e.g. 7)",
        "  1 transactions record skipped: its count is not a whole number from 1 to 1,000,000,000 (e.g. -500)",
        "  1 transactions record skipped: its stage is not started or completed (e.g. 'in-progress')",
        "  1 transactions record counted under channel 'other': its channel is not one of digital, phone, "
        "paper, face_to_face, other (e.g. 'web')",
    ]
    # the figures are those without the skipped records; the web completions count in all channels
    assert "80.0% (8 / 10)" in out and "80.0% (8 / 10)" in clean
    assert "66.7% (8 / 12)" in out and "80.0% (8 / 10)" in clean


@pytest.mark.parametrize("fmt", ["json", "csv", "html"])
def test_data_notes_go_to_standard_error_where_the_format_has_no_room(
    records_file: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    assert main(["kpis", "--file", str(_with_odd_records(records_file)), "--format", fmt]) == 0
    captured = capsys.readouterr()
    assert "perf-sdk: note: 1 satisfaction record skipped: its rating" in captured.err
    assert "skipped" not in captured.out


@pytest.mark.parametrize(
    "argv",
    [["kpis", "--from", "yesterday"], ["kpis", "--period", "fortnight"], ["kpis", "--format", "xml"]],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


DEFINITION = """\
title = "Apply for a licence"
organisation = "Department for Licences"

[targets]
completion_rate = {min = 0.85}
cost_per_transaction = {max_pence = 2500}
"""


def test_definition_adds_targets_in_every_format(
    records_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definition = tmp_path / "perf-sdk.toml"
    definition.write_text(DEFINITION)
    base = ["kpis", "--file", str(records_file), "--definition", str(definition)]
    assert main([*base, "--format", "json"]) == 0
    q1 = json.loads(capsys.readouterr().out)[1]
    # 8 / 10 = 80% < 85%; £500 / 10 = £50.00 > £25.00
    assert q1["targets"]["completion_rate"]["status"] == "missed"
    assert q1["targets"]["cost_per_transaction"]["status"] == "missed"
    assert main([*base, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[1]["completion_rate_target"] == "missed"
    assert main(base) == 0
    table = capsys.readouterr().out
    assert "KPIs for Apply for a licence (Department for Licences)" in table
    assert "80.0% [MISSED]" in table
    assert "Completion rate: at least 85.0%" in table


def test_a_bad_definition_is_a_usage_error_naming_the_line(
    records_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definition = tmp_path / "perf-sdk.toml"
    definition.write_text("[targets]\ncompletion_rate = {min = 85}\n")
    assert main(["kpis", "--file", str(records_file), "--definition", str(definition)]) == 2
    err = capsys.readouterr().err
    assert "perf-sdk.toml, line 2" in err and "write 0.85 (for 85%)" in err


def test_flagged_figure_is_not_printed_as_a_plain_percentage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "r.jsonl"
    rows = [
        {"_timestamp": "2026-01-05T09:00:00Z", "stage": "started", "channel": "digital", "count": 10},
        {"_timestamp": "2026-01-05T09:00:00Z", "stage": "completed", "channel": "digital", "count": 16},
    ]
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["kpis", "--file", str(file)]) == 0
    out = capsys.readouterr().out
    assert "160.0%" not in out
    assert "not shown*" in out and "16 digital completions but only 10 digital starts" in out


def test_format_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["kpis", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--format {table,csv,json,html}" in text
    assert "json (API.md's shape)" in text


@pytest.mark.parametrize("period", ["day", "week"])
def test_days_and_weeks_in_every_format(records_file: Path, tmp_path: Path, period: str) -> None:
    for fmt in ("table", "csv", "json", "html"):
        out = tmp_path / f"kpis.{fmt}"
        assert (
            main(["kpis", "--file", str(records_file), "--period", period, "--format", fmt, "--output", str(out)]) == 0
        )
        assert out.stat().st_size > 0
    page = (tmp_path / "kpis.html").read_text()
    assert ("Week of 5 January 2026" if period == "week" else "5 January 2026") in page
