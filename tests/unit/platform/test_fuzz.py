"""Property-based requests from the OpenAPI description: the platform never answers 5xx."""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.specs.openapi.schemas import OpenApiSchema

from perf_sdk.platform import create_app
from perf_sdk.platform._openapi import openapi_spec

TOKEN = "fuzz-token"
APP = create_app(tokens={"svc/transactions": TOKEN})
SEED = [
    {"_id": f"r{i}", "_timestamp": f"2026-0{1 + i % 6}-0{1 + i % 9}T0{i % 10}:00:00Z", "stage": s, "count": i}
    for i, s in enumerate(["started", "completed"] * 10)
]


def _schema() -> OpenApiSchema:
    spec = openapi_spec(max_body_bytes=5 * 1024 * 1024)
    # Aim the generated requests at the declared data set, so that reads and
    # writes reach the query and storage code instead of stopping at 404.
    for param in spec["paths"]["/data/{group}/{type}"]["parameters"]:
        param["schema"] = {"type": "string", "enum": ["svc" if param["name"] == "group" else "transactions"]}
    schema = schemathesis.openapi.from_dict(spec)
    schema.app = APP
    return schema


schema = _schema()


@pytest.fixture(scope="module", autouse=True)
def _seed() -> None:
    from starlette.testclient import TestClient

    response = TestClient(APP).post("/data/svc/transactions", json=SEED, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


@schema.parametrize()
@hypothesis.settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: Any) -> None:
    if case.method in ("POST", "PUT"):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, case.query, case.body, response.text)
