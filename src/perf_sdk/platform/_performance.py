"""The performance site, live: ``perf-sdk publish``'s pages and data files at ``/performance/``.

The platform renders the same site ``perf-sdk publish`` writes (same code,
same bytes for the same data and publication time), from its own store. The
figures are read through the read API's own query path, in process: an
:class:`httpx.MockTransport` answers ``counts_from_read_api``'s requests with
``Store.read``, so the live site and a published one cannot drift apart.

Rendering every service takes a while on a big platform, so the site is
built in the background, one build at a time and at most once per
``interval`` seconds (60 by default), and served from memory meanwhile: a
request never waits for a build, except the very first while no site exists,
and that one only up to ``first_wait`` seconds before a ``503`` with
``Retry-After``. A build is skipped when nothing changed: the key is the hour
(the publication time), the data sets' last-write times (which other
processes' writes move too) and this process's write generation
(:class:`Generation`, bumped by every write, empty and delete, as emptying a
data set leaves no write time behind). Each service is its own unit
(:func:`perf_sdk.publish`): a service that fails is left out and logged; a
build that fails as a whole is logged and the last good site stays.
Service titles, organisations and descriptions come from the platform's
data-set configuration (``"services"``); a service without one gets a title
made from its slug.

``/performance/data-sets.json`` lists the services with their metadata, the
shape ``perf-sdk publish`` reads to find "every service the platform holds".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import anyio
import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from perf_sdk._publish import ServiceInfo, publish
from perf_sdk.platform._query import QueryError, parse_query

__all__ = ["Generation", "performance_app", "to_site"]

_TYPES: Final = ("transactions", "satisfaction", "costs")
_MEDIA: Final = {
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}
_LOCAL: Final = "http://127.0.0.1"  # answered in process by the MockTransport, never dialled
#: How often a request waiting for the very first site looks whether it is there (seconds).
_POLL: Final = 0.05

_log = logging.getLogger("perf_sdk.platform.performance")


class Generation:
    """A counter every change to the store bumps (write, empty, delete): part of the live site's cache key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def bump(self) -> None:
        with self._lock:
            self._value += 1

    @property
    def value(self) -> int:
        return self._value


class _LiveSite:
    """The site in memory, rebuilt by one background thread at a time; requests only read :attr:`files`."""

    def __init__(
        self,
        store: Any,
        config: Any,
        clock: Callable[[], datetime],
        generation: Generation,
        interval: float,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.generation = generation
        self.interval = timedelta(seconds=interval)
        self.lock = threading.Lock()  # guards the fields below; never held while building
        self.key: object = None
        #: The last good site; ``None`` until the first build succeeds.
        self.files: dict[str, bytes] | None = None
        #: Set while no build runs (the first request waits on it, with a bound).
        self.idle = threading.Event()
        self.idle.set()
        self.next_check: datetime | None = None

    def published(self, group: str, type_: str) -> bool:
        """Whether data set ``group/type_`` may be on the site: not one the configuration marks unpublished.

        The read API still answers for an unpublished data set (with backdrop's
        warning and ``no-cache``); the site, which calls itself open data under
        the Open Government Licence, leaves it out.
        """
        found = self.config.data_set(group, type_) if self.config is not None else None
        return found is None or found.published

    def groups(self, updated: dict[tuple[str, str], Any] | None = None) -> list[str]:
        """The services: data groups with a published transactions, satisfaction or costs data set."""
        updated = self.store.last_updated() if updated is None else updated
        return sorted({group for group, type_ in updated if type_ in _TYPES and self.published(group, type_)})

    def info(self, slug: str) -> ServiceInfo:
        found = self.config.service(slug) if self.config is not None else None
        fallback = ServiceInfo.from_slug(slug)
        if found is None:
            return fallback
        return ServiceInfo(
            slug,
            found.title or fallback.title,
            found.organisation or "",
            found.description or "",
            found.start_date.isoformat() if found.start_date else "",
        )

    def _answer(self, request: httpx.Request) -> httpx.Response:
        """The read API's answer to one GET, from the store (the same query parser as the HTTP route)."""
        parts = request.url.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "data" or not self.published(parts[1], parts[2]):
            return httpx.Response(404, json={"status": "error", "message": "not found"})
        try:
            query = parse_query(list(request.url.params.multi_items()), now=self.clock())
            data = self.store.read(parts[1], parts[2], query)
        except QueryError as exc:
            return httpx.Response(400, json={"status": "error", "message": str(exc)})
        if data is None:
            return httpx.Response(404, json={"status": "error", "message": "no such data set"})
        return httpx.Response(200, json={"data": data})

    def current(self) -> dict[str, bytes] | None:
        """The site to serve now (``None`` before the first good build); starts a build in the background when due.

        Due when no build runs and ``interval`` has passed since the last one
        started (at once before the first site): so a burst of writes, or a
        build that keeps failing, costs one build per interval, not one per request.
        """
        with self.lock:
            now = self.clock()
            due = self.next_check is None or not self.next_check - self.interval <= now < self.next_check
            if self.idle.is_set() and due:  # (a clock set back does not hold builds off)
                self.next_check = now + self.interval
                self.idle.clear()
                threading.Thread(target=self._rebuild, name="perf-sdk-live-site", daemon=True).start()
            return self.files

    def retry_after(self) -> int:
        """Seconds until the next build may start, for a ``Retry-After`` header (at least 1)."""
        with self.lock:
            left = (self.next_check - self.clock()).total_seconds() if self.next_check else 0.0
        return max(1, int(left) + 1)

    def _rebuild(self) -> None:
        try:
            self.build()
        except Exception:
            _log.exception("the performance site could not be rebuilt; serving the last good one until the next try")
        finally:
            self.idle.set()

    def build(self) -> None:
        """Build the site if the store changed since the last good build (runs in the background thread)."""
        now = self.clock().astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
        generation = self.generation.value  # read first: a write during the build makes the next one due
        updated = self.store.last_updated()
        key = (now, tuple(sorted(updated.items())), generation)
        if key == self.key and self.files is not None:
            return
        groups = self.groups(updated)
        files: dict[str, bytes] = {}
        if groups:
            with httpx.Client(transport=httpx.MockTransport(self._answer)) as client:
                result = publish(
                    None,
                    read_endpoint=_LOCAL,
                    service=groups,
                    metadata={g: self.info(g) for g in groups},
                    published_at=now,
                    client=client,
                )
            files = dict(result.contents)
        with self.lock:
            self.files = files
            self.key = key


def performance_app(
    store: Any,
    config: Any = None,
    clock: Callable[[], datetime] | None = None,
    *,
    generation: Generation | None = None,
    interval: float = 60.0,
    first_wait: float = 20.0,
) -> Starlette:
    """The site as an ASGI app, to mount at ``/performance`` (``store`` and ``config`` are the platform's).

    ``generation`` is bumped by the platform's write, empty and delete
    handlers; ``interval`` is the least time between two builds (seconds) and
    ``first_wait`` how long a request waits for the very first site before a
    503. The live site is ``app.state.live_site`` (its ``idle`` event is set
    while no build runs).
    """
    live = _LiveSite(store, config, clock or (lambda: datetime.now(timezone.utc)), generation or Generation(), interval)

    async def site() -> dict[str, bytes] | None:
        files = live.current()
        waited = 0.0
        while files is None and waited < first_wait and not live.idle.is_set():
            await anyio.sleep(_POLL)  # the very first build: wait without holding a worker thread
            waited += _POLL
            files = live.files
        return live.files if files is None else files

    async def page(request: Request) -> Response:
        path = request.path_params.get("path", "")
        if request.url.path.endswith("/performance"):
            return _redirect("performance")
        if path == "data-sets.json":
            groups = await run_in_threadpool(live.groups)
            return JSONResponse(
                [
                    {
                        "data_group": g,
                        "title": i.title,
                        "organisation": i.organisation,
                        "description": i.description,
                        "start_date": i.start_date or None,
                    }
                    for g in groups
                    for i in (live.info(g),)
                ]
            )
        files = await site()
        if files is None:
            return Response(
                "The performance site is being built; try again shortly.",
                status_code=503,
                media_type="text/plain; charset=utf-8",
                headers={"Retry-After": str(live.retry_after()), "Cache-Control": "no-store"},
            )
        name = path + "index.html" if path == "" or path.endswith("/") else path
        data = files.get(name)
        if data is None and f"{name}/index.html" in files:
            return _redirect(name.rsplit("/", 1)[-1])
        if data is None:
            if not files and name == "index.html":
                return Response(_EMPTY, media_type=_MEDIA["html"])
            return Response("Not found", status_code=404, media_type="text/plain; charset=utf-8")
        return Response(data, media_type=_MEDIA.get(name.rsplit(".", 1)[-1], "application/octet-stream"))

    app = Starlette(routes=[Route("/{path:path}", page, methods=["GET", "HEAD"])])
    app.state.live_site = live
    return app


async def to_site(request: Request) -> Response:
    """``/performance`` -> ``/performance/`` (a route beside the mount: a mount does not match its bare prefix)."""
    return _redirect("performance")


def _redirect(segment: str) -> Response:
    """The same path with a "/" added, as a relative ``Location``: never built from the request's ``Host``."""
    return RedirectResponse(f"./{segment}/", status_code=308)


_EMPTY: Final = (
    '<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8"><title>Service performance</title></head>'
    "<body><main><h1>Service performance</h1><p>The platform holds no service's records yet.</p></main></body></html>"
)
