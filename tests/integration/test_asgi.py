"""The ASGI middleware with real Starlette and FastAPI apps, driven in-process by httpx."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

import perf_sdk
from perf_sdk import ConfigurationError
from perf_sdk._async import AsyncTracker
from perf_sdk.integrations import Journey
from perf_sdk.integrations.asgi import SCOPE_KEY, PerfSdkMiddleware, record_satisfaction
from perf_sdk.testing import CapturingTracker, capture
from tests.conftest import SECRET, SERVICE

JOURNEYS = [Journey("apply", start="/apply", complete="route:done")]


async def form(request: Request) -> Response:
    return PlainTextResponse("form")


async def done(request: Request) -> Response:
    response = PlainTextResponse("done")
    response.set_cookie("theirs", "1")
    return response


async def broken(request: Request) -> Response:
    return PlainTextResponse("no", status_code=503)


async def feedback(request: Request) -> Response:
    record_satisfaction(request, int(request.query_params.get("rating", "5")))
    return PlainTextResponse("thanks")


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"chunk{i};".encode()

    return StreamingResponse(chunks())


ROUTES = [
    Route("/apply", form, methods=["GET", "POST"]),
    Route("/apply/done", done, name="done"),
    Route("/apply/broken", broken),
    Route("/apply/stream", stream),
    Route("/feedback", feedback),
]


def starlette_app(tracker: Any, *, outer: list[Middleware] | None = None, **options: Any) -> Starlette:
    journeys = options.pop("journeys", JOURNEYS)
    middleware = [*(outer or []), Middleware(PerfSdkMiddleware, tracker=tracker, journeys=journeys, **options)]
    return Starlette(routes=ROUTES, middleware=middleware)


def visit(app: Any, *paths: str, base_url: str = "http://localhost", **headers: str) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url, headers=headers) as c:
            return [await c.get(p) for p in paths]

    return asyncio.run(run())


@pytest.fixture
def tracker() -> Iterator[CapturingTracker]:
    with capture(service=SERVICE) as t:
        yield t


def test_is_pure_asgi_not_base_http_middleware() -> None:
    assert not issubclass(PerfSdkMiddleware, BaseHTTPMiddleware)


def test_counts_a_journey_once_by_path_and_route_name(tracker: CapturingTracker) -> None:
    responses = visit(starlette_app(tracker), "/apply", "/apply", "/apply/done", "/apply/done")
    first = responses[0].headers["set-cookie"]
    assert first.startswith("perf_sdk_txn=") and "HttpOnly" in first and "SameSite=Lax" in first
    assert "Secure" not in first  # localhost
    assert "set-cookie" not in responses[1].headers  # refresh: nothing changed
    assert {c.split("=")[0] for c in responses[2].headers.get_list("set-cookie")} == {"theirs", "perf_sdk_txn"}
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_secure_cookie_off_loopback(tracker: CapturingTracker) -> None:
    [response] = visit(starlette_app(tracker), "/apply", base_url="https://apply.service.gov.uk")
    assert "; Secure" in response.headers["set-cookie"]


def test_fastapi_route_names(tracker: CapturingTracker) -> None:
    app = FastAPI()
    app.add_middleware(
        PerfSdkMiddleware, tracker=tracker, journeys=[Journey("a", start="route:begin", complete="/end")]
    )

    @app.get("/items/{item}")
    async def begin(item: int) -> dict[str, int]:
        return {"item": item}

    @app.get("/end")
    async def end() -> dict[str, str]:
        return {}

    visit(app, "/items/1", "/items/2", "/end", "/items/oops")  # the last: a 422, not counted
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_errors_and_bots_are_not_counted(tracker: CapturingTracker) -> None:
    app = starlette_app(tracker, journeys=[Journey("a", start="/apply", complete="/apply/broken")])
    visit(app, "/apply", **{"user-agent": "Mozilla/5.0 (compatible; YandexBot/3.0)"})
    assert tracker.counts() == {}
    visit(app, "/apply", "/apply/broken")
    assert tracker.counts() == {"started": 1}


def test_streaming_responses_still_stream(tracker: CapturingTracker) -> None:
    app = starlette_app(tracker, journeys=[Journey("a", start="/apply/stream", complete="/x")])
    [response] = visit(app, "/apply/stream")
    assert response.text == "chunk0;chunk1;chunk2;"
    assert tracker.counts() == {"started": 1}


def test_mounted_app_paths_are_relative_to_the_mount(tracker: CapturingTracker) -> None:
    inner = starlette_app(tracker)
    outer = Starlette(routes=[Mount("/licensing", app=inner)])
    visit(outer, "/licensing/apply", "/licensing/apply/done")
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_satisfaction_is_tied_to_the_visitors_transaction(tracker: CapturingTracker) -> None:
    visit(starlette_app(tracker), "/apply", "/apply/done", "/feedback?rating=2", "/feedback?rating=4")
    ratings = tracker.of("satisfaction")
    assert [r["rating"] for r in ratings] == [2, 4] and len({r["_id"] for r in ratings}) == 1


def test_record_satisfaction_needs_the_middleware() -> None:
    with pytest.raises(ConfigurationError, match="PerfSdkMiddleware"):
        record_satisfaction({"type": "http", "headers": []}, 3)


def test_session_mode_uses_starlettes_session(tracker: CapturingTracker) -> None:
    outer = [Middleware(SessionMiddleware, secret_key="test-only")]  # type: ignore[arg-type]
    responses = visit(starlette_app(tracker, outer=outer, use_session=True), "/apply", "/apply/done", "/apply/done")
    assert responses[0].headers["set-cookie"].startswith("session=")
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_requests_off_the_journey_pass_straight_through(tracker: CapturingTracker) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope.get(SCOPE_KEY), send))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = PerfSdkMiddleware(app, tracker=tracker, journeys=[Journey("a", start="/a", complete="/b")])
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request"}

    scope = {"type": "http", "path": "/other", "headers": [], "method": "GET"}
    asyncio.run(middleware(scope, receive, send))
    assert seen[0][1] is send  # not wrapped
    assert seen[0][0] is middleware.engine
    assert SCOPE_KEY not in scope  # the caller's scope is not modified


def test_lifespan_startup_starts_the_workers_off_the_loop(tmp_path: Path) -> None:
    tracker = perf_sdk.Tracker(
        service=SERVICE, endpoint="http://127.0.0.1:9", token="t", secret=SECRET, spool_dir=tmp_path
    )
    threads: list[str] = []
    real = tracker._ensure_started

    def ensure_started() -> None:
        threads.append(threading.current_thread().name)
        real()

    tracker._ensure_started = ensure_started  # type: ignore[method-assign]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})

    async def run() -> None:
        messages = [{"type": "lifespan.startup"}]

        async def receive() -> Any:
            return messages.pop(0)

        async def send(message: Any) -> None:
            return None

        await PerfSdkMiddleware(app, tracker=AsyncTracker(tracker=tracker), journeys=JOURNEYS)(
            {"type": "lifespan"}, receive, send
        )

    try:
        asyncio.run(run())
        assert tracker._running and threads and threads[0] != threading.main_thread().name
    finally:
        tracker.close(timeout=0)


def test_an_async_tracker_counts_like_a_tracker(tracker: CapturingTracker) -> None:
    visit(starlette_app(AsyncTracker(tracker=tracker)), "/apply", "/apply/done")
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_websockets_and_other_scopes_pass_through(tracker: CapturingTracker) -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])
        assert SCOPE_KEY not in scope

    asyncio.run(PerfSdkMiddleware(app, tracker=tracker, journeys=JOURNEYS)({"type": "websocket"}, None, None))  # type: ignore[arg-type]
    assert calls == ["websocket"]


class Recording(CapturingTracker):
    def __init__(self) -> None:
        super().__init__(SERVICE)
        self.calls: list[str] = []

    def flush(self, timeout: float = 10.0) -> perf_sdk.FlushResult:
        self.calls.append("flush")
        return super().flush(timeout)

    def close(self, timeout: float = 10.0) -> perf_sdk.FlushResult:
        self.calls.append("close")
        return super().close(timeout)


def test_lifespan_shutdown_flushes_a_given_tracker_after_the_apps_own_shutdown() -> None:
    tracker = Recording()
    order: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                order.append("app shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def run() -> None:
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> Any:
            return messages.pop(0)

        async def send(message: Any) -> None:
            order.append(message["type"])

        await PerfSdkMiddleware(app, tracker=tracker, journeys=JOURNEYS)({"type": "lifespan"}, receive, send)

    asyncio.run(run())
    assert tracker.calls == ["flush"]  # given, not owned: flushed, not closed
    assert order == ["lifespan.startup.complete", "app shutdown", "lifespan.shutdown.complete"]
