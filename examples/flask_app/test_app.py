"""The service team's own tests of the Flask example, with perf_sdk.testing: no platform, no disk.

    pytest examples/flask_app/test_app.py

The ``perf_tracker`` fixture (installed with perf_sdk as a pytest plugin) is a
capturing tracker: it validates strictly and keeps records in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from app import create_app
from flask.testing import FlaskClient

from perf_sdk.testing import CapturingTracker, capture


@pytest.fixture
def client(perf_tracker: CapturingTracker) -> Iterator[FlaskClient]:
    with create_app(perf_tracker).test_client() as client:
        yield client


def test_a_completed_application_counts_one_start_and_one_completion(
    client: FlaskClient, perf_tracker: CapturingTracker
) -> None:
    client.get("/apply")
    response = client.post("/apply", data={"name": "Ada Lovelace"}, follow_redirects=True)
    assert response.status_code == 200
    assert perf_tracker.counts() == {"started": 1, "completed": 1}


def test_refreshing_the_confirmation_page_counts_nothing_more(
    client: FlaskClient, perf_tracker: CapturingTracker
) -> None:
    client.get("/apply")
    client.post("/apply", data={"name": "Ada Lovelace"}, follow_redirects=True)
    client.get("/apply/confirmation")
    client.get("/apply/confirmation")
    assert perf_tracker.counts() == {"started": 1, "completed": 1}


def test_a_form_with_errors_is_not_a_completion(client: FlaskClient, perf_tracker: CapturingTracker) -> None:
    client.get("/apply")
    assert client.post("/apply", data={"name": ""}).status_code == 422
    assert perf_tracker.counts() == {"started": 1}


def test_feedback_is_recorded_once_per_transaction() -> None:
    with capture(service="apply-for-a-licence") as tracker, create_app(tracker).test_client() as client:
        client.get("/apply")
        client.post("/apply", data={"name": "Ada Lovelace"}, follow_redirects=True)
        client.post("/feedback", data={"rating": "5"})
        client.post("/feedback", data={"rating": "4"})  # changed their mind: the latest answer stands
        ratings = {r["_id"]: r["rating"] for r in tracker.of("satisfaction")}
        assert list(ratings.values()) == [4]
