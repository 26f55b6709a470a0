"""LocalPlatform over real loopback: start, write, read, stop fast, leave nothing behind."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from perf_sdk.platform import LocalPlatform

RECORD = {"_id": "r1", "_timestamp": "2026-01-05T10:00:00Z", "stage": "started", "channel": "digital", "count": 2}
AUTH = {"Authorization": "Bearer dev-token"}


def _platform_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("perf-sdk-platform")]


def test_start_post_read_stop() -> None:
    with LocalPlatform() as platform:
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
        tmpdir = Path(platform._tmpdir or "")
        assert tmpdir.is_dir()
        started = time.perf_counter()
    assert time.perf_counter() - started < 2.0
    assert not platform.running
    assert not _platform_threads()
    assert not tmpdir.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def test_stop_with_an_idle_keep_alive_connection_is_fast() -> None:
    platform = LocalPlatform().start()
    client = httpx.Client(base_url=platform.url)
    assert client.get("/_status").status_code == 200  # leaves the connection open
    started = time.perf_counter()
    platform.stop()
    assert time.perf_counter() - started < 2.0
    client.close()
    platform.stop()  # idempotent


def test_gzip_over_the_wire() -> None:
    with LocalPlatform() as platform:
        body = gzip.compress(json.dumps([RECORD]).encode())
        response = httpx.post(
            f"{platform.url}/data/svc/transactions",
            content=body,
            headers=AUTH | {"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert response.status_code == 200
        assert platform.count("svc", "transactions") == 1


def test_a_database_file_outlives_the_server(tmp_path: Path) -> None:
    db = tmp_path / "platform.db"
    with LocalPlatform(db) as platform:
        httpx.post(f"{platform.url}/data/svc/transactions", json=RECORD, headers=AUTH).raise_for_status()
    assert db.exists()
    with LocalPlatform(db) as platform:
        assert platform.count("svc", "transactions") == 1


def test_tokens_replace_the_single_token() -> None:
    with LocalPlatform(tokens={"svc/transactions": "secret"}) as platform:
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
