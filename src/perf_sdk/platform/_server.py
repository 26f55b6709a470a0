"""LocalPlatform: the platform on a loopback port, in a background thread.

For tests and demos that need a real HTTP server (the SDK's transport, a
gunicorn-hosted service posting to it): ``with LocalPlatform() as platform:``
gives a server whose ``url`` is ready before the block starts, and which is
gone, thread and temporary database included, when it ends.

The socket is bound (port 0: the system picks a free port) and listening before
uvicorn starts, so there is no window in which the port could be taken and
connections made early simply wait in the backlog. Start and stop wait on
events, not on polling: the server thread sets one once uvicorn's startup is
done, and ``stop()`` wakes uvicorn's main loop at once instead of waiting for
its next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from perf_sdk.platform._app import DEFAULT_MAX_BODY_BYTES, create_app
from perf_sdk.platform._datasets import PlatformConfig
from perf_sdk.platform._query import DEFAULT_LIMITS, ReadLimits
from perf_sdk.platform._store import Store

__all__ = ["LocalPlatform", "serve"]

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


class _Server(uvicorn.Server):
    """uvicorn's server, with a ready event and a stop that needs no polling."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.ready.set()
        counter = 0
        while not await self.on_tick(counter):
            counter += 10  # on_tick refreshes the Date header when counter % 10 == 0
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    def exit_soon(self, *, force: bool = False) -> None:
        self.should_exit = True
        self.force_exit = self.force_exit or force
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(wake.set)


def serve(app: Any, sock: socket.socket, *, log_level: str = "info") -> None:
    """Serve ``app`` on the bound ``sock`` in this thread until interrupted (``perf-sdk serve``)."""
    config = uvicorn.Config(app, log_level=log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


class LocalPlatform:
    """The local Performance Platform, served on loopback from a background thread.

    ``db`` is the SQLite file to use; ``None`` means a temporary file removed at
    :meth:`stop`. ``token`` is the bearer token for every data set, unless
    ``tokens`` (``{"group/type": token}``) is given, which replaces it and limits
    the platform to those data sets, or ``config`` (a data-set configuration:
    per-data-set tokens and settings, services' metadata; see
    :mod:`perf_sdk.platform._datasets`). ``read_limits`` bounds one read's
    work. ``port=0`` picks a free port.

    >>> with LocalPlatform() as platform:  # doctest: +SKIP
    ...     httpx.post(f"{platform.url}/data/my-service/transactions", json=record,
    ...                headers={"Authorization": f"Bearer {platform.token}"})
    ...     platform.count("my-service", "transactions")
    1
    """

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        token: str | None = "dev-token",  # noqa: S107 - a development server's well-known default
        tokens: Mapping[str, str] | None = None,
        config: PlatformConfig | Mapping[str, Any] | None = None,
        read_limits: ReadLimits = DEFAULT_LIMITS,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        log_level: str = "warning",
    ) -> None:
        self.db = db
        self.token = None if tokens is not None or config is not None else token
        self.tokens = dict(tokens) if tokens is not None else None
        self.config = config
        self.read_limits = read_limits
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.log_level = log_level
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._store: Store | None = None
        self._tmpdir: str | None = None
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL of both APIs, e.g. ``http://127.0.0.1:54321`` (once started)."""
        if self._socket is None:
            raise RuntimeError("the LocalPlatform is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> LocalPlatform:
        """Start serving; returns once the server accepts requests."""
        if self._thread is not None:
            raise RuntimeError("the LocalPlatform is already started")
        try:
            db = self.db
            if db is None:
                self._tmpdir = tempfile.mkdtemp(prefix="perf-sdk-platform-")
                db = Path(self._tmpdir) / "platform.db"
            app = create_app(
                db=db,
                token=self.token,
                tokens=self.tokens,
                config=self.config,
                max_body_bytes=self.max_body_bytes,
                read_limits=self.read_limits,
            )
            self._store = app.state.store
            family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0][0]
            self._socket = socket.create_server((self.host, self.port), family=family, backlog=128)
            self.port = self._socket.getsockname()[1]
            config = uvicorn.Config(
                app,
                log_level=self.log_level,
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=2,
            )
            self._server = _Server(config)
            self._thread = threading.Thread(target=self._serve, name=f"perf-sdk-platform:{self.port}", daemon=True)
            self._thread.start()
            if not self._server.ready.wait(_START_TIMEOUT) or not self._server.started:
                raise RuntimeError(f"the local platform did not start: {self._error!r}")
        except BaseException:
            self.stop()
            raise
        return self

    def _serve(self) -> None:
        assert self._server is not None
        assert self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            self._server.ready.set()

    def stop(self) -> None:
        """Stop serving and release everything (thread, socket, database, temporary files).

        Idempotent. In-flight requests get a moment to finish; idle keep-alive
        connections are closed.
        """
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            server.exit_soon()
            thread.join(_STOP_TIMEOUT)
            if thread.is_alive():
                server.exit_soon(force=True)
                thread.join(_STOP_TIMEOUT)
        if self._socket is not None:
            self._socket.close()
        if self._store is not None:
            self._store.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        self._server = self._thread = self._socket = self._store = None
        self._tmpdir = None

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._socket is not None else "stopped"
        return f"<LocalPlatform {where}>"

    # ------------------------------------------------------------------ test helpers

    def _require_store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the LocalPlatform is not started")
        return self._store

    def records(self, group: str, type_: str) -> list[dict[str, Any]]:
        """Every record of ``group/type_`` as the read API returns it: ``_id``, ``_timestamp``, fields."""
        return self._require_store().records(group, type_)

    def count(self, group: str, type_: str) -> int:
        """How many records ``group/type_`` holds."""
        return self._require_store().count(group, type_)
