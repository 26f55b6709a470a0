"""Helpers for a service's own tests: a tracker that keeps records in memory.

>>> from perf_sdk.testing import capture
>>> with capture(service="apply-for-a-licence") as tracker:
...     tracker.start("txn-1")
...     tracker.complete("txn-1")
...     tracker.assert_completed("txn-1")
...     tracker.counts()["completed"]
1

The captured tracker validates strictly (bad input raises
:class:`perf_sdk.ValidationError` at the call), runs no thread, touches no disk
and no network, and hashes transaction ids exactly as production does, so
``assert_completed("txn-1")`` checks the very id the platform would receive.

Installed as a pytest plugin (entry point ``perf_sdk``): the ``perf_tracker``
fixture gives a test a fresh capturing tracker.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from perf_sdk._tracker import _BUILT, FlushResult, Tracker

__all__ = ["CapturingTracker", "capture", "perf_tracker"]

_TEST_SECRET = "perf-sdk-testing-secret-not-for-production"  # noqa: S105 - a fixed key for tests only


class CapturingTracker(Tracker):
    """A :class:`~perf_sdk.Tracker` whose records stop in :attr:`records`."""

    _uses_spool = False

    def __init__(self, service: str = "test-service", *, secret: str = _TEST_SECRET, **kwargs: Any) -> None:
        kwargs.setdefault("spool_dir", Path(tempfile.gettempdir()) / "perf-sdk-testing-unused")  # never created
        self.records: list[tuple[str, dict[str, Any]]] = []
        super().__init__(service=service, secret=secret, strict=True, transport=_NoTransport(), **kwargs)

    # Capture instead of queueing: no writer, no spool, no uploader.
    def _slow_enqueue(self, item: tuple[Any, ...]) -> None:
        if item[0] != _BUILT:  # pragma: no cover - strict mode always builds first
            raise AssertionError("CapturingTracker only records strictly built records")
        _, data_type, record = item
        if self.before_send is not None:
            kept = self._apply_before_send([record])
            if not kept:
                return
            record = kept[0]
        self.records.append((data_type, record))

    def _ensure_started(self) -> None:
        return None

    def flush(self, timeout: float = 10.0) -> FlushResult:
        return FlushResult(0, 0, (), False)

    def close(self, timeout: float = 10.0) -> FlushResult:
        self._closed = True
        return FlushResult(0, 0, (), False)

    # views and assertions ------------------------------------------------------------------------
    def of(self, data_type: str) -> list[dict[str, Any]]:
        return [r for dt, r in self.records if dt == data_type]

    def counts(self, channel: str | None = None) -> Counter[str]:
        """Sum of ``count`` per stage, as the platform would store it (upserts applied)."""
        stored = {r["_id"]: r for r in self.of("transactions") if channel is None or r["channel"] == channel}
        totals: Counter[str] = Counter()
        for record in stored.values():
            totals[record["stage"]] += record["count"]
        return totals

    def _transaction_record(self, transaction_id: str, stage: str) -> dict[str, Any] | None:
        rid = self._caller_builder.natural_id(
            "transactions", stage, self._caller_builder.hash_transaction_id(transaction_id)
        )
        return next((r for r in self.of("transactions") if r["_id"] == rid), None)

    def assert_started(self, transaction_id: str) -> dict[str, Any]:
        record = self._transaction_record(transaction_id, "started")
        assert record is not None, f"no start was recorded for transaction {transaction_id!r}"
        return record

    def assert_completed(self, transaction_id: str) -> dict[str, Any]:
        record = self._transaction_record(transaction_id, "completed")
        assert record is not None, f"no completion was recorded for transaction {transaction_id!r}"
        return record

    def assert_not_completed(self, transaction_id: str) -> None:
        assert self._transaction_record(transaction_id, "completed") is None, (
            f"transaction {transaction_id!r} was recorded as completed"
        )

    def clear(self) -> None:
        self.records.clear()


class _NoTransport:
    def send(self, data_type: str, body: bytes) -> None:  # pragma: no cover - never called
        raise AssertionError("CapturingTracker never sends")

    def close(self) -> None:
        return None


@contextlib.contextmanager
def capture(service: str = "test-service", **kwargs: Any) -> Iterator[CapturingTracker]:
    """A capturing tracker for the ``with`` block."""
    tracker = CapturingTracker(service, **kwargs)
    try:
        yield tracker
    finally:
        tracker.close()


try:  # the pytest plugin; pytest is not a dependency of the SDK
    import pytest
except ImportError:  # pragma: no cover
    pass
else:

    @pytest.fixture
    def perf_tracker() -> Iterator[CapturingTracker]:
        """A fresh :class:`CapturingTracker` for one test."""
        with capture() as tracker:
            yield tracker
