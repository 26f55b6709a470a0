"""The read API: every parameter and response shape, with expected numbers worked by hand.

The data set (UTC; ``f`` was sent at 00:30+01:00, so it falls in March and Q1):

====  ====================  =========  =======  =====
id    _timestamp            stage      channel  count
====  ====================  =========  =======  =====
a     2026-01-05 10:00 Mon  started    digital  3
b     2026-01-11 23:30 Sun  completed  digital  2
c     2026-01-12 00:00 Mon  started    phone    1
d     2026-03-31 23:59:59   completed  phone    4
e     2026-04-01 00:00      started    digital  5
f     2026-03-31 23:30      started    digital  1.5
====  ====================  =========  =======  =====
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from perf_sdk.platform import _query, _store

from .conftest import Platform

RECORDS = [
    {"_id": "a", "_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 3},
    {"_id": "b", "_timestamp": "2026-01-11T23:30:00Z", "stage": "completed", "channel": "digital", "count": 2},
    {"_id": "c", "_timestamp": "2026-01-12T00:00:00Z", "stage": "started", "channel": "phone", "count": 1},
    {"_id": "d", "_timestamp": "2026-03-31T23:59:59Z", "stage": "completed", "channel": "phone", "count": 4},
    {"_id": "e", "_timestamp": "2026-04-01T00:00:00Z", "stage": "started", "channel": "digital", "count": 5},
    {"_id": "f", "_timestamp": "2026-04-01T00:30:00+01:00", "stage": "started", "channel": "digital", "count": 1.5},
]


def _p(start: str, end: str, count: int, total: Any, key: str = "count:sum") -> dict[str, Any]:
    return {"_start_at": f"{start}+00:00", "_end_at": f"{end}+00:00", "_count": count, key: total}


@pytest.fixture
def loaded(platform: Platform) -> Platform:
    platform.write(RECORDS)
    return platform


def test_group_by_only(loaded: Platform) -> None:
    assert loaded.data("group_by=stage&collect=count:sum") == [
        {"stage": "completed", "_count": 2, "count:sum": 6},
        {"stage": "started", "_count": 4, "count:sum": 10.5},
    ]


def test_group_by_without_collect(loaded: Platform) -> None:
    assert loaded.data("group_by=channel") == [
        {"channel": "digital", "_count": 4},
        {"channel": "phone", "_count": 2},
    ]


def test_group_by_two_fields(loaded: Platform) -> None:
    assert loaded.data("group_by=stage&group_by=channel&collect=count:sum") == [
        {"stage": "completed", "channel": "digital", "_count": 1, "count:sum": 2},
        {"stage": "completed", "channel": "phone", "_count": 1, "count:sum": 4},
        {"stage": "started", "channel": "digital", "_count": 3, "count:sum": 9.5},
        {"stage": "started", "channel": "phone", "_count": 1, "count:sum": 1},
    ]


def test_period_and_group_by_with_empty_periods_null(loaded: Platform) -> None:
    query = "group_by=stage&period=quarter&collect=count:sum&start_at=2026-01-01T00:00:00Z&end_at=2026-10-01T00:00:00Z"
    q1, q2, q3 = (
        ("2026-01-01T00:00:00", "2026-04-01T00:00:00"),
        ("2026-04-01T00:00:00", "2026-07-01T00:00:00"),
        ("2026-07-01T00:00:00", "2026-10-01T00:00:00"),
    )
    assert loaded.data(query) == [
        {
            "stage": "completed",
            "_count": 2,
            "_group_count": 1,
            "count:sum": 6,
            "values": [_p(*q1, 2, 6), _p(*q2, 0, None), _p(*q3, 0, None)],
        },
        {
            "stage": "started",
            "_count": 4,
            "_group_count": 2,
            "count:sum": 10.5,
            "values": [_p(*q1, 3, 5.5), _p(*q2, 1, 5), _p(*q3, 0, None)],
        },
    ]


def test_period_alone_spans_the_periods_holding_data(loaded: Platform) -> None:
    assert loaded.data("period=month&collect=count:sum") == [
        _p("2026-01-01T00:00:00", "2026-02-01T00:00:00", 3, 6),
        _p("2026-02-01T00:00:00", "2026-03-01T00:00:00", 0, None),
        _p("2026-03-01T00:00:00", "2026-04-01T00:00:00", 2, 5.5),
        _p("2026-04-01T00:00:00", "2026-05-01T00:00:00", 1, 5),
    ]


def test_weeks_start_on_monday(loaded: Platform) -> None:
    query = "period=week&collect=count:sum&start_at=2026-01-05T00:00:00Z&end_at=2026-01-19T00:00:00Z"
    assert loaded.data(query) == [
        _p("2026-01-05T00:00:00", "2026-01-12T00:00:00", 2, 5),  # a (Mon) and b (Sun 23:30)
        _p("2026-01-12T00:00:00", "2026-01-19T00:00:00", 1, 1),  # c (the next Monday, 00:00)
    ]
    # Without bounds the first week is the Monday before the first record.
    assert loaded.data("period=week")[0]["_start_at"] == "2026-01-05T00:00:00+00:00"


def test_quarter_boundary_is_to_the_second(loaded: Platform) -> None:
    query = "period=quarter&collect=count:sum&start_at=2026-01-01T00:00:00Z&end_at=2026-07-01T00:00:00Z"
    assert loaded.data(query) == [
        _p("2026-01-01T00:00:00", "2026-04-01T00:00:00", 5, 11.5),  # d at 23:59:59 and f (23:30 UTC) included
        _p("2026-04-01T00:00:00", "2026-07-01T00:00:00", 1, 5),
    ]


def test_hour_and_day_and_year(loaded: Platform) -> None:
    hour = "period=hour&collect=count:sum&start_at=2026-03-31T23:00:00Z&end_at=2026-04-01T01:00:00Z"
    assert loaded.data(hour) == [
        _p("2026-03-31T23:00:00", "2026-04-01T00:00:00", 2, 5.5),
        _p("2026-04-01T00:00:00", "2026-04-01T01:00:00", 1, 5),
    ]
    day = (
        "period=day&group_by=channel&filter_by=stage:started&start_at=2026-01-05T00:00:00Z&end_at=2026-01-07T00:00:00Z"
    )
    assert loaded.data(day) == [
        {
            "channel": "digital",
            "_count": 1,
            "_group_count": 1,
            "values": [
                {"_start_at": "2026-01-05T00:00:00+00:00", "_end_at": "2026-01-06T00:00:00+00:00", "_count": 1},
                {"_start_at": "2026-01-06T00:00:00+00:00", "_end_at": "2026-01-07T00:00:00+00:00", "_count": 0},
            ],
        }
    ]
    assert loaded.data("period=year&collect=count:sum") == [_p("2026-01-01T00:00:00", "2027-01-01T00:00:00", 6, 16.5)]


def test_duration_from_start_or_to_end(loaded: Platform) -> None:
    months = loaded.data("period=month&duration=2&start_at=2026-01-01T00:00:00Z")
    assert [(m["_start_at"][:10], m["_count"]) for m in months] == [("2026-01-01", 3), ("2026-02-01", 0)]
    months = loaded.data("period=month&duration=2&end_at=2026-04-01T00:00:00Z")
    assert [(m["_start_at"][:10], m["_count"]) for m in months] == [("2026-02-01", 0), ("2026-03-01", 2)]


def test_duration_alone_counts_back_from_the_current_period() -> None:
    now = datetime(2026, 5, 17, 12, 0, tzinfo=timezone.utc)
    query = _query.parse_query([("period", "month"), ("duration", "3")], now=now)
    assert query.start_at == datetime(2026, 2, 1, tzinfo=timezone.utc)
    assert query.end_at == datetime(2026, 5, 1, tzinfo=timezone.utc)


def test_collect_methods(loaded: Platform) -> None:
    query = "group_by=stage&collect=count:sum&collect=count:count&collect=count:mean&collect=channel:set"
    assert loaded.data(query) == [
        {
            "stage": "completed",
            "_count": 2,
            "count:sum": 6,
            "count:count": 2,
            "count:mean": 3.0,
            "channel:set": ["digital", "phone"],
        },
        {
            "stage": "started",
            "_count": 4,
            "count:sum": 10.5,
            "count:count": 4,
            "count:mean": 2.625,
            "channel:set": ["digital", "phone"],
        },
    ]


def test_bare_collect_is_a_set_under_both_keys(loaded: Platform) -> None:
    assert loaded.data("group_by=stage&collect=channel&filter_by=stage:completed") == [
        {"stage": "completed", "_count": 2, "channel:set": ["digital", "phone"], "channel": ["digital", "phone"]}
    ]


def test_sum_skips_booleans_and_nulls_and_is_null_without_numbers(platform: Platform) -> None:
    platform.write([{"kind": "x", "value": None}, {"kind": "x", "value": True}, {"kind": "y", "value": 2}])
    assert platform.data("group_by=kind&collect=value:sum&collect=value:count&collect=value:set") == [
        {"kind": "x", "_count": 2, "value:sum": None, "value:count": 1, "value:set": [True]},
        {"kind": "y", "_count": 1, "value:sum": 2, "value:count": 1, "value:set": [2]},
    ]


@pytest.mark.parametrize("method", ["sum", "mean"])
def test_sum_or_mean_over_text_is_400_naming_the_field(platform: Platform, method: str) -> None:
    platform.write([{"kind": "x", "value": "3"}, {"kind": "x", "value": 1}])
    response = platform.get(f"group_by=kind&collect=value:{method}")
    assert response.status_code == 400
    assert response.json()["message"] == (
        f"invalid collect function: collect=value:{method} needs numbers, and 'value' holds text"
    )
    assert platform.data("group_by=kind&collect=value:count&collect=value") == [
        {"kind": "x", "_count": 2, "value:count": 2, "value:set": [1, "3"], "value": [1, "3"]}
    ]


def test_values_keep_their_json_types(platform: Platform) -> None:
    platform.write([{"flag": True}, {"flag": 1}, {"flag": "true"}, {"flag": 1.0}, {"flag": False}])
    assert platform.data("group_by=flag") == [
        {"flag": 1, "_count": 1},
        {"flag": 1.0, "_count": 1},
        {"flag": "true", "_count": 1},
        {"flag": False, "_count": 1},
        {"flag": True, "_count": 1},
    ]
    assert sorted(str(r["flag"]) for r in platform.data("filter_by=flag:true")) == ["True", "true"]
    assert sorted(str(r["flag"]) for r in platform.data("filter_by=flag:1")) == ["1", "1.0"]


def test_records_without_a_group_by_field_are_left_out(platform: Platform) -> None:
    platform.write([{"stage": "started"}, {"channel": "phone"}])
    assert platform.data("group_by=stage") == [{"stage": "started", "_count": 1}]


def test_filter_by(loaded: Platform) -> None:
    assert loaded.data("group_by=stage&filter_by=channel:phone&collect=count:sum") == [
        {"stage": "completed", "_count": 1, "count:sum": 4},
        {"stage": "started", "_count": 1, "count:sum": 1},
    ]
    assert [r["_id"] for r in loaded.data("filter_by=count:2")] == ["b"]
    assert [r["_id"] for r in loaded.data("filter_by=count:1.5")] == ["f"]
    assert [r["_id"] for r in loaded.data("filter_by=channel:phone&filter_by=stage:started")] == ["c"]
    assert [r["_id"] for r in loaded.data("filter_by=_id:e")] == ["e"]
    assert loaded.data("filter_by=channel:fax") == []
    assert loaded.data("group_by=stage&filter_by=_id:e") == [{"stage": "started", "_count": 1}]


def test_sort_by_and_limit_on_groups(loaded: Platform) -> None:
    assert loaded.data("group_by=channel&collect=count:sum&sort_by=count:sum:descending&limit=1") == [
        {"channel": "digital", "_count": 4, "count:sum": 11.5}
    ]
    assert [g["channel"] for g in loaded.data("group_by=channel&sort_by=channel:descending")] == ["phone", "digital"]
    query = "group_by=stage&period=year&sort_by=_count:descending"
    assert [g["stage"] for g in loaded.data(query)] == ["started", "completed"]


def test_plain_query_returns_records_in_time_order(loaded: Platform) -> None:
    data = loaded.data()
    assert [r["_id"] for r in data] == ["a", "b", "c", "f", "d", "e"]
    assert data[3] == {
        "_id": "f",
        "_timestamp": "2026-03-31T23:30:00+00:00",
        "channel": "digital",
        "count": 1.5,
        "stage": "started",
    }


def test_plain_query_sort_limit_and_bounds(loaded: Platform) -> None:
    assert [r["_id"] for r in loaded.data("sort_by=count:descending&limit=2")] == ["e", "d"]
    assert [r["_id"] for r in loaded.data("sort_by=_timestamp:descending&limit=1")] == ["e"]
    assert [r["_id"] for r in loaded.data("sort_by=_id:ascending&limit=2")] == ["a", "b"]
    bounds = "start_at=2026-03-31T23:30:00Z&end_at=2026-04-01T00:00:00Z"
    assert [r["_id"] for r in loaded.data(bounds)] == ["f", "d"]


def test_unencoded_plus_in_a_time_is_read_as_plus(loaded: Platform) -> None:
    assert [r["_id"] for r in loaded.data("start_at=2026-04-01T01:00:00+01:00")] == ["e"]


def test_bounds_off_the_hour_read_the_row_table(loaded: Platform) -> None:
    assert loaded.data("group_by=stage&collect=count:sum&start_at=2026-03-31T23:45:00Z") == [
        {"stage": "completed", "_count": 1, "count:sum": 4},
        {"stage": "started", "_count": 1, "count:sum": 5},
    ]


def test_never_written_data_set_is_404(platform: Platform) -> None:
    response = platform.get("group_by=stage", url="/data/svc/nothing")
    assert response.status_code == 404
    assert response.json()["status"] == "error"
    assert platform.get(url="/data/Bad/name").status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "foo=1",
        "group_by=stage&sort=stage",
        "start_at=2026-01-01T00:00:00Z&start_at=2026-01-02T00:00:00Z",
        "start_at=2026-01-01T00:00:00",
        "start_at=2026-01-01",
        "start_at=2026-02-01T00:00:00Z&end_at=2026-01-01T00:00:00Z",
        "period=fortnight",
        "duration=2",
        "period=month&duration=0",
        "period=month&duration=x",
        "period=month&duration=2&start_at=2026-01-01T00:00:00Z&end_at=2026-03-01T00:00:00Z",
        "collect=count:sum",
        "group_by=stage&collect=count:median",
        "group_by=stage&collect=_id",
        "group_by=stage&collect=stage",
        "group_by=_timestamp",
        "group_by=bad-name",
        "group_by=stage&group_by=stage",
        "filter_by=stage",
        "filter_by=_timestamp:x",
        "sort_by=count",
        "sort_by=count:up",
        "period=month&sort_by=_count:descending",
        "group_by=stage&sort_by=count:descending",
        "limit=0",
        "limit=-1",
        "limit=ten",
        "period=hour&start_at=2000-01-01T00:00:00Z&end_at=2020-01-01T00:00:00Z",
        "period=year&start_at=9999-01-01T00:00:00Z&duration=2",
    ],
)
def test_invalid_queries_are_400(loaded: Platform, query: str) -> None:
    response = loaded.get(query)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["messages"] == [body["message"]]


# ------------------------------------------------------------------ rollup and row table agree

AGREEING_QUERIES = [
    "group_by=stage&collect=count:sum",
    "group_by=stage&group_by=channel&period=quarter&collect=count:sum&collect=count:mean",
    "period=week&collect=count:sum&collect=channel:set",
    "period=hour&filter_by=channel:digital&collect=count:count",
    "group_by=channel&period=month&start_at=2026-01-01T00:00:00Z&end_at=2026-06-01T00:00:00Z&collect=count",
    "group_by=stage&filter_by=count:1.5",
]


@pytest.mark.parametrize("query", AGREEING_QUERIES)
def test_rollup_and_row_table_answer_alike(loaded: Platform, query: str, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded.write([{"_id": "untimed", "stage": "started", "channel": "paper", "count": 7}])
    loaded.write([RECORDS[0] | {"count": 30}])  # an upsert the rollup must follow
    served = []
    backend = type(loaded.client.app.state.store)  # type: ignore[attr-defined]
    real = backend._rollup_serves

    def spy(self: _store.Store, *args: Any) -> bool:
        served.append(real(self, *args))
        return served[-1]

    monkeypatch.setattr(backend, "_rollup_serves", spy)
    from_rollup = loaded.data(query)
    assert served == [True]
    monkeypatch.setattr(backend, "_rollup_serves", lambda *args: False)
    assert loaded.data(query) == from_rollup


def test_long_strings_are_not_rollup_dimensions(platform: Platform) -> None:
    txn = "f" * 64  # a hashed transaction id
    platform.write([{"txn": txn, "stage": "started"}, {"txn": "short", "stage": "completed"}])
    store: _store.Store = platform.client.app.state.store  # type: ignore[attr-defined]
    with store._reader() as conn:
        ds = store.dataset_id("svc", "transactions")
        assert ds is not None
        assert not store._rollup_serves(conn, ds, _query.parse_query([("group_by", "txn")]))
        assert store._rollup_serves(conn, ds, _query.parse_query([("group_by", "stage")]))
        (dims,) = conn.execute("SELECT dims FROM rollup WHERE dims LIKE '%started%'").fetchone()
    assert dims == '{"stage":"started"}'
    assert platform.data("group_by=txn") == [{"txn": txn, "_count": 1}, {"txn": "short", "_count": 1}]
    assert platform.data("group_by=stage") == [{"stage": "completed", "_count": 1}, {"stage": "started", "_count": 1}]


def test_sums_past_64_bits_fall_back_to_floats(platform: Platform) -> None:
    big = 2**62
    platform.write([{"nn": big, "gg": "x"}, {"nn": big, "gg": "x"}, {"nn": big, "gg": "x"}])
    assert platform.data("group_by=gg&collect=nn:sum") == [{"gg": "x", "_count": 3, "nn:sum": float(3 * big)}]
