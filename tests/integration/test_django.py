"""The Django integration: a real Django project (this module is its URLconf), sync and async."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import threading
import time
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
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.test import Client, override_settings
from django.urls import include, path

import perf_sdk
import perf_sdk.integrations.django as django_integration
from perf_sdk import ConfigurationError
from perf_sdk.integrations import Journey
from perf_sdk.integrations.django import PerfSdkMiddleware, get_engine, record_satisfaction
from perf_sdk.testing import CapturingTracker, capture
from tests.conftest import SECRET, SERVICE
from tests.integration.journey_cookies import COOKIE, LEGACY_COOKIE, bad_cookies


def form(request: HttpRequest) -> HttpResponse:
    return HttpResponse("form")


def done(request: HttpRequest) -> HttpResponse:
    return HttpResponse("done")


def broken(request: HttpRequest) -> HttpResponse:
    return HttpResponse("no", status=500)


async def feedback(request: HttpRequest) -> HttpResponse:
    record_satisfaction(request, int(request.GET.get("rating", "5")))
    return HttpResponse("thanks")


def confirmation(request: HttpRequest) -> HttpResponse:
    """A confirmation page guarding itself, as services do: nothing submitted, back to the form."""
    if request.method == "POST":
        return HttpResponseRedirect("/apply/confirmation", status=303)  # post-redirect-get
    if not request.GET.get("submitted"):
        return HttpResponseRedirect("/apply")
    return HttpResponse("Application complete")


urlpatterns = [
    path("apply", form, name="apply"),
    path("apply/done", done, name="done"),
    path("apply/broken", broken, name="broken"),
    path("feedback", feedback, name="feedback"),
    path("apply/confirmation", confirmation, name="confirmation"),
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
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert cookie["secure"]  # the test client's host is "testserver", not loopback
    client.get("/apply")
    client.get("/apply/done")
    client.get("/apply/done")
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_loopback_host_gets_a_cookie_without_secure(tracker: CapturingTracker) -> None:
    response = Client(HTTP_HOST="127.0.0.1:8000").get("/apply")
    assert not response.cookies[COOKIE]["secure"]


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
        assert COOKIE not in response.cookies and "sessionid" in response.cookies
        client.get("/apply/done")
        client.get("/apply/done")
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_one_tracker_per_process_built_from_settings(tmp_path: Path) -> None:
    config = settings_tracker(tmp_path, count_unstarted_completions=True)
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


def test_a_local_run_with_no_endpoint_and_no_secret_starts(caplog: pytest.LogCaptureFixture) -> None:
    """No endpoint: a switched-off tracker, whose cookies are signed with a key of this process (said at INFO)."""
    with override_settings(PERF_SDK={"service": SERVICE, "journeys": JOURNEYS}), caplog.at_level("INFO", "perf_sdk"):
        engine = get_engine()
    assert not engine.tracker.settings.enabled  # type: ignore[attr-defined]
    assert "random key of this process" in caplog.text


def test_journey_cookies_need_the_secret(tmp_path: Path) -> None:
    """Without a secret a made-up cookie could count a completion: refused when the middleware is built."""
    no_secret = perf_sdk.Tracker(service=SERVICE, endpoint="http://127.0.0.1:9", token="t", spool_dir=tmp_path)
    try:
        with override_settings(PERF_SDK={"tracker": no_secret, "journeys": JOURNEYS}):
            with pytest.raises(ConfigurationError, match=r"secret.*PERF_SDK_SECRET"):
                PerfSdkMiddleware(lambda request: HttpResponse("page"))
        with override_settings(PERF_SDK={"tracker": no_secret, "journeys": JOURNEYS, "use_session": True}):
            PerfSdkMiddleware(lambda request: HttpResponse("page"))  # Django's session is signed or server-side
    finally:
        no_secret.close(timeout=1)


def test_missing_django_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['django'] = None; sys.modules['django.conf'] = None\n"
        "try:\n    import perf_sdk.integrations.django\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ConfigurationError") and "pip install 'perf-sdk[django]'" in out


def test_asgi_application_closes_the_process_tracker_at_lifespan_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn ends its workers without atexit: the lifespan's shutdown is where the tracker delivers."""
    from perf_sdk.integrations.django import get_asgi_application as perf_sdk_asgi_application

    monkeypatch.setattr(django_integration, "_serving_asgi", False, raising=False)  # restored after the test

    config = settings_tracker(tmp_path)
    sent: list[str] = []

    async def run() -> None:
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> Any:
            return messages.pop(0)

        async def send(message: Any) -> None:
            sent.append(message["type"])

        await app({"type": "lifespan"}, receive, send)

    with override_settings(PERF_SDK=config):
        app = perf_sdk_asgi_application()
        tracker = get_engine().tracker  # the ASGI process's tracker, built as the application was
        asyncio.run(run())
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert tracker._closed  # type: ignore[attr-defined]


# the journey cookie is authenticated ---------------------------------------------------------
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"


def started_cookie(tracker: CapturingTracker) -> str:
    with override_settings(PERF_SDK={"tracker": tracker, "journeys": JOURNEYS}):
        name = get_engine().cookie_name
        return str(Client(HTTP_USER_AGENT=BROWSER).get("/apply").cookies[name].value)


def test_cookies_this_service_did_not_issue_complete_nothing(tracker: CapturingTracker) -> None:
    """Forged, tampered, replayed-from-another-service and truncated cookies: no completion, and the cookie goes."""
    with (
        capture(service="another-service") as other,
        capture(service=SERVICE, secret="another-secret-0123456789") as third,
    ):
        cookies = bad_cookies(started_cookie(tracker), started_cookie(other), started_cookie(third))
    tracker.clear()
    for kind, value in cookies.items():
        response = Client(HTTP_USER_AGENT=BROWSER).get("/apply/done", HTTP_COOKIE=f"{COOKIE}={value}")
        assert response.status_code == 200, kind
        assert tracker.counts() == {}, kind
        assert response.cookies[COOKIE]["max-age"] == 0 and response.cookies[COOKIE].value == "", kind


def test_five_hundred_made_up_cookies_cannot_inflate_completions(tracker: CapturingTracker) -> None:
    client = Client(HTTP_USER_AGENT=BROWSER)
    for _ in range(500):
        client.cookies.clear()
        client.get("/apply/done", HTTP_COOKIE=f"{COOKIE}=apply.s.{secrets.token_hex(16)}")
    assert tracker.counts() == {}


def test_async_made_up_cookies_complete_nothing(tracker: CapturingTracker) -> None:
    async def run() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=get_asgi_application()), base_url="http://localhost"
        ) as client:
            for _ in range(50):
                forged = f"apply.s.{secrets.token_hex(16)}"
                await client.get("/apply/done", headers={"Cookie": f"{COOKIE}={forged}"})

    asyncio.run(run())
    assert tracker.counts() == {}


def test_a_bad_cookie_is_replaced_by_a_fresh_one_at_the_start(tracker: CapturingTracker) -> None:
    client = Client(HTTP_USER_AGENT=BROWSER)
    forged = f"apply.c.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
    fresh = client.get("/apply", HTTP_COOKIE=f"{COOKIE}={forged}").cookies[COOKIE].value
    assert fresh and fresh != forged
    client.get("/apply/done")
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_a_made_up_cookie_ties_no_satisfaction_answer(tracker: CapturingTracker) -> None:
    forged = f"apply.c.{secrets.token_hex(16)}"
    for _ in range(2):
        Client(HTTP_USER_AGENT=BROWSER).get("/feedback", HTTP_COOKIE=f"{COOKIE}={forged}")
    assert len({r["_id"] for r in tracker.of("satisfaction")}) == 2  # two untied answers, not one transaction's


def test_counting_only_after_consent(tracker: CapturingTracker) -> None:
    def consent(request: HttpRequest) -> bool:
        return request.COOKIES.get("cookies_policy") == "accepted"

    with override_settings(PERF_SDK={"tracker": tracker, "journeys": JOURNEYS, "consent": consent}):
        client = Client(HTTP_USER_AGENT=BROWSER)
        assert COOKIE not in client.get("/apply").cookies and tracker.counts() == {}
        client.cookies["cookies_policy"] = "accepted"
        assert client.get("/apply").cookies[COOKIE].value
        client.get("/apply/done")
    assert tracker.counts() == {"started": 1, "completed": 1}


# redirects, cookie names, the event loop ------------------------------------------------------
GUARDED = [Journey("apply", start="route:apply", complete="route:confirmation")]


@pytest.mark.parametrize("run", ["sync", "async"])
def test_a_confirmation_page_redirecting_a_visitor_who_submitted_nothing_completes_nothing(
    tracker: CapturingTracker, run: str
) -> None:
    with override_settings(PERF_SDK={"tracker": tracker, "journeys": GUARDED}):
        if run == "sync":
            client = Client(HTTP_USER_AGENT=BROWSER)
            client.get("/apply")
            assert client.get("/apply/confirmation").status_code == 302  # the guard
            assert tracker.counts() == {"started": 1}
            assert client.post("/apply/confirmation").status_code == 303  # post-redirect-get: submitted
        else:

            async def visit() -> None:
                transport = httpx.ASGITransport(app=get_asgi_application())
                async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                    await client.get("/apply")
                    assert (await client.get("/apply/confirmation")).status_code == 302
                    assert tracker.counts() == {"started": 1}
                    assert (await client.post("/apply/confirmation")).status_code == 303

            asyncio.run(visit())
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_a_journey_started_before_the_upgrade_completes_and_its_cookie_moves(tracker: CapturingTracker) -> None:
    before_upgrade = started_cookie(tracker)  # the signature an earlier version put under the old name
    tracker.clear()
    response = Client(HTTP_USER_AGENT=BROWSER).get("/apply/done", HTTP_COOKIE=f"{LEGACY_COOKIE}={before_upgrade}")
    assert tracker.counts() == {"completed": 1}
    assert response.cookies[COOKIE].value.startswith("apply.c.")
    assert response.cookies[LEGACY_COOKIE].value == "" and response.cookies[LEGACY_COOKIE]["max-age"] == 0
    with capture(service="boat-licence") as boat:
        theirs = started_cookie(boat)  # a neighbour not yet upgraded: neither read nor touched
    response = Client(HTTP_USER_AGENT=BROWSER).get("/apply/done", HTTP_COOKIE=f"{LEGACY_COOKIE}={theirs}")
    assert tracker.counts() == {"completed": 1} and not response.cookies


def settings_tracker(tmp_path: Path, **options: Any) -> dict[str, Any]:
    return {
        "service": SERVICE,
        "endpoint": "http://127.0.0.1:9",
        "token": "t",
        "secret": SECRET,
        "spool_dir": str(tmp_path),
        "journeys": JOURNEYS,
        **options,
    }


def test_an_async_middleware_builds_a_tracker_that_never_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the event loop a full queue refuses at once; under WSGI the tracker keeps its default wait."""
    monkeypatch.setattr(django_integration, "_serving_asgi", False, raising=False)

    async def get_response(request: Any) -> HttpResponse:
        return HttpResponse()

    with override_settings(PERF_SDK=settings_tracker(tmp_path)):
        on_loop = PerfSdkMiddleware(get_response).engine.tracker
        in_thread = PerfSdkMiddleware(lambda request: HttpResponse()).engine.tracker
    with override_settings(PERF_SDK=settings_tracker(tmp_path, max_block=0.5)):
        given = PerfSdkMiddleware(get_response).engine.tracker
    try:
        assert on_loop.settings.max_block == 0  # type: ignore[attr-defined]
        assert in_thread.settings.max_block == 1.0  # type: ignore[attr-defined]
        assert given.settings.max_block == 0.5  # type: ignore[attr-defined]  # a value of your own stands
    finally:
        for t in (on_loop, in_thread, given):
            t.close(timeout=0)  # type: ignore[attr-defined]


def test_under_asgi_a_full_queue_refuses_page_view_counts_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer stuck (a slow disk), the queue full: each page view's count is refused without waiting.

    Before, the tracker built from settings kept ``max_block=1.0``: every counted page view stalled the
    event loop, and every other request on it, for up to 1 s.
    """
    from perf_sdk.integrations.django import get_asgi_application as perf_sdk_asgi_application

    monkeypatch.setattr(django_integration, "_serving_asgi", False, raising=False)  # restored after the test
    entered, gate = threading.Event(), threading.Event()

    def stuck(record: Any) -> Any:  # the writer's per-record work hangs: stands in for a slow disk
        entered.set()
        gate.wait(60)
        return record

    with override_settings(PERF_SDK=settings_tracker(tmp_path, max_queue=100, before_send=stuck)):
        app = perf_sdk_asgi_application()
        [tracker] = [
            t
            for t in django_integration._trackers.values()
            if str(t.settings.spool_dir) == str(tmp_path)  # type: ignore[attr-defined]
        ]
    given_time: list[float] = []
    writer = tracker._writer  # type: ignore[attr-defined]
    real_wait = writer.wait_for_room

    def wait_for_room(max_queue: int, deadline: float) -> bool:
        given_time.append(deadline - time.monotonic())  # how long the caller would wait for room
        return bool(real_wait(max_queue, deadline))

    monkeypatch.setattr(writer, "wait_for_room", wait_for_room)
    try:
        tracker.start("first")  # type: ignore[attr-defined]
        assert entered.wait(30), "the writer never took a record"
        while len(tracker._queue) < 100:  # type: ignore[attr-defined]
            tracker.start(f"filler-{len(tracker._queue)}")  # type: ignore[attr-defined]
        refused = tracker.stats.refused  # type: ignore[attr-defined]

        async def visit() -> list[int]:
            transport = httpx.ASGITransport(app=app)
            statuses = []
            for _ in range(3):
                async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                    statuses.append((await client.get("/apply", headers={"User-Agent": BROWSER})).status_code)
            return statuses

        assert asyncio.run(visit()) == [200, 200, 200]
        assert len(given_time) == 3 and all(t <= 0 for t in given_time), given_time  # none waited for room
        assert tracker.stats.refused == refused + 3  # type: ignore[attr-defined]  # refused and reported
        assert tracker.settings.max_block == 0  # type: ignore[attr-defined]
    finally:
        gate.set()
        tracker.close(timeout=0)  # type: ignore[attr-defined]
