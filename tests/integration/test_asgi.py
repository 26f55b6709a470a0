"""The ASGI middleware with real Starlette and FastAPI apps, driven in-process by httpx."""

from __future__ import annotations

import asyncio
import secrets
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
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

import perf_sdk
from perf_sdk import ConfigurationError
from perf_sdk._async import AsyncTracker
from perf_sdk.integrations import Journey
from perf_sdk.integrations.asgi import SCOPE_KEY, PerfSdkMiddleware, record_satisfaction
from perf_sdk.testing import CapturingTracker, capture
from tests.conftest import SECRET, SERVICE
from tests.integration.journey_cookies import COOKIE, LEGACY_COOKIE, bad_cookies, cookie_value, expires_the_cookie

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
    assert first.startswith(f"{COOKIE}=") and "HttpOnly" in first and "SameSite=Lax" in first
    assert "Secure" not in first  # localhost
    assert "set-cookie" not in responses[1].headers  # refresh: nothing changed
    assert {c.split("=")[0] for c in responses[2].headers.get_list("set-cookie")} == {"theirs", COOKIE}
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


def test_pages_under_a_mount_inside_the_app_are_counted(tracker: CapturingTracker) -> None:
    """A ``Mount`` below the middleware rewrites ``root_path`` in the scope as it routes: the path is the one on entry.

    Before, the response's path was computed again after routing (``/done`` instead of ``/apply/done``),
    so no journey page under a Mount ever counted.
    """
    journeys = [Journey("apply", start="/apply/start", complete="/apply/done")]
    pages = [Route("/start", form), Route("/done", done)]
    app = Starlette(
        routes=[Mount("/apply", routes=pages)],
        middleware=[Middleware(PerfSdkMiddleware, tracker=tracker, journeys=journeys)],
    )
    visit(app, "/apply/start", "/apply/done")
    assert tracker.counts() == {"started": 1, "completed": 1}
    visit(app, "/start", "/done")  # not paths of this app (404): nothing
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_fastapi_sub_applications_mounted_below_the_middleware_are_counted(tracker: CapturingTracker) -> None:
    sub = FastAPI()

    @sub.get("/start")
    async def start() -> dict[str, str]:
        return {}

    @sub.get("/done")
    async def finished() -> dict[str, str]:
        return {}

    app = FastAPI()
    app.add_middleware(
        PerfSdkMiddleware, tracker=tracker, journeys=[Journey("apply", start="/apply/start", complete="/apply/done")]
    )
    app.mount("/apply", sub)
    visit(app, "/apply/start", "/apply/done", "/apply/done")
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


def run_lifespan(middleware: PerfSdkMiddleware) -> list[str]:
    """Drive the lifespan protocol (start-up, then shutdown) through ``middleware``; the message types sent back."""
    sent: list[str] = []

    async def run() -> None:
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

        async def receive() -> Any:
            return messages.pop(0)

        async def send(message: Any) -> None:
            sent.append(message["type"])

        await middleware({"type": "lifespan"}, receive, send)

    asyncio.run(run())
    return sent


async def lifespan_app(scope: Any, receive: Any, send: Any) -> None:
    """An app that answers the lifespan protocol, as Starlette does."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


@pytest.mark.parametrize("wrap", [lambda t: t, lambda t: AsyncTracker(tracker=t)], ids=["Tracker", "AsyncTracker"])
def test_lifespan_startup_opens_the_tracker_off_the_loop(tmp_path: Path, wrap: Any) -> None:
    tracker = perf_sdk.Tracker(
        service=SERVICE, endpoint="http://127.0.0.1:9", token="t", secret=SECRET, spool_dir=tmp_path
    )
    threads: list[str] = []
    real = tracker.open

    def open_() -> perf_sdk.Tracker:
        threads.append(threading.current_thread().name)
        return real()

    tracker.open = open_  # type: ignore[method-assign]
    try:
        run_lifespan(PerfSdkMiddleware(lifespan_app, tracker=wrap(tracker), journeys=JOURNEYS))
        assert threads and threads[0] != threading.main_thread().name
    finally:
        tracker.close(timeout=0)


def test_the_lifecycle_needs_only_the_trackers_public_calls() -> None:
    """A tracker with nothing but ``settings``, ``open``, ``flush`` and ``close`` is started and closed."""

    class Public:
        def __init__(self) -> None:
            with capture(service=SERVICE) as donor:
                self.settings = donor.settings
            self.calls: list[tuple[str, float | None]] = []

        def open(self) -> Public:
            self.calls.append(("open", None))
            return self

        def flush(self, timeout: float = 10.0) -> Any:
            self.calls.append(("flush", timeout))
            return True

        def close(self, timeout: float = 10.0) -> Any:
            self.calls.append(("close", timeout))
            return True

        def start(self, *args: Any, **kwargs: Any) -> None: ...

        def complete(self, *args: Any, **kwargs: Any) -> None: ...

        def satisfaction(self, *args: Any, **kwargs: Any) -> None: ...

    public = Public()
    sent = run_lifespan(PerfSdkMiddleware(lifespan_app, tracker=public, journeys=JOURNEYS))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert public.calls == [("open", None), ("flush", public.settings.exit_timeout)]  # given, so flushed


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


# the journey cookie is authenticated ---------------------------------------------------------
def ours(response: httpx.Response, name: str = COOKIE) -> str | None:
    """The journey cookie's Set-Cookie header, among the app's own."""
    return next((h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")), None)


def started_cookie(tracker: Any) -> str:
    name = f"perf_sdk_txn_{tracker.settings.service}"
    return cookie_value(ours(visit(starlette_app(tracker), "/apply")[0], name), name)


def test_cookies_this_service_did_not_issue_complete_nothing(tracker: CapturingTracker) -> None:
    """Forged, tampered, replayed-from-another-service and truncated cookies: no completion, and the cookie goes."""
    with (
        capture(service="another-service") as other,
        capture(service=SERVICE, secret="another-secret-0123456789") as third,
    ):
        cookies = bad_cookies(started_cookie(tracker), started_cookie(other), started_cookie(third))
    tracker.clear()
    app = starlette_app(tracker)
    for kind, value in cookies.items():
        (response,) = visit(app, "/apply/done", cookie=f"{COOKIE}={value}")
        assert response.status_code == 200, kind
        assert tracker.counts() == {}, kind
        assert expires_the_cookie(ours(response)), kind


def test_five_hundred_made_up_cookies_cannot_inflate_completions(tracker: CapturingTracker) -> None:
    app = starlette_app(AsyncTracker(tracker=tracker))

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
            for _ in range(500):
                client.cookies.clear()
                forged = f"apply.s.{secrets.token_hex(16)}"
                await client.get("/apply/done", headers={"Cookie": f"{COOKIE}={forged}"})

    asyncio.run(run())
    assert tracker.counts() == {}


def test_a_bad_cookie_is_replaced_by_a_fresh_one_at_the_start(tracker: CapturingTracker) -> None:
    forged = f"apply.c.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
    (response,) = visit(starlette_app(tracker), "/apply", cookie=f"{COOKIE}={forged}")
    fresh = cookie_value(ours(response))
    assert fresh != forged
    visit(starlette_app(tracker), "/apply/done", cookie=f"{COOKIE}={fresh}")
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_a_made_up_cookie_ties_no_satisfaction_answer(tracker: CapturingTracker) -> None:
    forged = f"apply.c.{secrets.token_hex(16)}"
    visit(starlette_app(tracker), "/feedback", "/feedback", cookie=f"{COOKIE}={forged}")
    assert len({r["_id"] for r in tracker.of("satisfaction")}) == 2  # two untied answers, not one transaction's


def test_journey_cookies_need_the_secret(tmp_path: Path) -> None:
    no_secret = perf_sdk.Tracker(service=SERVICE, endpoint="http://127.0.0.1:9", token="t", spool_dir=tmp_path)
    try:
        with pytest.raises(ConfigurationError, match=r"secret.*PERF_SDK_SECRET"):
            PerfSdkMiddleware(starlette_app(None), tracker=AsyncTracker(tracker=no_secret), journeys=JOURNEYS)
    finally:
        no_secret.close(timeout=1)


def test_counting_only_after_consent(tracker: CapturingTracker) -> None:
    def consent(scope: Any) -> bool:
        return b"cookies_policy=accepted" in dict(scope["headers"]).get(b"cookie", b"")

    app = starlette_app(tracker, consent=consent)
    (refused,) = visit(app, "/apply")
    assert ours(refused) is None and tracker.counts() == {}

    async def agreed() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            client.cookies.set("cookies_policy", "accepted")
            await client.get("/apply")
            await client.get("/apply/done")

    asyncio.run(agreed())
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_the_integrations_use_no_private_tracker_name(tmp_path: Path) -> None:
    """Public seams only: no ``tracker._x`` and no ``getattr(tracker, "_x")`` anywhere in the integrations."""
    import ast

    import perf_sdk.integrations as package

    tracker = perf_sdk.Tracker(service=SERVICE, endpoint="http://127.0.0.1:9", token="t", spool_dir=tmp_path)
    tracker.close(timeout=0)
    private = {n for n in dir(tracker) if n.startswith("_") and not n.startswith("__")}
    private |= {n for n in vars(tracker) if n.startswith("_")} | {"_ensure_started"}  # the old reach-in, by name
    for source in Path(package.__file__).parent.glob("*.py"):
        tree = ast.parse(source.read_text())
        used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        used |= {
            node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
        assert not used & private, f"{source.name} uses private Tracker names {sorted(used & private)}"


# redirects and cookie names ------------------------------------------------------------------
async def guarded_confirmation(request: Request) -> Response:
    """A confirmation page guarding itself: a visitor who submitted nothing goes back to the form."""
    if request.method == "POST":
        return RedirectResponse("/apply/confirmation?submitted=1", status_code=303)  # post-redirect-get
    if not request.query_params.get("submitted"):
        return RedirectResponse("/apply", status_code=302)
    return PlainTextResponse("Application complete")


def test_a_confirmation_page_redirecting_a_visitor_who_submitted_nothing_completes_nothing(
    tracker: CapturingTracker,
) -> None:
    routes = [*ROUTES, Route("/apply/confirmation", guarded_confirmation, methods=["GET", "POST"])]
    journeys = [Journey("apply", start="/apply", complete="/apply/confirmation")]
    app = Starlette(routes=routes, middleware=[Middleware(PerfSdkMiddleware, tracker=tracker, journeys=journeys)])

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
            await client.get("/apply")
            assert (await client.get("/apply/confirmation")).status_code == 302
            assert tracker.counts() == {"started": 1}
            assert (await client.post("/apply/confirmation")).status_code == 303
            assert tracker.counts() == {"started": 1, "completed": 1}
            assert (await client.get("/apply/confirmation?submitted=1")).status_code == 200  # the page: once

    asyncio.run(run())
    assert tracker.counts() == {"started": 1, "completed": 1}


def test_two_services_in_one_asgi_app_keep_their_own_cookies() -> None:
    """Two services mounted in one site, each with its own middleware, tracker and secret: both complete."""
    with (
        capture(service="fishing-licence", secret="fishing-secret-0123456789") as fish,
        capture(service="boat-licence", secret="boat-secret-0123456789abc") as boat,
    ):
        site = Starlette(routes=[Mount("/fish", app=starlette_app(fish)), Mount("/boat", app=starlette_app(boat))])
        visit(site, "/fish/apply", "/boat/apply", "/fish/apply/done", "/boat/apply/done")
        assert fish.counts() == {"started": 1, "completed": 1}
        assert boat.counts() == {"started": 1, "completed": 1}


def test_a_journey_started_before_the_upgrade_completes_and_its_cookie_moves(tracker: CapturingTracker) -> None:
    before_upgrade = started_cookie(tracker)  # the signature an earlier version put under the old name
    tracker.clear()
    (response,) = visit(starlette_app(tracker), "/apply/done", cookie=f"{LEGACY_COOKIE}={before_upgrade}")
    assert tracker.counts() == {"completed": 1}
    assert cookie_value(ours(response)).startswith("apply.c.")
    assert expires_the_cookie(ours(response, LEGACY_COOKIE), LEGACY_COOKIE)
    with capture(service="boat-licence") as boat:
        theirs = started_cookie(boat)  # a neighbour not yet upgraded: neither read nor touched
    (response,) = visit(starlette_app(tracker), "/apply/done", cookie=f"{LEGACY_COOKIE}={theirs}")
    assert tracker.counts() == {"completed": 1}
    assert ours(response) is None and ours(response, LEGACY_COOKIE) is None
