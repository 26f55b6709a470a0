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

from perf_sdk import ConfigurationError, RejectedError, RetryableError, ValidationError
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
        ("collect", "count:set"),
        ("collect", "count:count"),
        *window,
    ]
    assert _query(api, "satisfaction") == [
        ("period", "month"),
        ("group_by", "rating"),
        ("group_by", "channel"),
        ("collect", "count:sum"),
        ("collect", "count:set"),
        ("collect", "count:count"),
        *window,
    ]
    assert _query(api, "costs") == [
        ("period", "month"),
        ("group_by", "period"),
        ("group_by", "channel"),
        ("group_by", "cost_type"),
        ("collect", "amount_pence:sum"),
        ("collect", "amount_pence:set"),
        *window,
    ]
    assert "authorization" not in api["costs"].calls.last.request.headers
    assert sum(len(api[name].calls) for name in ("transactions", "satisfaction", "costs")) == 3


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
    ("record", "reason"),
    [
        ({"_timestamp": "2026-01-01T00:00:00Z", "channel": "digital"}, "records.type"),
        ({"_timestamp": "2026-01-01T00:00:00Z", "stage": "started"}, "transactions.channel"),
        ({"_timestamp": "yesterday", "stage": "started", "channel": "digital"}, "transactions._timestamp"),
        ({"stage": "started", "channel": "digital"}, "transactions._timestamp"),
        ({"_timestamp": "2026-01-01T00:00:00Z", "rating": 9, "channel": "digital"}, "satisfaction.rating"),
        (
            {"_timestamp": "2026-01-01T00:00:00Z", "stage": "started", "channel": "digital", "count": "x"},
            "transactions.count",
        ),
        (
            {"_timestamp": "2026-01-01T00:00:00Z", "stage": "in-progress", "channel": "digital", "count": 1},
            "transactions.stage",
        ),
        ({"period": "2026-Q9", "amount_pence": 1}, "costs.period"),
        ({"period": "fortnight", "amount_pence": 1, "_timestamp": "2026-01-01T00:00:00Z"}, "costs.period"),
        ({"period": "month", "amount_pence": 1}, "costs._timestamp"),
        ({"period": "month", "amount_pence": 2.5, "_timestamp": "2026-01-01T00:00:00Z"}, "costs.amount_pence"),
    ],
)
def test_a_bad_record_is_skipped_and_counted_never_raised(record: dict[str, Any], reason: str) -> None:
    good = {"_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 3}
    counts = counts_from_records([good, record])
    assert counts.skipped == {reason: 1}
    assert counts.transactions == {(date(2026, 1, 1), "started", "digital"): 3}
    report = kpis(records=[good, record])
    assert report.skipped == {reason: 1} and len(report.data_notes) == 1


def test_a_marker_among_mixed_records_is_neither_counted_nor_skipped() -> None:
    counts = counts_from_records([*RECORDS, {"_timestamp": "2026-01-05T10:00:00Z", "label": "release 1.4"}])
    assert counts == counts_from_records(RECORDS)


def test_a_measure_ignores_values_that_are_no_numbers() -> None:
    from perf_sdk._definition import Measure

    days = Measure(data_type="decisions", field="days")
    calls = Measure(data_type="transactions", where={"stage": "completed"})
    records = {
        "decisions": [
            {"_timestamp": "2026-01-05T10:00:00Z", "days": 4},
            {"_timestamp": "2026-01-05T10:00:00Z", "days": "6"},
            {"_timestamp": "2026-01-05T10:00:00Z", "days": "soon"},
            {"_timestamp": "2026-01-05T10:00:00Z", "days": float("nan")},
            {"_timestamp": "2026-01-05T10:00:00Z", "days": True},
            {"_timestamp": "not a time", "days": 5},
        ],
        "transactions": [
            {"_timestamp": "2026-01-05T10:00:00Z", "stage": "completed", "channel": "digital", "count": 2},
            {"_timestamp": "2026-01-05T10:00:00Z", "stage": "completed", "channel": "digital", "count": -9},
        ],
    }
    counts = counts_from_records(records, measures=(days, calls))
    assert counts.measures == {(date(2026, 1, 1), days.id): (10.0, 2), (date(2026, 1, 1), calls.id): (2.0, 1)}
    assert counts.skipped == {"decisions._timestamp": 1, "transactions.count": 1}


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


# -- odd records on the platform: the read API's sums are checked, and never fail on one record -------------


def test_a_bucket_holding_an_odd_count_is_read_again_value_by_value(api: respx.MockRouter) -> None:
    checked = {
        "data": [
            {
                "stage": "started",
                "channel": "digital",
                "values": [{"_start_at": "2026-01-01T00:00:00+00:00", "_count": 2, "count:sum": 10, "count:set": [5]}],
            },
            {
                "stage": "completed",
                "channel": "digital",
                "values": [
                    {"_start_at": "2026-01-01T00:00:00+00:00", "_count": 3, "count:sum": -494, "count:set": [-500, 3]}
                ],
            },
        ]
    }
    by_value = {
        "data": [
            {"stage": "started", "channel": "digital", "count": 5, "values": _counted(("2026-01-01", 2))},
            {"stage": "completed", "channel": "digital", "count": 3, "values": _counted(("2026-01-01", 2))},
            {"stage": "completed", "channel": "digital", "count": -500, "values": _counted(("2026-01-01", 1))},
        ]
    }
    api["transactions"].side_effect = lambda request: httpx.Response(
        200, json=by_value if ("group_by", "count") in parse_qsl(request.url.query.decode()) else checked
    )
    report = kpis(service=SVC, read_endpoint=BASE, start="2026-01-01", end="2026-03-31", today=TODAY)
    assert report.periods[0].completion_rate == Kpi(0.6, 6, 10)
    assert report.skipped == {"transactions.count": 1}
    assert "(e.g. -500)" in report.data_notes[0]
    assert _query(api, "transactions")[:5] == [
        ("period", "month"),
        ("group_by", "stage"),
        ("group_by", "channel"),
        ("group_by", "count"),
        ("start_at", "2025-10-01T00:00:00Z"),
    ]
    assert len(api["transactions"].calls) == 2 and len(api["satisfaction"].calls) == 1


def _counted(*buckets: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"_start_at": f"{start}T00:00:00+00:00", "_count": n} for start, n in buckets]


def test_text_the_platform_will_not_sum_is_read_value_by_value(api: respx.MockRouter) -> None:
    refused = {"status": "error", "message": "invalid collect function: collect=count:sum needs numbers"}
    by_value = {
        "data": [
            {"rating": 5, "channel": "digital", "count": "3", "values": _counted(("2026-01-01", 1))},
            {"rating": 2, "channel": "digital", "count": 1, "values": _counted(("2026-01-01", 1))},
            {"rating": 7, "channel": "digital", "count": 1, "values": _counted(("2026-01-01", 4))},
            {"rating": 4, "channel": "digital", "count": "many", "values": _counted(("2026-01-01", 2))},
        ]
    }
    api["satisfaction"].side_effect = lambda request: (
        httpx.Response(200, json=by_value)
        if ("group_by", "count") in parse_qsl(request.url.query.decode())
        else httpx.Response(400, json=refused)
    )
    report = kpis(service=SVC, read_endpoint=BASE, start="2026-01-01", end="2026-03-31", today=TODAY)
    assert report.periods[0].user_satisfaction == Kpi(0.75, 3, 4)  # "3" is three answers, as in a CSV file
    assert report.skipped == {"satisfaction.rating": 4, "satisfaction.count": 2}
    from_memory = kpis(records=RECORDS, service=SVC, start="2026-01-01", end="2026-03-31", today=TODAY)
    assert report.to_list() == from_memory.to_list()


def test_a_refusal_of_the_second_read_says_why_both_were_needed(api: respx.MockRouter) -> None:
    api["costs"].respond(400, json={"status": "error", "message": "too many cells: narrow the query"})
    with pytest.raises(RejectedError, match=r"costs holds amount_pence values the platform cannot sum.*too many"):
        kpis(service=SVC, read_endpoint=BASE, today=TODAY)


def test_a_server_error_on_the_checked_read_is_not_read_again(api: respx.MockRouter) -> None:
    api["transactions"].respond(503)
    with pytest.raises(RetryableError):
        kpis(service=SVC, read_endpoint=BASE, today=TODAY)
    assert len(api["transactions"].calls) == 1


def _platform() -> Any:
    import warnings

    with warnings.catch_warnings():  # starlette's note on httpx's future: not this test's business
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from perf_sdk.platform import create_app

    return TestClient(create_app(db=":memory:", token="t"), base_url="http://127.0.0.1")


#: Each value the platform's write API takes (as backdrop does) and the KPIs skip: (data type, fields, reason).
POISON: list[tuple[str, dict[str, Any], str | None]] = [
    ("transactions", {"stage": "in-progress", "channel": "digital", "count": 1}, "transactions.stage"),
    ("transactions", {"stage": "completed", "channel": "web", "count": 1}, None),
    ("satisfaction", {"rating": 7, "channel": "digital", "count": 1}, "satisfaction.rating"),
    ("satisfaction", {"rating": "5", "channel": "digital", "count": 1}, None),
    ("transactions", {"stage": "started", "channel": "digital", "count": "3"}, None),
    ("transactions", {"stage": "started", "channel": "digital", "count": -1000}, "transactions.count"),
    ("transactions", {"stage": "started", "channel": "digital", "count": 2.5}, "transactions.count"),
    ("transactions", {"stage": "started", "channel": "digital", "count": 0}, "transactions.count"),
    ("transactions", {"stage": "started", "channel": "digital", "count": True}, "transactions.count"),
    ("satisfaction", {"rating": 4, "channel": "digital", "count": "lots"}, "satisfaction.count"),
    (
        "costs",
        {"period": "fortnight", "amount_pence": 100, "channel": "all", "cost_type": "staff", "count": 1},
        "costs.period",
    ),
    ("costs", {"period": "month", "amount_pence": "100", "channel": "all", "cost_type": "staff", "count": 1}, None),
    (
        "costs",
        {"period": "month", "amount_pence": -100, "channel": "all", "cost_type": "it", "count": 1},
        "costs.amount_pence",
    ),
]
GOOD: dict[str, list[dict[str, Any]]] = {
    "transactions": [
        {"_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 5},
        {"_timestamp": "2026-02-05T10:00:00Z", "stage": "completed", "channel": "digital", "count": 4},
    ],
    "satisfaction": [{"_timestamp": "2026-01-06T10:00:00Z", "rating": 5, "channel": "digital", "count": 2}],
    "costs": [
        {
            "_timestamp": "2026-01-01T00:00:00Z",
            "period": "quarter",
            "amount_pence": 900,
            "channel": "all",
            "cost_type": "staff",
        }
    ],
}


@pytest.mark.parametrize(("data_type", "fields", "reason"), POISON, ids=[f"{p[0]}-{p[1]}" for p in POISON])
@pytest.mark.parametrize("period", ["quarter", "week"])
def test_one_odd_record_on_the_platform_is_skipped_as_from_records(
    no_env: None, data_type: str, fields: dict[str, Any], reason: str | None, period: str
) -> None:
    odd = {"_timestamp": "2026-02-05T10:00:00Z", "_id": "odd", **fields}
    if data_type == "costs":
        odd["_timestamp"] = "2026-02-01T00:00:00Z"
    records = {k: [*v, odd] if k == data_type else v for k, v in GOOD.items()}
    with _platform() as client:
        for name, items in records.items():
            response = client.post(f"/data/{SVC}/{name}", json=items, headers={"Authorization": "Bearer t"})
            assert response.status_code == 200, response.text
        span = {"start": "2026-01-01", "end": "2026-03-31", "today": TODAY, "period": period}
        from_api = kpis(service=SVC, read_endpoint="http://127.0.0.1", client=client, **span)
    from_records = kpis(records=records, service=SVC, **span)
    assert from_api.to_list() == from_records.to_list()
    assert from_api.skipped == from_records.skipped == ({reason: 1} if reason else {})
    clean = kpis(records=GOOD, service=SVC, **span).to_list()
    if reason:  # skipped: the figures are those without it
        assert from_api.to_list() == clean


@pytest.mark.parametrize("day", ["2026-04-01", date(2026, 4, 1)])
def test_a_date_alone_in_a_british_summer_counts_in_its_own_month_quarter_and_financial_year(day: object) -> None:
    # Read as local midnight, 1 April (BST) was 23:00 UTC on 31 March: a daily total for 1 April counted in
    # March, 2026-Q1 and 2025-26, while the backfill of the same file (noon) put it in April.
    from perf_sdk._kpi_sources import kpis

    records = [
        {"timestamp": day, "stage": "started", "channel": "digital", "count": 100},
        {"timestamp": day, "stage": "completed", "channel": "digital", "count": 80},
        {"timestamp": day, "period": "quarter", "amount_pence": 100_000, "channel": "all", "cost_type": "staff"},
    ]
    for period, financial_year, label in (
        ("month", False, "2026-04"),
        ("quarter", False, "2026-Q2"),
        ("year", True, "2026-27"),
    ):
        [only] = kpis(records=records, period=period, financial_year=financial_year).periods
        assert only.label == label
        assert only.completion_rate.value == 0.8
        assert dict(only.costs_by_type) == ({} if period == "month" else {"staff": 100_000})  # a quarter's cost
