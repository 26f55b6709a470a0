"""The PostgreSQL store's own duties, on a real server: migrations, exactness under racing writers, ids, secrets, readiness.

What both backends share (the read and write APIs' answers) runs on both in
``tests/unit/platform`` (the ``platform_db`` fixture); here is what only
PostgreSQL has: versioned migrations, several stores (processes) writing the
same ``_id``s at once, ids PostgreSQL text cannot hold, the pool and the
readiness check, and URLs whose password must never be shown.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.platform_db import PostgresServer, require_psycopg

try:
    import psycopg
except ImportError:  # skipped here, a failure in CI
    require_psycopg()

from perf_sdk._errors import ConfigurationError
from perf_sdk.cli import main
from perf_sdk.platform import create_app
from perf_sdk.platform._backend import Backend, open_backend
from perf_sdk.platform._periods import US_PER_HOUR
from perf_sdk.platform._postgres import MIGRATIONS, PostgresStore, migrate, redact
from perf_sdk.platform._query import SENTINEL_HOUR, parse_query
from perf_sdk.platform._store import Store, prepare

LATEST = MIGRATIONS[-1][0]


@pytest.fixture
def store(postgres_url: str) -> Any:
    s = PostgresStore(postgres_url)
    yield s
    s.close()


def _rollup_matches_records(url: str) -> int:
    """Assert both rollups (hourly, daily) equal the records cell by cell; the number of records."""
    total = 0
    with psycopg.connect(url) as conn:
        for table, time, unit in (("rollup", "hour", US_PER_HOUR), ("rollup_day", "day", 24 * US_PER_HOUR)):
            rollup = conn.execute(f"SELECT ds, {time}, dims, n FROM {table}").fetchall()
            rows = conn.execute(
                f"SELECT ds, CASE WHEN ts IS NULL THEN {SENTINEL_HOUR} ELSE floor(ts / {unit}.0)::bigint END, "
                "coalesce(dims, body), count(*) FROM records GROUP BY 1, 2, 3"
            ).fetchall()
            assert all(n > 0 for *_, n in rollup)
            assert Counter({tuple(r[:3]): r[3] for r in rollup}) == Counter({tuple(r[:3]): r[3] for r in rows})
            total = sum(r[3] for r in rows)
    return total


# ------------------------------------------------------------------ choosing the backend


def test_a_postgres_url_chooses_the_postgres_store(postgres_url: str) -> None:
    backend: Backend = open_backend(postgres_url)  # mypy checks the protocol
    assert isinstance(backend, PostgresStore)
    assert backend.ping()
    backend.close()
    assert isinstance(open_backend(":memory:"), Store)


def test_another_scheme_is_refused_not_taken_for_a_file() -> None:
    with pytest.raises(ConfigurationError, match=r"mysql:// is not a database"):
        open_backend("mysql://root:hunter2@db/x")


# ------------------------------------------------------------------ migrations


def test_migrations_are_recorded_and_applied_once(postgres_session: PostgresServer | str) -> None:
    if isinstance(postgres_session, str):
        pytest.skip(postgres_session)
    url = postgres_session.create_database("perf_sdk_migrations")
    with psycopg.connect(url, autocommit=True) as conn:
        assert migrate(conn) == [m[0] for m in MIGRATIONS]
        assert migrate(conn) == []
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m[0] for m in MIGRATIONS]


def test_processes_starting_together_migrate_once(postgres_session: PostgresServer | str) -> None:
    if isinstance(postgres_session, str):
        pytest.skip(postgres_session)
    url = postgres_session.create_database("perf_sdk_migrate_race")
    applied: list[list[int]] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            barrier.wait(timeout=30)
            applied.append(migrate(conn))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(applied) == [[], [], [], [m[0] for m in MIGRATIONS]]


def test_a_database_migrated_by_a_newer_version_is_refused(postgres_session: PostgresServer | str) -> None:
    if isinstance(postgres_session, str):
        pytest.skip(postgres_session)
    url = postgres_session.create_database("perf_sdk_newer")
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, 'from the future')", (LATEST + 1,))
    with pytest.raises(ConfigurationError, match=rf"schema is at version {LATEST + 1}, newer .*upgrade perf-sdk"):
        PostgresStore(url)


def test_the_daily_rollup_migration_fills_it_from_the_hourly_one(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    records = [{"_timestamp": f"1969-12-31T{h:02}:00:00Z", "stage": "s", "count": h} for h in range(20, 24)] + [
        {"_timestamp": "2026-01-02T05:00:00Z", "stage": "t"},
        {"stage": "untimed"},
    ]
    store.write("svc", "t", prepare(records))
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # the database as version 1 left it
        conn.execute("DROP TABLE rollup_day")
        conn.execute("DELETE FROM schema_migrations WHERE version = 2")
        assert migrate(conn) == [2]
    assert _rollup_matches_records(postgres_url) == len(records)


def test_platform_migrate_command(postgres_session: PostgresServer | str, capsys: pytest.CaptureFixture[str]) -> None:
    if isinstance(postgres_session, str):
        pytest.skip(postgres_session)
    url = postgres_session.create_database("perf_sdk_cli_migrate")
    assert main(["platform", "migrate", "--db", url]) == 0
    out = capsys.readouterr().out
    assert f"applied migration 1: {MIGRATIONS[0][1]}" in out
    assert f"schema version {LATEST}" in out
    assert main(["platform", "migrate", "--db", url]) == 0
    assert "(nothing to do)" in capsys.readouterr().out


def test_platform_migrate_reads_the_environment(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    PostgresStore(postgres_url).close()  # migrated
    monkeypatch.setenv("PERF_SDK_PLATFORM_DB", postgres_url)
    assert main(["platform", "migrate"]) == 0
    assert "(nothing to do)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["platform", "migrate"], "--db is required"),
        (["platform", "migrate", "--db", "/tmp/x.db"], "--db must be a postgresql:// URL"),
    ],
)
def test_platform_migrate_refuses_what_it_cannot_migrate(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ secrets


def test_a_password_is_never_shown(postgres_session: PostgresServer | str, capsys: pytest.CaptureFixture[str]) -> None:
    if isinstance(postgres_session, str):
        pytest.skip(postgres_session)
    port = postgres_session.port + 1 if postgres_session.port < 65535 else 1
    url = f"postgresql://perf:s3cr3t-pw@127.0.0.1:{port}/nowhere?password=other-s3cr3t&connect_timeout=2"
    with pytest.raises(ConfigurationError) as caught:
        PostgresStore(url)
    assert "s3cr3t" not in str(caught.value)
    assert "perf:***@127.0.0.1" in str(caught.value)
    assert main(["platform", "migrate", "--db", url]) == 2
    assert main(["serve", "--port", "0", "--db", url]) == 2
    captured = capsys.readouterr()
    assert "s3cr3t" not in captured.out + captured.err
    assert "cannot" in captured.err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db?sslmode=require", "postgresql://u@h/db?sslmode=require"),
        ("postgres://h/db?user=u&password=pw", "postgres://h/db?user=u&password=***"),
        ("postgresql:///db?host=/run/pg", "postgresql:///db?host=/run/pg"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_the_repr_shows_no_password(postgres_session: PostgresServer | str) -> None:
    if isinstance(postgres_session, str):
        pytest.skip(postgres_session)
    url = postgres_session.database("perf_sdk_tests").replace("postgres@", "postgres:not-checked-by-trust@")
    store = PostgresStore(url)
    try:
        assert "not-checked" not in repr(store)
        assert "***" in repr(store)
    finally:
        store.close()


# ------------------------------------------------------------------ readiness


def test_status_checks_the_database(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(db=postgres_url, token="t")
    store: PostgresStore = app.state.store
    try:
        with TestClient(app) as client:
            assert client.get("/_status").status_code == 200
            # The database goes away (its connections end; the address answers no more).
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid <> pg_backend_pid() AND datname = current_database()"
                )
            monkeypatch.setattr(store, "_url", postgres_url.replace("port=", "port=1"))
            response = client.get("/_status")
            assert response.status_code == 500
            assert response.json()["message"] == "cannot reach the database"
            assert response.headers["cache-control"] == "no-cache"
            monkeypatch.setattr(store, "_url", postgres_url)
            assert client.get("/_status").status_code == 200  # back: a fresh connection
    finally:
        store.close()


def test_writes_and_reads_carry_on_after_the_database_drops_every_connection(store: PostgresStore) -> None:
    record = {"_id": "a", "_timestamp": "2026-01-01T10:00:00Z", "stage": "started", "count": 1}
    store.write("svc", "t", prepare([record]))
    for _ in range(2):  # a restart of the database: every pooled connection is gone
        with psycopg.connect(store._url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database()"
            )
        store.write("svc", "t", prepare([record | {"count": 2}, {**record, "_id": "b"}]))
    assert sorted((r["_id"], r["count"]) for r in store.records("svc", "t")) == [("a", 2), ("b", 1)]


def test_a_closed_store_is_not_ready(store: PostgresStore) -> None:
    store.close()
    assert not store.ping()
    with pytest.raises(RuntimeError, match="closed"):
        store.count("svc", "transactions")


# ------------------------------------------------------------------ records


def test_ids_postgres_text_cannot_hold_or_index(store: PostgresStore) -> None:
    ids = ["a\x00b", "x" * 256, "é" * 40, "plain"]
    store.write("svc", "t", prepare([{"_id": i, "stage": "s", "count": 1} for i in ids]))
    store.write("svc", "t", prepare([{"_id": "x" * 256, "stage": "s", "count": 2}]))
    records = store.records("svc", "t")
    assert sorted(r["_id"] for r in records) == sorted(ids)
    assert next(r for r in records if r["_id"] == "x" * 256)["count"] == 2
    q = parse_query([("filter_by", "_id:a\x00b")])
    assert [r["_id"] for r in store.read("svc", "t", q) or []] == ["a\x00b"]
    q = parse_query([("sort_by", "_id:ascending")])
    assert [r["_id"] for r in store.read("svc", "t", q) or []] == sorted(ids)


def test_the_sdks_hex_ids_are_16_bytes_and_read_back_sort_and_filter_as_text(
    store: PostgresStore, postgres_url: str
) -> None:
    hexes = ["0" * 32, "f" * 32, "0123456789abcdef" * 2]
    ids = [*hexes, "0" * 31, "0" * 33, "F" * 32, "g" * 32, "1", "~"]  # around and between them in code-point order
    store.write("svc", "t", prepare([{"_id": i, "stage": "s", "count": 1} for i in ids]))
    store.write("svc", "t", prepare([{"_id": "f" * 32, "stage": "s", "count": 2}]))
    with psycopg.connect(postgres_url) as conn:
        lengths = dict(conn.execute("SELECT length(k), count(*) FROM records WHERE id IS NULL GROUP BY 1"))
    assert lengths[17] == len(hexes)
    records = store.records("svc", "t")
    assert sorted(r["_id"] for r in records) == sorted(ids)
    assert next(r for r in records if r["_id"] == "f" * 32)["count"] == 2
    for rid in ("f" * 32, "F" * 32):
        assert [r["_id"] for r in store.read("svc", "t", parse_query([("filter_by", f"_id:{rid}")])) or []] == [rid]
    for order, reverse in (("ascending", False), ("descending", True)):
        q = parse_query([("sort_by", f"_id:{order}")])
        assert [r["_id"] for r in store.read("svc", "t", q) or []] == sorted(ids, reverse=reverse)
    assert _rollup_matches_records(postgres_url) == len(ids)


def test_the_compact_id_migration_turns_stored_hex_ids_into_16_bytes(postgres_url: str) -> None:
    hexes = ["0123456789abcdef" * 2, "f" * 32]
    others = ["0" * 31, "F" * 32, "x" * 70]
    store = PostgresStore(postgres_url)
    store.write("svc", "t", prepare([{"_id": i, "stage": "s", "count": 1} for i in hexes + others]))
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # the keys as version 2 stored them
        conn.execute(
            "UPDATE records SET k = convert_to(encode(substring(k FROM 2), 'hex'), 'UTF8') "
            "WHERE length(k) = 17 AND get_byte(k, 0) = 254"
        )
        assert conn.execute("SELECT count(*) FROM records WHERE length(k) = 17").fetchone() == (0,)
        conn.execute("DELETE FROM schema_migrations WHERE version = 3")
        assert migrate(conn) == [3]
        assert conn.execute("SELECT count(*) FROM records WHERE length(k) = 17").fetchone() == (len(hexes),)
    store.write("svc", "t", prepare([{"_id": i, "stage": "s", "count": 2} for i in hexes]))  # replaces
    assert sorted((r["_id"], r["count"]) for r in store.records("svc", "t")) == sorted(
        [(i, 2) for i in hexes] + [(i, 1) for i in others]
    )
    store.close()
    assert _rollup_matches_records(postgres_url) == len(hexes + others)


def test_a_record_sent_twice_in_a_batch_is_stored_once_as_its_last_version(
    store: PostgresStore, postgres_url: str
) -> None:
    batch = [
        {"_id": "a", "_timestamp": "2026-01-01T10:00:00Z", "stage": "started", "count": 1},
        {"_id": "b", "_timestamp": "2026-01-01T10:00:00Z", "stage": "started", "count": 1},
        {"_id": "a", "_timestamp": "2026-02-01T10:00:00Z", "stage": "completed", "count": 5},
    ]
    store.write("svc", "t", prepare(batch))
    assert sorted((r["_id"], r["count"]) for r in store.records("svc", "t")) == [("a", 5), ("b", 1)]
    assert _rollup_matches_records(postgres_url) == 2


def test_records_keep_the_order_they_were_sent_in(store: PostgresStore) -> None:
    ids = ["zz", "aa", "mm", "bb"]
    store.write("svc", "t", prepare([{"_id": i, "stage": "s"} for i in ids]))
    store.write("svc", "t", prepare([{"_id": "cc", "stage": "s"}, {"_id": "aa", "stage": "t"}]))
    assert [r["_id"] for r in store.records("svc", "t")] == [*ids, "cc"]


def test_a_batch_of_new_changed_and_unchanged_records_falls_back_to_the_upsert(
    store: PostgresStore, postgres_url: str
) -> None:
    """The insert as new rows fails on the existing keys; the fallback stores the new, rewrites only the changed."""
    old = [{"_id": f"{i:032x}", "_timestamp": "2026-01-01T10:00:00Z", "stage": "started"} for i in range(4)]
    store.write("svc", "t", prepare(old))
    with psycopg.connect(postgres_url) as conn:
        before = dict(conn.execute("SELECT k, xmin::text FROM records"))
    changed = {**old[1], "stage": "completed", "_timestamp": "2026-03-01T10:00:00Z"}
    new = {"_id": "new", "_timestamp": "2026-01-01T10:00:00Z", "stage": "started"}
    store.write("svc", "t", prepare([old[0], changed, new, old[2]]))
    with psycopg.connect(postgres_url) as conn:
        after = dict(conn.execute("SELECT k, xmin::text FROM records"))
    assert [k for k in before if after[k] != before[k]] == [bytes.fromhex("fe" + old[1]["_id"])]
    assert [(r["_id"], r["stage"]) for r in store.records("svc", "t")] == [
        (old[0]["_id"], "started"),
        (old[2]["_id"], "started"),
        (old[3]["_id"], "started"),
        ("new", "started"),
        (old[1]["_id"], "completed"),
    ]
    assert _rollup_matches_records(postgres_url) == 5


def test_empty_and_delete_leave_no_rollup(store: PostgresStore, postgres_url: str) -> None:
    record = {"_timestamp": "2026-01-01T10:00:00Z", "stage": "started", "txn": "f" * 64}
    store.write("svc", "t", prepare([record]), now_us=1)
    store.write("svc", "u", prepare([record]), now_us=2)
    store.empty("svc", "t")
    assert store.count("svc", "t") == 0
    assert store.delete("svc", "u")
    assert store.last_updated() == {("svc", "t"): 1}
    assert _rollup_matches_records(postgres_url) == 0
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM wide_fields").fetchone() == (0,)


# ------------------------------------------------------------------ racing writers


def test_stores_racing_on_the_same_ids_keep_the_rollup_exact(postgres_url: str) -> None:
    """Two stores (two processes' pools), eight threads, batches that overlap in ids and change every field."""
    stores = [PostgresStore(postgres_url, pool_size=4), PostgresStore(postgres_url, pool_size=4)]
    ids = [f"id-{n}" for n in range(200)]
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        store = stores[seed % 2]
        try:
            barrier.wait(timeout=30)
            for _ in range(25):
                batch = [
                    {
                        "_id": rid,
                        "_timestamp": f"2026-01-0{rng.randint(1, 3)}T{rng.randint(10, 12)}:00:00Z",
                        "stage": rng.choice(["started", "completed"]),
                        "count": rng.randint(1, 9),
                    }
                    for rid in rng.sample(ids, 80)
                ]
                if rng.random() < 0.2:
                    batch += batch[:5]  # a record twice in one batch
                store.write("svc", "transactions", prepare(batch), now_us=seed)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    try:
        assert not errors, errors
        assert _rollup_matches_records(postgres_url) == stores[0].count("svc", "transactions")
        records = stores[0].records("svc", "transactions")
        query = parse_query([("group_by", "stage"), ("collect", "count:sum"), ("period", "day")])
        answer = stores[1].read("svc", "transactions", query)
        for item in answer or []:
            stage_records = [r for r in records if r["stage"] == item["stage"]]
            assert item["_count"] == len(stage_records)
            assert item["count:sum"] == sum(r["count"] for r in stage_records)
    finally:
        for store in stores:
            store.close()


def test_emptying_a_data_set_while_others_write_it_keeps_the_rollup_exact(postgres_url: str) -> None:
    """``PUT []`` waits for the writers in flight and holds new ones back: no rollup row outlives its records."""
    stores = [PostgresStore(postgres_url, pool_size=4), PostgresStore(postgres_url, pool_size=4)]
    barrier = threading.Barrier(5)
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait(timeout=30)
            for _ in range(20):
                batch = [
                    {"_id": f"id-{rng.randint(0, 150)}", "_timestamp": f"2026-01-01T{rng.randint(10, 14)}:00:00Z"}
                    | {"stage": rng.choice(["a", "b"]), "txn": rng.choice(["t" * 50, "short"])}
                    for _ in range(60)
                ]
                stores[seed % 2].write("svc", "transactions", prepare(batch), now_us=seed)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    def emptier() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(6):
                stores[1].empty("svc", "transactions")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    threads.append(threading.Thread(target=emptier))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    try:
        assert not errors, errors
        assert _rollup_matches_records(postgres_url) == stores[0].count("svc", "transactions")
        with psycopg.connect(postgres_url) as conn:
            wide_records = conn.execute("SELECT count(*) FROM records WHERE dims IS NOT NULL").fetchone()
            wide = {row[0] for row in conn.execute("SELECT field FROM wide_fields")}
        if wide_records != (0,):
            assert wide == {"txn"}  # else the rollup would answer group_by=txn without the long values
    finally:
        for store in stores:
            store.close()


def test_serve_takes_the_database_from_the_environment(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import perf_sdk.platform._server as server_module

    seen: dict[str, Any] = {}

    def fake_serve(app: Any, sock: Any, **kwargs: Any) -> None:
        seen["store"] = app.state.store

    monkeypatch.setattr(server_module, "serve", fake_serve)
    # Trust authentication ignores the password: the server starts, and its banner must not show it.
    monkeypatch.setenv("PERF_SDK_PLATFORM_DB", postgres_url.replace("postgres@", "postgres:hunter2-pw@", 1))
    assert main(["serve", "--port", "0", "--token", "t"]) == 0
    assert isinstance(seen["store"], PostgresStore)
    out = capsys.readouterr().out
    assert "storage: postgresql://postgres:***@/perf_sdk_tests?host=" in out
    assert "hunter2" not in out
