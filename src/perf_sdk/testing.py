"""Helpers for a service's own tests: a tracker that keeps records in memory.

>>> from perf_sdk.testing import capture
>>> with capture(service="apply-for-a-licence") as tracker:
...     tracker.start("txn-1")
...     tracker.complete("txn-1")
...     tracker.assert_completed("txn-1")
...     tracker.counts()["completed"]
1

The captured tracker is an ordinary :class:`perf_sdk.Tracker` given an
:class:`InMemorySink` at its public ``sink=`` seam (as OpenTelemetry's tests
give a provider an ``InMemorySpanExporter``): it validates strictly (bad input
raises :class:`perf_sdk.ValidationError` at the call), runs no thread, touches
no disk and no network, and hashes transaction ids exactly as production does,
so ``assert_completed("txn-1")`` checks the very id the platform would receive.

Installed as a pytest plugin (entry point ``perf_sdk``, module
``perf_sdk._pytest_plugin``, which imports the SDK only when a test asks for
the fixture): the ``perf_tracker`` fixture gives a test a fresh capturing
tracker.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from perf_sdk._tracker import Tracker

__all__ = ["CapturingTracker", "InMemorySink", "capture"]

_TEST_SECRET = "perf-sdk-testing-secret-not-for-production"  # noqa: S105 - a fixed key for tests only


class InMemorySink:
    """A :class:`perf_sdk.RecordSink` that keeps every validated record, in order.

    Thread-safe: a test may record from several threads (a threaded test server).
    """

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def write(self, data_type: str, records: list[dict[str, Any]]) -> None:
        with self._lock:
            self.records.extend((data_type, record) for record in records)

    def of(self, data_type: str) -> list[dict[str, Any]]:
        """The records of one data type (``transactions``, ``satisfaction``, ``costs``, ``marks`` ...)."""
        with self._lock:
            return [r for dt, r in self.records if dt == data_type]

    def clear(self) -> None:
        with self._lock:
            self.records.clear()


class CapturingTracker(Tracker):
    """A strict :class:`~perf_sdk.Tracker` whose records stop in an :class:`InMemorySink`."""

    def __init__(
        self,
        service: str = "test-service",
        *,
        secret: str = _TEST_SECRET,
        sink: InMemorySink | None = None,
        **kwargs: Any,
    ) -> None:
        self.memory = sink if sink is not None else InMemorySink()
        super().__init__(service=service, secret=secret, strict=True, sink=self.memory, **kwargs)

    @property
    def records(self) -> list[tuple[str, dict[str, Any]]]:
        """Every record captured, as ``(data_type, record)``, in order."""
        return self.memory.records

    # views and assertions ------------------------------------------------------------------------
    def of(self, data_type: str) -> list[dict[str, Any]]:
        return self.memory.of(data_type)

    def counts(self, channel: str | None = None) -> Counter[str]:
        """Sum of ``count`` per stage, as the platform would store it (upserts applied)."""
        stored = {r["_id"]: r for r in self.of("transactions") if channel is None or r["channel"] == channel}
        totals: Counter[str] = Counter()
        for record in stored.values():
            totals[record["stage"]] += record["count"]
        return totals

    def _find(self, transaction_id: str, stage: str) -> dict[str, Any] | None:
        rid = self.transaction_record_id(transaction_id, stage)
        return next((r for r in self.of("transactions") if r["_id"] == rid), None)

    def assert_started(self, transaction_id: str) -> dict[str, Any]:
        record = self._find(transaction_id, "started")
        assert record is not None, f"no start was recorded for transaction {transaction_id!r}"
        return record

    def assert_completed(self, transaction_id: str) -> dict[str, Any]:
        record = self._find(transaction_id, "completed")
        assert record is not None, f"no completion was recorded for transaction {transaction_id!r}"
        return record

    def assert_not_completed(self, transaction_id: str) -> None:
        assert self._find(transaction_id, "completed") is None, (
            f"transaction {transaction_id!r} was recorded as completed"
        )

    def clear(self) -> None:
        self.memory.clear()


@contextlib.contextmanager
def capture(service: str = "test-service", **kwargs: Any) -> Iterator[CapturingTracker]:
    """A capturing tracker for the ``with`` block."""
    tracker = CapturingTracker(service, **kwargs)
    try:
        yield tracker
    finally:
        tracker.close()


def __getattr__(name: str) -> Any:
    # ``from perf_sdk.testing import perf_tracker`` still works: the fixture lives in the plugin module.
    if name == "perf_tracker":
        from perf_sdk._pytest_plugin import perf_tracker

        return perf_tracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
