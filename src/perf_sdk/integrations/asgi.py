"""ASGI (Starlette, FastAPI, Quart, Django's ASGI handler ...): count journeys from page views.

>>> app = FastAPI()  # doctest: +SKIP
>>> app.add_middleware(PerfSdkMiddleware, tracker=tracker, journeys=[  # doctest: +SKIP
...     Journey("apply", start="/apply", complete="/apply/confirmation"),
... ])

A pure ASGI middleware, not Starlette's ``BaseHTTPMiddleware``: it wraps
``send`` and reads the status off ``http.response.start``, so streaming
responses stream, background tasks and context variables behave, and a request
no journey can match is passed straight through. It needs no framework (the
``asgi`` extra installs Starlette, which it does not import).

Nothing here blocks the event loop: counting only appends to the tracker's
in-memory queue, and the tracker the middleware makes refuses (and reports) a
record at once when that queue is full rather than waiting for room. A sync
``Tracker`` you pass in waits up to its ``max_block`` (1 s by default) in that
case: pass ``max_block=0`` or an :class:`~perf_sdk.AsyncTracker`. The tracker's background workers (which open the spool, a
SQLite file) are started off the loop at lifespan start-up, when the server
runs a lifespan; otherwise the first count starts them, once. At lifespan
shutdown the tracker delivers what it holds (closed if the middleware made it,
flushed if it was given one), because uvicorn ends a worker without running
``atexit``.

The middleware adds ``scope["perf_sdk"]`` (the engine) for :func:`record_satisfaction`.
A ``channel`` callable receives the ASGI ``scope``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from perf_sdk._errors import ConfigurationError
from perf_sdk._journey import Journey, JourneyEngine, Recorder, cookie_from_header
from perf_sdk.integrations._lifecycle import Message, Receive, Send, finish, serve_lifespan, start_workers

__all__ = ["SCOPE_KEY", "PerfSdkMiddleware", "record_satisfaction", "serve_lifespan"]

logger = logging.getLogger("perf_sdk")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The scope key where the middleware leaves its engine.
SCOPE_KEY = "perf_sdk"


class PerfSdkMiddleware:
    """Counts ``journeys`` on the responses of ``app``.

    ``tracker`` is a :class:`~perf_sdk.Tracker` or :class:`~perf_sdk.AsyncTracker`
    (default: a Tracker from ``PERF_SDK_*`` environment variables). ``options``
    are the counting options of :class:`~perf_sdk._journey.JourneyEngine`; with
    ``use_session=True`` the state lives in ``scope["session"]`` (Starlette's
    ``SessionMiddleware``, added *outside* this one).
    """

    def __init__(
        self,
        app: ASGIApp,
        tracker: Recorder | None = None,
        journeys: Iterable[Journey] = (),
        **options: Any,
    ) -> None:
        self.app = app
        #: A tracker the middleware made is closed at lifespan shutdown; one it was given is flushed.
        self._owns_tracker = tracker is None
        if tracker is None:
            from perf_sdk._tracker import Tracker

            # On an event loop a full queue must refuse (and report) at once, never wait for room.
            tracker = Tracker(max_block=0.0)
        self.engine = JourneyEngine(tracker, journeys, **options)
        self._warned_session = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        scope = dict(scope)  # ASGI: a middleware adds keys to its own copy
        scope[SCOPE_KEY] = self.engine
        engine = self.engine
        # The path now, once: a router below (Starlette's Mount, FastAPI's app.mount) rewrites
        # root_path in this very dict, so computed again at the response it would be another path.
        path = _app_path(scope)
        if not engine.uses_routes and not engine.match(path):
            await self.app(scope, receive, send)  # most requests: no journey page
            return

        async def send_counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookies = self._observe(scope, path, message["status"])
                if cookies:
                    message = dict(message)
                    message["headers"] = [*message.get("headers", ()), *((b"set-cookie", c) for c in cookies)]
            await send(message)

        await self.app(scope, receive, send_counting)

    def _observe(self, scope: Scope, path: str, status: int) -> list[bytes]:
        """Count this response of ``path`` (the app's path as it was on entry); the ``Set-Cookie`` values to add."""
        engine = self.engine
        try:
            route = scope.get("route")
            routes = (getattr(route, "name", None),) if route is not None else ()
            hits = engine.match(path, routes)
            if not hits:
                return []
            headers = _headers(scope)
            stored = self._stored(scope, headers)
            new = engine.observe(
                hits,
                method=scope.get("method", "GET"),
                status=status,
                user_agent=headers.get("user-agent"),
                stored=stored,
                request=scope,
            )
            if new is None:
                return []
            if engine.use_session:
                session = scope.get("session")
                if isinstance(session, MutableMapping):
                    if new:
                        session[engine.session_key] = new
                    else:
                        session.pop(engine.session_key, None)
                return []
            host = headers.get("host") or _server_host(scope)
            cookies = engine.cookies(new, stored, host=host, scheme=scope.get("scheme", "http"))
            return [cookie.header().encode("latin-1") for cookie in cookies]
        except Exception:  # counting must never fail a page
            logger.exception("perf_sdk: journey counting failed for this request")
            return []

    def _stored(self, scope: Scope, headers: Mapping[str, str]) -> object:
        engine = self.engine
        if engine.use_session:
            session = scope.get("session")
            if not isinstance(session, Mapping):
                if not self._warned_session:
                    self._warned_session = True
                    logger.error(
                        "perf_sdk: use_session=True but the scope has no session: add Starlette's "
                        "SessionMiddleware outside PerfSdkMiddleware; journeys are not counted"
                    )
                raise ConfigurationError("no session in the ASGI scope")
            return session.get(engine.session_key)
        header = headers.get("cookie")
        return engine.read_cookie(lambda name: cookie_from_header(header, name))

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Start the tracker's workers at start-up; deliver what is left at shutdown.

        Shutdown matters: uvicorn ends a worker without running ``atexit``
        (see :mod:`perf_sdk.integrations._lifecycle`), so the lifespan's
        shutdown is the last moment the tracker can deliver.
        """
        tracker, owns = self.engine.tracker, self._owns_tracker

        async def receive_and_start() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.startup":
                await start_workers(tracker)
            return message

        async def send_after_delivery(message: Message) -> None:
            if message.get("type") == "lifespan.shutdown.complete":
                await finish(tracker, close=owns)
            await send(message)

        await self.app(scope, receive_and_start, send_after_delivery)


def _app_path(scope: Mapping[str, Any]) -> str:
    """The path within the application: ASGI's ``path`` includes ``root_path`` (a mount prefix).

    Call it on the scope as the middleware received it: a ``Mount`` inside the
    application extends ``root_path`` in place as it routes.
    """
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """The few request headers counting reads (cookie headers joined, as HTTP/2 may split them)."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        if name in ("cookie", "user-agent", "host"):
            value = raw_value.decode("latin-1")
            out[name] = f"{out[name]}; {value}" if name == "cookie" and name in out else value
    return out


def _server_host(scope: Mapping[str, Any]) -> str | None:
    server = scope.get("server")
    return str(server[0]) if server else None


def record_satisfaction(
    scope_or_request: Any, rating: int, *, channel: str | None = None, journey: str | None = None
) -> None:
    """Record a rating (1..5) from a feedback form, given the ASGI scope or a request with ``.scope``.

    Tied to the visitor's transaction (``journey``'s, else the one they touched
    last) when there is one, so a second answer replaces the first. Only
    enqueues: call it from ``async def`` views freely.
    """
    scope = scope_or_request if isinstance(scope_or_request, Mapping) else getattr(scope_or_request, "scope", None)
    engine = scope.get(SCOPE_KEY) if isinstance(scope, Mapping) else None
    if not isinstance(engine, JourneyEngine):
        raise ConfigurationError("record_satisfaction needs perf_sdk.integrations.asgi.PerfSdkMiddleware on the app")
    assert isinstance(scope, Mapping)
    headers = _headers(scope)
    if engine.use_session:
        session = scope.get("session")
        stored = session.get(engine.session_key) if isinstance(session, Mapping) else None
    else:
        header = headers.get("cookie")
        stored = engine.read_cookie(lambda name: cookie_from_header(header, name))
    engine.record_satisfaction(rating, stored, channel=channel, journey=journey, request=scope)
