"""Settings of the Django example: the least a service needs, plus perf_sdk's middleware and journeys.

See manage.py for the command that runs it.
"""

from __future__ import annotations

import os

from perf_sdk import Journey

DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-example-only-change-me")
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "urls"
WSGI_APPLICATION = "wsgi.application"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}  # no database: nothing here needs one
USE_TZ = True

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "perf_sdk.integrations.django.PerfSdkMiddleware",
]

# endpoint, token, secret and spool_dir come from PERF_SDK_ENDPOINT, PERF_SDK_TOKEN, PERF_SDK_SECRET, PERF_SDK_SPOOL_DIR.
PERF_SDK = {
    "service": "apply-for-a-licence",
    # URL names (urls.py), so the counting follows the views even if their paths change.
    "journeys": [Journey("apply-for-a-licence", start="route:apply", complete="route:confirmation")],
}
