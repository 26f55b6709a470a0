"""The platform's HTTP routes: backdrop's write API and read API on Starlette.

Answers follow ``backdrop/write/api.py`` and ``backdrop/read/api.py``: status
codes and bodies (``{"status": "ok"}``, ``{"status": "error", "message": ...}``,
``{"messages": [...]}`` for refused records) are what a client of the real
platform sees, so perf_sdk's transport can be tested against this server. Every
error body carries ``status`` and ``message``; a 400 also carries ``messages``,
one line per problem.

SQLite work, JSON decoding (which can take a while on a 10 MB body) and the
rendering of every read answer run in Starlette's thread pool, never on the
event loop, so that heavy reads do not stall ``/_status`` or writes; a read's
work is bounded besides (``ReadLimits``: a 400 naming the limit).

Beyond the write and read APIs, backdrop's operational routes:
``GET /_status/data-sets`` (data sets not written within their
``max_age_expected``) and ``DELETE /data-sets/<name>`` (with the admin token).
Reads carry backdrop's caching headers (``Cache-Control`` by the data set's
``realtime`` and ``published`` settings, an ``ETag`` answered with 304 on
``If-None-Match``) and ``Access-Control-Allow-Origin: *``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import json
import sqlite3
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from perf_sdk import _csv
from perf_sdk._errors import ConfigurationError
from perf_sdk._protocol import MAX_SLUG_CHARS, platform_name_problem
from perf_sdk._version import __version__
from perf_sdk.platform import _periods
from perf_sdk.platform._backend import Backend, open_backend
from perf_sdk.platform._datasets import DataSetConfig, PlatformConfig
from perf_sdk.platform._openapi import openapi_spec
from perf_sdk.platform._performance import Generation, performance_app, to_site
from perf_sdk.platform._query import (
    DEFAULT_LIMITS,
    QueryError,
    ReadLimits,
    ReadQuery,
    parse_query,
    shift_to_data,
    too_much,
)
from perf_sdk.platform._store import InvalidRecords, prepare

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_DECOMPRESSED_BYTES",
    "MAX_GZIP_MEMBERS",
    "MAX_RECORDS_PER_REQUEST",
    "create_app",
    "render_csv",
    "render_json",
]

#: Largest request body accepted as sent (compressed or not).
DEFAULT_MAX_BODY_BYTES: Final = 5 * 1024 * 1024
#: Largest body once decompressed: backdrop's 10 MB gzip limit.
DEFAULT_MAX_DECOMPRESSED_BYTES: Final = 10 * 1024 * 1024
#: Most records one write may hold. The bytes alone bound nothing: 10 MB of ``[{},{},...]`` (a 10 KB gzip body)
#: is 3.4 million records, 88 s in one transaction that every other data set's writes wait behind. The SDK
#: sends at most 5,000 a request, and splits a batch the platform answers with 413.
MAX_RECORDS_PER_REQUEST: Final = 100_000


class _Answer(Exception):
    """Stop handling a request and send ``response``."""

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__(response.status_code)


def _error(
    status: int,
    message: str,
    *,
    messages: list[str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"status": "error", "message": message}
    if status == 400:
        body["messages"] = messages if messages is not None else [message]
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: Most gzip members one body may hold. A client sends one; many tiny members
#: (20 bytes each when empty) cost a decompressor apiece and no data.
MAX_GZIP_MEMBERS: Final = 1_000
#: Input fed to a member's decompressor at a time: its ``unused_data`` is a copy
#: of the input past the member's end, so the input is given in slices, small
#: at first and doubling: what is fed twice is at most the member's size and
#: the first slice.
_GZIP_FIRST_SLICE: Final = 256
_GZIP_MAX_SLICE: Final = 64 * 1024


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body without its ``Content-Encoding``, refusing more than ``limit`` bytes (413).

    A gzip body may be several members one after another (RFC 1952), at most
    :data:`MAX_GZIP_MEMBERS` (400 past it). The body is walked by offset, in
    slices, so the work is linear in its size whatever the members.
    """
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise _Answer(_error(413, f"the request body is over {limit} bytes"))
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise _Answer(_error(415, f"unsupported Content-Encoding {encoding!r}: send gzip or no encoding"))
    out = bytearray()
    view = memoryview(body)
    pos = members = 0
    try:
        while pos < len(view):
            members += 1
            if members > MAX_GZIP_MEMBERS:
                raise _Answer(
                    _error(400, f"the gzip body has more than {MAX_GZIP_MEMBERS} members: send one gzip stream")
                )
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            size = _GZIP_FIRST_SLICE
            while not inflater.eof:
                if pos >= len(view):
                    raise _Answer(_error(400, "the gzip body is truncated"))
                piece = view[pos : pos + size]
                size = min(2 * size, _GZIP_MAX_SLICE)
                out += inflater.decompress(piece, limit + 1 - len(out))
                if len(out) > limit:
                    raise _Answer(_error(413, f"the request body is over {limit} bytes once decompressed"))
                # Under the output cap the slice is used up, but for what follows the member's end.
                pos += len(piece) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
    except zlib.error as exc:
        raise _Answer(_error(400, f"the body is not valid gzip: {exc}")) from None
    return bytes(out)


def _too_many(count: int | None) -> _Answer:
    """The 413 for a write of more than :data:`MAX_RECORDS_PER_REQUEST` records (``count``: how many, if known)."""
    held = "more than" if count is None else f"{count:,} records, over"
    return _Answer(
        _error(
            413,
            f"the request holds {held} the limit of {MAX_RECORDS_PER_REQUEST:,} records a request: "
            "send them in smaller batches",
        )
    )


def _decode(body: bytes) -> list[Any]:
    """The records of a write: one JSON object or a list (400 otherwise)."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _Answer(_error(400, f'Error parsing JSON: "{exc}"')) from None
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    raise _Answer(_error(400, "the request body must be a JSON object or a list of objects"))


_UNPUBLISHED: Final = "Warning: This data-set is unpublished. Data may be subject to change or be inaccurate."
_BEARER_FORM: Final = "Expected header of form: Authorization: Bearer <token>"
_CORS: Final = {"Access-Control-Allow-Origin": "*"}
_NO_CACHE: Final = {"Cache-Control": "no-cache", **_CORS}
#: Backdrop's answer to a browser's CORS preflight of a read.
_PREFLIGHT: Final = {
    **_CORS,
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "cache-control, govuk-request-id, request-id",
    "Access-Control-Max-Age": "86400",
}


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _csv_cell(value: Any) -> Any:
    """A JSON value as a CSV cell: lists and objects (a set, a group's ``values``) as JSON text."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def render_csv(data: list[dict[str, Any]], limits: ReadLimits = DEFAULT_LIMITS) -> bytes:
    """``format=csv``: backdrop's columns (every key, sorted) with formula-looking cells neutralised.

    Bounded like :func:`render_json`: past ``limits.columns`` distinct keys, or
    ``limits.bytes`` bytes counted row by row as they are written, a 400. Every
    row has every column, so records of different keys would otherwise make an
    answer of records times keys.
    """
    keys = {key for item in data for key in item}
    if len(keys) > limits.columns:
        hint = "the records have that many different keys: narrow the query (filter_by, limit) or use format=json"
        raise too_much("columns", len(keys), limits.columns, hint)
    header = sorted(keys)
    out = io.StringIO()
    writer = _csv.writer(out)
    parts: list[bytes] = []
    size = 0
    for row in _csv_rows(header, data):
        writer.writerow(row)
        chunk = out.getvalue().encode("utf-8")
        out.seek(0)
        out.truncate()
        size += len(chunk)
        if size > limits.bytes:
            raise too_much("bytes", size, limits.bytes, "narrow the query (start_at/end_at, filter_by, limit)")
        parts.append(chunk)
    return b"".join(parts)


def _csv_rows(header: list[str], data: list[dict[str, Any]]) -> Iterator[list[Any]]:
    if data:
        yield list(header)
    for item in data:
        yield [_csv_cell(item.get(key, "")) for key in header]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def render_json(data: list[dict[str, Any]], warning: str | None, limit: int) -> bytes:
    """``{"data": [...]}`` (and backdrop's ``warning``), encoded one item at a time.

    One item at a time, because the C encoder holds the GIL for the whole of
    what it is given: an 18 MB answer in one call would stall the event loop
    (``/_status``, writes) for its full duration; item by item, other threads
    get their turn between items. Past ``limit`` bytes it stops with a 400.
    """
    parts = [b'{"data":[']
    size = 0
    for n, item in enumerate(data):
        chunk = _dumps(item)
        size += len(chunk) + 1
        if size > limit:
            hint = "narrow the query (start_at/end_at, filter_by, limit)"
            raise too_much("bytes", size, limit, hint)
        parts.append(b"," + chunk if n else chunk)
    parts.append(b"]")
    if warning is not None:
        parts.append(b',"warning":' + _dumps(warning))
    parts.append(b"}")
    return b"".join(parts)


class _Platform:
    """The routes' shared state: the store, the data-set configuration, body and read limits."""

    def __init__(
        self,
        store: Backend,
        config: PlatformConfig,
        max_body_bytes: int,
        max_decompressed_bytes: int,
        clock: Callable[[], datetime],
        read_limits: ReadLimits,
    ) -> None:
        self.store = store
        self.config = config
        self.max_body_bytes = max_body_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.clock = clock
        self.read_limits = read_limits
        self.generation = Generation()  # bumped by every write, empty and delete: the live site's cache key
        self.spec = openapi_spec(max_body_bytes=max_body_bytes)

    # ---------------------------------------------------------------- helpers

    def data_set(self, group: str, type_: str) -> DataSetConfig:
        """The data set's settings; 404 when it cannot exist."""
        found = self.config.data_set(group, type_)
        if found is None:
            raise _Answer(_error(404, f"there is no data set {group}/{type_}"))
        return found

    def check_names(self, group: str, type_: str) -> None:
        """A write to a name longer than any data set's is a 400 saying so.

        Any other name no data set has is backdrop's 404 (unknown data set);
        a name too long is refused as such, so the client learns the rule
        (slugs of at most ``MAX_SLUG_CHARS`` characters) rather than a miss.
        """
        parts = (("data group", group), ("data type", type_))
        problems = [platform_name_problem(what, name) or "" for what, name in parts if len(name) > MAX_SLUG_CHARS]
        if problems:
            raise _Answer(_error(400, "; ".join(problems), messages=problems))

    @staticmethod
    def _check_token(request: Request, expected: str | None, refused: str) -> None:
        header = request.headers.get("authorization")
        if header is None:
            raise _Answer(_error(401, _BEARER_FORM, headers={"WWW-Authenticate": "bearer"}))
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise _Answer(_error(401, _BEARER_FORM, headers={"WWW-Authenticate": "bearer"}))
        if expected is None or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            # Backdrop echoes the token it was given; a message is logged and shown, so not here.
            raise _Answer(_error(401, refused, headers={"WWW-Authenticate": "bearer"}))

    def authorise(self, request: Request, data_set: DataSetConfig) -> None:
        refused = f"Unauthorized: Invalid bearer token for '{data_set.name}'"
        self._check_token(request, self.config.write_token(data_set), refused)

    async def body(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            raise _Answer(_error(413, f"the request body is over {limit} bytes"))
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _Answer(_error(413, f"the request body is over {limit} bytes"))
            chunks.append(chunk)
        return b"".join(chunks)

    def records(self, request: Request, body: bytes) -> list[Any]:
        if not body:
            raise _Answer(_error(400, "Expected JSON request body but received zero bytes."))
        encoding = request.headers.get("content-encoding", "").strip().lower()
        text = _decompress(body, encoding, self.max_decompressed_bytes)
        # Before parsing, which would build every one of them: each record opens a brace (and a brace in a
        # value counts too, hence the margin; a batch refused so is split and sent again, nothing is lost).
        if text.count(b"{") > 2 * MAX_RECORDS_PER_REQUEST:
            raise _too_many(None)
        records = _decode(text)
        if len(records) > MAX_RECORDS_PER_REQUEST:
            raise _too_many(len(records))
        return records

    # ---------------------------------------------------------------- routes

    async def status(self, request: Request) -> Response:
        try:
            alive = await run_in_threadpool(self.store.ping)
        except (sqlite3.Error, RuntimeError):
            alive = False
        if not alive:
            return _error(500, "cannot reach the database", headers=_NO_CACHE)
        body = {"status": "ok", "message": "database seems fine", "version": __version__}
        return JSONResponse(body, headers=_NO_CACHE)

    async def status_data_sets(self, request: Request) -> Response:
        """Backdrop's ``/_status/data-sets``: the data sets not written within their ``max_age_expected``."""
        updated = await run_in_threadpool(self.store.last_updated)
        now = _periods.to_us(self.clock())
        failing: list[dict[str, Any]] = []
        for (group, type_), last in sorted(updated.items()):
            data_set = self.config.data_set(group, type_)
            if data_set is None or data_set.max_age_expected is None or last is None:
                continue
            late = (now - last) // 1_000_000 - data_set.max_age_expected
            if late >= 0:
                failing.append(
                    {
                        "name": data_set.name,
                        "data-group": group,
                        "data-type": type_,
                        "seconds-out-of-date": late,
                        "last-updated": _periods.iso(last),
                        "max-age-expected": data_set.max_age_expected,
                    }
                )
        if not failing:
            body: dict[str, Any] = {"status": "ok", "data_sets": None, "message": "All data_sets are in date"}
        else:
            noun = "data-sets are" if len(failing) > 1 else "data-set is"
            body = {"status": "not okay", "data_sets": failing, "message": f"{len(failing)} {noun} out of date"}
        return JSONResponse(body, headers=_NO_CACHE)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.spec)

    async def data_set_route(self, request: Request) -> Response:
        group: str = request.path_params["group"]
        type_: str = request.path_params["type"]
        try:
            if request.method in ("POST", "PUT"):
                self.check_names(group, type_)
            data_set = self.data_set(group, type_)
            if request.method in ("GET", "HEAD"):
                return await self.read(request, data_set)
            if request.method == "OPTIONS":
                return Response(status_code=200, headers=_PREFLIGHT)
            self.authorise(request, data_set)
            body = await self.body(request)
            if request.method == "PUT":
                return await self.put(request, data_set, body)
            return await self.post(request, data_set, body)
        except _Answer as answer:
            return answer.response

    async def read(self, request: Request, data_set: DataSetConfig) -> Response:
        """A read, worked and rendered on a worker thread: the event loop only passes bytes on."""
        try:
            query = parse_query(
                request.query_params.multi_items(),
                now=self.clock(),
                raw_queries_allowed=data_set.raw_queries_allowed,
            )
            rendered = await run_in_threadpool(self._answer, data_set, query)
        except QueryError as exc:
            return _error(400, str(exc), headers=_CORS)
        if rendered is None:
            return _error(404, f"there is no data set {data_set.path}", headers=_CORS)
        content, media_type = rendered
        etag = '"' + hashlib.sha1(content, usedforsecurity=False).hexdigest() + '"'
        headers = {"ETag": etag, **_CORS}
        if not data_set.published:
            headers["Cache-Control"] = "no-cache"
        else:
            headers["Cache-Control"] = f"max-age={120 if data_set.realtime else 1800}, must-revalidate"
        if query.format == "csv":
            headers["Content-Disposition"] = "attachment; filename=export.csv"
        wanted = {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}
        if etag in wanted or "*" in wanted:
            return Response(status_code=304, headers=headers)
        return Response(content, media_type=media_type, headers=headers)

    def _answer(self, data_set: DataSetConfig, query: ReadQuery) -> tuple[bytes, str] | None:
        def run(q: ReadQuery) -> list[dict[str, Any]] | None:
            return self.store.read(data_set.group, data_set.type, q, self.read_limits)

        data = shift_to_data(run, query)
        if data is None:
            return None
        if query.format == "csv":
            return render_csv(data, self.read_limits), "text/csv; charset=utf-8"
        warning = None if data_set.published else _UNPUBLISHED
        return render_json(data, warning, self.read_limits.bytes), "application/json"

    async def post(self, request: Request, data_set: DataSetConfig, body: bytes) -> Response:
        def work() -> None:
            try:
                prepared = prepare(self.records(request, body))
            except InvalidRecords as exc:
                count = f"{'at least ' if exc.more_at_least else ''}{len(exc.messages) + exc.more}"
                raise _Answer(_error(400, f"{count} problem(s) in the records", messages=exc.lines())) from None
            now = _periods.to_us(self.clock())
            self.store.write(data_set.group, data_set.type, prepared, now_us=now)
            self.generation.bump()

        await run_in_threadpool(work)
        return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-cache"})

    async def put(self, request: Request, data_set: DataSetConfig, body: bytes) -> Response:
        records = await run_in_threadpool(self.records, request, body)
        if records:
            return _error(400, "Not implemented: you can only pass an empty JSON list to empty the data set")
        now = _periods.to_us(self.clock())
        await run_in_threadpool(functools.partial(self.store.empty, data_set.group, data_set.type, now_us=now))
        self.generation.bump()
        return JSONResponse({"status": "ok"})

    def _named(self, name: str) -> DataSetConfig | None:
        """The data set ``DELETE /data-sets/<name>`` means; ``None`` when none; a 400 when two or more.

        ``name`` is a data set's name (its configured ``name``, else
        ``<group>-<type>``) or ``<group>/<type>``. A name alone can be
        ambiguous (``a-b/c`` and ``a/b-c`` are both ``a-b-c``): then the answer
        names every data set it matches, and ``<group>/<type>`` picks one.
        """
        known = set(self.store.last_updated()) | set(self.config.data_sets)
        group, slash, type_ = name.partition("/")
        if slash:
            matches = [(group, type_)] if (group, type_) in known else []
        else:
            matches = sorted(k for k in known if self.config.name_of(*k) == name)
        if len(matches) > 1:
            paths = " and ".join(f"{g}/{t}" for g, t in matches)
            message = (
                f'the name "{name}" matches {len(matches)} data sets, {paths}: '
                "delete one by its path, DELETE /data-sets/<group>/<type>"
            )
            raise _Answer(_error(400, message))
        if not matches:
            return None
        return self.config.data_sets.get(matches[0]) or DataSetConfig(*matches[0])

    async def delete_data_set(self, request: Request) -> Response:
        """Backdrop's ``DELETE /data-sets/<name>``, with the admin token: the data set's records are gone.

        ``<name>`` may also be ``<group>/<type>``, which names one data set whatever the names.
        """
        name: str = request.path_params["name"]
        try:
            refused = f'Unauthorized: invalid or no token given for "{name}".'
            self._check_token(request, self.config.admin_token, refused)
        except _Answer as answer:
            return answer.response

        def work() -> bool:
            data_set = self._named(name)
            if data_set is None or not self.store.delete(data_set.group, data_set.type):
                return False
            self.generation.bump()
            if (data_set.group, data_set.type) in self.config.data_sets:
                self.store.create(data_set.group, data_set.type)  # declared: it stays, empty
            return True

        try:
            deleted = await run_in_threadpool(work)
        except _Answer as answer:
            return answer.response
        if not deleted:
            return _error(404, f'No collection exists with name "{name}"')
        return JSONResponse({"status": "ok", "message": f"Deleted {name}"}, headers={"Cache-Control": "no-cache"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error(500, f"internal error: {type(exc).__name__}")


def _platform_config(
    token: str | None, tokens: Mapping[str, str] | None, config: PlatformConfig | Mapping[str, Any] | None
) -> PlatformConfig:
    given = [name for name, value in (("token", token), ("tokens", tokens), ("config", config)) if value is not None]
    if len(given) != 1:
        raise ConfigurationError(
            "give the platform exactly one of token= (every data set), tokens= (per data set) "
            "or config= (a data-set configuration)"
        )
    if token is not None:
        if not isinstance(token, str) or not token.strip():
            raise ConfigurationError("token= must not be empty")
        return PlatformConfig.single_token(token)
    if tokens is not None:
        return PlatformConfig.from_tokens(tokens)
    if isinstance(config, PlatformConfig):
        return config
    assert config is not None
    return PlatformConfig.from_mapping(config, "config=")


def create_app(
    *,
    db: str | Path = ":memory:",
    token: str | None = None,
    tokens: Mapping[str, str] | None = None,
    config: PlatformConfig | Mapping[str, Any] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
    read_limits: ReadLimits = DEFAULT_LIMITS,
    clock: Callable[[], datetime] | None = None,
    backend: Backend | None = None,
) -> Starlette:
    """The platform as an ASGI application (see the package docstring).

    Give exactly one of ``token`` (one bearer token for every data set; any
    ``<group>/<type>`` of slugs is created on its first write), ``tokens``
    (``{"group/type": token}``: only those data sets exist) or ``config`` (a
    :class:`~perf_sdk.platform._datasets.PlatformConfig` or the mapping of a
    data-set configuration file: tokens, per-data-set settings, services'
    metadata). ``db`` is a SQLite file, created if missing, ``":memory:"``, or a
    ``postgresql://`` URL (the ``postgres`` extra; migrations applied at start).
    ``read_limits`` bounds the work of one read (a 400 past it); ``clock``
    (default: the system's, in UTC) dates writes and anchors relative reads.
    ``backend`` replaces the SQLite store made from ``db`` with another
    implementation of :class:`~perf_sdk.platform._backend.Backend`.

    The store is ``app.state.store`` and the configuration ``app.state.config``;
    the store stays open for the application's life (close it with
    ``app.state.store.close()``).
    """
    settings = _platform_config(token, tokens, config)
    if max_body_bytes < 1 or max_decompressed_bytes < 1:
        raise ConfigurationError("max_body_bytes and max_decompressed_bytes must be positive")
    store: Backend = backend if backend is not None else open_backend(db)
    platform = _Platform(store, settings, max_body_bytes, max_decompressed_bytes, clock or _utc_now, read_limits)
    for group, type_ in settings.data_sets:
        store.create(group, type_)
    app = Starlette(
        routes=[
            Route("/_status", platform.status, methods=["GET"]),
            Route("/_status/data-sets", platform.status_data_sets, methods=["GET"]),
            Route("/openapi.json", platform.openapi, methods=["GET"]),
            Route("/data/{group}/{type}", platform.data_set_route, methods=["GET", "POST", "PUT", "OPTIONS"]),
            Route("/data-sets/{name:path}", platform.delete_data_set, methods=["DELETE"]),
            Route("/performance", to_site, methods=["GET", "HEAD"]),  # a relative Location, never from Host
            Mount("/performance", app=performance_app(store, settings, clock, generation=platform.generation)),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    # Starlette would answer ``/data/g/t/`` with a redirect built from the request's Host header (a proxy
    # passing ``Host $host`` lets anyone choose it); backdrop answered 404 there, and so does this.
    app.router.redirect_slashes = False
    app.state.store = store
    app.state.config = settings
    return app
