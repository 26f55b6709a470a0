"""Framework integrations: count journeys from page views, with no hand-written calls.

One module per framework, each importing its framework itself, so importing
this package imports none:

* :mod:`perf_sdk.integrations.flask`: ``init_app(app, tracker, journeys=[...])``
* :mod:`perf_sdk.integrations.django`: ``"perf_sdk.integrations.django.PerfSdkMiddleware"``
  in ``MIDDLEWARE``, configured by ``settings.PERF_SDK``
* :mod:`perf_sdk.integrations.asgi`: ``PerfSdkMiddleware(app, tracker=..., journeys=[...])``
  (Starlette, FastAPI, Quart, Django's ASGI handler ...)

The counting rules live in :mod:`perf_sdk._journey`, shared by all three.
"""

from __future__ import annotations

from perf_sdk._journey import DEFAULT_BOT_USER_AGENTS, Journey

__all__ = ["DEFAULT_BOT_USER_AGENTS", "Journey"]
