"""Latency each journey middleware adds to a request: the same app with and without it, in one run.

    python benchmarks/middleware.py [--requests N]

For each framework (a Starlette app called directly as ASGI, a Flask app through
its test client, a Django project through its test client) two copies of one
app, identical but for perf_sdk's integration, serve interleaved requests
(with, without, with, ...) so both see the same machine state. Three kinds of
request:

* ``other page``: a page no journey names (most of a service's traffic);
* ``start, new visitor``: a journey's start page without a cookie (a start is
  counted, a cookie set);
* ``start, refresh``: the same page with the visitor's cookie (nothing to count; its
  signature is checked);
* ``complete, made-up cookie``: a journey's complete page with an invented
  ``perf_sdk_txn`` (refused by its signature: nothing counted, the cookie removed).

The tracker is a real :class:`perf_sdk.Tracker` (writer thread, spool on a
temporary disk, uploader thread) whose transport accepts every batch, so the
hot path and the background threads' competition are as in production, without
a network. Prints median and p99 per request in microseconds, and the median
added by the middleware.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path, and its neighbour platform.py
# would shadow the standard library's ``platform`` module.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import perf_sdk
from perf_sdk.integrations import Journey

JOURNEYS = [Journey("apply", start="/apply", complete="/apply/done")]
#: A cookie this service never issued: the shape of a real one, with a made-up id and signature.
FORGED = "perf_sdk_txn_bench-service=apply.s.0123456789abcdef0123456789abcdef.fedcba9876543210fedcba9876543210"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"


class AcceptAll:
    """A transport that stores nothing and never fails: no network in the measurement."""

    def send(self, data_type: str, body: bytes) -> None:
        return None

    def close(self) -> None:
        return None


def make_tracker(spool: str) -> perf_sdk.Tracker:
    return perf_sdk.Tracker(
        service="bench-service", secret="bench-secret-0123456789", spool_dir=spool, transport=AcceptAll()
    )


def measure(with_mw: Callable[[], Any], without_mw: Callable[[], Any], n: int) -> tuple[list[float], list[float]]:
    for _ in range(min(200, n)):  # warm up both
        with_mw()
        without_mw()
    a: list[float] = []
    b: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        with_mw()
        t1 = clock()
        without_mw()
        t2 = clock()
        a.append((t1 - t0) / 1000)
        b.append((t2 - t1) / 1000)
    return a, b


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


# ASGI (Starlette) ------------------------------------------------------------------------------
def asgi_cases(tracker: perf_sdk.Tracker) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from perf_sdk.integrations.asgi import PerfSdkMiddleware

    async def page(request: Any) -> PlainTextResponse:
        return PlainTextResponse("page")

    routes = [Route("/", page), Route("/apply", page), Route("/apply/done", page)]
    plain = Starlette(routes=routes)
    counted = PerfSdkMiddleware(Starlette(routes=routes), tracker=tracker, journeys=JOURNEYS)
    loop = asyncio.new_event_loop()
    cookie: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    def call(app: Any, path: str, cookie_header: bytes | None) -> Callable[[], Any]:
        headers = [(b"host", b"localhost"), (b"user-agent", BROWSER.encode())]
        if cookie_header:
            headers.append((b"cookie", cookie_header))

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                for name, value in message["headers"]:
                    if name == b"set-cookie" and not cookie:
                        cookie.append(value.split(b";")[0])

        def run() -> None:
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "root_path": "",
                "query_string": b"",
                "headers": headers,
                "server": ("localhost", 80),
                "client": ("127.0.0.1", 5000),
            }
            loop.run_until_complete(app(scope, receive, send))

        return run

    call(counted, "/apply", None)()  # one visit to get a visitor's cookie
    return {
        "other page": (call(counted, "/", None), call(plain, "/", None)),
        "start, new visitor": (call(counted, "/apply", None), call(plain, "/apply", None)),
        "start, refresh": (call(counted, "/apply", cookie[0]), call(plain, "/apply", cookie[0])),
        "complete, made-up cookie": (
            call(counted, "/apply/done", FORGED.encode()),
            call(plain, "/apply/done", FORGED.encode()),
        ),
    }


# Flask -----------------------------------------------------------------------------------------
def flask_cases(tracker: perf_sdk.Tracker) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    from flask import Flask

    from perf_sdk.integrations.flask import init_app

    def make(counted: bool) -> Flask:
        app = Flask(f"bench{counted}")
        if counted:
            init_app(app, tracker, journeys=JOURNEYS)
        for rule in ("/", "/apply", "/apply/done"):
            app.add_url_rule(rule, rule, lambda: "page")
        return app

    with_app, without_app = make(True), make(False)
    headers = {"User-Agent": BROWSER}

    def get(app: Flask, path: str, keep_cookies: bool) -> Callable[[], Any]:
        client = app.test_client(use_cookies=keep_cookies)
        if keep_cookies:
            client.get(path, headers=headers)
        return lambda: client.get(path, headers=headers)

    def forged(app: Flask) -> Callable[[], Any]:
        client = app.test_client(use_cookies=False)
        return lambda: client.get("/apply/done", headers={**headers, "Cookie": FORGED})

    return {
        "other page": (get(with_app, "/", False), get(without_app, "/", False)),
        "start, new visitor": (get(with_app, "/apply", False), get(without_app, "/apply", False)),
        "start, refresh": (get(with_app, "/apply", True), get(without_app, "/apply", True)),
        "complete, made-up cookie": (forged(with_app), forged(without_app)),
    }


# Django ----------------------------------------------------------------------------------------
urlpatterns: list[Any] = []


def django_cases(tracker: perf_sdk.Tracker) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        DATABASES={},
        MIDDLEWARE=[],
        PERF_SDK={"tracker": tracker, "journeys": JOURNEYS},
    )
    django.setup()
    from django.http import HttpResponse
    from django.test import Client, override_settings
    from django.urls import path

    def page(request: Any) -> HttpResponse:
        return HttpResponse("page")

    urlpatterns.extend([path("", page), path("apply", page), path("apply/done", page)])

    def client(counted: bool) -> Client:
        c = Client(HTTP_USER_AGENT=BROWSER)
        middleware = ["perf_sdk.integrations.django.PerfSdkMiddleware"] if counted else []
        with override_settings(MIDDLEWARE=middleware):
            c.handler.load_middleware()
        return c

    def get(c: Client, path_: str, keep_cookies: bool) -> Callable[[], Any]:
        if keep_cookies:
            c.get(path_)
            return lambda: c.get(path_)

        def fresh() -> Any:
            c.cookies.clear()
            return c.get(path_)

        return fresh

    def forged(c: Client) -> Callable[[], Any]:
        def run() -> Any:
            c.cookies.clear()
            return c.get("/apply/done", HTTP_COOKIE=FORGED)

        return run

    return {
        "other page": (get(client(True), "/", False), get(client(False), "/", False)),
        "start, new visitor": (get(client(True), "/apply", False), get(client(False), "/apply", False)),
        "start, refresh": (get(client(True), "/apply", True), get(client(False), "/apply", True)),
        "complete, made-up cookie": (forged(client(True)), forged(client(False))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per case and variant (default 5000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as spool:
        tracker = make_tracker(spool)
        print(f"{'framework':<10}{'request':<26}{'without (µs)':>20}{'with (µs)':>20}{'added median':>14}")
        print(f"{'':<10}{'':<26}{'median':>10}{'p99':>10}{'median':>10}{'p99':>10}{'(µs)':>14}")
        for name, cases in (("ASGI", asgi_cases), ("Flask", flask_cases), ("Django", django_cases)):
            for label, (with_mw, without_mw) in cases(tracker).items():
                a, b = measure(with_mw, without_mw, args.requests)
                ma, mb = statistics.median(a), statistics.median(b)
                print(f"{name:<10}{label:<26}{mb:>10.1f}{p99(b):>10.1f}{ma:>10.1f}{p99(a):>10.1f}{ma - mb:>+14.1f}")
        result = tracker.close(timeout=10)
        print(
            f"\ntracker: {tracker.stats.snapshot().get('accepted', '?')} records accepted; flush left {result.pending}"
        )


if __name__ == "__main__":
    main()
