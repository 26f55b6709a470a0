"""The SQLite store's own duties: last writes, deleting a data set, opening a database made by an older version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from perf_sdk.platform._backend import Backend
from perf_sdk.platform._store import Store, prepare


def test_the_store_is_a_backend() -> None:
    store: Backend = Store()  # mypy checks the protocol; this checks it at run time too
    assert store.ping()
    store.close()


def test_last_updated_is_the_time_of_the_last_write() -> None:
    store = Store()
    store.create("svc", "costs")
    store.write("svc", "transactions", prepare([{"stage": "started"}]), now_us=1_000)
    store.write("svc", "transactions", prepare([{"stage": "completed"}]), now_us=5_000)
    assert store.last_updated() == {("svc", "costs"): None, ("svc", "transactions"): 5_000}
    store.close()


def test_delete_removes_the_data_set_and_everything_in_it() -> None:
    store = Store()
    store.write("svc", "transactions", prepare([{"stage": "started", "_timestamp": "2026-01-01"}]), now_us=1)
    assert store.delete("svc", "transactions")
    assert not store.delete("svc", "transactions")
    assert store.count("svc", "transactions") == 0
    assert ("svc", "transactions") not in store.last_updated()
    # Written again, it starts empty, its rollup too.
    store.write("svc", "transactions", prepare([{"stage": "completed", "_timestamp": "2026-01-01"}]), now_us=2)
    assert store.records("svc", "transactions")[0]["stage"] == "completed"
    store.close()


def test_a_database_from_before_last_writes_were_kept_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE datasets (id INTEGER PRIMARY KEY, grp TEXT NOT NULL, typ TEXT NOT NULL, UNIQUE (grp, typ))"
    )
    conn.execute("INSERT INTO datasets (grp, typ) VALUES ('svc', 'transactions')")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.last_updated() == {("svc", "transactions"): None}
    store.write("svc", "transactions", prepare([{"stage": "started"}]), now_us=7)
    assert store.last_updated() == {("svc", "transactions"): 7}
    store.close()


def test_the_app_takes_another_backend() -> None:
    from starlette.testclient import TestClient

    from perf_sdk.platform import create_app

    store = Store()
    app = create_app(token="t", backend=store)
    assert app.state.store is store
    with TestClient(app) as client:
        assert client.post("/data/svc/x", json={"stage": "s"}, headers={"Authorization": "Bearer t"}).status_code == 200
    assert store.count("svc", "x") == 1
    store.close()
