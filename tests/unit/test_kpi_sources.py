"""KPI sources: the read API (respx), records in memory, and local files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from perf_sdk import ConfigurationError, RetryableError, ValidationError
from perf_sdk._kpi import Kpi
from perf_sdk._kpi_sources import (
    counts_from_records,
    kpis,
    read_records_file,
    resolve_read_settings,
)

BASE = "https://read.perf.example.gov.uk"
SVC = "apply-for-a-licence"
TODAY = date(2026, 3, 15)

RECORDS: list[dict[str, Any]] = [
    {"_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 10},
    {"_timestamp": "2026-02-05T10:00:00+00:00", "stage": "completed", "channel": "digital", "count": 6},
    {"_timestamp": "2026-02-06T10:00:00Z", "stage": "completed", "channel": "phone", "count": 2},
    {"_timestamp": "2026-01-07T10:00:00Z", "rating": 5, "channel": "digital", "count": 3},
    {"_timestamp": "2026-01-07T10:00:00Z", "rating": 2, "channel": "digital", "count": 1},
    {"_timestamp": "2026-01-01T00:00:00Z", "period": "quarter", "amount_pence": 80_000, "cost_type": "staff"},
    {
        "_timestamp": "2026-04-01T00:00:00Z",
        "period": "month",
        "amount_pence": 5,
        "channel": "all",
        "cost_type": "it",
    },
]


def _values(*buckets: tuple[str, int | None]) -> list[dict[str, Any]]:
    out = []
    for start, total in buckets:
        out.append({"_start_at": f"{start}T00:00:00+00:00", "_count": 0 if total is None else 1, "count:sum": total})
    return out


TRANSACTIONS = {
    "data": [
        {
            "stage": "started",
            "channel": "digital",
            "values": _values(("2026-01-01", 10), ("2026-02-01", None)),
        },
        {
            "stage": "completed",
            "channel": "digital",
            "values": _values(("2026-01-01", None), ("2026-02-01", 6)),
        },
        {"stage": "completed", "channel": "phone", "values": _values(("2026-02-01", 2))},
    ]
}
SATISFACTION = {
    "data": [
        {"rating": 5, "channel": "digital", "values": _values(("2026-01-01", 3))},
        {"rating": "2", "channel": "digital", "values": _values(("2026-01-01", 1))},
    ]
}
COSTS = {
    "data": [
        {
            "period": "quarter",
            "channel": "all",
            "cost_type": "staff",
            "values": [
                {"_start_at": "2026-01-01T00:00:00+00:00", "_count": 1, "amount_pence:sum": 80_000},
                {"_start_at": "2026-02-01T00:00:00+00:00", "_count": 0, "amount_pence:sum": None},
            ],
        }
    ]
}


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PERF_SDK_READ_ENDPOINT", "PERF_SDK_ENDPOINT", "PERF_SDK_SERVICE", "PERF_SDK_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api(no_env: None) -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get(f"/data/{SVC}/transactions", name="transactions").respond(json=TRANSACTIONS)
        router.get(f"/data/{SVC}/satisfaction", name="satisfaction").respond(json=SATISFACTION)
        router.get(f"/data/{SVC}/costs", name="costs").respond(json=COSTS)
        yield router


def _query(router: respx.MockRouter, name: str) -> list[tuple[str, str]]:
    return parse_qsl(router[name].calls.last.request.url.query.decode())


def test_read_api_sends_aggregate_queries_only(api: respx.MockRouter) -> None:
    kpis(service=SVC, read_endpoint=BASE, start="2026-01-01", end="2026-03-31", today=TODAY)
    window = [("start_at", "2025-10-01T00:00:00Z"), ("end_at", "2026-04-01T00:00:00Z")]
    assert _query(api, "transactions") == [
        ("period", "month"),
        ("group_by", "stage"),
        ("group_by", "channel"),
        ("collect", "count:sum"),
        *window,
    ]
    assert _query(api, "satisfaction") == [
        ("period", "month"),
        ("group_by", "rating"),
        ("group_by", "channel"),
        ("collect", "count:sum"),
        *window,
    ]
    assert _query(api, "costs") == [
        ("period", "month"),
        ("group_by", "period"),
        ("group_by", "channel"),
        ("group_by", "cost_type"),
        ("collect", "amount_pence:sum"),
        *window,
    ]
    assert "authorization" not in api["costs"].calls.last.request.headers


def test_read_api_numbers(api: respx.MockRouter) -> None:
    report = kpis(service=SVC, read_endpoint=BASE, start="2026-01-01", end="2026-03-31", today=TODAY)
    assert [p.label for p in report.periods] == ["2026-Q1"]
    q1 = report.periods[0]
    assert q1.completion_rate == Kpi(0.6, 6, 10)
    assert q1.digital_take_up == Kpi(0.75, 6, 8)
    assert q1.user_satisfaction == Kpi(0.75, 3, 4)
    assert q1.cost_per_transaction == Kpi(10_000.0, 80_000, 8)
    assert report.service == SVC


def test_read_api_matches_memory_source(api: respx.MockRouter) -> None:
    from_api = kpis(service=SVC, read_endpoint=BASE, start="2026-01-01", end="2026-03-31", today=TODAY)
    from_memory = kpis(records=RECORDS, service=SVC, start="2026-01-01", end="2026-03-31", today=TODAY)
    assert from_api.to_list() == from_memory.to_list()


def test_default_window_is_the_lookback_then_trimmed_to_data(api: respx.MockRouter) -> None:
    report = kpis(service=SVC, read_endpoint=BASE, period="month", today=TODAY)
    query = dict(_query(api, "transactions"))
    assert query["start_at"] == "2023-03-01T00:00:00Z"
    assert query["end_at"] == "2026-04-01T00:00:00Z"
    assert [p.label for p in report.periods] == ["2026-01", "2026-02"]


def test_env_fallbacks_and_token(api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERF_SDK_ENDPOINT", "https://write.example")  # the read endpoint wins
    monkeypatch.setenv("PERF_SDK_READ_ENDPOINT", BASE + "/")
    monkeypatch.setenv("PERF_SDK_SERVICE", SVC)
    report = kpis(token="sekrit", start="2026-01-01", end="2026-03-31", today=TODAY)
    assert report.periods[0].completion_rate.value == 0.6
    assert api["transactions"].calls.last.request.headers["authorization"] == "Bearer sekrit"


def test_resolve_read_settings_order() -> None:
    env = {"PERF_SDK_ENDPOINT": "https://w", "PERF_SDK_SERVICE": "s"}
    assert resolve_read_settings(environ=env).read_endpoint == "https://w"
    assert resolve_read_settings(endpoint="https://e", environ=env).read_endpoint == "https://e"
    env["PERF_SDK_READ_ENDPOINT"] = "https://r"
    assert resolve_read_settings(endpoint="https://e", environ=env).read_endpoint == "https://r"
    assert resolve_read_settings(read_endpoint="https://x", environ=env).read_endpoint == "https://x"
    assert resolve_read_settings(service="t", environ=env).service == "t"


def test_one_missing_data_set_means_no_records_of_that_type(api: respx.MockRouter) -> None:
    api["costs"].respond(404, json={"status": "error", "message": "data set not found"})
    report = kpis(service=SVC, read_endpoint=BASE, start="2026-01-01", end="2026-03-31", today=TODAY)
    q1 = report.periods[0]
    assert q1.cost_per_transaction == Kpi(None, 0, 8)
    assert q1.completion_rate.value == 0.6


def test_all_three_missing_means_an_unknown_service(api: respx.MockRouter) -> None:
    for name in ("transactions", "satisfaction", "costs"):
        api[name].respond(404)
    with pytest.raises(ConfigurationError, match=r"no data sets for service 'apply-for-a-licence'"):
        kpis(service=SVC, read_endpoint=BASE, today=TODAY)


def test_unreachable_platform(no_env: None) -> None:
    with respx.mock(base_url=BASE) as router:
        router.get(f"/data/{SVC}/transactions").mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(RetryableError, match="cannot reach the platform's read API") as info:
            kpis(service=SVC, read_endpoint=BASE, today=TODAY)
    assert info.value.status is None


def test_server_error_is_a_transport_error(api: respx.MockRouter) -> None:
    api["satisfaction"].respond(500, json={"status": "error", "message": "boom"})
    with pytest.raises(RetryableError) as info:
        kpis(service=SVC, read_endpoint=BASE, today=TODAY)
    assert info.value.status == 500


def test_read_api_needs_an_endpoint_and_a_service(no_env: None) -> None:
    with pytest.raises(ConfigurationError, match="PERF_SDK_READ_ENDPOINT"):
        kpis(service=SVC)
    with pytest.raises(ConfigurationError, match="PERF_SDK_SERVICE"):
        kpis(read_endpoint=BASE)
    with pytest.raises(ConfigurationError, match="slug"):
        kpis(read_endpoint=BASE, service="Not A Slug")


def test_source_argument_is_told_apart_by_type(api: respx.MockRouter, tmp_path: Path) -> None:
    class Platform:
        url = BASE

    by_url = kpis(BASE, service=SVC, start="2026-01-01", end="2026-03-31", today=TODAY)
    by_object = kpis(Platform(), service=SVC, start="2026-01-01", end="2026-03-31", today=TODAY)
    by_records = kpis(RECORDS, start="2026-01-01", end="2026-03-31", today=TODAY)
    file = tmp_path / "records.jsonl"
    file.write_text("\n".join(json.dumps(r) for r in RECORDS))
    by_path = kpis(file, start="2026-01-01", end="2026-03-31", today=TODAY)
    by_str = kpis(str(file), start="2026-01-01", end="2026-03-31", today=TODAY)
    first = by_url.to_list()
    assert by_object.to_list() == first
    assert by_records.to_list() == first
    assert by_path.to_list() == first
    assert by_str.to_list() == first


# -- records in memory ----------------------------------------------------------


def test_memory_records_in_mixed_and_typed_form() -> None:
    mixed = counts_from_records(RECORDS)
    typed = counts_from_records(
        {
            "transactions": [r for r in RECORDS if "stage" in r],
            "satisfaction": [r for r in RECORDS if "rating" in r],
            "costs": [r for r in RECORDS if "amount_pence" in r],
        }
    )
    assert mixed == typed
    assert mixed.transactions[(date(2026, 2, 1), "completed", "digital")] == 6
    assert mixed.costs[("quarter", date(2026, 1, 1), "all", "staff")] == 80_000


def test_memory_report_spans_the_data() -> None:
    report = kpis(records=RECORDS, period="month")
    assert [p.label for p in report.periods] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert report.periods[-1].cost_per_transaction == Kpi(None, 5, 0)


def test_financial_year_option() -> None:
    report = kpis(records=RECORDS, period="year", financial_year=True)
    assert [p.label for p in report.periods] == ["2025-26", "2026-27"]
    assert report.kind == "financial-year"
    with pytest.raises(ValidationError):
        kpis(records=RECORDS, period="month", financial_year=True)


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"_timestamp": "2026-01-01T00:00:00Z", "channel": "digital"}, "record"),
        ({"_timestamp": "2026-01-01T00:00:00Z", "stage": "started"}, "channel"),
        ({"_timestamp": "yesterday", "stage": "started", "channel": "digital"}, "_timestamp"),
        ({"_timestamp": "2026-01-01T00:00:00Z", "rating": 9, "channel": "digital"}, "rating"),
        (
            {"_timestamp": "2026-01-01T00:00:00Z", "stage": "started", "channel": "digital", "count": "x"},
            "count",
        ),
        ({"period": "2026-Q9", "amount_pence": 1}, "period"),
    ],
)
def test_bad_records_say_which_field(record: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        counts_from_records([record])
    assert info.value.field == field


def test_bad_period_is_refused_before_any_io(no_env: None) -> None:
    with pytest.raises(ValidationError):
        kpis(read_endpoint="http://127.0.0.1:9", service=SVC, period="fortnight")


# -- local files -----------------------------------------------------------------


def test_csv_file_in_the_backfill_shape(tmp_path: Path) -> None:
    file = tmp_path / "history.csv"
    file.write_text(
        "timestamp,stage,channel,count,rating,period,amount_pence,cost_type\n"
        "2026-01-05T10:00:00Z,started,digital,10,,,,\n"
        "2026-02-05,completed,digital,6,,,,\n"  # a date alone: Europe/London
        "2026-02-06T10:00:00,completed,phone,2,,,,\n"
        "2026-01-07T10:00:00Z,,digital,3,5,,,\n"
        "2026-01-07T10:00:00Z,,digital,1,2,,,\n"
        ",,all,,,2026-Q1,80000,staff\n"
    )
    rows = list(read_records_file(file))
    assert rows[0] == {
        "timestamp": "2026-01-05T10:00:00Z",
        "stage": "started",
        "channel": "digital",
        "count": "10",
    }
    q1 = kpis(path=file, service=SVC).periods[0]
    assert q1.label == "2026-Q1"
    assert q1.completion_rate == Kpi(0.6, 6, 10)
    assert q1.user_satisfaction == Kpi(0.75, 3, 4)
    assert q1.cost_per_transaction == Kpi(10_000.0, 80_000, 8)


def test_naive_file_times_are_uk_local(tmp_path: Path) -> None:
    file = tmp_path / "bst.jsonl"
    # 00:30 on 1 July in London is 23:30 UTC on 30 June: June's bucket, as the platform would store it
    file.write_text('{"timestamp": "2026-07-01T00:30:00", "stage": "started", "channel": "digital"}\n')
    report = kpis(path=file, period="month")
    assert [p.label for p in report.periods] == ["2026-06"]


def test_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"cannot read records file"):
        kpis(path=tmp_path / "nope.csv")
