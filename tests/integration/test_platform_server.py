"""LocalPlatform over real loopback: start, write, read, stop fast, leave nothing behind.

Every test that stores or reads runs on both backends (``db``): SQLite, and a real
PostgreSQL (skipped with how to enable it where there is none; never skipped in CI).
"""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path

import httpx
import pytest

from perf_sdk.platform import LocalPlatform

RECORD = {"_id": "r1", "_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 2}
AUTH = {"Authorization": "Bearer dev-token"}


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> str | None:
    """LocalPlatform's ``db``: its own temporary SQLite file, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


def _platform_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("perf-sdk-platform")]


def test_start_post_read_stop(db: str | None) -> None:
    with LocalPlatform(db) as platform:
        assert platform.url.startswith("http://127.0.0.1:")
        assert platform.running
        url = f"{platform.url}/data/my-service/transactions"
        with httpx.Client() as client:
            assert client.get(f"{platform.url}/_status").json()["status"] == "ok"
            response = client.post(url, json=[RECORD, RECORD | {"_id": "r2"}], headers=AUTH)
            assert response.json() == {"status": "ok"}
            data = client.get(url, params={"group_by": "stage", "collect": "count:sum"}).json()
        assert data == {"data": [{"stage": "started", "_count": 2, "count:sum": 4}]}
        assert platform.count("my-service", "transactions") == 2
        assert platform.records("my-service", "transactions")[0] == RECORD | {"_timestamp": "2026-01-05T10:00:00+00:00"}
        tmpdir = Path(platform._tmpdir) if platform._tmpdir else None  # SQLite's own temporary file
        assert (tmpdir is None) == (db is not None)
        assert tmpdir is None or tmpdir.is_dir()
    # (Leaving the block stopped it: a stop that waited on an idle keep-alive connection would hang here, and
    # pytest's timeout would fail the test; how long a stop takes is a figure, not an assertion.)
    assert not platform.running
    assert not _platform_threads()
    assert tmpdir is None or not tmpdir.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def test_stop_with_an_idle_keep_alive_connection_is_fast() -> None:
    platform = LocalPlatform().start()
    client = httpx.Client(base_url=platform.url)
    assert client.get("/_status").status_code == 200  # leaves the connection open
    stopper = threading.Thread(target=platform.stop)
    stopper.start()
    stopper.join(60)  # an idle keep-alive connection must not hold the stop (uvicorn would wait for it)
    assert not stopper.is_alive()
    client.close()
    platform.stop()  # idempotent


def test_gzip_over_the_wire(db: str | None) -> None:
    with LocalPlatform(db) as platform:
        body = gzip.compress(json.dumps([RECORD]).encode())
        response = httpx.post(
            f"{platform.url}/data/svc/transactions",
            content=body,
            headers=AUTH | {"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert response.status_code == 200
        assert platform.count("svc", "transactions") == 1


def test_a_tracker_sends_its_packed_spool_as_one_gzip_stream_of_members(db: str | None, tmp_path: Path) -> None:
    # The SDK's own wire format since packing: "[" , segment, ",", segment, "]" as gzip members of one body.
    import perf_sdk

    settings = {"service": "svc", "token": "dev-token", "secret": "s" * 32, "spool_dir": tmp_path / "spool"}
    away = perf_sdk.Tracker(endpoint="http://127.0.0.1:9", **settings)  # the platform is away: segments pile up
    for chunk in range(3):
        for i in range(1_000):
            away.complete(f"t-{chunk}-{i}", at=1_767_225_600.0 + i)
        assert away.persist(60)
    assert away.health().spool_depth == 3_000
    away.close(0.5)
    with LocalPlatform(db) as platform:
        heir = perf_sdk.Tracker(endpoint=platform.url, **settings)
        assert heir.flush(60).pending == 0
        heir.close(5)
        assert platform.count("svc", "transactions") == 3_000


def test_a_database_file_outlives_the_server(tmp_path: Path) -> None:
    db = tmp_path / "platform.db"
    with LocalPlatform(db) as platform:
        httpx.post(f"{platform.url}/data/svc/transactions", json=RECORD, headers=AUTH).raise_for_status()
    assert db.exists()
    with LocalPlatform(db) as platform:
        assert platform.count("svc", "transactions") == 1


def test_tokens_replace_the_single_token(db: str | None) -> None:
    with LocalPlatform(db, tokens={"svc/transactions": "secret"}) as platform:
        url = f"{platform.url}/data/svc/transactions"
        assert httpx.post(url, json=RECORD, headers=AUTH).status_code == 401
        assert httpx.post(url, json=RECORD, headers={"Authorization": "Bearer secret"}).status_code == 200
        other = f"{platform.url}/data/svc/costs"
        assert httpx.post(other, json=RECORD, headers={"Authorization": "Bearer secret"}).status_code == 404


def test_two_platforms_get_different_ports() -> None:
    with LocalPlatform() as one, LocalPlatform() as two:
        assert one.url != two.url


def test_helpers_need_a_started_platform() -> None:
    platform = LocalPlatform()
    with pytest.raises(RuntimeError):
        platform.count("svc", "transactions")
    with pytest.raises(RuntimeError):
        _ = platform.url
    with platform, pytest.raises(RuntimeError, match="already started"):
        platform.start()


# ------------------------------------------------------------------ hardening over the wire


def test_status_and_writes_answer_while_four_reads_are_in_flight(db: str | None) -> None:
    """Reads run on worker threads: four stuck in the middle of their work stall neither /_status nor a write."""
    release = threading.Event()
    entered = threading.Semaphore(0)
    with LocalPlatform(db) as platform:
        store = platform._require_store()
        real_read = store.read

        def held_read(*args: object, **kwargs: object) -> object:
            entered.release()
            release.wait(60)
            return real_read(*args, **kwargs)  # type: ignore[arg-type]

        store.read = held_read  # type: ignore[method-assign]
        url = f"{platform.url}/data/svc/transactions"
        httpx.post(url, json=RECORD, headers=AUTH).raise_for_status()
        results: list[int] = []

        def read() -> None:
            query = {"group_by": "stage", "period": "hour", "collect": "count:sum"}
            results.append(httpx.get(url, params=query, timeout=60).status_code)

        readers = [threading.Thread(target=read) for _ in range(4)]
        try:
            for t in readers:
                t.start()
            for _ in readers:
                assert entered.acquire(timeout=30), "a read never reached the store"
            with httpx.Client(base_url=platform.url, timeout=30) as client:
                status = client.get("/_status")
                assert status.status_code == 200
                assert status.headers["cache-control"] == "no-cache"
                write = client.post("/data/svc/transactions", json=RECORD | {"_id": "r2"}, headers=AUTH)
                assert write.status_code == 200
        finally:
            release.set()
            for t in readers:
                t.join(60)
        assert results == [200, 200, 200, 200]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"limit": str(2**63)}, "the most is 1000000000"),
        ({"period": "hour", "duration": "99999", "group_by": "stage", "collect": "count:sum"}, "periods"),
        ({"group_by": "stage", "collect": [f"f{i}:sum" for i in range(2000)]}, "collect may be given at most"),
        ({"filter_by": [f"f{i}:x" for i in range(3000)]}, "filter_by may be given at most"),
        ({"group_by": "svc\n"}, "is not a valid field name"),
    ],
    ids=["limit-2**63", "hours-99999", "collect-2000", "filter_by-3000", "newline-in-name"],
)
def test_absurd_reads_are_400_over_the_wire(query: dict[str, object], expected: str, db: str | None) -> None:
    with LocalPlatform(db) as platform:
        url = f"{platform.url}/data/svc/transactions"
        httpx.post(url, json=RECORD, headers=AUTH).raise_for_status()
        response = httpx.get(url, params=query, timeout=30)  # type: ignore[arg-type]
        assert response.status_code == 400, response.text
        assert expected in response.json()["message"]
        assert httpx.get(f"{platform.url}/_status").status_code == 200


def test_a_lone_surrogate_is_400_and_the_data_set_still_reads(db: str | None) -> None:
    with LocalPlatform(db) as platform:
        url = f"{platform.url}/data/svc/feedback"
        body = json.dumps([{"comment": "caf\udce9"}, {"comment": "ok"}])
        response = httpx.post(url, content=body, headers=AUTH | {"Content-Type": "application/json"})
        assert response.status_code == 400
        assert "lone surrogate" in response.json()["messages"][0]
        httpx.post(url, json={"_id": "fine", "comment": "caf\u00e9"}, headers=AUTH).raise_for_status()
        assert httpx.get(url).json() == {"data": [{"_id": "fine", "comment": "caf\u00e9"}]}
        assert httpx.get(url, params={"group_by": "comment"}).status_code == 200


def test_a_data_set_configuration_over_the_wire(db: str | None) -> None:
    config = {
        "admin_token": "admin",
        "data_sets": {"svc/transactions": {"token": "tok", "realtime": True, "published": False}},
    }
    with LocalPlatform(db, config=config) as platform:
        url = f"{platform.url}/data/svc/transactions"
        httpx.post(url, json=RECORD, headers={"Authorization": "Bearer tok"}).raise_for_status()
        response = httpx.get(url, params={"group_by": "stage"})
        assert response.json()["warning"].startswith("Warning: This data-set is unpublished.")
        assert response.headers["cache-control"] == "no-cache"
        deleted = httpx.delete(f"{platform.url}/data-sets/svc-transactions", headers={"Authorization": "Bearer admin"})
        assert deleted.json() == {"status": "ok", "message": "Deleted svc-transactions"}
        assert platform.count("svc", "transactions") == 0


def test_review_attacks_over_the_wire_are_refused_cheaply(db: str | None) -> None:
    """The reproductions of the review: a sparse CSV, gzip members by the thousand, long names, Kelvin keys."""
    config = {"token": "dev-token", "admin_token": "admin"}
    with LocalPlatform(db, config=config) as platform, httpx.Client() as client:
        url = f"{platform.url}/data/svc/transactions"
        sparse = [{"_id": f"r{i}", **{f"k{i}_{j}": 1 for j in range(50)}} for i in range(200)]
        client.post(url, json=sparse, headers=AUTH).raise_for_status()
        refused = client.get(url, params={"format": "csv"}, timeout=60)
        assert refused.status_code == 400
        assert refused.json()["message"].startswith("the answer would hold 10001 columns; the most is 1000")
        members = gzip.compress(b"") * 20_000 + gzip.compress(json.dumps(RECORD).encode())
        headers = AUTH | {"Content-Encoding": "gzip"}
        response = client.post(url, content=members, headers=headers, timeout=60)
        assert response.status_code == 400
        assert "more than 1000 members" in response.json()["message"]
        long = client.post(f"{platform.url}/data/{'a' * 300}/transactions", json=RECORD, headers=AUTH)
        assert long.json()["messages"] == ["the data group name is 300 characters long; the most is 64"]
        kelvin = client.post(url, content=b'{"\\u212a\\u212a": 1}', headers=AUTH | {"Content-Type": "application/json"})
        assert kelvin.status_code == 400
        deleted = client.delete(f"{platform.url}/data-sets/svc/transactions", headers={"Authorization": "Bearer admin"})
        assert deleted.json() == {"status": "ok", "message": "Deleted svc/transactions"}


def test_answers_are_rendered_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four answers stuck while being encoded stall neither /_status nor a write (encoding is CPU-bound)."""
    from perf_sdk.platform import _app

    release = threading.Event()
    entered = threading.Semaphore(0)
    real_render = _app.render_json

    def held_render(*args: object, **kwargs: object) -> bytes:
        entered.release()
        release.wait(60)
        return real_render(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_app, "render_json", held_render)
    with LocalPlatform() as platform:
        url = f"{platform.url}/data/svc/transactions"
        httpx.post(url, json=RECORD, headers=AUTH).raise_for_status()
        results: list[int] = []
        readers = [
            threading.Thread(
                target=lambda: results.append(httpx.get(url, params={"group_by": "stage"}, timeout=60).status_code)
            )
            for _ in range(4)
        ]
        try:
            for t in readers:
                t.start()
            for _ in readers:
                assert entered.acquire(timeout=30), "a read never reached its rendering"
            with httpx.Client(base_url=platform.url, timeout=30) as client:
                assert client.get("/_status").status_code == 200
                assert client.post("/data/svc/transactions", json=RECORD, headers=AUTH).status_code == 200
        finally:
            release.set()
            for t in readers:
                t.join(60)
        assert results == [200, 200, 200, 200]
