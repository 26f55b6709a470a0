"""AsyncTracker: a Tracker's pipeline behind an asyncio API that never stalls the loop."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perf_sdk._async import AsyncTracker
from perf_sdk.testing import capture
from tests.conftest import FAST, SECRET, SERVICE, TOKEN
from tests.faultserver import FaultPlan, FaultServer


def make(server: FaultServer, spool_dir: Path) -> AsyncTracker:
    return AsyncTracker(
        service=SERVICE,
        endpoint=f"http://127.0.0.1:{server.port}",
        token=TOKEN,
        secret=SECRET,
        spool_dir=spool_dir,
        **FAST,
    )


def test_recording_calls_are_plain_and_io_is_awaited() -> None:
    with capture(service=SERVICE) as captured:
        tracker = AsyncTracker(tracker=captured)
        for name in ("start", "complete", "satisfaction", "cost", "record", "mark", "health"):
            method = getattr(tracker, name)
            assert callable(method) and not inspect.iscoroutinefunction(method)
    for name in ("flush", "close", "persist", "submit", "open", "__aenter__", "__aexit__"):
        assert inspect.iscoroutinefunction(getattr(AsyncTracker, name))


def test_records_reach_the_platform(fault_server: Callable[..., FaultServer], spool_dir: Path) -> None:
    server = fault_server()

    async def main() -> None:
        async with make(server, spool_dir) as tracker:
            tracker.start("txn-1")
            tracker.complete("txn-1")
            tracker.complete("txn-1")  # stored once
            tracker.satisfaction(5, transaction_id="txn-1")
            tracker.cost(125_000, period="2026-Q1", cost_type="staff")
            result = await tracker.flush(timeout=60)
            assert result and not result.timed_out
            assert (await tracker.health()).spool_depth == 0

    asyncio.run(main())
    assert len(server.store) == 4


def test_flush_waits_off_the_event_loop(fault_server: Callable[..., FaultServer], spool_dir: Path) -> None:
    """While flush waits out a slow platform, other tasks keep running: here, the one that heals the platform.

    A flush that blocked the loop would keep that task from running, and time out.
    """
    server = fault_server(FaultPlan(rate=1.0, faults=("slow",), slow_seconds=0.3))

    async def main() -> bool:
        tracker = make(server, spool_dir)
        await tracker.open()
        tracker.start("txn-1")

        async def heal_after_three_ticks() -> None:
            for _ in range(3):
                await asyncio.sleep(0.01)
            server.plan.rate = 0.0  # reached during flush() only if flush() leaves the loop free

        task = asyncio.create_task(heal_after_three_ticks())
        result = await tracker.flush(timeout=60)
        await task
        await tracker.close(timeout=10)
        return bool(result)

    assert asyncio.run(main())
    assert len(server.store) == 1


def test_wraps_an_existing_tracker() -> None:
    async def main() -> None:
        with capture(service=SERVICE) as captured:
            tracker = AsyncTracker(tracker=captured)
            assert tracker.tracker is captured and tracker.service == SERVICE
            tracker.start("txn-1")
            tracker.complete("txn-1")
            await tracker.flush()
            captured.assert_completed("txn-1")
            assert await tracker.submit("transactions", []) == 0
            assert await tracker.persist()

    asyncio.run(main())


def test_close_leaves_undelivered_records_on_disk(spool_dir: Path) -> None:
    """A platform that is down: close returns within its timeout; the next tracker delivers."""

    async def main() -> None:
        tracker = AsyncTracker(
            service=SERVICE, endpoint="http://127.0.0.1:9", token=TOKEN, secret=SECRET, spool_dir=spool_dir, **FAST
        )
        tracker.start("txn-1")
        assert await tracker.persist()
        result = await tracker.close(timeout=0.3)
        assert result.pending == 1

    asyncio.run(main())
    server = FaultServer().start()
    try:

        async def deliver() -> None:
            async with make(server, spool_dir) as tracker:
                assert await tracker.flush(timeout=60)

        asyncio.run(deliver())
        assert len(server.store) == 1
    finally:
        server.stop()


class _Sink:
    def send(self, data_type: str, body: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_full_queue_never_blocks_the_event_loop(tmp_path: Path) -> None:
    """With the writer stuck, 1,000 calls on a full queue are refused at once, none waits for room.

    Waiting (the sync Tracker's ``max_block``, 1 s a call) would take 15 minutes here;
    the 30 s bound only leaves room for a busy machine, it is not a figure.
    """
    writer_may_go = threading.Event()

    def stuck(record: dict[str, Any]) -> dict[str, Any]:
        writer_may_go.wait(60)  # before_send runs on the writer: it builds nothing until released
        return record

    async def main() -> tuple[float, int]:
        tracker = AsyncTracker(
            service="svc", secret="s" * 32, spool_dir=tmp_path, transport=_Sink(), max_queue=100, before_send=stuck
        )
        await tracker.open()
        started = time.perf_counter()
        for i in range(1000):
            tracker.complete(f"t{i}")  # the queue fills at 100: refused at once, not waited for
        elapsed = time.perf_counter() - started
        writer_may_go.set()
        await tracker.close(30)
        return elapsed, tracker.tracker.stats.refused

    elapsed, refused = asyncio.run(main())
    assert refused > 0
    assert elapsed < 30
