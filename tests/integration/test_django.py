"""The Django integration: a real Django project (this module is its URLconf), sync and async."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import httpx
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only-secret-key",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.sessions"],
        DATABASES={},
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "perf_sdk.integrations.django.PerfSdkMiddleware",
        ],
        USE_TZ=True,
    )
    django.setup()

from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import include, path

from perf_sdk import ConfigurationError
from perf_sdk.integrations import Journey
from perf_sdk.integrations.django import PerfSdkMiddleware, get_engine, record_satisfaction
from perf_sdk.testing import CapturingTracker, capture
from tests.conftest import SECRET, SERVICE


def form(request: HttpRequest) -> HttpResponse:
    return HttpResponse("form")


def done(request: HttpRequest) -> HttpResponse:
    return HttpResponse("done")


def broken(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no", status=500)


async def feedback(request: HttpRequest) -> HttpResponse:
    record_satisfaction(request, int(request.GET.get("rating", "5")))
    return HttpResponse("thanks")


urlpatterns = [
    path("apply", form, name="apply"),
    path("apply/done", done, name="done"),
    path("apply/broken", broken, name="broken"),
    path("feedback", feedback, name="feedback"),
    path("licences/", include(([path("renew", form, name="renew")], "licences"))),
]
JOURNEYS = [Journey("apply", start="route:apply", complete="/apply/done")]


@pytest.fixture
def tracker() -> Iterator[CapturingTracker]:
    with capture(service=SERVICE) as t, override_settings(PERF_SDK={"tracker": t, "journeys": JOURNEYS}):
        yield t


def test_sync_counts_a_journey_once(tracker: CapturingTracker) -> None:
    client = Client()
    response = client.get("/apply")
    cookie = response.cookies["perf_sdk_txn"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert cookie["secure"]  # the test client's host is "testserver", not loopback
    client.get("/apply")
    client.get("/apply/done")
    client.get("/apply/done")
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_loopback_host_gets_a_cookie_without_secure(tracker: CapturingTracker) -> None:
    response = Client(HTTP_HOST="127.0.0.1:8000").get("/apply")
    assert not response.cookies["perf_sdk_txn"]["secure"]


def test_errors_and_bots_are_not_counted(tracker: CapturingTracker) -> None:
    with override_settings(
        PERF_SDK={"tracker": tracker, "journeys": [Journey("a", start="/apply", complete="route:broken")]}
    ):
        client = Client()
        client.get("/apply", HTTP_USER_AGENT="Mozilla/5.0 (compatible; bingbot/2.0)")
        assert tracker.counts() == {}
        client.get("/apply")
        client.get("/apply/broken")
        client.get("/nowhere")  # 404, and no resolver match
        assert tracker.counts() == {"started": 1}


def test_namespaced_route_names(tracker: CapturingTracker) -> None:
    with override_settings(
        PERF_SDK={"tracker": tracker, "journeys": [Journey("renew", start="route:licences:renew", complete="/x")]}
    ):
        Client().get("/licences/renew")
    assert tracker.counts() == {"started": 1}


def test_async_through_the_asgi_handler(tracker: CapturingTracker) -> None:
    async def visit() -> None:
        transport = httpx.ASGITransport(app=get_asgi_application())
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            await client.get("/apply")
            await client.get("/apply/done")
            await client.get("/apply/done")
            await client.get("/feedback?rating=2")

    asyncio.run(visit())
    assert tracker.counts() == {"started": 1, "completed": 1}
    [rating] = tracker.of("satisfaction")
    txn_ids = {r["_id"] for r in tracker.of("transactions")}
    assert rating["rating"] == 2 and rating["_id"] not in txn_ids


def test_middleware_is_async_capable_without_a_thread_hop() -> None:
    async def get_response(request: Any) -> HttpResponse:
        return HttpResponse()

    with capture(service=SERVICE) as t, override_settings(PERF_SDK={"tracker": t, "journeys": JOURNEYS}):
        middleware = PerfSdkMiddleware(get_response)
        assert middleware.is_async and asyncio.iscoroutinefunction(middleware)
        assert PerfSdkMiddleware.sync_capable and PerfSdkMiddleware.async_capable


def test_session_mode(tracker: CapturingTracker) -> None:
    with override_settings(PERF_SDK={"tracker": tracker, "journeys": JOURNEYS, "use_session": True}):
        client = Client()
        response = client.get("/apply")
        assert "perf_sdk_txn" not in response.cookies and "sessionid" in response.cookies
        client.get("/apply/done")
        client.get("/apply/done")
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_one_tracker_per_process_built_from_settings(tmp_path: Path) -> None:
    config = {
        "service": SERVICE,
        "endpoint": "http://127.0.0.1:9",
        "token": "t",
        "secret": SECRET,
        "spool_dir": str(tmp_path),
        "journeys": JOURNEYS,
        "count_unstarted_completions": True,
    }
    with override_settings(PERF_SDK=config):
        first, second = get_engine(), get_engine()
        assert first.tracker is second.tracker
        assert first.count_unstarted_completions
        first.tracker.close(timeout=0)  # type: ignore[attr-defined]


def test_configuration_errors_say_what_to_set() -> None:
    with override_settings(PERF_SDK=None), pytest.raises(ConfigurationError, match=r"settings\.PERF_SDK"):
        get_engine()
    with capture() as t, override_settings(PERF_SDK={"tracker": t, "service": "x"}), pytest.raises(ConfigurationError):
        get_engine()
    with override_settings(PERF_SDK={"service": SERVICE}), pytest.raises(ConfigurationError, match="secret"):
        get_engine()


def test_missing_django_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['django'] = None; sys.modules['django.conf'] = None\n"
        "try:\n    import perf_sdk.integrations.django\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ConfigurationError") and "pip install 'perf-sdk[django]'" in out


def test_asgi_application_closes_the_process_tracker_at_lifespan_shutdown(tmp_path: Path) -> None:
    """uvicorn ends its workers without atexit: the lifespan's shutdown is where the tracker delivers."""
    from perf_sdk.integrations.django import get_asgi_application as perf_sdk_asgi_application

    config = {
        "service": SERVICE,
        "endpoint": "http://127.0.0.1:9",
        "token": "t",
        "secret": SECRET,
        "spool_dir": str(tmp_path),
        "journeys": JOURNEYS,
    }
    sent: list[str] = []

    async def run() -> None:
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> Any:
            return messages.pop(0)

        async def send(message: Any) -> None:
            sent.append(message["type"])

        await perf_sdk_asgi_application()({"type": "lifespan"}, receive, send)

    with override_settings(PERF_SDK=config):
        tracker = get_engine().tracker
        asyncio.run(run())
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert tracker._closed  # type: ignore[attr-defined]
