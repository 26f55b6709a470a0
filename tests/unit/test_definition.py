"""The performance definition (perf-sdk.toml): parsing, errors that name the line, and what it adds to KPIs."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from perf_sdk._definition import DefinitionError, load_definition, parse_definition
from perf_sdk._kpi_sources import kpis

DEFINITION = """\
title = "Apply for a licence"
organisation = "Department for Licences"

[targets]
completion_rate = {min = 0.80}
user_satisfaction = {min = 0.75}
digital_take_up = {min = 0.60}
cost_per_transaction = {max_pence = 2500, period = "quarter"}

[kpis.completed_without_a_call]
name = "Completed without a call"
definition = "Completed applications whose applicant never phoned the contact centre."
why = "A call costs £8 and means the online service left a question unanswered."
compute = "ratio"
numerator = {data_type = "outcomes", where = {called = false}}
denominator = {data_type = "transactions", where = {stage = "completed"}}
target = {min = 0.9}

[kpis.refunds_paid]
name = "Refunds paid"
definition = "Money refunded to applicants."
why = "Refunds are failure demand."
compute = "sum"
of = {data_type = "refunds", field = "amount_pence"}
unit = "pence"

[kpis.days_to_decision]
name = "Days to a decision"
definition = "Working days from application to decision, on average."
why = "Applicants plan around it."
compute = "mean"
of = {data_type = "decisions", field = "days"}
unit = "days"
target = {max = 10}
"""


def _ts(day: int) -> str:
    return f"2026-01-{day:02d}T10:00:00Z"


def _records() -> dict[str, list[dict[str, Any]]]:
    """Q1 2026, worked by hand below."""
    return {
        "transactions": [
            {"_timestamp": _ts(5), "stage": "started", "channel": "digital", "count": 10},
            {"_timestamp": _ts(6), "stage": "completed", "channel": "digital", "count": 7},
            {"_timestamp": _ts(6), "stage": "completed", "channel": "phone", "count": 3},
        ],
        "satisfaction": [{"_timestamp": _ts(7), "rating": 5, "channel": "digital", "count": 4}],
        "costs": [
            {
                "_timestamp": "2026-01-01T00:00:00Z",
                "period": "quarter",
                "amount_pence": 30_000,
                "channel": "all",
                "cost_type": "it",
            }
        ],
        # 10 completed; outcomes: 8 without a call (6 + 2), 2 with one
        "outcomes": [
            {"_timestamp": _ts(8), "called": False, "count": 6},
            {"_timestamp": _ts(9), "called": False, "count": 2},
            {"_timestamp": _ts(9), "called": True, "count": 2},
        ],
        "refunds": [
            {"_timestamp": _ts(10), "amount_pence": 1_500, "count": 1},
            {"_timestamp": _ts(11), "amount_pence": 2_250, "count": 1},
        ],
        "decisions": [
            {"_timestamp": _ts(12), "days": 4, "count": 1},
            {"_timestamp": _ts(13), "days": 9, "count": 1},
            {"_timestamp": _ts(14), "days": 14, "count": 1},
        ],
    }


def test_parses_targets_and_other_kpis() -> None:
    d = parse_definition(DEFINITION)
    assert d.title == "Apply for a licence"
    assert d.organisation == "Department for Licences"
    assert d.targets.completion_rate is not None and d.targets.completion_rate.min == 0.80
    assert d.targets.cost_per_transaction is not None and d.targets.cost_per_transaction.max_pence == 2500
    assert [k.key for k in d.kpis] == ["completed_without_a_call", "refunds_paid", "days_to_decision"]
    assert [k.compute for k in d.kpis] == ["ratio", "sum", "mean"]
    assert len(d.measures()) == 4


def test_other_kpis_from_custom_records_match_a_hand_computation() -> None:
    report = kpis(records=_records(), definition=parse_definition(DEFINITION), today=date(2026, 6, 1))
    (q1,) = report.periods
    other = {o.key: o for o in q1.other}
    # ratio: 8 outcomes without a call / 10 completed transactions
    assert (other["completed_without_a_call"].kpi.numerator, other["completed_without_a_call"].kpi.denominator) == (
        8,
        10,
    )
    assert other["completed_without_a_call"].kpi.value == pytest.approx(0.8)
    assert other["completed_without_a_call"].target is not None
    assert other["completed_without_a_call"].target.status == "missed"  # 80% < 90%
    # sum: 1,500 + 2,250 pence
    assert other["refunds_paid"].kpi.value == 3_750
    assert other["refunds_paid"].formatted() == "£37.50"
    # mean: (4 + 9 + 14) / 3 = 9 days
    assert other["days_to_decision"].kpi.value == pytest.approx(9.0)
    assert other["days_to_decision"].target is not None and other["days_to_decision"].target.status == "met"
    # the four's targets: completion 7/10 = 70% missed; satisfaction 100% met; take-up 70% met;
    # cost £300 / 10 = £30.00 > £25.00 missed
    assert {k: t.status for k, t in q1.targets.items()} == {
        "completion_rate": "missed",
        "user_satisfaction": "met",
        "cost_per_transaction": "missed",
        "digital_take_up": "met",
    }


def test_targets_and_other_kpis_in_json_and_csv() -> None:
    report = kpis(records=_records(), definition=parse_definition(DEFINITION), today=date(2026, 6, 1))
    data = json.loads(report.to_json())[0]
    assert data["targets"]["completion_rate"]["status"] == "missed"
    assert data["targets"]["completion_rate"]["text"] == "at least 80.0%"
    assert data["other_kpis"]["days_to_decision"]["value"] == pytest.approx(9.0)
    assert data["partial"] is False
    csv_text = report.to_csv()
    header = csv_text.splitlines()[0].split(",")
    assert "completion_rate_target" in header and "days_to_decision_value" in header
    row = dict(zip(header, csv_text.splitlines()[1].split(","), strict=True))
    assert row["completion_rate_target"] == "missed"
    assert row["refunds_paid_value"] == "3750.0"


def test_a_target_for_another_period_kind_is_left_out() -> None:
    report = kpis(records=_records(), definition=parse_definition(DEFINITION), period="month", today=date(2026, 6, 1))
    assert "cost_per_transaction" not in report.periods[0].targets  # set for quarters
    assert report.periods[0].targets["completion_rate"].status == "missed"


def test_unknown_value_gives_unknown_verdict() -> None:
    records = {"transactions": [{"_timestamp": _ts(5), "stage": "completed", "channel": "phone", "count": 2}]}
    report = kpis(records=records, definition=parse_definition(DEFINITION), today=date(2026, 6, 1))
    assert report.periods[0].targets["completion_rate"].status == "unknown"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[targets]\ncompletion_rate = {min = 80}\n", 2, "write 0.80 (for 80%)"),
        ("[targets]\n\ncompletion_rat = {min = 0.8}\n", 3, "did you mean 'completion_rate'"),
        ('[targets]\ncost_per_transaction = {max_pence = 2500, period = "quartr"}\n', 2, "write one of 'day'"),
        ("[targets]\ncost_per_transaction = {max = 25}\n", 2, "did you mean"),
        ('title = "x"\n[kpis.a_b]\nname = "n"\ndefinition = "d"\ncompute = "ratio"\n', 2, "why is required"),
        (
            '[kpis.a_b]\nname = "n"\ndefinition = "d"\nwhy = "w"\ncompute = "median"\n',
            5,
            "write one of 'ratio', 'sum' or 'mean'",
        ),
        (
            '[kpis.a_b]\nname = "n"\ndefinition = "d"\nwhy = "w"\ncompute = "mean"\n',
            1,
            'needs of: write e.g. of = {data_type = "decisions"',
        ),
        ("[targets\n", 1, "not valid TOML"),
        ('[checks]\nmin_answers = "many"\n', 2, "write a number, without quotes"),
        ("[targets]\ncompletion_rate = 0.8\n", 2, "must be a table: write completion_rate = {min = 0.80}"),
        ("kpis = 3\n", 1, "write one [kpis.<key>] table"),
        (
            '[kpis.a_b]\nname = "n"\ndefinition = "d"\nwhy = "w"\ncompute = "sum"\nof = {data_type = "o", where = {x = [1]}}\n',
            6,
            "where.x: write text, a number or true/false",
        ),
        (
            'title = "x"\n\n[kpis.completion_rate]\nname = "n"\ndefinition = "d"\nwhy = "w"\ncompute = "sum"\n'
            'of = {data_type = "t"}\n',
            3,
            "that is one of the four; set its target in [targets]",
        ),
        (  # exported as satisfaction_score_* beside the four: another KPI's figures replaced the official score
            '[kpis.satisfaction_score]\nname = "n"\ndefinition = "d"\nwhy = "w"\ncompute = "sum"\nof = {data_type = "t"}\n',
            1,
            "the SDK's own weighted satisfaction score; give this KPI another key",
        ),
    ],
)
def test_errors_name_the_line_and_what_to_write(text: str, line: int, words: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, source="perf-sdk.toml")
    assert caught.value.line == line, str(caught.value)
    assert f"perf-sdk.toml, line {line}" in str(caught.value)
    assert words in str(caught.value)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="no such file"):
        load_definition(tmp_path / "perf-sdk.toml")


def test_kpis_reads_a_definition_path(tmp_path: Path) -> None:
    path = tmp_path / "perf-sdk.toml"
    path.write_text(DEFINITION, encoding="utf-8")
    report = kpis(records=_records(), definition=path, today=date(2026, 6, 1))
    assert report.title == "Apply for a licence"
    assert report.periods[0].targets


def test_the_source_path_is_not_a_key_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "perf-sdk.toml"
    path.write_text('title = "x"\n')
    assert load_definition(path).source == str(path)
    with pytest.raises(DefinitionError, match="unknown key 'source'"):
        parse_definition('source = "elsewhere"\n')


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[checks]\nmax_silence_hours = {transactions = nan}\n", 2, "max_silence_hours.transactions = nan"),
        ("[checks]\nmax_silence_hours = {transactions = inf}\n", 2, "a number of hours above 0"),
        ("[checks]\nmax_silence_hours = {transactions = -inf}\n", 2, "a number of hours above 0"),
        ("[checks]\nmax_silence_hours = {transactions = 0}\n", 2, "a number of hours above 0"),
        ("\n[checks]\nmax_spool_age_minutes = inf\n", 3, "checks.max_spool_age_minutes"),
        ("[targets]\ncompletion_rate = {min = nan}\n", 2, "write a finite number"),
        (
            '[kpis.a_b]\nname = "n"\ndefinition = "d"\nwhy = "w"\ncompute = "sum"\nof = {data_type = "o"}\n'
            "target = {max = nan}\n",
            7,
            "write a finite number",
        ),
    ],
)
def test_a_number_that_is_not_finite_is_refused_naming_the_line(text: str, line: int, words: str) -> None:
    # nan compares false with everything: max_silence_hours = nan would never fire, a target of nan always be met
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, source="perf-sdk.toml")
    assert caught.value.line == line, str(caught.value)
    assert words in str(caught.value)


def test_a_byte_order_mark_is_not_part_of_the_toml(tmp_path: Path) -> None:
    path = tmp_path / "perf-sdk.toml"
    path.write_bytes(b"\xef\xbb\xbf" + DEFINITION.encode("utf-8"))
    assert load_definition(path).title == "Apply for a licence"
    assert parse_definition("\ufefftitle = 'x'\n").title == "x"


@pytest.mark.parametrize("text", ["a = " + "[" * 5000 + "]" * 5000 + "\n", "a = " + "{b = " * 3000 + "1" + "}" * 3000])
def test_a_file_nested_thousands_deep_is_a_definition_error_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(text)
    with pytest.raises(DefinitionError, match=r"deep\.toml: nested too deeply"):
        load_definition(path)
