"""Backdrop's behaviour where its own behave suite looks, each capability in our own words.

The data set ``svc/licensing`` below is small enough to work every answer by hand
(UTC; 2012-12-10 and 2012-12-17 are Mondays):

====  ===================  ===========  =========  =====
id    _timestamp           authority    licence    value
====  ===================  ===========  =========  =====
1     2012-12-04 09:00     Westminster  cats       3
2     2012-12-12 01:00     Westminster  events     5
3     2012-12-12 02:00     Camden       events     7
4     2012-12-13 01:00     Westminster  events     1
5     2012-12-14 01:00     Westminster  cats       2
====  ===================  ===========  =========  =====
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from perf_sdk import ConfigurationError
from perf_sdk.platform import create_app
from perf_sdk.platform._datasets import PlatformConfig, ServiceConfig

URL = "/data/svc/licensing"
RECORDS = [
    {"_id": "1", "_timestamp": "2012-12-04T09:00:00Z", "authority": "Westminster", "licence": "cats", "value": 3},
    {"_id": "2", "_timestamp": "2012-12-12T01:00:00Z", "authority": "Westminster", "licence": "events", "value": 5},
    {"_id": "3", "_timestamp": "2012-12-12T02:00:00Z", "authority": "Camden", "licence": "events", "value": 7},
    {"_id": "4", "_timestamp": "2012-12-13T01:00:00Z", "authority": "Westminster", "licence": "events", "value": 1},
    {"_id": "5", "_timestamp": "2012-12-14T01:00:00Z", "authority": "Westminster", "licence": "cats", "value": 2},
]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2013, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def _config(**settings: Any) -> dict[str, Any]:
    return {
        "admin_token": "admin-secret",
        "services": {
            "svc": {
                "title": "Apply for a licence",
                "organisation": "Licensing Office",
                "description": "Licences for events",
                "start_date": "2012-04-01",
            }
        },
        "data_sets": {"svc/licensing": {"token": "write-secret", "name": "licensing", **settings}},
    }


class Client:
    def __init__(self, client: TestClient, clock: Clock) -> None:
        self.http = client
        self.clock = clock

    def write(self, records: Any) -> None:
        response = self.http.post(URL, json=records, headers={"Authorization": "Bearer write-secret"})
        assert response.status_code == 200, response.text

    def get(self, query: str = "", **headers: str) -> Any:
        return self.http.get(f"{URL}?{query}", headers=headers)

    def data(self, query: str = "") -> list[dict[str, Any]]:
        response = self.get(query)
        assert response.status_code == 200, response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    def refused(self, query: str) -> str:
        response = self.get(query)
        assert response.status_code == 400, response.text
        return response.json()["message"]  # type: ignore[no-any-return]


def _client(db: str = ":memory:", **settings: Any) -> Iterator[Client]:
    clock = Clock()
    app = create_app(db=db, config=_config(**settings), clock=clock)
    with TestClient(app) as http:
        client = Client(http, clock)
        client.write(RECORDS)
        yield client
    app.state.store.close()


@pytest.fixture
def raw(platform_db: str) -> Iterator[Client]:
    yield from _client(platform_db, raw_queries_allowed=True)


@pytest.fixture
def strict(platform_db: str) -> Iterator[Client]:
    yield from _client(platform_db, raw_queries_allowed=False)


# ------------------------------------------------------------------ filters


def test_filter_by_prefix_matches_the_start_of_text(raw: Client) -> None:
    assert [r["_id"] for r in raw.data("filter_by_prefix=authority:Westm")] == ["1", "2", "4", "5"]
    assert raw.data("group_by=licence&filter_by_prefix=authority:Cam&collect=value:sum") == [
        {"licence": "events", "_count": 1, "value:sum": 7}
    ]


def test_filter_by_prefix_is_literal_not_a_pattern(raw: Client) -> None:
    raw.write({"_id": "6", "authority": "W.*", "licence": "x"})
    assert raw.data("filter_by_prefix=authority:.*") == []
    assert raw.data("filter_by_prefix=authority:%25") == []
    assert [r["_id"] for r in raw.data("filter_by_prefix=authority:W.")] == ["6"]


def test_filter_by_and_filter_by_prefix_together_is_400(raw: Client) -> None:
    message = raw.refused("filter_by=licence:cats&filter_by_prefix=authority:W")
    assert message == "Cannot use both filter_by and filter_by_prefix in the same query"


@pytest.mark.parametrize("param", ["filter_by", "filter_by_prefix"])
def test_a_field_starting_with_dollar_is_400(raw: Client, param: str) -> None:
    assert raw.refused(f"{param}=$where:function(){{}}") == f"{param} must not start with a $"


# ------------------------------------------------------------------ flatten, inclusive


def test_flatten_lists_each_period_and_group_with_empty_ones_filled(raw: Client) -> None:
    data = raw.data(
        "period=week&group_by=authority&start_at=2012-12-03T00:00:00Z&end_at=2012-12-17T00:00:00Z"
        "&collect=value:sum&flatten=true"
    )
    week1, week2 = "2012-12-03T00:00:00+00:00", "2012-12-10T00:00:00+00:00"
    assert data == [
        {"authority": "Camden", "_start_at": week1, "_end_at": week2, "_count": 0, "value:sum": None},
        {"authority": "Westminster", "_start_at": week1, "_end_at": week2, "_count": 1, "value:sum": 3},
        {
            "authority": "Camden",
            "_start_at": week2,
            "_end_at": "2012-12-17T00:00:00+00:00",
            "_count": 1,
            "value:sum": 7,
        },
        {
            "authority": "Westminster",
            "_start_at": week2,
            "_end_at": "2012-12-17T00:00:00+00:00",
            "_count": 3,
            "value:sum": 8,
        },
    ]


def test_flatten_must_be_true_or_false(raw: Client) -> None:
    assert raw.refused("group_by=authority&flatten=yes") == "flatten must be either 'true' or 'false'"


def test_inclusive_takes_a_record_exactly_at_end_at(raw: Client) -> None:
    bounds = "start_at=2012-12-12T01:00:00Z&end_at=2012-12-13T01:00:00Z"
    assert [r["_id"] for r in raw.data(bounds)] == ["2", "3"]
    assert [r["_id"] for r in raw.data(bounds + "&inclusive=true")] == ["2", "3", "4"]
    assert raw.data(f"group_by=licence&{bounds}&inclusive=true") == [{"licence": "events", "_count": 3}]


def test_inclusive_needs_a_bound(raw: Client) -> None:
    assert "inclusive can be used only with" in raw.refused("inclusive=true")


# ------------------------------------------------------------------ relative ranges


def test_duration_from_start_at_moves_forward_to_the_first_data(raw: Client) -> None:
    # Six weeks from 5 November hold nothing until the week of 3 December: the range moves 4 weeks on.
    data = raw.data("period=week&start_at=2012-11-05T00:00:00Z&duration=6")
    assert len(data) == 6
    assert [(d["_start_at"][:10], d["_count"]) for d in data[:3]] == [
        ("2012-12-03", 1),
        ("2012-12-10", 4),
        ("2012-12-17", 0),
    ]


def test_duration_back_from_end_at_moves_back_to_the_last_data(raw: Client) -> None:
    # Ten weeks back from 4 February reach the data in their fourth week; the range moves 7 weeks back.
    data = raw.data("period=week&end_at=2013-02-04T00:00:00Z&duration=10")
    assert len(data) == 10
    assert [(d["_start_at"][:10], d["_count"]) for d in data[-3:]] == [
        ("2012-11-26", 0),
        ("2012-12-03", 1),
        ("2012-12-10", 4),
    ]


def test_duration_alone_counts_back_from_now_and_moves_to_the_data(raw: Client) -> None:
    data = raw.data("period=day&duration=20")  # now is 2013-01-01: back to the last day with data
    assert [(d["_start_at"][:10], d["_count"]) for d in data[-2:]] == [("2012-12-13", 1), ("2012-12-14", 1)]


def test_grouped_relative_query_moves_by_the_smallest_move_of_any_group(raw: Client) -> None:
    data = raw.data("period=day&start_at=2012-12-10T00:00:00Z&duration=4&group_by=authority")
    assert [(d["authority"], d["_count"], d["values"][0]["_start_at"][:10]) for d in data] == [
        ("Camden", 1, "2012-12-12"),
        ("Westminster", 3, "2012-12-12"),
    ]


def test_a_relative_range_without_data_does_not_move(raw: Client) -> None:
    data = raw.data("period=week&start_at=2012-11-05T00:00:00Z&duration=3")
    assert [(d["_start_at"][:10], d["_count"]) for d in data] == [
        ("2012-11-05", 0),
        ("2012-11-12", 0),
        ("2012-11-19", 0),
    ]


def test_absolute_ranges_do_not_move(raw: Client) -> None:
    data = raw.data("period=week&start_at=2012-11-05T00:00:00Z&end_at=2012-11-19T00:00:00Z")
    assert [d["_count"] for d in data] == [0, 0]


# ------------------------------------------------------------------ validation as backdrop's


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "period=week&limit=1&start_at=2012-12-03T00:00:00Z&end_at=2012-12-17T00:00:00Z",
            "A period query can only be limited if it is grouped - please add 'group_by'",
        ),
        ("period=week&duration=0", "duration must be a positive integer"),
        (
            "duration=2",
            "If 'duration' is requested (for relative time), 'period' is required - "
            "please add a period (like 'day', 'month' etc)",
        ),
        (
            "period=week&start_at=2012-12-03T00:00:00Z&end_at=2012-12-17T00:00:00Z&duration=2",
            "Absolute and relative time cannot be requested at the same time - either ask for 'start_at' and "
            "'end_at', or ask for 'start_at'/'end_at' with 'duration'",
        ),
        ("period=fortnight", "'period' must be one of hour, day, week, month, quarter, year"),
        ("format=xml", "format must be one of json, csv"),
    ],
)
def test_backdrop_query_rules_on_every_data_set(raw: Client, query: str, message: str) -> None:
    assert raw.refused(query) == message


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "querying for raw data is not allowed: add group_by or period"),
        ("filter_by=licence:cats", "querying for raw data is not allowed: add group_by or period"),
        ("group_by=licence&start_at=2012-12-03T00:00:00Z", "Use of 'start_at' requires 'end_at' or 'duration'"),
        ("group_by=licence&end_at=2012-12-03T00:00:00Z", "Use of 'end_at' requires 'start_at' or 'duration'"),
        (
            "group_by=licence&start_at=2012-12-03T00:00:00Z&end_at=2012-12-05T00:00:00Z",
            "The minimum time span for a query is 7 days",
        ),
        ("group_by=licence&start_at=2012-12-03T01:00:00Z&end_at=2012-12-17T00:00:00Z", "start_at must be midnight"),
        (
            "period=week&start_at=2012-12-04T00:00:00Z&end_at=2012-12-17T00:00:00Z",
            "start_at must be a monday for period=week queries",
        ),
        (
            "period=month&start_at=2012-11-01T00:00:00Z&end_at=2012-12-02T00:00:00Z",
            "end_at must be the first of the month for period=month queries",
        ),
    ],
)
def test_data_sets_without_raw_queries_refuse_as_backdrop(strict: Client, query: str, message: str) -> None:
    assert strict.refused(query) == message


def test_data_sets_without_raw_queries_still_answer_grouped_queries(strict: Client) -> None:
    assert strict.data("group_by=licence&start_at=2012-12-03T00:00:00Z&end_at=2012-12-17T00:00:00Z") == [
        {"licence": "cats", "_count": 2},
        {"licence": "events", "_count": 3},
    ]


def test_raw_query_data_sets_take_bounds_off_the_period_boundaries(raw: Client) -> None:
    # Periods widen to the weeks around the bounds; the records are cut at the bounds themselves.
    data = raw.data("period=week&start_at=2012-12-05T00:00:00Z&end_at=2012-12-13T12:00:00Z")
    assert data == [
        {"_start_at": "2012-12-03T00:00:00+00:00", "_end_at": "2012-12-10T00:00:00+00:00", "_count": 0},
        {"_start_at": "2012-12-10T00:00:00+00:00", "_end_at": "2012-12-17T00:00:00+00:00", "_count": 3},
    ]
    assert [r["_id"] for r in raw.data("start_at=2012-12-12T00:00:00Z")] == ["2", "3", "4", "5"]


# ------------------------------------------------------------------ data-set settings and headers


def test_unpublished_data_set_answers_with_the_warning_and_no_cache() -> None:
    for client in _client(published=False):
        response = client.get("group_by=licence")
        assert response.json()["warning"] == (
            "Warning: This data-set is unpublished. Data may be subject to change or be inaccurate."
        )
        assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    ("realtime", "header"), [(False, "max-age=1800, must-revalidate"), (True, "max-age=120, must-revalidate")]
)
def test_cache_control_follows_realtime(realtime: bool, header: str) -> None:
    for client in _client(realtime=realtime):
        response = client.get("group_by=licence")
        assert response.headers["cache-control"] == header
        assert response.headers["access-control-allow-origin"] == "*"
        assert "warning" not in response.json()


def test_etag_and_if_none_match_answer_304(raw: Client) -> None:
    first = raw.get("group_by=licence")
    etag = first.headers["etag"]
    assert etag.startswith('"') and len(etag) == 42
    again = raw.get("group_by=licence", **{"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    raw.write({"_id": "7", "licence": "new"})
    assert raw.get("group_by=licence", **{"If-None-Match": etag}).status_code == 200


def test_status_is_never_cached(raw: Client) -> None:
    assert raw.http.get("/_status").headers["cache-control"] == "no-cache"


def test_status_of_data_sets_reports_the_stale_ones(raw: Client) -> None:
    status = raw.http.get("/_status/data-sets")
    assert status.json() == {"status": "ok", "data_sets": None, "message": "All data_sets are in date"}
    assert status.headers["cache-control"] == "no-cache"
    raw.clock.now += timedelta(seconds=2_678_400 + 5)  # the default max age, 31 days, and 5 s
    body = raw.http.get("/_status/data-sets").json()
    assert body["status"] == "not okay"
    assert body["message"] == "1 data-set is out of date"
    assert body["data_sets"] == [
        {
            "name": "licensing",
            "data-group": "svc",
            "data-type": "licensing",
            "seconds-out-of-date": 5,
            "last-updated": "2013-01-01T00:00:00+00:00",
            "max-age-expected": 2_678_400,
        }
    ]


def test_max_age_expected_null_is_never_stale() -> None:
    for client in _client(max_age_expected=None):
        client.clock.now += timedelta(days=400)
        assert client.http.get("/_status/data-sets").json()["status"] == "ok"


def test_format_csv_neutralises_formulas() -> None:
    for client in _client():
        client.write({"_id": "8", "authority": '=HYPERLINK("http://x")', "licence": "-1+2", "value": -4})
        response = client.get("filter_by=_id:8&format=csv")
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows == [
            ["_id", "authority", "licence", "value"],
            ["8", '\'=HYPERLINK("http://x")', "'-1+2", "-4"],
        ]


def test_format_csv_of_a_grouped_query(raw: Client) -> None:
    rows = list(csv.reader(io.StringIO(raw.get("group_by=licence&collect=authority&format=csv").text)))
    assert rows[0] == ["_count", "authority", "authority:set", "licence"]
    assert rows[1] == ["2", '["Westminster"]', '["Westminster"]', "cats"]


# ------------------------------------------------------------------ write API messages, delete


def test_missing_or_malformed_authorization_says_the_form(raw: Client) -> None:
    for headers in ({}, {"Authorization": "Token abc"}, {"Authorization": "Bearer "}):
        response = raw.http.post(URL, json={}, headers=headers)
        assert response.status_code == 401
        assert response.json()["message"] == "Expected header of form: Authorization: Bearer <token>"


def test_a_wrong_token_is_401_without_echoing_it(raw: Client) -> None:
    response = raw.http.post(URL, json={}, headers={"Authorization": "Bearer guess-123"})
    assert response.status_code == 401
    assert response.json()["message"] == "Unauthorized: Invalid bearer token for 'licensing'"
    assert "guess-123" not in response.text


def test_empty_and_unparseable_bodies_say_so(raw: Client) -> None:
    auth = {"Authorization": "Bearer write-secret"}
    empty = raw.http.post(URL, content=b"", headers=auth)
    assert empty.status_code == 400
    assert empty.json()["message"] == "Expected JSON request body but received zero bytes."
    broken = raw.http.post(URL, content=b"{borked!}", headers=auth)
    assert broken.status_code == 400
    assert broken.json()["message"].startswith('Error parsing JSON: "Expecting property name')


def test_delete_a_data_set_with_the_admin_token(raw: Client) -> None:
    assert raw.http.delete("/data-sets/licensing").status_code == 401
    wrong = raw.http.delete("/data-sets/licensing", headers={"Authorization": "Bearer write-secret"})
    assert wrong.status_code == 401
    assert wrong.json()["message"] == 'Unauthorized: invalid or no token given for "licensing".'
    admin = {"Authorization": "Bearer admin-secret"}
    response = raw.http.delete("/data-sets/licensing", headers=admin)
    assert response.json() == {"status": "ok", "message": "Deleted licensing"}
    assert raw.data() == []  # declared data sets stay, empty
    missing = raw.http.delete("/data-sets/nothing-here", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["message"] == 'No collection exists with name "nothing-here"'


def test_delete_a_data_set_created_by_a_write_under_the_shared_token(platform_db: str) -> None:
    app = create_app(db=platform_db, config={"token": "shared", "admin_token": "admin"})
    with TestClient(app) as http:
        auth = {"Authorization": "Bearer shared"}
        assert http.post("/data/svc/costs", json={"count": 1}, headers=auth).status_code == 200
        assert http.delete("/data-sets/svc-costs", headers={"Authorization": "Bearer admin"}).status_code == 200
        assert http.get("/data/svc/costs").status_code == 404
    app.state.store.close()


def test_delete_by_a_name_two_data_sets_share_says_which_and_takes_the_path(platform_db: str) -> None:
    """``a-b/c`` and ``a/b-c`` are both named ``a-b-c``: the name alone deletes neither, the path one."""
    app = create_app(db=platform_db, config={"token": "shared", "admin_token": "admin"})
    with TestClient(app) as http:
        auth, admin = {"Authorization": "Bearer shared"}, {"Authorization": "Bearer admin"}
        for path in ("a-b/c", "a/b-c"):
            assert http.post(f"/data/{path}", json={"count": 1}, headers=auth).status_code == 200
        ambiguous = http.delete("/data-sets/a-b-c", headers=admin)
        assert ambiguous.status_code == 400
        assert ambiguous.json()["message"] == (
            'the name "a-b-c" matches 2 data sets, a/b-c and a-b/c: '
            "delete one by its path, DELETE /data-sets/<group>/<type>"
        )
        assert http.delete("/data-sets/a-b/c", headers=admin).json() == {"status": "ok", "message": "Deleted a-b/c"}
        assert http.get("/data/a-b/c").status_code == 404  # gone until written again
        assert len(http.get("/data/a/b-c").json()["data"]) == 1
        assert http.delete("/data-sets/a-b/c", headers=admin).status_code == 404
        assert http.delete("/data-sets/a-b-c", headers=admin).status_code == 200  # one left: the name is enough
        assert http.get("/data/a/b-c").status_code == 404
    app.state.store.close()


def test_delete_by_path_of_a_declared_data_set(raw: Client) -> None:
    response = raw.http.delete("/data-sets/svc/licensing", headers={"Authorization": "Bearer admin-secret"})
    assert response.json() == {"status": "ok", "message": "Deleted svc/licensing"}
    assert raw.data() == []
    assert raw.http.delete("/data-sets/svc/licensing").status_code == 401


def test_no_admin_token_configured_means_no_delete(raw: Client) -> None:
    app = create_app(token="t")
    with TestClient(app) as http:
        assert http.delete("/data-sets/anything", headers={"Authorization": "Bearer t"}).status_code == 401
    app.state.store.close()


# ------------------------------------------------------------------ records: time chunks, lenient times, nulls


def test_time_chunk_fields_are_stored_in_utc_and_read_back(raw: Client) -> None:
    raw.write({"_id": "c1", "_start_at": "2013-12-09T00:00:00+01:00", "_end_at": "2013-12-16", "value": 3})
    assert raw.data("filter_by=_id:c1") == [
        {"_id": "c1", "_start_at": "2013-12-08T23:00:00+00:00", "_end_at": "2013-12-16T00:00:00+00:00", "value": 3}
    ]


@pytest.mark.parametrize(
    ("sent", "read_back"),
    [
        ("2024-01-15T10:00:00.123456+00:00", "2024-01-15T10:00:00.123456+00:00"),
        ("2024-01-15T10:00:00.250Z", "2024-01-15T10:00:00.250000+00:00"),
        ("2024-01-15T10:00:00", "2024-01-15T10:00:00+00:00"),
        ("2024-01-15 10:00:00+00:00", "2024-01-15T10:00:00+00:00"),
        ("2024-01-15", "2024-01-15T00:00:00+00:00"),
        ("2024-01-15T10:00:00+0100", "2024-01-15T09:00:00+00:00"),
        ("2024-01-15T10:00:00-0530", "2024-01-15T15:30:00+00:00"),
    ],
)
def test_timestamps_real_clients_send_are_accepted(raw: Client, sent: str, read_back: str) -> None:
    raw.write({"_id": "t", "_timestamp": sent})
    assert raw.data("filter_by=_id:t") == [{"_id": "t", "_timestamp": read_back}]


def test_fractions_count_in_the_right_period(raw: Client) -> None:
    raw.write([{"_id": "a", "_timestamp": "2024-01-15T23:59:59.999999Z"}, {"_id": "b", "_timestamp": "2024-01-16"}])
    data = raw.data("period=day&start_at=2024-01-15T00:00:00Z&end_at=2024-01-17T00:00:00Z")
    assert [d["_count"] for d in data] == [1, 1]


def test_null_values_are_stored_and_skipped_by_collect(raw: Client) -> None:
    raw.write(
        [{"_id": "n1", "licence": "nulls", "value": None, "note": None}, {"_id": "n2", "licence": "nulls", "value": 4}]
    )
    assert raw.data("filter_by=_id:n1") == [{"_id": "n1", "licence": "nulls", "value": None, "note": None}]
    assert raw.data(
        "group_by=licence&filter_by=licence:nulls&collect=value:sum&collect=value:count"
        "&collect=value:mean&collect=value"
    ) == [
        {
            "licence": "nulls",
            "_count": 2,
            "value:sum": 4,
            "value:count": 1,
            "value:mean": 4.0,
            "value:set": [4],
            "value": [4],
        }
    ]
    assert raw.data("group_by=note&filter_by=licence:nulls") == []


# ------------------------------------------------------------------ the configuration itself


def test_services_metadata_is_readable_through_the_config() -> None:
    app = create_app(config=_config())
    config: PlatformConfig = app.state.config
    assert config.service("svc") == ServiceConfig(
        "svc", "Apply for a licence", "Licensing Office", "Licences for events", datetime(2012, 4, 1).date()
    )
    assert [s.slug for s in config.services()] == ["svc"]
    assert config.service("other") is None
    assert "secret" not in repr(config)
    app.state.store.close()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"data_sets": {"svc/x": {"token": "t", "realtime": "yes"}}}, "realtime must be true or false"),
        ({"data_sets": {"svc/x": {"token": "t", "max_age_expected": -1}}}, "max_age_expected must be"),
        ({"data_sets": {"svc/x": {"token": "t", "colour": "red"}}}, "unknown setting(s) colour"),
        ({"data_sets": {"svc/x": {}}}, "needs a 'token'"),
        ({"data_sets": {"Svc/x": {"token": "t"}}}, "is not a data set name"),
        ({"data_sets": {"svc/" + "x" * 65: {"token": "t"}}}, "lower-case slugs of at most 64 characters"),
        ({"token": "t", "services": {"s" * 65: {}}}, "a lower-case slug of at most 64 characters"),
        ({"token": "t", "services": {"svc": {"start_date": "April"}}}, "start_date must be a date YYYY-MM-DD"),
        ({"token": "t", "sevices": {}}, "unknown key(s) sevices"),
        ({"data_sets": {"a/x": {"token": "t", "name": "n"}, "b/x": {"token": "t", "name": "n"}}}, "named 'n'"),
        # Tokens a client can never send (headers are trimmed and Latin-1): the data set could never be written.
        ({"data_sets": {"svc/x": {"token": " padded "}}}, "data_sets['svc/x'].token must be printable ASCII"),
        ({"data_sets": {"svc/x": {"token": "line\n"}}}, "must be printable ASCII with no spaces"),
        ({"token": "t\u00f6k\u00e9n"}, "token must be printable ASCII"),
        ({"svc/x": "tab\t"}, "the token for 'svc/x' must be printable ASCII"),
        # An admin token that is also a write token lets that writer delete every data set.
        ({"token": "same", "admin_token": "same"}, "admin_token is also a data set's write token"),
        ({"admin_token": "same", "data_sets": {"svc/x": {"token": "same"}}}, "give admin_token a value of its own"),
        # A title JSON's \udce9 escape made: the live site answered 503 for every service, data-sets.json 500.
        ({"token": "t", "services": {"svc": {"title": "caf\udce9"}}}, "title is not valid Unicode text"),
    ],
)
def test_a_bad_configuration_names_the_field(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match="config=") as info:
        create_app(config=config)
    assert message in str(info.value)
    assert not any(secret in str(info.value) for secret in ("padded", "line\n", "same", "t\u00f6k", "tab\t"))


@pytest.mark.parametrize("guide", ["deployment.md", "local-platform.md"])
def test_the_guides_configurations_are_ones_the_platform_accepts(guide: str) -> None:
    # The deployment guide's example named services' metadata "name" and "department": serve refused it.
    text = (Path(__file__).parents[3] / "docs" / "guides" / guide).read_text(encoding="utf-8")
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S) if '"data_sets"' in b]
    assert blocks
    for block in blocks:
        config = PlatformConfig.from_mapping(block)
        assert config.data_sets or config.token


def test_a_browsers_preflight_of_a_read_is_answered(raw: Client) -> None:
    response = raw.http.options(
        URL, headers={"Origin": "https://dashboard.example", "Access-Control-Request-Method": "GET"}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-max-age"] == "86400"
    assert "request-id" in response.headers["access-control-allow-headers"]
    assert raw.http.options("/data/svc/unknown").status_code == 404
