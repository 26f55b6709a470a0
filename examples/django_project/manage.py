"""Apply for a licence: a Django service whose journey perf_sdk counts with no hand-written calls.

Run it against a local platform (`perf-sdk serve --token dev-token --port 8800` in another terminal):

    PERF_SDK_ENDPOINT=http://127.0.0.1:8800 PERF_SDK_TOKEN=dev-token PERF_SDK_SECRET=dev-secret-change-me-0123456789 python examples/django_project/manage.py runserver

then open http://127.0.0.1:8000/. The journey: start page -> /apply (the form; a start is counted) ->
/apply/confirmation (a completion is counted; refreshing it counts nothing) -> /feedback (a rating,
tied to the transaction just completed). The middleware and the journeys are in settings.py.
In production: gunicorn --chdir examples/django_project wsgi:application (WSGI), or
uvicorn --app-dir examples/django_project asgi:application (ASGI).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
