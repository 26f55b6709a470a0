"""The write API answers as backdrop does: status codes, bodies, upsert, PUT [], gzip, limits, tokens."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from perf_sdk import ConfigurationError
from perf_sdk.platform import create_app
from perf_sdk.platform._app import MAX_GZIP_MEMBERS, _decompress

from .conftest import AUTH, TOKEN, URL, Platform

RECORD = {"_id": "r1", "_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 1}


def test_post_one_object_is_stored(platform: Platform) -> None:
    response = platform.post(RECORD)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert platform.data() == [RECORD | {"_timestamp": "2026-01-05T10:00:00+00:00"}]


def test_post_a_list(platform: Platform) -> None:
    platform.write([RECORD, RECORD | {"_id": "r2"}])
    assert [r["_id"] for r in platform.data()] == ["r1", "r2"]


def test_post_an_empty_list_is_ok(platform: Platform) -> None:
    assert platform.post([]).json() == {"status": "ok"}
    assert platform.data() == []


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["missing", "wrong", "no-scheme", "basic"],
)
def test_missing_or_wrong_token_is_401(platform: Platform, headers: dict[str, str]) -> None:
    response = platform.client.post(URL, json=RECORD, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "bearer"
    body = response.json()
    assert body["status"] == "error"
    assert body["message"]
    assert platform.client.post(URL, json=RECORD, headers={"Authorization": f"bearer  {TOKEN}"}).status_code == 200


def test_non_ascii_token_is_401_not_500(platform: Platform) -> None:
    response = platform.client.post(URL, json=RECORD, headers={"Authorization": "Bearer caf\xe9".encode()})  # type: ignore[dict-item]
    assert response.status_code == 401


@pytest.mark.parametrize("url", ["/data/Svc/transactions", "/data/svc/trans_actions", "/data/-svc/x"])
def test_invalid_data_set_name_is_404(platform: Platform, url: str) -> None:
    response = platform.post(RECORD, url=url)
    assert response.status_code == 404
    assert response.json()["status"] == "error"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"Bad-key": 1}, "record 0: 'Bad-key' is not a valid key"),
        ({"a": 1}, "record 0: 'a' is not a valid key"),
        ({"_secret": 1}, "record 0: '_secret' is not a recognised internal field"),
        ({"nested": {"a": 1}}, "must be a string, integer, float, boolean or null"),
        ({"listed": [1]}, "must be a string, integer, float, boolean or null"),
        ({"_timestamp": "2026-01-05T25:00:00"}, "_timestamp is not a valid datetime object"),
        ({"_timestamp": "2026-02-30T10:00:00Z"}, "_timestamp is not a valid datetime object"),
        ({"_timestamp": "05/01/2026"}, "_timestamp is not a valid datetime object"),
        ({"_timestamp": "2026-01-05T10:00:00+24:00"}, "_timestamp is not a valid datetime object"),
        ({"_start_at": "soon"}, "_start_at is not a valid datetime object"),
        ({"_end_at": 5}, "_end_at is not a valid datetime object"),
        ({"_week_start_at": "2026-01-05T00:00:00Z"}, "'_week_start_at' is not a recognised internal field"),
        ({"svc\n": 1}, "is not a valid key"),
        ({"caf\u00e9": 1}, "is not a valid key"),
        ({"\u212a\u212a": 1}, "record 0: '\\\\u212a\\\\u212a' is not a valid key"),  # Kelvin signs lower-case to kk
        ({"\u212aey": 1}, "record 0: '\\\\u212aey' is not a valid key"),
        ({"_id": "x" * 257}, "record 0: _id is too long: 257 characters, the most is 256 ('xxxx"),
        ({"_timestamp": 1700000000}, "_timestamp is not a valid datetime object"),
        ({"_id": "has space"}, "_id is not a valid id"),
        ({"_id": ""}, "_id is not a valid id"),
        ({"_id": 5}, "_id is not a valid id"),
        ({"big": 2**63}, "record 0: the value for field 'big' does not fit in 64 bits"),
        ({"_timestamp": "0001-01-01T00:00:00+01:00"}, "record 0: _timestamp is out of range"),
    ],
)
def test_each_record_rule_is_400_with_messages(platform: Platform, record: object, message: str) -> None:
    response = platform.post([record])
    assert response.status_code == 400
    body = response.json()
    assert len(body["messages"]) == 1
    assert message in body["messages"][0]
    assert body["messages"][0].startswith("record 0: ")
    assert platform.count() == 0


def test_one_message_per_problem_prefixed_by_index_and_nothing_stored(platform: Platform) -> None:
    response = platform.post([RECORD, {"Bad-key": 1, "_timestamp": "nope"}, 7])
    assert response.status_code == 400
    assert response.json()["messages"] == [
        "record 1: 'Bad-key' is not a valid key: keys are ASCII letters, digits and _, at least two characters",
        "record 1: _timestamp is not a valid datetime object: 'nope' (ISO 8601, e.g. 2024-01-15T10:00:00Z; "
        "a fraction, a naive time (UTC) or a date alone are accepted)",
        "record 2: record must be a JSON object, got int",
    ]
    assert platform.count() == 0


@pytest.mark.parametrize("body", [b"{", b"[1,", b'{"count": NaN}', b'{"count": Infinity}', b"\xff\xfe{", b""])
def test_unparseable_json_is_400(platform: Platform, body: bytes) -> None:
    response = platform.client.post(URL, content=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["status"] == "error"
    assert response.json()["messages"]


@pytest.mark.parametrize("body", ["3", '"text"', "null", "true"])
def test_json_that_is_not_records_is_400(platform: Platform, body: str) -> None:
    assert platform.client.post(URL, content=body, headers=AUTH).status_code == 400


def test_upsert_replaces_the_whole_record(platform: Platform) -> None:
    platform.write(RECORD | {"note": "first"})
    platform.write({"_id": "r1", "_timestamp": "2026-04-05T10:00:00Z", "stage": "completed", "count": 5})
    assert platform.data() == [
        {"_id": "r1", "_timestamp": "2026-04-05T10:00:00+00:00", "count": 5, "stage": "completed"}
    ]
    # The aggregates forget the replaced record too (the rollup is adjusted).
    assert platform.data("group_by=stage&collect=count:sum") == [{"stage": "completed", "_count": 1, "count:sum": 5}]
    year = "period=quarter&start_at=2026-01-01T00:00:00Z&end_at=2027-01-01T00:00:00Z"
    assert [p["_count"] for p in platform.data(year)] == [0, 1, 0, 0]


def test_a_record_sent_twice_in_one_batch_is_stored_once(platform: Platform) -> None:
    platform.write([RECORD, RECORD | {"count": 4}, RECORD | {"count": 2}])
    assert platform.data("group_by=stage&collect=count:sum") == [{"stage": "started", "_count": 1, "count:sum": 2}]
    assert platform.count() == 1


def test_resending_is_idempotent(platform: Platform) -> None:
    for _ in range(3):
        platform.write([RECORD, RECORD | {"_id": "r2"}])
    assert platform.data("period=day&collect=count:sum") == [
        {"_start_at": "2026-01-05T00:00:00+00:00", "_end_at": "2026-01-06T00:00:00+00:00", "_count": 2, "count:sum": 2}
    ]


def test_records_without_id_get_distinct_generated_ids(platform: Platform) -> None:
    plain = {k: v for k, v in RECORD.items() if k != "_id"}
    platform.write([plain, plain])
    ids = [r["_id"] for r in platform.data()]
    assert len(set(ids)) == 2
    assert all(ids)


def test_timestamp_is_optional_and_stored_without_one(platform: Platform) -> None:
    platform.write({"_id": "t0", "stage": "started", "count": 2})
    assert platform.data() == [{"_id": "t0", "count": 2, "stage": "started"}]
    assert platform.data("group_by=stage&collect=count:sum") == [{"stage": "started", "_count": 1, "count:sum": 2}]
    assert platform.data("period=day") == []  # no time, no period
    assert platform.data("group_by=stage&end_at=2030-01-01T00:00:00Z") == []


def test_timestamp_offsets_are_stored_in_utc(platform: Platform) -> None:
    platform.write(
        [
            RECORD | {"_id": "a", "_timestamp": "2026-01-01T00:30:00+0100"},
            RECORD | {"_id": "b", "_timestamp": "2026-01-01T00:30:00-05:00"},
        ]
    )
    assert [r["_timestamp"] for r in platform.data()] == ["2025-12-31T23:30:00+00:00", "2026-01-01T05:30:00+00:00"]


def test_put_empty_list_empties_the_data_set(platform: Platform) -> None:
    platform.write([RECORD, RECORD | {"_id": "r2"}])
    platform.write(RECORD, url="/data/svc/satisfaction")
    response = platform.client.put(URL, json=[], headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert platform.data() == []
    assert platform.data("group_by=stage") == []
    assert len(platform.data(url="/data/svc/satisfaction")) == 1
    platform.write(RECORD)  # the rollup starts again from nothing
    assert platform.data("group_by=stage") == [{"stage": "started", "_count": 1}]


def test_put_a_non_empty_list_is_400(platform: Platform) -> None:
    platform.write(RECORD)
    response = platform.client.put(URL, json=[RECORD], headers=AUTH)
    assert response.status_code == 400
    assert response.json()["messages"]
    assert len(platform.data()) == 1
    assert platform.client.put(URL, json={}, headers=AUTH).status_code == 400


def test_put_needs_the_token(platform: Platform) -> None:
    platform.write(RECORD)
    assert platform.client.put(URL, json=[]).status_code == 401
    assert len(platform.data()) == 1


def test_gzip_body(platform: Platform) -> None:
    body = gzip.compress(json.dumps([RECORD]).encode())
    response = platform.client.post(URL, content=body, headers=AUTH | {"Content-Encoding": "gzip"})
    assert response.status_code == 200
    assert len(platform.data()) == 1


def test_concatenated_gzip_members_are_one_body(platform: Platform) -> None:
    text = json.dumps([RECORD]).encode()
    body = gzip.compress(text[:10]) + gzip.compress(text[10:])
    assert platform.client.post(URL, content=body, headers=AUTH | {"Content-Encoding": "gzip"}).status_code == 200


def test_gzip_members_up_to_the_limit_are_one_body(platform: Platform) -> None:
    body = gzip.compress(b"") * (MAX_GZIP_MEMBERS - 1) + gzip.compress(json.dumps([RECORD]).encode())
    assert platform.client.post(URL, content=body, headers=AUTH | {"Content-Encoding": "gzip"}).status_code == 200
    assert len(platform.data()) == 1


def test_more_gzip_members_than_the_limit_is_400_naming_it(platform: Platform) -> None:
    body = gzip.compress(b"") * MAX_GZIP_MEMBERS + gzip.compress(json.dumps([RECORD]).encode())
    response = platform.client.post(URL, content=body, headers=AUTH | {"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert response.json()["message"] == f"the gzip body has more than {MAX_GZIP_MEMBERS} members: send one gzip stream"
    assert platform.count() == 0


def test_gzip_members_are_walked_not_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each member's decompressor is fed about its own bytes, not the rest of the body (which was quadratic)."""
    fed: list[int] = []
    real = zlib.decompressobj

    class Counting:
        def __init__(self, wbits: int) -> None:
            self._inner = real(wbits)

        def decompress(self, data: Any, max_length: int = 0) -> bytes:
            fed.append(len(data))
            return self._inner.decompress(data, max_length)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    monkeypatch.setattr(zlib, "decompressobj", Counting)
    text = json.dumps([RECORD] * 50).encode()
    body = gzip.compress(b"") * 900 + gzip.compress(text[:1000]) + gzip.compress(text[1000:])
    assert _decompress(body, "gzip", 10_000_000) == text
    # Copying the rest of the body per member feeds ~900 * 18 KB / 2 = 8 MB; walking it, at most
    # twice the body and a small first slice per member.
    assert sum(fed) <= 2 * len(body) + 902 * 256


@pytest.mark.parametrize("body", [b"not gzip", gzip.compress(b"[]")[:-6]], ids=["garbage", "truncated"])
def test_bad_gzip_is_400(platform: Platform, body: bytes) -> None:
    response = platform.client.post(URL, content=body, headers=AUTH | {"Content-Encoding": "gzip"})
    assert response.status_code == 400


def test_unknown_content_encoding_is_415(platform: Platform) -> None:
    response = platform.client.post(URL, content=b"[]", headers=AUTH | {"Content-Encoding": "br"})
    assert response.status_code == 415
    assert response.json()["status"] == "error"


def _limited(**limits: int) -> TestClient:
    return TestClient(create_app(token=TOKEN, **limits))


def test_body_over_the_limit_as_sent_is_413() -> None:
    client = _limited(max_body_bytes=1000)
    ok = json.dumps([RECORD]).encode()
    assert client.post(URL, content=ok, headers=AUTH).status_code == 200
    big = json.dumps([RECORD | {"_id": f"r{i}"} for i in range(20)]).encode()
    response = client.post(URL, content=big, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["status"] == "error"
    # Without a Content-Length the limit holds while streaming.
    response = client.post(URL, content=iter([big[:600], big[600:]]), headers=AUTH)
    assert response.status_code == 413


def test_gzip_over_the_decompressed_limit_is_413() -> None:
    client = _limited(max_body_bytes=10_000, max_decompressed_bytes=50_000)
    bomb = gzip.compress(b"[" + b" " * 100_000 + b"]")
    assert len(bomb) < 10_000
    response = client.post(URL, content=bomb, headers=AUTH | {"Content-Encoding": "gzip"})
    assert response.status_code == 413
    small = gzip.compress(b"[" + b" " * 40_000 + b"]")
    assert client.post(URL, content=small, headers=AUTH | {"Content-Encoding": "gzip"}).status_code == 200


def test_default_limits_are_5mb_sent_and_10mb_decompressed() -> None:
    from perf_sdk.platform._app import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DECOMPRESSED_BYTES

    assert DEFAULT_MAX_BODY_BYTES == 5 * 1024 * 1024
    assert DEFAULT_MAX_DECOMPRESSED_BYTES == 10 * 1024 * 1024


# ------------------------------------------------------------------ tokens file


@pytest.fixture
def per_set() -> TestClient:
    return TestClient(create_app(tokens={"svc/transactions": "tok-t", "svc/costs": "tok-c"}))


def test_tokens_file_declares_the_data_sets(per_set: TestClient) -> None:
    assert per_set.get(URL).json() == {"data": []}  # declared, readable before any write
    assert per_set.post(URL, json=RECORD, headers={"Authorization": "Bearer tok-t"}).status_code == 200
    assert len(per_set.get(URL).json()["data"]) == 1


def test_tokens_file_each_data_set_has_its_own_token(per_set: TestClient) -> None:
    response = per_set.post(URL, json=RECORD, headers={"Authorization": "Bearer tok-c"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "bearer"


def test_tokens_file_other_data_sets_are_404(per_set: TestClient) -> None:
    response = per_set.post("/data/svc/satisfaction", json=RECORD, headers={"Authorization": "Bearer tok-t"})
    assert response.status_code == 404
    assert per_set.get("/data/svc/satisfaction").status_code == 404


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"token": "a", "tokens": {"svc/t": "b"}},
        {"token": " "},
        {"tokens": {"svc": "b"}},
        {"tokens": {"Svc/t": "b"}},
        {"tokens": {"svc/t": ""}},
        {"token": "a", "max_body_bytes": 0},
    ],
)
def test_bad_configuration_is_a_configuration_error(kwargs: dict[str, object], tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        create_app(db=tmp_path / "x.db", **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ other routes


def test_status(platform: Platform) -> None:
    response = platform.client.get("/_status")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_status_is_500_when_the_database_is_gone() -> None:
    app = create_app(token=TOKEN)
    app.state.store.close()
    response = TestClient(app).get("/_status")
    assert response.status_code == 500
    assert response.json()["status"] == "error"


def test_openapi_describes_both_apis(platform: Platform) -> None:
    spec = platform.client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    operations = spec["paths"]["/data/{group}/{type}"]
    assert {"get", "post", "put"} <= set(operations)
    assert "/_status" in spec["paths"]


def test_unknown_route_and_method_answer_json(platform: Platform) -> None:
    response = platform.client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["status"] == "error"
    response = platform.client.delete(URL, headers=AUTH)
    assert response.status_code == 405
    assert response.json()["status"] == "error"


def test_an_id_of_256_characters_is_taken(platform: Platform) -> None:
    platform.write([RECORD | {"_id": "x" * 256}])
    assert [r["_id"] for r in platform.data()] == ["x" * 256]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/data/" + "a" * 65 + "/transactions", "the data group name is 65 characters long; the most is 64"),
        ("/data/svc/" + "t" * 300, "the data type name is 300 characters long; the most is 64"),
    ],
)
def test_a_data_set_name_over_64_characters_is_400_saying_so(platform: Platform, url: str, message: str) -> None:
    response = platform.post([RECORD], url)
    assert response.status_code == 400
    assert response.json()["messages"] == [message]
    assert platform.client.put(url, json=[], headers=AUTH).status_code == 400
    assert platform.client.get(url).status_code == 404  # no data set has it
    assert platform.client.app.state.store.last_updated() == {}  # type: ignore[attr-defined]


def test_a_data_set_name_of_64_characters_is_taken(platform: Platform) -> None:
    url = "/data/" + "a" * 64 + "/" + "b" * 64
    platform.write([RECORD], url)
    assert len(platform.data(url=url)) == 1


def test_a_configured_data_set_name_over_64_characters_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="lower-case slugs of at most 64 characters"):
        create_app(tokens={"a" * 65 + "/transactions": "t"})
