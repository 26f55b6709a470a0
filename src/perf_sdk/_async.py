"""AsyncTracker: the Tracker for asyncio services.

It *wraps* a :class:`~perf_sdk.Tracker` rather than re-implementing one, so
both share one pipeline (writer thread, spool, uploader, fork handling) and
one set of guarantees. What differs is only where waiting happens:

* the recording calls (``start``, ``complete``, ``satisfaction``, ``cost``,
  ``record``) are plain methods, not coroutines: they append to an in-memory
  queue and return in about a microsecond, so awaiting them would only cost a
  task switch. Call them from a coroutine or from a thread alike;
* everything that waits on a thread, a disk or the network (``flush``,
  ``close``, ``persist``, ``health``, ``submit``, and :meth:`open`, which starts
  the background workers) is a coroutine that runs the blocking call in a
  worker thread (:func:`asyncio.to_thread`), so the event loop never stalls.

>>> async def main() -> None:  # doctest: +SKIP
...     async with AsyncTracker(service="apply-for-a-licence") as tracker:
...         tracker.start("txn-1")
...         tracker.complete("txn-1")
...         await tracker.flush()
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from pathlib import Path
from types import TracebackType
from typing import Any

from perf_sdk._telemetry import Health, Stats
from perf_sdk._tracker import FlushResult, Tracker

__all__ = ["AsyncTracker"]


class _AwaitableHealth(Health):
    """A :class:`~perf_sdk.Health` that may also be awaited (``health()`` was a coroutine before 0.2)."""

    def __await__(self) -> Generator[Any, None, Health]:
        async def itself() -> Health:
            return self

        return itself().__await__()


class AsyncTracker:
    """A :class:`~perf_sdk.Tracker` for asyncio code: same arguments, same records.

    Pass the Tracker's own arguments (``service``, ``endpoint``, ``token``,
    ``secret``, ``spool_dir`` ...), or ``tracker=`` an existing Tracker to share
    it between sync and async code (a Django project served both ways, or
    :class:`perf_sdk.testing.CapturingTracker` in tests).
    """

    def __init__(
        self,
        service: str | None = None,
        endpoint: str | None = None,
        *,
        tracker: Tracker | None = None,
        spool_dir: str | Path | None = None,
        **options: Any,
    ) -> None:
        if tracker is None:
            # On an event loop a full queue must not make a recording call wait (the
            # sync Tracker waits up to max_block for room): refuse, and report, at once.
            options.setdefault("max_block", 0.0)
            tracker = Tracker(service, endpoint, spool_dir=spool_dir, **options)
        self.tracker = tracker
        # The hot path is the wrapped tracker's own bound methods: no extra frame per call.
        self.start = tracker.start
        self.complete = tracker.complete
        self.satisfaction = tracker.satisfaction
        self.cost = tracker.cost
        self.record = tracker.record
        self.mark = tracker.mark

    @property
    def service(self) -> str:
        return self.tracker.service

    @property
    def stats(self) -> Stats:
        """The wrapped tracker's counters (accepted, refused, spooled, delivered ...)."""
        return self.tracker.stats

    @property
    def enabled(self) -> bool:
        return self.tracker.enabled

    def __repr__(self) -> str:
        return f"AsyncTracker({self.tracker!r})"

    async def open(self) -> AsyncTracker:
        """Start the background workers now, off the event loop.

        Otherwise the first recording call starts them: only a thread start,
        since the writer thread opens the spool and the HTTP client itself. ``async with``
        and the ASGI middleware's lifespan startup call this for you.
        """
        await asyncio.to_thread(self.tracker.open)
        return self

    async def flush(self, timeout: float = 10.0) -> FlushResult:
        """Wait until every accepted record is stored by the platform (see :meth:`Tracker.flush`)."""
        return await asyncio.to_thread(self.tracker.flush, timeout)

    async def close(self, timeout: float = 10.0) -> FlushResult:
        """Flush for up to ``timeout`` seconds, then stop the workers (see :meth:`Tracker.close`)."""
        return await asyncio.to_thread(self.tracker.close, timeout)

    async def persist(self, timeout: float = 5.0) -> bool:
        """Wait until every record accepted so far is on disk (see :meth:`Tracker.persist`)."""
        return await asyncio.to_thread(self.tracker.persist, timeout)

    def health(self) -> _AwaitableHealth:
        """Spool depth, oldest pending record, dead letters: as :meth:`Tracker.health`, answered at once.

        A plain call, like the Tracker's, so the guides' "check it worked"
        pattern carries over (it reads two counters from the spool, well under
        a millisecond). ``await tracker.health()``, the earlier spelling, still
        works.
        """
        return _AwaitableHealth(**vars(self.tracker.health()))

    async def submit(self, data_type: str, records: list[dict[str, Any]], *, timeout: float | None = None) -> int:
        """Hand over records already built, waiting for room (see :meth:`Tracker.submit`)."""
        return await asyncio.to_thread(self.tracker.submit, data_type, records, timeout=timeout)

    async def __aenter__(self) -> AsyncTracker:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
