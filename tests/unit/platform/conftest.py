"""Fixtures for the local platform's unit tests: an in-memory app and a test client."""

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


@pytest.fixture
def platform() -> Iterator[Platform]:
    app = create_app(token=TOKEN)
    with TestClient(app) as client:
        yield Platform(client)
    app.state.store.close()
