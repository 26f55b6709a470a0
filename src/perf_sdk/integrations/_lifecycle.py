"""The tracker's life around a server's: start its workers at start-up, deliver what it holds at shutdown.

Shared by the ASGI middleware's lifespan and Django's ASGI application. Each
helper is typed against a small protocol, :class:`ManagedTracker`, which
:class:`perf_sdk.Tracker` (and :class:`perf_sdk.testing.CapturingTracker`) fit;
an :class:`perf_sdk.AsyncTracker` is driven through its own coroutines. A
recorder that fits neither (a hand-written test double) has no life to manage
and is left alone. Only public tracker calls are used (``open``, ``flush``,
``close``, ``settings.exit_timeout``), so the Tracker may change inside
without the integrations noticing.

Why the shutdown side matters: uvicorn, after a graceful shutdown on SIGTERM,
re-raises the signal with its default action, so the process dies without
running ``atexit`` handlers. The lifespan's shutdown is the last moment a
tracker can deliver, and the work runs off the event loop (closing the spool
and waiting for the platform are blocking calls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from perf_sdk._async import AsyncTracker
from perf_sdk._config import Settings

if TYPE_CHECKING:
    from perf_sdk._tracker import FlushResult

__all__ = ["ManagedTracker", "finish", "serve_lifespan", "start_workers"]

logger = logging.getLogger("perf_sdk")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: How long shutdown waits for delivery when a tracker's settings do not say (its exit_timeout's default).
_DEFAULT_EXIT_TIMEOUT = 2.0


@runtime_checkable
class ManagedTracker(Protocol):
    """What an integration needs to run a tracker's life: :class:`perf_sdk.Tracker` fits."""

    settings: Settings

    def open(self) -> object: ...

    def flush(self, timeout: float = ...) -> FlushResult: ...

    def close(self, timeout: float = ...) -> FlushResult: ...


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def start_workers(tracker: object) -> None:
    """Start the tracker's workers off the loop, so no request pays for starting them.

    Not on asyncio (trio): nothing here, and the first count starts them.
    A failure is logged, never raised: the server must start all the same.
    """
    if not _on_asyncio():
        return
    try:
        if isinstance(tracker, AsyncTracker):
            await tracker.open()
        elif isinstance(tracker, ManagedTracker):
            await asyncio.to_thread(tracker.open)
    except Exception:
        logger.exception("perf_sdk: could not start the tracker's workers at start-up")


async def finish(tracker: object, *, close: bool) -> None:
    """Deliver what the tracker holds (``close``: and stop it), off the loop, within its ``exit_timeout``.

    A tracker the integration made is closed; one it was given is only
    flushed, since its owner may still use it. What is left is logged: it
    waits on disk for the next tracker on the same spool.
    """
    if not _on_asyncio():
        return
    try:
        result: FlushResult
        if isinstance(tracker, AsyncTracker):
            timeout = _exit_timeout(tracker.tracker)
            result = await (tracker.close(timeout) if close else tracker.flush(timeout))
        elif isinstance(tracker, ManagedTracker):
            timeout = _exit_timeout(tracker)
            result = await asyncio.to_thread(tracker.close if close else tracker.flush, timeout)
        else:
            return
        if not result:
            logger.warning("perf_sdk: %s left at shutdown; the next tracker on the spool delivers them", result)
    except Exception:
        logger.exception("perf_sdk: could not deliver the tracker's records at shutdown")


def _exit_timeout(tracker: object) -> float:
    settings = getattr(tracker, "settings", None)
    return float(settings.exit_timeout) if isinstance(settings, Settings) else _DEFAULT_EXIT_TIMEOUT


async def serve_lifespan(
    receive: Receive,
    send: Send,
    on_startup: Callable[[], Awaitable[None]],
    on_shutdown: Callable[[], Awaitable[None]],
) -> None:
    """Answer the ASGI lifespan protocol for an application that has none (Django's ASGI handler)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await on_startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
