"""Django: count journeys from page views.

In ``settings.py``::

    MIDDLEWARE = [
        ...,
        "django.contrib.sessions.middleware.SessionMiddleware",  # only with "use_session": True
        "perf_sdk.integrations.django.PerfSdkMiddleware",
        ...,
    ]
    PERF_SDK = {
        "service": "apply-for-a-licence",
        "endpoint": "https://perf.example.gov.uk",  # or PERF_SDK_ENDPOINT
        "token": ...,  "secret": ...,               # or PERF_SDK_TOKEN, PERF_SDK_SECRET
        "journeys": [perf_sdk.Journey("apply", start="route:apply", complete="route:confirmation")],
    }

``PERF_SDK`` holds the :class:`~perf_sdk.Tracker`'s arguments, ``journeys``,
and the counting options of :class:`~perf_sdk._journey.JourneyEngine`
(``cookie_name``, ``cookie_secure``, ``cookie_max_age``, ``use_session``,
``session_key``, ``bot_user_agents``, ``count_unstarted_completions``,
``consent``); or
``"tracker"``: a tracker of your own (e.g. ``perf_sdk.testing.CapturingTracker``).

One tracker per process: built the first time the middleware is (Django builds
its middleware chain at start-up, so a configuration error fails the start,
not a visitor's request) and shared by every handler in the process, sync or
async. Created in a pre-fork server's master (``gunicorn --preload``), it is
fork-safe: each worker gets its own queue, spool and threads.

The middleware is both sync- and async-capable, so it adds no thread hop under
ASGI (uvicorn, daphne) and none under WSGI (runserver, gunicorn); counting only
appends to the tracker's in-memory queue. When that queue is full (the spool's
disk cannot keep up) a ``Tracker`` waits up to ``max_block`` for room: under
WSGI the default 1 s, in a worker thread; in an ASGI deployment (the middleware
runs async, or the application is this module's :func:`get_asgi_application`)
the tracker it builds defaults to ``max_block=0``, refusing (and reporting) the
record at once rather than stalling the event loop. A ``max_block`` in
``PERF_SDK`` is used as given.

Under an ASGI server, build the application with this module's
:func:`get_asgi_application` instead of Django's: Django's handler refuses the
lifespan protocol, and uvicorn ends its workers without running ``atexit``, so
the lifespan's shutdown is where the tracker must deliver what it holds.
Under WSGI servers ``atexit`` does it (gunicorn workers and runserver exit
normally).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from perf_sdk._errors import ConfigurationError
from perf_sdk._journey import JourneyEngine, Recorder
from perf_sdk.integrations._lifecycle import Receive, Send, finish, serve_lifespan, start_workers
from perf_sdk.integrations.asgi import ASGIApp, Scope

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
    from django.conf import settings  # type: ignore[import-untyped,unused-ignore]
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ConfigurationError(
        "perf_sdk.integrations.django needs Django, which is not installed: pip install 'perf-sdk[django]'"
    ) from exc

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase  # type: ignore[import-untyped,unused-ignore]

__all__ = ["PerfSdkMiddleware", "get_asgi_application", "get_engine", "record_satisfaction"]

logger = logging.getLogger("perf_sdk")

_ENGINE_OPTIONS = frozenset(
    {
        "cookie_name",
        "cookie_secure",
        "cookie_max_age",
        "use_session",
        "session_key",
        "bot_user_agents",
        "count_unstarted_completions",
        "consent",
    }
)
#: The request attribute through which views (record_satisfaction) find the engine.
_REQUEST_ATTR = "_perf_sdk_engine"

_lock = threading.Lock()
#: One tracker per process and configuration (tests may switch settings.PERF_SDK).
_trackers: dict[tuple[tuple[str, str], ...], Recorder] = {}
#: Set by :func:`get_asgi_application`: this process serves ASGI, so its tracker must never wait on the event loop.
_serving_asgi = False


def _tracker_for(options: dict[str, Any]) -> Recorder:
    from perf_sdk._tracker import Tracker

    key = tuple(sorted((k, repr(v)) for k, v in options.items()))
    with _lock:
        tracker = _trackers.get(key)
        if tracker is None:
            tracker = _trackers[key] = Tracker(**options)
        return tracker


def get_engine(*, on_event_loop: bool = False) -> JourneyEngine:
    """The engine for the current ``settings.PERF_SDK`` (the process's tracker and journeys).

    ``on_event_loop`` (or a process started by :func:`get_asgi_application`):
    the tracker built from the settings defaults to ``max_block=0``, so a full
    queue refuses a record at once instead of blocking the event loop.
    """
    config = getattr(settings, "PERF_SDK", None)
    if not isinstance(config, dict):
        raise ConfigurationError(
            "settings.PERF_SDK is missing: set it to a dict such as "
            "{'service': 'your-service', 'journeys': [perf_sdk.Journey(...)]} "
            "(endpoint, token and secret may come from PERF_SDK_* environment variables)"
        )
    config = dict(config)
    journeys = config.pop("journeys", ())
    engine_options = {k: config.pop(k) for k in list(config) if k in _ENGINE_OPTIONS}
    tracker = config.pop("tracker", None)
    if tracker is None:
        if on_event_loop or _serving_asgi:
            config.setdefault("max_block", 0.0)
        tracker = _tracker_for(config)
    elif config:
        raise ConfigurationError(
            f"settings.PERF_SDK gives a 'tracker' and tracker arguments {sorted(config)}: give one or the other"
        )
    return JourneyEngine(tracker, journeys, **engine_options)


class PerfSdkMiddleware:
    """Counts the journeys of ``settings.PERF_SDK`` on each response; sync and async."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        # Async: counting runs on the event loop, where waiting for room in the queue would stall every request.
        self.engine = get_engine(on_event_loop=self.is_async)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        setattr(request, _REQUEST_ATTR, self.engine)
        response = self.get_response(request)
        self._observe(request, response)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        setattr(request, _REQUEST_ATTR, self.engine)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        response = await get_response(request)
        self._observe(request, response)
        return response

    def _observe(self, request: HttpRequest, response: HttpResponseBase) -> None:
        engine = self.engine
        try:
            match = request.resolver_match
            routes = (match.url_name, match.view_name) if match is not None and engine.uses_routes else ()
            hits = engine.match(request.path_info, routes)
            if not hits:
                return
            stored = _stored(engine, request)
            new = engine.observe(
                hits,
                method=request.method or "GET",
                status=response.status_code,
                user_agent=request.headers.get("User-Agent"),
                stored=stored,
                request=request,
            )
            if new is None:
                return
            if engine.use_session:
                if new:
                    request.session[engine.session_key] = new
                else:
                    request.session.pop(engine.session_key, None)
            else:
                for cookie in engine.cookies(new, stored, host=request.get_host(), scheme=request.scheme or "http"):
                    cookie.set_on(response)
        except Exception:  # counting must never fail a page
            logger.exception("perf_sdk: journey counting failed for this request")


def _stored(engine: JourneyEngine, request: HttpRequest) -> object:
    if engine.use_session:
        session = getattr(request, "session", None)
        if session is None:
            raise ConfigurationError(
                "PERF_SDK use_session=True needs django.contrib.sessions' SessionMiddleware "
                "listed before perf_sdk's middleware in MIDDLEWARE"
            )
        return session.get(engine.session_key)
    return engine.read_cookie(request.COOKIES.get)


def record_satisfaction(
    request: HttpRequest, rating: int, *, channel: str | None = None, journey: str | None = None
) -> None:
    """Record a rating (1..5) from this request's feedback form.

    Tied to the visitor's transaction (``journey``'s, else the one they touched
    last) when there is one, so a second answer replaces the first. Safe to
    call from async views: it only enqueues.
    """
    engine = getattr(request, _REQUEST_ATTR, None)
    if not isinstance(engine, JourneyEngine):
        raise ConfigurationError(
            "record_satisfaction needs 'perf_sdk.integrations.django.PerfSdkMiddleware' in settings.MIDDLEWARE"
        )
    engine.record_satisfaction(rating, _stored(engine, request), channel=channel, journey=journey, request=request)


def get_asgi_application() -> ASGIApp:
    """Django's ASGI application, plus the lifespan protocol for the process's tracker.

    A drop-in for ``django.core.asgi.get_asgi_application`` in ``asgi.py``: at
    start-up the tracker's workers start off the event loop; at shutdown every
    tracker this integration made is closed (delivering what it holds), and a
    tracker given in ``PERF_SDK["tracker"]`` is flushed. The tracker built from
    the settings defaults to ``max_block=0``: it never waits on the event loop.
    """
    from django.core.asgi import get_asgi_application as django_asgi_application  # type: ignore[import-untyped,unused-ignore]

    global _serving_asgi
    _serving_asgi = True  # before Django builds the middleware; under ASGI even a sync chain runs on a shared thread
    django_app = django_asgi_application()

    def trackers() -> list[tuple[Recorder, bool]]:
        with _lock:
            made = [(t, True) for t in _trackers.values()]
        given = (getattr(settings, "PERF_SDK", None) or {}).get("tracker")
        return [*made, *([(given, False)] if given is not None else [])]

    async def on_startup() -> None:
        get_engine()  # builds the process's tracker now (and fails the start if misconfigured)
        for tracker, _ in trackers():
            await start_workers(tracker)

    async def on_shutdown() -> None:
        for tracker, made in trackers():
            await finish(tracker, close=made)

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send, on_startup, on_shutdown)
        else:
            await django_app(scope, receive, send)

    return application
