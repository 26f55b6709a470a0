"""Fixtures for the local platform's unit tests: an app on each storage backend and a test client.

``platform_db`` is parametrised: every test that uses it (or ``platform``) runs
once on SQLite (in memory) and once on PostgreSQL (``tests/platform_db.py``:
skipped without PostgreSQL, a failure where ``CI`` is set).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from perf_sdk.platform import create_app

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
URL = "/data/svc/transactions"


class Platform:
    """A TestClient with the shortcuts the tests use."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def post(self, records: Any, url: str = URL, **kwargs: Any) -> Any:
        response = self.client.post(url, json=records, headers=AUTH, **kwargs)
        return response

    def write(self, records: Any, url: str = URL) -> None:
        response = self.post(records, url)
        assert response.status_code == 200, response.text

    def count(self, group: str = "svc", type_: str = "transactions") -> int:
        return int(self.client.app.state.store.count(group, type_))  # type: ignore[attr-defined]

    def get(self, query: str = "", url: str = URL) -> Any:
        return self.client.get(f"{url}?{query}" if query else url)

    def data(self, query: str = "", url: str = URL) -> list[dict[str, Any]]:
        response = self.get(query, url)
        assert response.status_code == 200, response.text
        body = response.json()
        assert list(body) == ["data"]
        return body["data"]  # type: ignore[no-any-return]


#: Tests of SQLite's own behaviour (one in-memory connection behind a lock): not run on PostgreSQL.
SQLITE_ONLY = frozenset({"test_status_does_not_queue_behind_a_read_holding_the_in_memory_database"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept = [i for i in items if not (i.name.endswith("[postgres]") and i.name.split("[")[0] in SQLITE_ONLY)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.fixture(params=["sqlite", "postgres"])
def platform_db(request: pytest.FixtureRequest) -> str:
    """The ``db`` to give ``create_app``: SQLite in memory, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return ":memory:"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def platform(platform_db: str) -> Iterator[Platform]:
    app = create_app(db=platform_db, token=TOKEN)
    with TestClient(app) as client:
        yield Platform(client)
    app.state.store.close()
