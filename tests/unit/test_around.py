"""``kpis --around MARK``: equal windows before and after a change marker, worked by hand."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from perf_sdk._around import Mark, kpis_around, windows_around
from perf_sdk._errors import ConfigurationError
from perf_sdk.cli import main

MARK_AT = "2026-03-02T09:00:00Z"  # a Monday, mid-morning


def _t(day: str) -> str:
    return f"{day}T10:00:00Z"


def _records() -> dict[str, list[dict[str, Any]]]:
    tx = [
        # before (23 Feb .. 1 Mar): 200 digital starts, 150 digital + 50 phone completions
        {"_timestamp": _t("2026-02-25"), "stage": "started", "channel": "digital", "count": 200},
        {"_timestamp": _t("2026-02-26"), "stage": "completed", "channel": "digital", "count": 150},
        {"_timestamp": _t("2026-02-26"), "stage": "completed", "channel": "phone", "count": 50},
        # the mark's own day: in neither window
        {"_timestamp": _t("2026-03-02"), "stage": "started", "channel": "digital", "count": 1000},
        # after (3 Mar .. 9 Mar): 200 digital starts, 180 digital + 20 phone completions
        {"_timestamp": _t("2026-03-04"), "stage": "started", "channel": "digital", "count": 200},
        {"_timestamp": _t("2026-03-05"), "stage": "completed", "channel": "digital", "count": 180},
        {"_timestamp": _t("2026-03-05"), "stage": "completed", "channel": "phone", "count": 20},
        # outside both windows
        {"_timestamp": _t("2026-03-10"), "stage": "completed", "channel": "phone", "count": 999},
    ]
    sat = [
        {"_timestamp": _t("2026-02-27"), "rating": 5, "channel": "digital", "count": 20},
        {"_timestamp": _t("2026-02-27"), "rating": 4, "channel": "digital", "count": 10},
        {"_timestamp": _t("2026-02-27"), "rating": 2, "channel": "digital", "count": 10},
        {"_timestamp": _t("2026-03-06"), "rating": 5, "channel": "digital", "count": 36},
        {"_timestamp": _t("2026-03-06"), "rating": 1, "channel": "digital", "count": 4},
    ]
    costs = [  # February £28,000 (£1,000 a day); March £62,000 (£2,000 a day)
        {
            "_timestamp": "2026-02-01T00:00:00Z",
            "period": "month",
            "amount_pence": 2_800_000,
            "channel": "all",
            "cost_type": "staff",
        },
        {
            "_timestamp": "2026-03-01T00:00:00Z",
            "period": "month",
            "amount_pence": 6_200_000,
            "channel": "all",
            "cost_type": "staff",
        },
    ]
    marks = [{"_timestamp": MARK_AT, "label": "release 1.4", "description": "new eligibility page", "count": 1}]
    return {"transactions": tx, "satisfaction": sat, "costs": costs, "marks": marks}


def test_windows_leave_out_the_marks_own_day_unless_it_is_midnight() -> None:
    at = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
    assert windows_around(at, 7) == (date(2026, 2, 23), date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 10))
    midnight = datetime(2026, 3, 2, tzinfo=timezone.utc)
    assert windows_around(midnight, 7) == (date(2026, 2, 23), date(2026, 3, 2), date(2026, 3, 2), date(2026, 3, 9))


def test_before_and_after_match_a_hand_computation() -> None:
    report = kpis_around("release 1.4", records=_records(), window=7, today=date(2026, 4, 1))
    assert report.mark == Mark("release 1.4", datetime(2026, 3, 2, 9, tzinfo=timezone.utc), "new eligibility page")
    cr = report.change("completion_rate")
    # 150/200 = 75.0% -> 180/200 = 90.0%, +15.0 points.
    # Wilson 150/200: centre (0.75 + 1.96²/400) / (1 + 1.96²/200) = 0.74528,
    #   half 1.96 / 1.01921 * sqrt(0.75*0.25/200 + 1.96²/160000) = 0.05963 -> 0.68566 .. 0.80492
    # Wilson 180/200: 0.89246 ± 0.04187 -> 0.85059 .. 0.93433
    # Newcombe: low = 0.15 - sqrt((0.9 - 0.85059)² + (0.80492 - 0.75)²) = 0.07613
    #           high = 0.15 + sqrt((0.93433 - 0.9)² + (0.75 - 0.68566)²) = 0.22293
    assert (cr.before.numerator, cr.before.denominator, cr.after.numerator, cr.after.denominator) == (
        150,
        200,
        180,
        200,
    )
    assert cr.change == pytest.approx(0.15)
    assert cr.difference is not None
    assert cr.difference.before.low == pytest.approx(0.68566, abs=5e-5)
    assert cr.difference.after.high == pytest.approx(0.93433, abs=5e-5)
    assert (cr.difference.low, cr.difference.high) == (
        pytest.approx(0.07613, abs=5e-5),
        pytest.approx(0.22293, abs=5e-5),
    )
    assert cr.significant is True
    # satisfaction 30/40 -> 36/40: +15 points too, but over 40 answers the interval crosses 0
    sat = report.change("user_satisfaction")
    assert (sat.before.value, sat.after.value) == (0.75, 0.9)
    assert sat.difference is not None and sat.difference.low < 0 < sat.difference.high
    assert sat.significant is False
    # take-up: 150/200 -> 180/200
    assert report.change("digital_take_up").change == pytest.approx(0.15)
    # cost: before 6 February days x £1,000 + 1 March day x £2,000 = £8,000 / 200 = £40.00;
    # after 7 March days x £2,000 = £14,000 / 200 = £70.00; a plain difference of +£30.00
    cost = report.change("cost_per_transaction")
    assert (cost.before.value, cost.after.value, cost.change) == (4000.0, 7000.0, 3000.0)
    assert cost.significant is None
    text = report.to_text()
    assert "Completion rate: 75.0% -> 90.0%, +15.0 pts, 95% interval +7.6 to +22.3 pts: significant" in text
    assert "User satisfaction: 75.0% -> 90.0%, +15.0 pts, 95% interval -1.9 to +31.4 pts: not significant" in text
    assert "Cost per transaction: £40.00 -> £70.00, +£30.00 (a plain difference)" in text
    assert "2026-03-02, the mark's own day, is in neither window" in text


def test_unknown_label_says_how_to_mark() -> None:
    with pytest.raises(ConfigurationError, match="perf-sdk mark LABEL"):
        kpis_around("release 9", records=_records())


def test_an_iso_time_works_without_a_stored_mark() -> None:
    report = kpis_around("2026-03-02T09:00:00Z", records=_records(), window=7)
    assert report.change("completion_rate").after.value == pytest.approx(0.9)


def test_cli_around_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "records.jsonl"
    rows = [r for records in _records().values() for r in records]
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["kpis", "--file", str(file), "--around", "release 1.4", "--window", "7", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["completion_rate"]["significant"] is True
    assert data["before"] == {"start": "2026-02-23", "end": "2026-03-01"}
    assert data["after"] == {"start": "2026-03-03", "end": "2026-03-09"}
    assert main(["kpis", "--file", str(file), "--around", "release 1.4", "--window", "7", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("completion_rate,0.75,150,200,0.9,180,200,")
    assert main(["kpis", "--file", str(file), "--around", "release 1.4", "--format", "html"]) == 2
    with pytest.raises(SystemExit):
        main(["kpis", "--file", str(file), "--around", "release 1.4", "--window", "0"])


def test_dashboard_draws_marks_on_the_trend_charts() -> None:
    from perf_sdk._dashboard import dashboard_html
    from perf_sdk._kpi_sources import kpis

    report = kpis(records=_records(), period="month", today=date(2026, 6, 1))
    assert [m.label for m in report.marks] == ["release 1.4"]
    page = dashboard_html(report)
    # completion rate and digital take-up: one dashed line each, a sentence naming the change
    assert page.count('<line class="mark"') == 2
    assert page.count("Dashed lines mark changes to the service: release 1.4 (2 March 2026).") == 2
    without = dashboard_html(kpis(records={k: v for k, v in _records().items() if k != "marks"}, period="month"))
    assert '<line class="mark"' not in without


def test_the_dashboard_shows_each_kpi_before_and_after_a_mark() -> None:
    from perf_sdk._dashboard import dashboard_html
    from perf_sdk._kpi_sources import kpis

    report = kpis(records=_records(), period="month", today=date(2026, 6, 1), with_marks=True)
    (change,) = report.changes
    assert change.window_days == 28
    # 28 days each side: the same records fall in the windows as in the 7-day hand computation
    assert change.change("completion_rate").difference is not None
    assert change.change("completion_rate").significant is True
    page = dashboard_html(report)
    assert '<h2 id="change-release-1-4-heading">Before and after: release 1.4</h2>' in page
    assert "new eligibility page" in page
    assert "+15.0 points" in page and "a real change" in page and "could be chance" in page
    assert kpis(records=_records(), period="month", today=date(2026, 6, 1)).changes == ()


def test_an_odd_record_is_skipped_and_noted_never_a_traceback() -> None:
    records = _records()
    clean = kpis_around("release 1.4", records=records, window=7, today=date(2026, 4, 1))
    records["transactions"].append(  # before the fix: -500 completions reached Wilson's interval and raised
        {"_timestamp": _t("2026-03-05"), "stage": "completed", "channel": "digital", "count": -500}
    )
    records["satisfaction"].append({"_timestamp": _t("2026-03-06"), "rating": 7, "channel": "digital", "count": 1})
    report = kpis_around("release 1.4", records=records, window=7, today=date(2026, 4, 1))
    assert report.changes == clean.changes
    assert report.notes[-2:] == (
        "1 satisfaction record skipped: its rating is not a whole number from 1 to 5 (e.g. 7)",
        "1 transactions record skipped: its count is not a whole number from 1 to 1,000,000,000 (e.g. -500)",
    )


def test_hand_made_counts_with_a_negative_count_make_no_comparison() -> None:
    from perf_sdk._around import around
    from perf_sdk._kpi import Counts

    before, after = date(2026, 2, 25), date(2026, 3, 4)
    counts = Counts(
        {
            (before, "started", "digital"): 100,
            (before, "completed", "digital"): 80,
            (after, "started", "digital"): 100,
            (after, "completed", "digital"): -420,
        },
        bucket="day",
    )
    report = around(counts, Mark("x", datetime(2026, 3, 2, 9, tzinfo=timezone.utc)), window=7)
    cr = report.change("completion_rate")
    assert cr.change is None and cr.difference is None
    assert "Completion rate: 80.0% before, -420.0% after: no comparison" in report.to_text()
