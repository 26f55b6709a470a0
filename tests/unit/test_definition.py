"""The performance definition (perf-sdk.toml): parsing, errors that name the line, and what it adds to KPIs."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from perf_sdk._definition import DefinitionError, Target, load_definition, parse_definition
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


_SUM_KPI = '[kpis.a_b]\nname = "n"\ndefinition = "d"\nwhy = "w"\ncompute = "sum"\nof = {data_type = "o"}\n'
_RATIO_KPI = (
    '[kpis.a_b]\nname = "n"\ndefinition = "d"\nwhy = "w"\ncompute = "ratio"\n'
    'numerator = {data_type = "outcomes"}\ndenominator = {data_type = "transactions"}\n'
)


def test_a_cost_target_with_min_pence_above_max_pence_is_refused_at_load() -> None:
    # it loaded, then every report crashed with a raw pydantic traceback building the Target
    with pytest.raises(DefinitionError) as caught:
        parse_definition("[targets]\n\ncost_per_transaction = {max_pence = 100, min_pence = 5000}\n")
    assert caught.value.line == 3, str(caught.value)
    message = str(caught.value)
    assert "targets.cost_per_transaction" in message
    assert "min_pence (5000) is above max_pence (100)" in message
    assert "must not exceed" in message


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("[targets]\ncompletion_rate = {min = true}\n", 2, "targets.completion_rate.min: min = true is true/false"),
        ("[targets]\ncompletion_rate = {min = false}\n", 2, "min = false is true/false, not a number"),
        ('[targets]\ncompletion_rate = {min = "0.8"}\n', 2, 'min = "0.8" is text, not a number'),
        ("[targets]\ncost_per_transaction = {max_pence = true}\n", 2, "e.g. max_pence = 2500"),
        ('[targets]\ncost_per_transaction = {min_pence = "5"}\n', 2, "write a number, without quotes"),
        (_SUM_KPI + "target = {max = true}\n", 7, "kpis.a_b.target.max: max = true is true/false"),
        ('[checks]\nmax_silence_hours = {transactions = "24"}\n', 2, "checks.max_silence_hours.transactions"),
        ("[checks]\nmin_answers = true\n", 2, "min_answers = true is true/false, not a number"),
        ("[checks]\nbaseline_periods = false\n", 2, "baseline_periods = false is true/false"),
        ('[checks]\nconfidence = "0.95"\n', 2, 'confidence = "0.95" is text, not a number'),
        ("[checks]\nmax_spool_age_minutes = true\n", 2, "max_spool_age_minutes = true is true/false"),
    ],
)
def test_true_false_or_text_where_a_number_belongs_is_refused(text: str, line: int, words: str) -> None:
    # pydantic's lax mode read min = true as 1.0 (100%), max_pence = true as 1p, and "0.8" as 0.8
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, source="perf-sdk.toml")
    assert caught.value.line == line, str(caught.value)
    assert words in str(caught.value)


def test_numbers_still_load_where_numbers_belong() -> None:
    d = parse_definition(
        "[targets]\ncompletion_rate = {min = 1}\ncost_per_transaction = {max_pence = 2500}\n"
        "[checks]\nmax_silence_hours = {transactions = 12}\nconfidence = 0.95\nmin_answers = 10\n"
    )
    assert d.targets.completion_rate is not None and d.targets.completion_rate.min == 1.0
    assert d.targets.cost_per_transaction is not None and d.targets.cost_per_transaction.max_pence == 2500
    assert d.checks.max_silence_hours == {"transactions": 12.0}
    assert (d.checks.confidence, d.checks.min_answers) == (0.95, 10)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            _RATIO_KPI + "target = {min = 80}\n",
            8,
            "kpis.a_b.target: min = 80: a percent KPI's target is a fraction: write 0.80",
        ),
        (_RATIO_KPI + "target = {min = -5}\n", 8, "write a number from 0 to 1 (0.80 for 80%), not -5"),
        (_RATIO_KPI + 'unit = "percent"\ntarget = {max = 1.5}\n', 9, "max = 1.5: a percent KPI's target is a fraction"),
        (_SUM_KPI + 'unit = "percent"\ntarget = {min = 80}\n', 8, "write 0.80 (for 80%), not 80"),
    ],
)
def test_a_percent_kpi_target_must_be_a_fraction(text: str, line: int, words: str) -> None:
    # min = 80 was shown as "at least 8000.0%" and never met; min = -5 was always met
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, source="perf-sdk.toml")
    assert caught.value.line == line, str(caught.value)
    assert words in str(caught.value)


def test_a_target_that_is_not_a_percent_is_not_a_fraction() -> None:
    d = parse_definition(_RATIO_KPI + 'unit = "calls"\ntarget = {min = 80}\n' + "")
    assert d.kpis[0].target is not None and d.kpis[0].target.min == 80
    d = parse_definition(_SUM_KPI + "target = {max = 5000}\n")
    assert d.kpis[0].target is not None and d.kpis[0].target.max == 5000
    assert parse_definition(_RATIO_KPI + "target = {min = 0.9}\n").kpis[0].target is not None


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('service = "svc\\n"\n', 1, "service 'svc\\n' is not a data-group slug"),
        (_SUM_KPI.replace('data_type = "o"', 'data_type = "decisions\\n"'), 6, "kpis.a_b.of.data_type"),
        (_SUM_KPI.replace('data_type = "o"', 'data_type = "o", field = "days\\n"'), 6, "kpis.a_b.of.field"),
        (
            _SUM_KPI.replace('data_type = "o"', 'data_type = "o", where = {"kind\\n" = "full"}'),
            6,
            "where key 'kind\\n'",
        ),
        ('[checks]\nmax_silence_hours = {"transactions\\n" = 24}\n', 2, "max_silence_hours key 'transactions\\n'"),
        (
            '[kpis."a_b\\n"]\nname = "n"\ndefinition = "d"\nwhy = "w"\ncompute = "sum"\nof = {data_type = "o"}\n',
            None,
            "a KPI key is",
        ),
    ],
)
def test_a_name_with_a_trailing_newline_is_refused(text: str, line: int | None, words: str) -> None:
    # "$" matched before a trailing newline: "days\n" loaded, matched no record, and the KPI was silently unknown
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, source="perf-sdk.toml")
    if line is not None:
        assert caught.value.line == line, str(caught.value)
    assert words in str(caught.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_value_that_is_not_finite_is_neither_met_nor_missed(value: float) -> None:
    # nan compares false with every bound, so it "met" any target
    assert Target(min=0.5).verdict(value) == "unknown"
    assert Target(max=0.5).verdict(value) == "unknown"
    assert Target(min=0.1, max=0.9).verdict(value) == "unknown"
    assert Target(min=0.5).verdict(0.6) == "met"
    assert Target(max=0.5).verdict(0.6) == "missed"


def test_a_value_that_is_not_finite_has_an_unknown_target() -> None:
    # NaN compares false with every bound: a KPI of NaN (days summing +1e308 twice, then -1e308 twice) was "met".
    target = Target(max=100_000)
    assert [target.verdict(v) for v in (math.nan, math.inf, -math.inf)] == ["unknown"] * 3
    assert target.verdict(5.0) == "met" and Target(min=0.8).verdict(0.5) == "missed"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (_SUM_KPI.replace('name = "n"', 'name = "   "'), 2, "kpis.a_b.name: name = '   ' is blank: write it in words"),
        (_SUM_KPI.replace('name = "n"', 'name = ""'), 2, "kpis.a_b.name: name = '' is blank"),
        (_SUM_KPI.replace('definition = "d"', 'definition = "\\t"'), 3, "kpis.a_b.definition"),
        (_SUM_KPI.replace('why = "w"', 'why = " "'), 4, "kpis.a_b.why"),
        (_SUM_KPI + 'unit = "  "\n', 7, "kpis.a_b.unit: unit = '  ' is blank: write it in words, or remove the key"),
        ('title = "   "\n', 1, "title: title = '   ' is blank"),
        ('organisation = " "\n', 1, "organisation: organisation = ' ' is blank"),
    ],
)
def test_blank_text_is_refused_where_words_are_needed(text: str, line: int, words: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, source="perf-sdk.toml")
    assert caught.value.line == line, str(caught.value)
    assert words in str(caught.value)
