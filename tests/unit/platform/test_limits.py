"""A read's work is bounded: past a limit the answer is a 400 that names the limit and how to narrow the query.

Hostile or careless queries (thousands of periods times many groups, a limit past
64 bits, thousands of repeated parameters) used to cost gigabytes, or answer 500.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from perf_sdk.platform import create_app
from perf_sdk.platform._query import ReadLimits

from .conftest import AUTH, TOKEN, URL, Platform

SMALL = ReadLimits(periods=50, cells=100, records=5, bytes=4000)


@pytest.fixture
def small() -> Iterator[Platform]:
    app = create_app(token=TOKEN, read_limits=SMALL)
    with TestClient(app) as client:
        yield Platform(client)
    app.state.store.close()


def _twenty_groups(platform: Platform) -> None:
    platform.write(
        [
            {"_id": f"r{i}", "_timestamp": f"2026-01-01T{i % 24:02d}:00:00Z", "ff": f"v{i % 20}", "count": 1}
            for i in range(40)
        ]
    )


def _refusal(platform: Platform, query: str) -> str:
    response = platform.get(query)
    assert response.status_code == 400, response.text
    message: str = response.json()["message"]
    return message


def test_too_many_periods_is_400_naming_the_limit(small: Platform) -> None:
    _twenty_groups(small)
    message = _refusal(small, "period=hour&duration=99999&group_by=ff&collect=count:sum")
    assert "the query spans more than 50 periods (period=hour)" in message
    assert "narrow start_at and end_at (or duration), or use a longer period" in message


def test_too_many_cells_is_400_naming_the_limit(small: Platform) -> None:
    _twenty_groups(small)
    # 20 groups x 24 hours = 480 cells, past 100.
    message = _refusal(small, "period=hour&start_at=2026-01-01T00:00:00Z&end_at=2026-01-02T00:00:00Z&group_by=ff")
    assert message.startswith("the answer would hold ")
    assert "cells (groups times periods); the most is 100" in message
    assert "filter_by" in message
    # Narrowed as the message says, the same question is answered.
    narrowed = small.data("period=day&start_at=2026-01-01T00:00:00Z&end_at=2026-01-02T00:00:00Z&group_by=ff")
    assert len(narrowed) == 20


def test_flattened_combinations_count_against_the_cells(small: Platform) -> None:
    small.write([{"aa": f"a{i}", "bb": f"b{i}", "_timestamp": "2026-01-01T00:00:00Z"} for i in range(11)])
    # 11 groups fit, but flattened they are 11 x 11 combinations.
    assert len(small.data("period=day&group_by=aa&group_by=bb")) == 11
    assert "cells" in _refusal(small, "period=day&group_by=aa&group_by=bb&flatten=true")


def test_too_many_records_is_400_and_limit_narrows_it(small: Platform) -> None:
    _twenty_groups(small)
    message = _refusal(small, "")
    assert "records; the most is 5: add limit=, filter_by, or start_at and end_at" in message
    assert len(small.data("limit=5")) == 5


def test_too_many_bytes_is_400(small: Platform) -> None:
    small.write([{"_id": f"r{i}", "text": "x" * 1500} for i in range(4)])
    assert "bytes; the most is 4000" in _refusal(small, "")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"limit={2**63}", f"limit is {2**63}; the most is 1000000000: ask for less"),
        ("limit=99999999999999999999999999999999999999", "limit is 99999999999999999999...; the most is 1000000000"),
        ("limit=2000000000", "limit is 2000000000; the most is 1000000000"),
        ("limit=-1", "limit must be a positive integer"),
        ("limit=000", "limit must be a positive integer"),
        ("period=day&duration=" + "9" * 5000, "duration is 99999999999999999999...; the most is 1000000000"),
        ("group_by=stage&" + "&".join(f"collect=f{i}:sum" for i in range(2000)), "collect may be given at most 64"),
        ("&".join(f"filter_by=f{i}:x" for i in range(3000)), "filter_by may be given at most 64"),
        ("&".join(f"group_by=g{i}" for i in range(20)), "group_by may be given at most 8"),
    ],
    ids=[
        "limit-2**63",
        "limit-huge",
        "limit-past-max",
        "limit-negative",
        "limit-zeros",
        "duration-5000-digits",
        "collect-2000",
        "filter-3000",
        "group-20",
    ],
)
def test_absurd_parameters_are_400_not_500(platform: Platform, query: str, expected: str) -> None:
    platform.write({"stage": "started", "_timestamp": "2026-01-01T00:00:00Z"})
    assert expected in _refusal(platform, query)


@pytest.mark.parametrize("name", ["svc\n", "stage\n", "caf\u00e9", "st\u0430ge", "\u212a\u212a"])
def test_field_names_are_matched_whole_and_ascii(platform: Platform, name: str) -> None:
    platform.write({"stage": "started"})
    response = platform.client.get(URL, params={"group_by": name})
    assert response.status_code == 400
    assert "is not a valid field name" in response.json()["message"]


@pytest.mark.parametrize("group", ["svc%0A", "caf%C3%A9"])
def test_data_set_names_are_matched_whole_and_ascii(platform: Platform, group: str) -> None:
    assert platform.client.post(f"/data/{group}/transactions", json={"stage": "x"}, headers=AUTH).status_code == 404
    assert platform.client.get(f"/data/{group}/transactions").status_code == 404


def test_a_lone_surrogate_is_refused_and_later_reads_still_answer(platform: Platform) -> None:
    body = json.dumps([{"comment": "caf\udce9", "_id": "bad"}, {"_id": "good", "comment": "ok"}])
    assert "\\udce9" in body  # what a client's JSON encoder sends
    response = platform.client.post(URL, content=body, headers=AUTH | {"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["messages"] == [
        "record 0: the value for field 'comment' is not valid Unicode (a lone surrogate): 'caf\\\\udce9'"
    ]
    key_body = json.dumps({"caf\udce9": 1})
    response = platform.client.post(URL, content=key_body, headers=AUTH | {"Content-Type": "application/json"})
    assert response.status_code == 400
    platform.write({"_id": "good", "comment": "caf\u00e9"})
    assert platform.data() == [{"_id": "good", "comment": "caf\u00e9"}]
    assert platform.data("group_by=comment") == [{"comment": "caf\u00e9", "_count": 1}]


def test_status_does_not_queue_behind_a_read_holding_the_in_memory_database(platform: Platform) -> None:
    """In memory, one connection serves everything behind a lock; a health check must not wait for it."""
    store = platform.client.app.state.store  # type: ignore[attr-defined]
    held, answered = threading.Event(), threading.Event()
    result: dict[str, int] = {}

    def hold() -> None:
        with store._lock:
            held.set()
            answered.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)

        def ask() -> None:
            result["status"] = platform.client.get("/_status").status_code
            answered.set()

        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        assert answered.wait(30), "/_status waited for the database lock"
        assert result["status"] == 200
    finally:
        answered.set()
        holder.join(30)


def test_in_process_records_are_not_bounded_by_the_read_limits(small: Platform) -> None:
    _twenty_groups(small)
    assert len(small.client.app.state.store.records("svc", "transactions")) == 40  # type: ignore[attr-defined]


def test_rendering_stops_at_the_byte_limit_with_a_400() -> None:
    from perf_sdk.platform._app import render_json
    from perf_sdk.platform._query import QueryError

    data = [{"group": "x" * 100, "_count": i} for i in range(50)]
    assert json.loads(render_json(data, None, 10_000)) == {"data": data}
    assert json.loads(render_json([], "careful", 100)) == {"data": [], "warning": "careful"}
    with pytest.raises(QueryError, match=r"bytes; the most is 1000: narrow the query"):
        render_json(data, None, 1000)


def test_csv_rendering_stops_at_the_column_and_byte_limits_with_a_400() -> None:
    from perf_sdk.platform._app import render_csv
    from perf_sdk.platform._query import QueryError

    data = [{"group": "x" * 100, "_count": i} for i in range(50)]
    assert render_csv(data, ReadLimits(columns=2)).startswith(b"_count,group\r\n0,xxx")
    assert render_csv([], ReadLimits(columns=0, bytes=0)) == b""
    with pytest.raises(QueryError, match=r"hold 2 columns; the most is 1: the records have that many different keys"):
        render_csv(data, ReadLimits(columns=1))
    with pytest.raises(QueryError, match=r"bytes; the most is 1000: narrow the query"):
        render_csv(data, ReadLimits(bytes=1000))


def test_csv_of_records_with_many_different_keys_is_400_not_a_square_table() -> None:
    """Every CSV row has every column: n records of k keys each made a table of n x n*k cells."""
    app = create_app(token=TOKEN, read_limits=ReadLimits(columns=100, bytes=50_000))
    with TestClient(app) as client:
        platform = Platform(client)
        platform.write([{"_id": f"r{i}", **{f"k{i}_{j}": 1 for j in range(10)}} for i in range(9)])
        assert platform.get("format=csv").status_code == 200  # 91 columns
        platform.write([{"_id": f"s{i}", **{f"k{i}_{j}": 1 for j in range(10)}} for i in range(9, 200)])
        assert len(platform.data()) == 200  # the JSON answer is 2,000 cells
        message = _refusal(platform, "format=csv")
        assert message.startswith("the answer would hold 2001 columns; the most is 100: ")
    app.state.store.close()


def test_csv_past_the_byte_limit_is_400_as_json_is() -> None:
    """Under the column limit, the empty cells of a sparse table still count towards the byte limit."""
    app = create_app(token=TOKEN, read_limits=ReadLimits(bytes=20_000))
    with TestClient(app) as client:
        platform = Platform(client)
        platform.write([{"_id": f"r{i}", **{f"k{i}_{j}": 1 for j in range(5)}} for i in range(100)])
        assert len(platform.data()) == 100  # the records are small
        message = _refusal(platform, "format=csv")  # 100 rows of 501 cells each
        assert message.startswith("the answer would hold ")
        assert "bytes; the most is 20000: narrow the query" in message
        assert platform.get("format=csv&limit=10").status_code == 200
    app.state.store.close()


def test_a_write_of_too_many_records_is_413_before_they_are_built(platform: Platform) -> None:
    # The bytes alone bounded nothing: a 10 KB gzip body of "[{},{},...]" was 3.4 million records, stored
    # in one 88 s transaction that every other data set's writes waited behind, and 1 GB of RSS.
    import gzip

    from perf_sdk.platform._app import MAX_RECORDS_PER_REQUEST

    for n in (MAX_RECORDS_PER_REQUEST + 1, 3 * MAX_RECORDS_PER_REQUEST):
        body = gzip.compress(b"[" + b",".join([b"{}"] * n) + b"]")
        headers = {**AUTH, "Content-Encoding": "gzip", "Content-Type": "application/json"}
        answer = platform.client.post(URL, content=body, headers=headers)
        assert answer.status_code == 413, answer.text
        assert (
            f"{MAX_RECORDS_PER_REQUEST:,}" in answer.json()["message"] and "smaller batches" in answer.json()["message"]
        )
    assert platform.count() == 0


def test_sums_past_the_largest_double_are_400_not_500(platform: Platform) -> None:
    # Two valid, finite values of 1e308: SQLite's SUM reached inf (not JSON), PostgreSQL's float8 sum raised.
    platform.write(
        [{"_id": k, "_timestamp": "2026-01-05T10:00:00Z", "amount": 1e308, "count": 1, "stage": "x"} for k in "ab"]
    )
    for method in ("sum", "mean"):
        message = _refusal(platform, f"group_by=stage&collect=amount:{method}")
        assert f"collect=amount:{method}: the values of 'amount' add up to more than the largest number" in message
    assert platform.data("group_by=stage&collect=amount:set") == [{"stage": "x", "_count": 2, "amount:set": [1e308]}]
    assert platform.data("group_by=stage&collect=count:sum")[0]["count:sum"] == 2  # other fields unaffected


def test_a_filter_on_an_integer_past_64_bits_is_an_answer_not_a_500(platform: Platform) -> None:
    platform.write([{"_id": "a", "_timestamp": "2026-01-05T10:00:00Z", "count": 1}])
    assert platform.data("filter_by=count:99999999999999999999") == []
    assert platform.data("group_by=count&filter_by=count:-99999999999999999999") == []


def test_emptying_a_data_set_is_a_change_other_processes_see(platform: Platform) -> None:
    # Another worker's performance site is keyed on each data set's last change: PUT [] left it unchanged, and
    # that worker kept publishing the figures of records that were gone.
    store = platform.client.app.state.store  # type: ignore[attr-defined]
    platform.write([{"_id": "a", "_timestamp": "2026-01-05T10:00:00Z", "count": 1}])
    before = store.last_updated()[("svc", "transactions")]
    answer = platform.client.put(URL, json=[], headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert store.last_updated()[("svc", "transactions")] != before and platform.count() == 0


def test_a_400_lists_the_first_hundred_problems_and_counts_the_rest(platform: Platform) -> None:
    # One record of 450,000 bad keys (4.9 MB) was answered with 46 MB listing every one, the server peaking at
    # 328 MB; 1.9 MB of gzip made a 93 MB answer.
    wide = {f"bad key {i}": 1 for i in range(5_000)}
    answer = platform.post([wide, *({"_id": f"r{i}", "bad key": 1} for i in range(300))])
    assert answer.status_code == 400
    body = answer.json()
    assert body["message"] == "at least 401 problem(s) in the records"  # record 0's looked for up to 101
    assert len(body["messages"]) == 101 and body["messages"][0].startswith("record 0: 'bad key 0' is not a valid key")
    assert body["messages"][-1] == "and at least 301 more problem(s)"
    assert len(answer.content) < 60_000
    few = platform.post([{"_id": f"r{i}", "bad key": 1} for i in range(150)])
    assert few.json()["message"] == "150 problem(s) in the records"
    assert few.json()["messages"][-1] == "and 50 more problem(s)"
    long_key = "bad " * 250_000
    cut = platform.post([{long_key: 1}]).json()["messages"]
    assert len(cut) == 1 and len(cut[0]) <= 500 and cut[0].endswith("… (cut)")
    assert platform.count() == 0


def test_a_nul_in_a_value_is_refused_naming_the_field(platform: Platform) -> None:
    # Stored, then grouped as 'x' on SQLite (its JSON functions end a string at NUL) and as 'x\ufffdDROP' on
    # PostgreSQL; a filter on the exact value matched on one backend only.
    answer = platform.post([{"_id": "a", "label": "x\u0000DROP"}, {"_id": "b", "label": "x"}])
    assert answer.status_code == 400
    assert answer.json()["messages"] == [
        "record 0: the value for field 'label' holds a NUL character (\\u0000), which no text may hold"
    ]
    assert platform.count() == 0


def test_a_set_leaves_out_records_without_the_field_on_both_backends(platform: Platform) -> None:
    # SQLite answered [null, "digital"] (json_quote of an absent value is the text 'null'); PostgreSQL ["digital"].
    platform.write(
        [
            {"_id": "a", "_timestamp": "2026-01-05T10:00:00Z", "stage": "x", "channel": "digital"},
            {"_id": "b", "_timestamp": "2026-01-05T10:00:00Z", "stage": "x"},
            {"_id": "c", "_timestamp": "2026-01-05T10:00:00Z", "stage": "y"},
        ]
    )
    assert platform.data("group_by=stage&collect=channel:set") == [
        {"stage": "x", "_count": 2, "channel:set": ["digital"]},
        {"stage": "y", "_count": 1, "channel:set": []},
    ]


def test_a_trailing_slash_is_404_never_a_redirect_built_from_host(platform: Platform) -> None:
    for path in ("/data/svc/transactions/", "/_status/"):
        answer = platform.client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert answer.status_code == 404 and "location" not in answer.headers
