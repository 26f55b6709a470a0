"""The performance site, live: ``perf-sdk publish``'s pages and data files at ``/performance/``.

The platform renders the same site ``perf-sdk publish`` writes (same code,
same bytes for the same data and publication time), from its own store. The
figures are read through the read API's own query path, in process: an
:class:`httpx.MockTransport` answers ``counts_from_read_api``'s requests with
``Store.read``, so the live site and a published one cannot drift apart.

Rendering every service takes a while on a big platform, so a site is built
once per state of the store (the data sets' last-write times) and hour, and
served from memory until either changes. Service titles, organisations and
descriptions come from the platform's data-set configuration
(``"services"``); a service without one gets a title made from its slug.

``/performance/data-sets.json`` lists the services with their metadata, the
shape ``perf-sdk publish`` reads to find "every service the platform holds".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Final

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from perf_sdk._publish import ServiceInfo, publish
from perf_sdk.platform._query import QueryError, parse_query

__all__ = ["performance_app"]

_TYPES: Final = ("transactions", "satisfaction", "costs")
_MEDIA: Final = {
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}
_LOCAL: Final = "http://127.0.0.1"  # answered in process by the MockTransport, never dialled


class _LiveSite:
    def __init__(self, store: Any, config: Any, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.lock = threading.Lock()
        self.key: object = None
        self.files: dict[str, bytes] = {}

    def groups(self) -> list[str]:
        updated = self.store.last_updated()
        return sorted({group for group, type_ in updated if type_ in _TYPES})

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
        if len(parts) != 3 or parts[0] != "data":
            return httpx.Response(404, json={"status": "error", "message": "not found"})
        try:
            query = parse_query(list(request.url.params.multi_items()), now=self.clock())
            data = self.store.read(parts[1], parts[2], query)
        except QueryError as exc:
            return httpx.Response(400, json={"status": "error", "message": str(exc)})
        if data is None:
            return httpx.Response(404, json={"status": "error", "message": "no such data set"})
        return httpx.Response(200, json={"data": data})

    def site(self) -> dict[str, bytes]:
        now = self.clock().astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
        key = (now, tuple(sorted(self.store.last_updated().items())))
        with self.lock:
            if key != self.key:
                groups = self.groups()
                with httpx.Client(transport=httpx.MockTransport(self._answer)) as client:
                    self.files = (
                        dict(
                            publish(
                                None,
                                read_endpoint=_LOCAL,
                                service=groups,
                                metadata={g: self.info(g) for g in groups},
                                published_at=now,
                                client=client,
                            ).contents
                        )
                        if groups
                        else {}
                    )
                self.key = key
            return self.files


def performance_app(store: Any, config: Any = None, clock: Callable[[], datetime] | None = None) -> Starlette:
    """The site as an ASGI app, to mount at ``/performance`` (``store`` and ``config`` are the platform's)."""
    live = _LiveSite(store, config, clock or (lambda: datetime.now(timezone.utc)))

    async def page(request: Request) -> Response:
        path = request.path_params.get("path", "")
        if request.url.path.endswith("/performance"):
            return RedirectResponse(str(request.url.replace(path=request.url.path + "/")), status_code=308)
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
        files = await run_in_threadpool(live.site)
        name = path + "index.html" if path == "" or path.endswith("/") else path
        data = files.get(name)
        if data is None and f"{name}/index.html" in files:
            return RedirectResponse(str(request.url.replace(path=request.url.path + "/")), status_code=308)
        if data is None:
            if not files and name == "index.html":
                return Response(_EMPTY, media_type=_MEDIA["html"])
            return Response("Not found", status_code=404, media_type="text/plain; charset=utf-8")
        return Response(data, media_type=_MEDIA.get(name.rsplit(".", 1)[-1], "application/octet-stream"))

    return Starlette(routes=[Route("/{path:path}", page, methods=["GET", "HEAD"])])


_EMPTY: Final = (
    '<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8"><title>Service performance</title></head>'
    "<body><main><h1>Service performance</h1><p>The platform holds no service's records yet.</p></main></body></html>"
)
