"""Flask: count journeys from page views.

>>> from perf_sdk import Journey, Tracker  # doctest: +SKIP
>>> from perf_sdk.integrations.flask import init_app  # doctest: +SKIP
>>> def create_app() -> Flask:  # doctest: +SKIP
...     app = Flask(__name__)
...     init_app(app, Tracker(service="apply-for-a-licence"), journeys=[
...         Journey("apply", start="/apply", complete="route:confirmation"),
...     ])
...     return app

Works with the application factory pattern: everything is kept on
``app.extensions["perf_sdk"]``, nothing on a module global, so several apps in
one process each count with their own tracker and journeys. Counting happens in
an ``after_request`` handler, where the status and the route (``request.endpoint``)
are known; an exception that escapes a view never reaches it, and a 5xx is not
counted anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from perf_sdk._errors import ConfigurationError
from perf_sdk._journey import Journey, JourneyEngine, Recorder

try:
    import flask
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ConfigurationError(
        "perf_sdk.integrations.flask needs Flask, which is not installed: pip install 'perf-sdk[flask]'"
    ) from exc

if TYPE_CHECKING:
    from flask import Flask
    from flask.wrappers import Response

__all__ = ["EXTENSION_KEY", "init_app", "record_satisfaction"]

logger = logging.getLogger("perf_sdk")

#: Where :func:`init_app` keeps its state: ``app.extensions["perf_sdk"]``.
EXTENSION_KEY = "perf_sdk"


def init_app(
    app: Flask,
    tracker: Recorder | None = None,
    journeys: Iterable[Journey] = (),
    **options: Any,
) -> JourneyEngine:
    """Count ``journeys`` on ``app``'s responses with ``tracker``.

    ``tracker`` defaults to a :class:`~perf_sdk.Tracker` built from
    ``app.config["PERF_SDK"]`` (a dict of its arguments) and the ``PERF_SDK_*``
    environment variables. ``options`` are the counting options of
    :class:`~perf_sdk._journey.JourneyEngine` (``cookie_name``,
    ``cookie_secure``, ``cookie_max_age``, ``use_session``,
    ``bot_user_agents``, ``count_unstarted_completions``, ``consent``). With
    ``use_session=True`` the state lives in Flask's ``session`` (which needs
    ``app.secret_key``). Returns the engine, also at ``app.extensions["perf_sdk"]``.
    """
    if tracker is None:
        from perf_sdk._tracker import Tracker

        tracker = Tracker(**dict(app.config.get("PERF_SDK", {})))
    engine = JourneyEngine(tracker, journeys, **options)
    if EXTENSION_KEY in app.extensions:
        logger.warning("perf_sdk: init_app called twice on %r; the later journeys replace the earlier", app.name)
    else:
        app.after_request(_after_request)
    app.extensions[EXTENSION_KEY] = engine
    return engine


def _engine() -> JourneyEngine:
    engine = flask.current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(engine, JourneyEngine):
        raise ConfigurationError("perf_sdk is not set up on this Flask app: call perf_sdk.integrations.flask.init_app")
    return engine


def _stored(engine: JourneyEngine) -> object:
    if engine.use_session:
        return flask.session.get(engine.session_key)
    return engine.read_cookie(flask.request.cookies.get)


def _after_request(response: Response) -> Response:
    try:
        engine: JourneyEngine = flask.current_app.extensions[EXTENSION_KEY]
        request = flask.request
        hits = engine.match(request.path, (request.endpoint,))
        if not hits:
            return response
        stored = _stored(engine)
        new = engine.observe(
            hits,
            method=request.method,
            status=response.status_code,
            user_agent=request.headers.get("User-Agent"),
            stored=stored,
            request=request,
        )
        if new is not None:
            if engine.use_session:
                if new:
                    flask.session[engine.session_key] = new
                else:
                    flask.session.pop(engine.session_key, None)
            else:
                for cookie in engine.cookies(new, stored, host=request.host, scheme=request.scheme):
                    cookie.set_on(response)
    except Exception:  # counting must never fail a page
        logger.exception("perf_sdk: journey counting failed for this request")
    return response


def record_satisfaction(rating: int, *, channel: str | None = None, journey: str | None = None) -> None:
    """Record a rating (1..5) from the current request's feedback form.

    Tied to the visitor's transaction (``journey``'s, else the one they touched
    last) when there is one, so a second answer replaces the first. Call it in
    the view that handles the form; validate the rating there too (in strict
    mode an invalid one raises :class:`perf_sdk.ValidationError`).
    """
    engine = _engine()
    engine.record_satisfaction(rating, _stored(engine), channel=channel, journey=journey, request=flask.request)
