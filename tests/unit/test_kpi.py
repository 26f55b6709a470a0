"""The KPI arithmetic, worked by hand."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timezone

import pytest

from perf_sdk import ValidationError
from perf_sdk._kpi import (
    Counts,
    CountsBuilder,
    Kpi,
    KpiReport,
    PeriodKpis,
    compute_report,
    format_change,
    format_value,
    parse_cost_period_label,
    period_containing,
    periods_between,
)

D = date


def counts(
    transactions: dict[tuple[date, str, str], int] | None = None,
    satisfaction: dict[tuple[date, int, str], int] | None = None,
    costs: dict[tuple[str, date, str, str], int] | None = None,
) -> Counts:
    return Counts(transactions or {}, satisfaction or {}, costs or {})


def only(report: KpiReport) -> PeriodKpis:
    assert len(report.periods) == 1
    return report.periods[0]


# -- periods ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "kind", "start", "end", "label"),
    [
        (D(2026, 2, 14), "month", D(2026, 2, 1), D(2026, 3, 1), "2026-02"),
        (D(2026, 12, 31), "month", D(2026, 12, 1), D(2027, 1, 1), "2026-12"),
        (D(2026, 5, 1), "quarter", D(2026, 4, 1), D(2026, 7, 1), "2026-Q2"),
        (D(2026, 12, 1), "quarter", D(2026, 10, 1), D(2027, 1, 1), "2026-Q4"),
        (D(2026, 7, 9), "year", D(2026, 1, 1), D(2027, 1, 1), "2026"),
        (D(2025, 4, 1), "financial-year", D(2025, 4, 1), D(2026, 4, 1), "2025-26"),
        (D(2026, 3, 31), "financial-year", D(2025, 4, 1), D(2026, 4, 1), "2025-26"),
        (D(1999, 6, 1), "financial-year", D(1999, 4, 1), D(2000, 4, 1), "1999-00"),
    ],
)
def test_period_containing(day: date, kind: str, start: date, end: date, label: str) -> None:
    p = period_containing(day, kind)
    assert (p.start, p.end, p.label, p.kind) == (start, end, label, kind)


def test_period_of_an_aware_datetime_is_its_utc_date() -> None:
    late = datetime(2026, 4, 1, 0, 30, tzinfo=timezone.utc).astimezone()
    assert period_containing(late, "month").label == "2026-04"


def test_periods_between_are_whole_and_both_ends_inclusive() -> None:
    labels = [p.label for p in periods_between(D(2025, 12, 31), D(2026, 4, 1), "quarter")]
    assert labels == ["2025-Q4", "2026-Q1", "2026-Q2"]
    assert period_containing(D(2026, 1, 1), "quarter").previous().label == "2025-Q4"
    assert period_containing(D(2026, 5, 1), "financial-year").previous().label == "2025-26"


def test_unknown_period_kind_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        period_containing(D(2026, 1, 1), "fortnight")
    assert info.value.field == "period"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("2026-03", ("month", D(2026, 3, 1))),
        ("2026-Q1", ("quarter", D(2026, 1, 1))),
        ("2026", ("year", D(2026, 1, 1))),
    ],
)
def test_cost_period_labels(label: str, expected: tuple[str, date]) -> None:
    assert parse_cost_period_label(label) == expected


@pytest.mark.parametrize("label", ["2026-13", "2026-Q5", "26", "March"])
def test_bad_cost_period_labels(label: str) -> None:
    with pytest.raises(ValidationError):
        parse_cost_period_label(label)


# -- the four KPIs ------------------------------------------------------------


def test_completion_rate_is_digital_completed_over_digital_started() -> None:
    c = counts(
        {
            (D(2026, 1, 1), "started", "digital"): 200,
            (D(2026, 2, 1), "started", "digital"): 50,  # same quarter: summed
            (D(2026, 1, 1), "completed", "digital"): 150,
            (D(2026, 1, 1), "started", "phone"): 999,  # other channels do not count
            (D(2026, 1, 1), "completed", "phone"): 50,
        }
    )
    p = compute_report(c, period="quarter").periods[0]
    assert p.completion_rate == Kpi(0.6, 150, 250)
    # take-up: 150 digital of 200 completed in all channels
    assert p.digital_take_up == Kpi(0.75, 150, 200)


def test_user_satisfaction_and_weighted_score() -> None:
    # ratings 5:2, 4:1, 3:1, 1:1 -> satisfied 3/5; weighted (2*1 + 0.75 + 0.5 + 0) / 5 = 0.65
    c = counts(
        satisfaction={
            (D(2026, 1, 1), 5, "digital"): 2,
            (D(2026, 1, 1), 4, "phone"): 1,
            (D(2026, 3, 1), 3, "digital"): 1,
            (D(2026, 3, 1), 1, "digital"): 1,
        }
    )
    p = compute_report(c, period="quarter").periods[0]
    assert p.user_satisfaction == Kpi(0.6, 3, 5)
    assert p.satisfaction_score.value == pytest.approx(0.65)
    assert p.satisfaction_score.numerator == pytest.approx(3.25)
    assert p.satisfaction_score.denominator == 5
    assert dict(p.ratings) == {1: 1, 2: 0, 3: 1, 4: 1, 5: 2}
    digital = next(ch for ch in p.channels if ch.channel == "digital")
    assert digital.user_satisfaction == Kpi(0.5, 2, 4)


def test_cost_per_transaction_all_channels_in_pence() -> None:
    c = counts(
        {(D(2026, 1, 1), "completed", "digital"): 300, (D(2026, 2, 1), "completed", "paper"): 100},
        costs={
            ("quarter", D(2026, 1, 1), "all", "staff"): 100_000,
            ("month", D(2026, 2, 1), "digital", "it"): 20_000,
        },
    )
    p = compute_report(c, period="quarter").periods[0]
    assert p.cost_per_transaction == Kpi(300.0, 120_000, 400)
    assert dict(p.costs_by_type) == {"it": 20_000, "staff": 100_000}


def test_a_months_costs_count_in_its_quarter_and_year() -> None:
    c = counts(
        {(D(2026, 2, 1), "completed", "digital"): 10},
        costs={("month", D(2026, 2, 1), "all", "staff"): 5_000},
    )
    for kind in ("month", "quarter", "year"):
        p = compute_report(c, period=kind).periods[0]
        assert p.cost_per_transaction == Kpi(500.0, 5_000, 10), kind


def test_a_quarters_cost_is_not_in_a_monthly_report() -> None:
    c = counts(
        {(D(2026, m, 1), "completed", "digital"): 10 for m in (1, 2, 3)},
        costs={("quarter", D(2026, 1, 1), "all", "staff"): 9_000},
    )
    months = compute_report(c, period="month").periods
    assert [p.label for p in months] == ["2026-01", "2026-02", "2026-03"]
    assert all(p.cost_per_transaction == Kpi(None, 0, 10) for p in months)
    quarter = compute_report(c, period="quarter").periods[0]
    assert quarter.cost_per_transaction == Kpi(300.0, 9_000, 30)


def test_a_calendar_years_cost_counts_in_no_financial_year_but_its_quarters_do() -> None:
    c = counts(
        {(D(2025, 6, 1), "completed", "digital"): 10, (D(2026, 2, 1), "completed", "digital"): 10},
        costs={
            ("year", D(2025, 1, 1), "all", "staff"): 1_000_000,
            ("quarter", D(2025, 4, 1), "all", "it"): 4_000,
            ("quarter", D(2026, 1, 1), "all", "it"): 2_000,  # Q1 2026 is in 2025-26
        },
    )
    fy = compute_report(c, period="financial-year")
    assert [p.label for p in fy.periods] == ["2024-25", "2025-26"]  # the year cost starts in 2024-25
    assert fy.periods[0].cost_per_transaction == Kpi(None, 0, 0)
    assert fy.periods[1].cost_per_transaction == Kpi(300.0, 6_000, 20)
    calendar = compute_report(c, period="year", start=D(2025, 1, 1), end=D(2025, 12, 31))
    assert calendar.periods[0].cost_per_transaction == Kpi(100_400.0, 1_004_000, 10)


def test_unknown_is_none_never_zero_or_hundred_percent() -> None:
    c = counts({(D(2026, 1, 1), "started", "digital"): 5})  # nothing completed, no answers, no costs
    p = compute_report(c, period="month").periods[0]
    assert p.completion_rate == Kpi(0.0, 0, 5)  # a real 0%: five started, none completed
    assert p.digital_take_up == Kpi(None, 0, 0)
    assert p.user_satisfaction == Kpi(None, 0, 0)
    assert p.satisfaction_score.value is None
    assert p.cost_per_transaction == Kpi(None, 0, 0)


def test_zero_completions_with_costs_is_unknown() -> None:
    c = counts({(D(2026, 1, 1), "started", "digital"): 5}, costs={("month", D(2026, 1, 1), "all", "staff"): 700})
    p = compute_report(c, period="month").periods[0]
    assert p.cost_per_transaction == Kpi(None, 700, 0)


def test_costs_of_zero_pence_are_a_known_zero() -> None:
    c = counts({(D(2026, 1, 1), "completed", "digital"): 4}, costs={("month", D(2026, 1, 1), "all", "x"): 0})
    assert compute_report(c, period="month").periods[0].cost_per_transaction == Kpi(0.0, 0, 4)


def test_a_period_with_no_data_inside_a_range_is_all_unknown() -> None:
    c = counts({(D(2026, 1, 1), "started", "digital"): 5, (D(2026, 3, 1), "started", "digital"): 5})
    months = compute_report(c, period="month").periods
    assert [p.label for p in months] == ["2026-01", "2026-02", "2026-03"]
    gap = months[1]
    assert not gap.has_data
    assert all(gap.kpi(k).value is None for k in ("completion_rate", "user_satisfaction", "digital_take_up"))


def test_change_from_the_previous_period() -> None:
    c = counts(
        {
            (D(2025, 12, 1), "started", "digital"): 10,
            (D(2025, 12, 1), "completed", "digital"): 5,
            (D(2026, 1, 1), "started", "digital"): 10,
            (D(2026, 1, 1), "completed", "digital"): 8,
        },
        costs={("month", D(2026, 1, 1), "all", "staff"): 800},
    )
    report = compute_report(c, period="month", start=D(2026, 1, 1), end=D(2026, 1, 31))
    jan = only(report)
    assert jan.previous["completion_rate"] == 0.5
    assert jan.change("completion_rate") == pytest.approx(0.3)
    assert jan.change("cost_per_transaction") is None  # unknown in December
    assert jan.change("user_satisfaction") is None


def test_report_range_from_data_or_arguments() -> None:
    c = counts({(D(2026, 2, 1), "started", "digital"): 1})
    assert [p.label for p in compute_report(c, period="quarter").periods] == ["2026-Q1"]
    asked = compute_report(c, period="quarter", start=D(2025, 11, 5), end=D(2026, 4, 1))
    assert [p.label for p in asked.periods] == ["2025-Q4", "2026-Q1", "2026-Q2"]
    assert (asked.start, asked.end) == (D(2025, 10, 1), D(2026, 6, 30))
    assert compute_report(Counts(), period="month").periods == ()
    with pytest.raises(ValidationError):
        compute_report(c, start=D(2026, 2, 1), end=D(2026, 1, 1))


def test_channel_mix() -> None:
    c = counts(
        {
            (D(2026, 1, 1), "completed", "digital"): 6,
            (D(2026, 1, 1), "completed", "phone"): 3,
            (D(2026, 1, 1), "completed", "paper"): 1,
            (D(2026, 1, 1), "started", "phone"): 4,
        }
    )
    p = compute_report(c, period="month").periods[0]
    mix = {ch.channel: ch.share.value for ch in p.channels}
    assert mix == {"digital": 0.6, "phone": 0.3, "paper": 0.1}
    phone = next(ch for ch in p.channels if ch.channel == "phone")
    assert (phone.started, phone.completed, phone.completion_rate.value) == (4, 3, 0.75)


def test_counts_builder_buckets_by_utc_month_and_snaps_costs() -> None:
    b = CountsBuilder()
    b.add_transactions(datetime(2026, 3, 31, 23, 30, tzinfo=timezone.utc), "started", "digital", 2)
    b.add_transactions(datetime(2026, 4, 1, 0, 30, tzinfo=timezone.utc), "started", "digital", 3)
    b.add_cost("quarter", D(2026, 2, 10), "all", "staff", 100)
    built = b.build()
    assert built.transactions == {
        (D(2026, 3, 1), "started", "digital"): 2,
        (D(2026, 4, 1), "started", "digital"): 3,
    }
    assert built.costs == {("quarter", D(2026, 1, 1), "all", "staff"): 100}
    assert built.skipped == {}


# -- records outside the vocabulary: skipped and counted, never computed with, never raised --------------


@pytest.mark.parametrize(
    ("add", "reason"),
    [
        (lambda b: b.add_transactions(D(2026, 1, 5), "in-progress", "digital", 1), "transactions.stage"),
        (lambda b: b.add_transactions(D(2026, 1, 5), "abandoned", "digital", 1), "transactions.stage"),
        (lambda b: b.add_transactions(D(2026, 1, 5), None, "digital", 1), "transactions.stage"),
        (lambda b: b.add_transactions(D(2026, 1, 5), "started", "digital", -1000), "transactions.count"),
        (lambda b: b.add_transactions(D(2026, 1, 5), "started", "digital", 0), "transactions.count"),
        (lambda b: b.add_transactions(D(2026, 1, 5), "started", "digital", 2.5), "transactions.count"),
        (lambda b: b.add_transactions(D(2026, 1, 5), "started", "digital", True), "transactions.count"),
        (lambda b: b.add_transactions(D(2026, 1, 5), "started", "digital", "three"), "transactions.count"),
        (lambda b: b.add_transactions(D(2026, 1, 5), "started", "digital", 10**10), "transactions.count"),
        (lambda b: b.add_transactions(D(2026, 1, 5), "started", None, 1), "transactions.channel"),
        (lambda b: b.add_satisfaction(D(2026, 1, 5), 7, "digital", 1), "satisfaction.rating"),
        (lambda b: b.add_satisfaction(D(2026, 1, 5), 0, "digital", 1), "satisfaction.rating"),
        (lambda b: b.add_satisfaction(D(2026, 1, 5), 4.5, "digital", 1), "satisfaction.rating"),
        (lambda b: b.add_satisfaction(D(2026, 1, 5), "good", "digital", 1), "satisfaction.rating"),
        (lambda b: b.add_satisfaction(D(2026, 1, 5), 5, "digital", -3), "satisfaction.count"),
        (lambda b: b.add_cost("fortnight", D(2026, 1, 5), "all", "staff", 100), "costs.period"),
        (lambda b: b.add_cost("month", D(2026, 1, 5), "all", "staff", -100), "costs.amount_pence"),
        (lambda b: b.add_cost("month", D(2026, 1, 5), "all", "staff", "£100"), "costs.amount_pence"),
        (lambda b: b.add_cost("month", D(2026, 1, 5), "all", "staff", 10**15), "costs.amount_pence"),
    ],
)
def test_a_value_outside_the_vocabulary_is_skipped_and_counted(add: object, reason: str) -> None:
    b = CountsBuilder()
    b.add_transactions(D(2026, 1, 5), "started", "digital", 4)
    add(b)  # type: ignore[operator]
    built = b.build()
    assert built.skipped == {reason: 1}
    assert built.transactions == {(D(2026, 1, 1), "started", "digital"): 4}
    assert built.satisfaction == {} and built.costs == {}
    report = compute_report(built, period="quarter")
    assert report.skipped == {reason: 1}
    (note,) = report.data_notes
    assert note.startswith(f"1 {reason.split('.', maxsplit=1)[0]} record skipped: ")


def test_numbers_written_as_text_or_whole_floats_are_numbers() -> None:
    b = CountsBuilder()
    b.add_transactions(D(2026, 1, 5), "started", "digital", "3")
    b.add_transactions(D(2026, 1, 5), "started", "digital", 2.0)
    b.add_transactions(D(2026, 1, 5), "started", "digital", " 1,000 ")
    b.add_satisfaction(D(2026, 1, 5), "5", "digital", 1)
    b.add_satisfaction(D(2026, 1, 5), 4.0, "digital", 1)
    b.add_cost("month", D(2026, 1, 5), "all", "staff", "100")
    built = b.build()
    assert built.skipped == {}
    assert built.transactions == {(D(2026, 1, 1), "started", "digital"): 1_005}
    assert built.satisfaction == {(D(2026, 1, 1), 5, "digital"): 1, (D(2026, 1, 1), 4, "digital"): 1}
    assert built.costs == {("month", D(2026, 1, 1), "all", "staff"): 100}


def test_a_sum_of_records_is_checked_as_a_sum_and_skips_all_its_records() -> None:
    b = CountsBuilder()
    b.add_transactions(D(2026, 1, 5), "started", "digital", 5_000_000_000, records=10)  # ten big records: fine
    b.add_transactions(D(2026, 1, 5), "in-progress", "digital", 12, records=4)
    b.add_transactions(D(2026, 2, 5), "completed", "digital", -7, records=3)  # a sum below 0 holds a bad record
    b.add_transactions(D(2026, 2, 5), "completed", "phone", 3, records=2, each=True)  # each of 2 records is 3
    b.add_transactions(D(2026, 2, 5), "completed", "paper", -3, records=2, each=True)
    built = b.build()
    assert built.transactions == {
        (D(2026, 1, 1), "started", "digital"): 5_000_000_000,
        (D(2026, 2, 1), "completed", "phone"): 6,
    }
    assert built.skipped == {"transactions.stage": 4, "transactions.count": 5}


def test_no_skipped_record_reaches_the_figures_and_the_report_says_why() -> None:
    b = CountsBuilder()
    b.add_transactions(D(2026, 1, 5), "started", "digital", 100)
    b.add_transactions(D(2026, 1, 5), "completed", "digital", 80)
    b.add_transactions(D(2026, 1, 5), "completed", "phone", -60)
    b.add_transactions(D(2026, 1, 5), "completed", "paper", 0.5)
    b.add_transactions(D(2026, 1, 5), "completed", "digital", "lots")
    q1 = only(compute_report(b.build(), period="quarter"))
    assert q1.completion_rate == Kpi(0.8, 80, 100)
    assert q1.digital_take_up == Kpi(1.0, 80, 80)
    report = compute_report(b.build(), period="quarter")
    assert report.skipped == {"transactions.count": 3}
    assert report.data_notes == (
        "3 transactions records skipped: its count is not a whole number from 1 to 1,000,000,000 "
        "(e.g. -60, 0.5, 'lots')",
    )


def test_channels_outside_the_vocabulary_count_as_other_so_channels_add_up() -> None:
    b = CountsBuilder()
    b.add_transactions(D(2026, 1, 5), "started", "digital", 100)
    b.add_transactions(D(2026, 1, 5), "completed", "digital", 50)
    b.add_transactions(D(2026, 1, 5), "completed", "web", 30)
    b.add_transactions(D(2026, 1, 5), "completed", "Digital", 20)
    b.add_satisfaction(D(2026, 1, 5), 5, "kiosk", 2)
    built = b.build()
    assert built.relabelled == {"transactions.channel": 2, "satisfaction.channel": 1}
    assert built.skipped == {}
    q1 = only(compute_report(built, period="quarter"))
    completed = {c.channel: c.completed for c in q1.channels}
    assert completed == {"digital": 50, "other": 50}
    assert sum(completed.values()) == q1.digital_take_up.denominator == 100
    assert q1.digital_take_up == Kpi(0.5, 50, 100)
    assert next(c for c in q1.channels if c.channel == "other").user_satisfaction == Kpi(1.0, 2, 2)
    notes = compute_report(built).data_notes
    assert "2 transactions records counted under channel 'other'" in notes[1]
    assert "(e.g. 'web', 'Digital')" in notes[1]


def test_hand_made_counts_with_other_channels_add_up_too() -> None:
    c = counts({(D(2026, 1, 1), "completed", "digital"): 5, (D(2026, 1, 1), "completed", "web"): 5})
    p = only(compute_report(c, period="month"))
    assert [(ch.channel, ch.completed) for ch in p.channels] == [("digital", 5), ("other", 5)]


def test_an_example_is_short_and_only_a_few_are_kept() -> None:
    b = CountsBuilder()
    for n in range(10):
        b.add_transactions(D(2026, 1, 5), f"stage-{n}" * 20, "digital", 1)
    built = b.build()
    assert built.skipped == {"transactions.stage": 10}
    (examples,) = built.examples.values()
    assert len(examples) == 3 and all(len(e) <= 40 for e in examples)


# -- output -------------------------------------------------------------------


def _report() -> KpiReport:
    c = counts(
        {(D(2026, 1, 1), "started", "digital"): 4, (D(2026, 1, 1), "completed", "digital"): 3},
        satisfaction={(D(2026, 1, 1), 5, "digital"): 1},
        costs={("month", D(2026, 1, 1), "all", "staff"): 900},
    )
    return compute_report(c, period="quarter", service="svc")


def test_json_shape_is_api_md() -> None:
    data = json.loads(_report().to_json())
    assert isinstance(data, list)
    first = data[0]
    assert list(first)[:6] == [
        "period",
        "start",
        "completion_rate",
        "user_satisfaction",
        "cost_per_transaction",
        "digital_take_up",
    ]
    assert first["period"] == "quarter"
    assert first["start"] == "2026-01-01"
    assert first["completion_rate"] == {"value": 0.75, "numerator": 3, "denominator": 4}
    assert first["cost_per_transaction"] == {"value": 300.0, "numerator": 900, "denominator": 3}
    assert first["digital_take_up"] == {"value": 1.0, "numerator": 3, "denominator": 3}
    assert first["change"]["completion_rate"] is None


def test_csv_has_a_row_per_period() -> None:
    rows = list(csv.DictReader(io.StringIO(_report().to_csv())))
    assert len(rows) == 1
    assert rows[0]["label"] == "2026-Q1"
    assert float(rows[0]["completion_rate_value"]) == 0.75
    assert rows[0]["completion_rate_change"] == ""


def test_formatting() -> None:
    assert format_value("completion_rate", 0.8) == "80.0%"
    assert format_value("cost_per_transaction", 1234.0) == "£12.34"
    assert format_value("digital_take_up", None) == "unknown"
    assert format_change("user_satisfaction", 0.025) == "up 2.5 percentage points"
    assert format_change("user_satisfaction", -0.01) == "down 1.0 percentage point"
    assert format_change("cost_per_transaction", -50.0) == "down £0.50"
    assert format_change("completion_rate", 0.0) == "no change"
    assert format_change("completion_rate", None) == "no comparison"


# -- honest figures -----------------------------------------------------------


def test_completions_above_starts_are_flagged_never_published() -> None:
    # 16 digital completions against 10 starts: a plain ratio would say 160%
    c = counts({(D(2026, 1, 1), "started", "digital"): 10, (D(2026, 1, 1), "completed", "digital"): 16})
    p = only(compute_report(c, period="quarter"))
    assert p.completion_rate.value is None
    assert p.completion_rate.flag is not None
    assert "16 digital completions but only 10 digital starts" in p.completion_rate.flag
    assert "completion_rate" in p.flags
    data = p.to_dict()
    assert data["completion_rate"]["value"] is None
    assert "cannot be right" in data["completion_rate"]["flag"]
    row = next(csv.DictReader(io.StringIO(compute_report(c, period="quarter").to_csv())))
    assert row["completion_rate_value"] == ""
    assert "cannot be right" in row["completion_rate_flag"]
    # the channel's own rate too
    digital = next(ch for ch in p.channels if ch.channel == "digital")
    assert digital.completion_rate.value is None and digital.completion_rate.flag


def test_current_period_is_partial_and_not_the_headline() -> None:
    c = counts(
        {
            (D(2026, 1, 1), "started", "digital"): 10,
            (D(2026, 1, 1), "completed", "digital"): 8,
            (D(2026, 4, 1), "started", "digital"): 2,
            (D(2026, 4, 1), "completed", "digital"): 2,
        }
    )
    report = compute_report(c, period="quarter", today=D(2026, 4, 20))
    q1, q2 = report.periods
    assert (q1.partial, q2.partial) == (False, True)
    assert report.latest is q2
    assert report.headline is q1
    assert json.loads(report.to_json())[1]["partial"] is True
    # once the quarter is over, it is complete and leads
    later = compute_report(c, period="quarter", today=D(2026, 7, 1))
    assert later.headline is later.periods[-1]


def test_days_and_weeks_need_daily_buckets() -> None:
    b = CountsBuilder("day")
    b.add_transactions(datetime(2026, 3, 2, 9, tzinfo=timezone.utc), "started", "digital", 4)  # a Monday
    b.add_transactions(datetime(2026, 3, 8, 23, tzinfo=timezone.utc), "completed", "digital", 3)  # its Sunday
    b.add_transactions(datetime(2026, 3, 9, 1, tzinfo=timezone.utc), "started", "digital", 5)
    weeks = compute_report(b.build(), period="week")
    assert [(p.label, p.start, p.completion_rate.value) for p in weeks.periods] == [
        ("2026-W10", D(2026, 3, 2), 0.75),
        ("2026-W11", D(2026, 3, 9), 0.0),
    ]
    days = compute_report(b.build(), period="day")
    assert len(days.periods) == 8 and days.periods[0].label == "2026-03-02"
    with pytest.raises(ValidationError, match="daily counts"):
        compute_report(counts({(D(2026, 3, 1), "started", "digital"): 1}), period="week")


def test_completions_without_any_start_are_flagged_too() -> None:
    b = CountsBuilder("day")
    b.add_transactions(datetime(2026, 3, 4, 9, tzinfo=timezone.utc), "completed", "digital", 8)
    p = only(compute_report(b.build(), period="day"))
    assert p.completion_rate.value is None
    assert (
        p.completion_rate.flag is not None and "8 digital completions but no digital starts" in p.completion_rate.flag
    )
    assert p.digital_take_up.value == 1.0 and p.digital_take_up.flag is None


def test_a_channel_with_completions_only_is_unknown_not_flagged() -> None:
    c = counts({(D(2026, 1, 1), "started", "digital"): 10, (D(2026, 1, 1), "completed", "phone"): 30})
    phone = next(ch for ch in only(compute_report(c, period="quarter")).channels if ch.channel == "phone")
    assert (phone.completion_rate.value, phone.completion_rate.flag) == (None, None)
