"""ASGI entry point: uvicorn --app-dir examples/django_project asgi:application

perf_sdk's get_asgi_application is Django's, plus the lifespan protocol, so that
an ASGI server's shutdown delivers what the worker's tracker holds.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

from perf_sdk.integrations.django import get_asgi_application

application = get_asgi_application()
