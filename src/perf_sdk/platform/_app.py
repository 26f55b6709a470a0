"""The platform's HTTP routes: backdrop's write API and read API on Starlette.

Answers follow ``backdrop/write/api.py`` and ``backdrop/read/api.py``: status
codes and bodies (``{"status": "ok"}``, ``{"status": "error", "message": ...}``,
``{"messages": [...]}`` for refused records) are what a client of the real
platform sees, so perf_sdk's transport can be tested against this server. Every
error body carries ``status`` and ``message``; a 400 also carries ``messages``,
one line per problem.

SQLite work (and JSON decoding, which can take a while on a 10 MB body) runs in
Starlette's thread pool so that one slow request does not stall the others.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from perf_sdk._errors import ConfigurationError
from perf_sdk._protocol import SLUG_RE
from perf_sdk._version import __version__
from perf_sdk.platform._openapi import openapi_spec
from perf_sdk.platform._query import QueryError, parse_query
from perf_sdk.platform._store import InvalidRecords, Store, prepare

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_DECOMPRESSED_BYTES", "create_app"]

#: Largest request body accepted as sent (compressed or not).
DEFAULT_MAX_BODY_BYTES: Final = 5 * 1024 * 1024
#: Largest body once decompressed: backdrop's 10 MB gzip limit.
DEFAULT_MAX_DECOMPRESSED_BYTES: Final = 10 * 1024 * 1024


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


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body without its ``Content-Encoding``, refusing more than ``limit`` bytes (413)."""
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise _Answer(_error(413, f"the request body is over {limit} bytes"))
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise _Answer(_error(415, f"unsupported Content-Encoding {encoding!r}: send gzip or no encoding"))
    out = bytearray()
    rest = body
    try:
        while rest:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += inflater.decompress(rest, limit + 1 - len(out))
            if len(out) > limit:
                raise _Answer(_error(413, f"the request body is over {limit} bytes once decompressed"))
            if not inflater.eof:
                raise _Answer(_error(400, "the gzip body is truncated"))
            rest = inflater.unused_data
    except zlib.error as exc:
        raise _Answer(_error(400, f"the body is not valid gzip: {exc}")) from None
    return bytes(out)


def _decode(body: bytes) -> list[Any]:
    """The records of a write: one JSON object or a list (400 otherwise)."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _Answer(_error(400, f"the request body is not valid JSON: {exc}")) from None
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    raise _Answer(_error(400, "the request body must be a JSON object or a list of objects"))


class _Platform:
    """The routes' shared state: the store, who may write where, body limits."""

    def __init__(
        self,
        store: Store,
        token: str | None,
        tokens: Mapping[str, str] | None,
        max_body_bytes: int,
        max_decompressed_bytes: int,
    ) -> None:
        self.store = store
        self.token = token.encode() if token is not None else None
        self.tokens = {tuple(k.split("/")): v.encode() for k, v in (tokens or {}).items()}
        self.max_body_bytes = max_body_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.spec = openapi_spec(max_body_bytes=max_body_bytes)

    # ---------------------------------------------------------------- helpers

    def expected_token(self, group: str, type_: str) -> bytes:
        """The data set's write token; 404 when the data set cannot exist."""
        if self.token is not None:
            if SLUG_RE.match(group) and SLUG_RE.match(type_):
                return self.token
        else:
            expected = self.tokens.get((group, type_))
            if expected is not None:
                return expected
        raise _Answer(_error(404, f"there is no data set {group}/{type_}"))

    @staticmethod
    def authorise(request: Request, expected: bytes) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            message = "Unauthorized: send the data set's token as Authorization: Bearer <token>"
            raise _Answer(_error(401, message, headers={"WWW-Authenticate": "bearer"}))

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
        encoding = request.headers.get("content-encoding", "").strip().lower()
        return _decode(_decompress(body, encoding, self.max_decompressed_bytes))

    # ---------------------------------------------------------------- routes

    async def status(self, request: Request) -> Response:
        try:
            alive = await run_in_threadpool(self.store.ping)
        except (sqlite3.Error, RuntimeError):
            alive = False
        if not alive:
            return _error(500, "cannot reach the database")
        return JSONResponse({"status": "ok", "message": "database seems fine", "version": __version__})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.spec)

    async def data_set(self, request: Request) -> Response:
        group: str = request.path_params["group"]
        type_: str = request.path_params["type"]
        try:
            if request.method in ("GET", "HEAD"):
                return await self.read(request, group, type_)
            expected = self.expected_token(group, type_)
            self.authorise(request, expected)
            body = await self.body(request)
            if request.method == "PUT":
                return await self.put(request, group, type_, body)
            return await self.post(request, group, type_, body)
        except _Answer as answer:
            return answer.response

    async def read(self, request: Request, group: str, type_: str) -> Response:
        try:
            query = parse_query(request.query_params.multi_items())
            data = await run_in_threadpool(self.store.read, group, type_, query)
        except QueryError as exc:
            return _error(400, str(exc))
        if data is None:
            return _error(404, f"there is no data set {group}/{type_}")
        return JSONResponse({"data": data})

    async def post(self, request: Request, group: str, type_: str, body: bytes) -> Response:
        def work() -> None:
            try:
                prepared = prepare(self.records(request, body))
            except InvalidRecords as exc:
                message = f"{len(exc.messages)} problem(s) in the records"
                raise _Answer(_error(400, message, messages=exc.messages)) from None
            self.store.write(group, type_, prepared)

        await run_in_threadpool(work)
        return JSONResponse({"status": "ok"})

    async def put(self, request: Request, group: str, type_: str, body: bytes) -> Response:
        records = await run_in_threadpool(self.records, request, body)
        if records:
            return _error(400, "Not implemented: you can only pass an empty JSON list to empty the data set")
        await run_in_threadpool(self.store.empty, group, type_)
        return JSONResponse({"status": "ok"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error(500, f"internal error: {type(exc).__name__}")


def _check_tokens(token: str | None, tokens: Mapping[str, str] | None) -> None:
    if (token is None) == (tokens is None):
        raise ConfigurationError("give the platform exactly one of token= (every data set) or tokens= (per data set)")
    if token is not None and not token.strip():
        raise ConfigurationError("token= must not be empty")
    for name, value in (tokens or {}).items():
        group, sep, type_ = name.partition("/")
        if not (sep and SLUG_RE.match(group) and SLUG_RE.match(type_)):
            raise ConfigurationError(
                f"tokens: {name!r} is not a data set name: use '<group>/<type>', lower-case slugs, "
                "e.g. 'apply-for-a-licence/transactions'"
            )
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError(f"tokens: the token for {name!r} must be a non-empty string")


def create_app(
    *,
    db: str | Path = ":memory:",
    token: str | None = None,
    tokens: Mapping[str, str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> Starlette:
    """The platform as an ASGI application (see the package docstring).

    Give exactly one of ``token`` (one bearer token for every data set; any
    ``<group>/<type>`` of slugs is created on its first write) or ``tokens``
    (``{"group/type": token}``: only those data sets exist). ``db`` is a SQLite
    file, created if missing, or ``":memory:"``. The store is ``app.state.store``;
    it stays open for the application's life (close it with
    ``app.state.store.close()``).
    """
    _check_tokens(token, tokens)
    if max_body_bytes < 1 or max_decompressed_bytes < 1:
        raise ConfigurationError("max_body_bytes and max_decompressed_bytes must be positive")
    store = Store(db)
    platform = _Platform(store, token, tokens, max_body_bytes, max_decompressed_bytes)
    for group, type_ in platform.tokens:
        store.create(group, type_)
    app = Starlette(
        routes=[
            Route("/_status", platform.status, methods=["GET"]),
            Route("/openapi.json", platform.openapi, methods=["GET"]),
            Route("/data/{group}/{type}", platform.data_set, methods=["GET", "POST", "PUT"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.store = store
    return app
