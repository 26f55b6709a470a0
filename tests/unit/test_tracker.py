"""Tracker: the hot path never raises, strict mode does, lifecycle, hooks, fork."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

import perf_sdk
from perf_sdk import ValidationError
from perf_sdk._records import RecordBuilder
from tests.conftest import SECRET, SERVICE


class Memory:
    """An in-memory platform: upserts by id, like backdrop."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.fail = False

    def send(self, data_type: str, body: bytes) -> None:
        if self.fail:
            raise perf_sdk.RetryableError("down")
        with self.lock:
            for r in json.loads(body):
                self.stored[(data_type, r["_id"])] = r

    def close(self) -> None:
        pass

    def of(self, data_type: str) -> list[dict[str, Any]]:
        return [r for (dt, _), r in self.stored.items() if dt == data_type]


@pytest.fixture
def memory() -> Memory:
    return Memory()


@pytest.fixture
def tracker(memory: Memory, spool_dir: Path) -> perf_sdk.Tracker:
    t = perf_sdk.Tracker(
        service=SERVICE,
        secret=SECRET,
        spool_dir=spool_dir,
        transport=memory,
        retry_initial=0.01,
        retry_max=0.02,
    )
    yield t
    t.close(2)


AT = datetime(2026, 2, 3, 10, 0, tzinfo=timezone.utc)


def test_records_of_every_kind_reach_the_platform(tracker: perf_sdk.Tracker, memory: Memory) -> None:
    tracker.start("t1", at=AT)
    tracker.complete("t1", at=AT)
    tracker.start(None, channel="phone", count=120, at=AT)
    tracker.satisfaction(5, at=AT)
    tracker.satisfaction(4, transaction_id="t1", at=AT)
    tracker.cost(1_250_000, period="2026-Q1", cost_type="staff", channel="all")
    tracker.record("transactions", stage="completed", channel="paper", count=3, at=AT)
    tracker.record("applications-by-region", region="wales", at=AT)
    assert tracker.flush(60)
    txns = memory.of("transactions")
    assert sorted((r["stage"], r["channel"], r["count"]) for r in txns) == [
        ("completed", "digital", 1),
        ("completed", "paper", 3),
        ("started", "digital", 1),
        ("started", "phone", 120),
    ]
    assert sorted(r["rating"] for r in memory.of("satisfaction")) == [4, 5]
    (cost,) = memory.of("costs")
    assert cost == cost | {
        "amount_pence": 1_250_000,
        "period": "quarter",
        "_timestamp": "2026-01-01T00:00:00+00:00",
    }
    (custom,) = memory.of("applications-by-region")
    assert custom["region"] == "wales"


def test_duplicates_are_stored_once(tracker: perf_sdk.Tracker, memory: Memory) -> None:
    for _ in range(5):
        tracker.complete("txn-42")
    tracker.cost(100, period="2026-03", cost_type="it")
    tracker.cost(200, period="2026-03", cost_type="it")  # a corrected figure replaces
    assert tracker.flush(60)
    assert len(memory.of("transactions")) == 1
    (cost,) = memory.of("costs")
    assert cost["amount_pence"] == 200


def test_clear_transaction_ids_never_leave(tracker: perf_sdk.Tracker, memory: Memory, spool_dir: Path) -> None:
    tracker.start("citizen-AB123456C")
    assert tracker.flush(60)
    assert "AB123456C" not in json.dumps(list(memory.stored.values()))
    for path in spool_dir.iterdir():
        assert b"AB123456C" not in path.read_bytes()


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda t: t.complete("x", channel="web"), "channel"),
        (lambda t: t.complete("x", count=0), "count"),
        (lambda t: t.complete("x", at=datetime(2026, 1, 1)), "at"),
        (lambda t: t.satisfaction(7), "rating"),
        (lambda t: t.cost(-5, period="2026", cost_type="it"), "amount_pence"),
        (lambda t: t.cost(5, period="2026-Q9", cost_type="it"), "period"),
        (lambda t: t.complete(12.5), "transaction_id"),
    ],
)
def test_bad_input_never_raises_but_is_reported(memory: Memory, spool_dir: Path, call: Any, field: str) -> None:
    errors: list[BaseException] = []
    t = perf_sdk.Tracker(
        service=SERVICE,
        secret=SECRET,
        spool_dir=spool_dir,
        transport=memory,
        on_error=lambda e, rs: errors.append(e),
    )
    call(t)  # must not raise
    t.complete("good")
    result = t.flush(60)
    # The good record is stored, and flush() does not call it a success: one accepted record was refused.
    assert result.pending == 0 and result.refused == 1 and not result
    assert t.flush(60)  # reported once, by the flush that followed the refusal
    t.close(1)
    assert len(memory.of("transactions")) == 1
    assert t.stats.refused == 1
    (error,) = errors
    assert isinstance(error, ValidationError) and error.field == field


def test_strict_mode_raises_at_the_call(memory: Memory, spool_dir: Path) -> None:
    t = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory, strict=True)
    with pytest.raises(ValidationError) as info:
        t.satisfaction(0)
    assert (info.value.field, info.value.value) == ("rating", 0)
    with pytest.raises(ValidationError, match="at="):
        t.start("x", at=datetime(2026, 1, 1))
    t.complete("ok")
    assert t.flush(60)
    t.close(1)
    assert len(memory.stored) == 1


def test_strict_from_environment(monkeypatch: pytest.MonkeyPatch, memory: Memory, spool_dir: Path) -> None:
    monkeypatch.setenv("PERF_SDK_STRICT", "1")
    t = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory)
    with pytest.raises(ValidationError):
        t.complete("x", channel="fax")
    t.close(1)


def test_before_send_enriches_and_drops(memory: Memory, spool_dir: Path) -> None:
    def hook(record: dict[str, Any]) -> dict[str, Any] | None:
        if record.get("channel") == "other":
            return None
        return record | {"region": "wales"}

    t = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory, before_send=hook)
    t.start("a")
    t.start("b", channel="other")
    assert t.flush(60)
    t.close(1)
    (record,) = memory.of("transactions")
    assert record["region"] == "wales"


def test_a_hook_that_raises_does_not_hurt(memory: Memory, spool_dir: Path) -> None:
    def boom(error: BaseException, records: list[dict[str, Any]]) -> None:
        raise RuntimeError("hook bug")

    t = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory, on_error=boom)
    t.satisfaction(99)
    t.complete("fine")
    assert t.flush(60).refused == 1
    t.close(1)


def test_flush_times_out_and_reports_what_is_left(memory: Memory, spool_dir: Path) -> None:
    memory.fail = True
    t = perf_sdk.Tracker(
        service=SERVICE,
        secret=SECRET,
        spool_dir=spool_dir,
        transport=memory,
        retry_initial=0.01,
        retry_max=0.02,
    )
    for i in range(10):
        t.complete(f"t{i}")
    result = t.flush(0.3)
    assert not result and result.timed_out and result.pending == 10
    memory.fail = False
    assert t.flush(60)
    t.close(1)
    assert len(memory.stored) == 10


def test_close_is_bounded_and_leaves_the_rest_on_disk(memory: Memory, spool_dir: Path) -> None:
    memory.fail = True
    t = perf_sdk.Tracker(
        service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory, retry_initial=600, retry_max=600
    )
    t.complete("kept")
    import time

    started = time.monotonic()
    result = t.close(0.3)
    # Bounded by its timeout, not by the 10-minute back-off (30 s: room for a busy machine, not a figure).
    assert time.monotonic() - started < 30
    assert result.pending == 1
    assert len(list(spool_dir.glob("*.spool"))) == 1  # the next tracker adopts it
    memory.fail = False
    heir = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory)
    assert heir.flush(60)
    heir.close(1)
    assert len(memory.stored) == 1
    assert list(spool_dir.glob("*.spool")) == []


def test_calls_after_close_are_refused_not_raised(tracker: perf_sdk.Tracker) -> None:
    tracker.close(1)
    tracker.complete("late")
    assert tracker.stats.refused == 1


def test_context_manager_flushes(memory: Memory, spool_dir: Path) -> None:
    with perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory) as t:
        t.start("x")
    assert len(memory.stored) == 1


def test_health_reports_depth_and_errors(memory: Memory, spool_dir: Path) -> None:
    memory.fail = True
    failed = threading.Event()
    t = perf_sdk.Tracker(
        service=SERVICE,
        secret=SECRET,
        spool_dir=spool_dir,
        transport=memory,
        retry_initial=0.01,
        retry_max=0.02,
        on_error=lambda e, rs: failed.set(),
    )
    t.complete("a")
    assert failed.wait(60)  # the upload was tried and failed (an event, not a 0.2 s flush)
    health = t.health()
    assert health.spool_depth == 1
    assert health.oldest_pending_age is not None and health.oldest_pending_age >= 0
    assert health.last_error and "down" in health.last_error
    assert health.counters["accepted"] == 1
    memory.fail = False
    t.close(5)


def test_many_threads_record_concurrently(tracker: perf_sdk.Tracker, memory: Memory) -> None:
    def work(n: int) -> None:
        for i in range(2000):
            tracker.complete(f"{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert tracker.flush(60)
    assert len(memory.stored) == 16_000


def test_queue_bound_blocks_briefly_then_refuses(memory: Memory, spool_dir: Path) -> None:
    t = perf_sdk.Tracker(
        service=SERVICE,
        secret=SECRET,
        spool_dir=spool_dir,
        transport=memory,
        max_queue=100,
        max_block=0.0,
        commit_interval=1.0,
    )
    t.complete("first")  # starts the workers
    for i in range(500):
        t.complete(f"t{i}")
    result = t.flush(60)
    assert result.pending == 0 and result.refused == t.stats.refused
    t.close(1)
    assert len(memory.stored) + t.stats.refused == 501
    assert len(memory.stored) >= 100


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_its_own_pipeline_and_sends_nothing_twice(
    memory: Memory, spool_dir: Path, tmp_path: Path
) -> None:
    """A pre-forking server: the parent keeps what it accepted, the child records its own."""
    t = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory, commit_interval=1.0)
    t.start(None)  # random id: would be a duplicate if the child sent it too
    out = tmp_path / "child.json"
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            t.start("child-txn")
            ok = t.flush(60)  # a deadline, not a speed: it returns as soon as the record is stored
            out.write_text(json.dumps(sorted(r["_id"] for r in memory.stored.values())))
            code = 0 if ok else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child_sent = json.loads(out.read_text())
    assert len(child_sent) == 1  # only the child's own record
    assert t.flush(60)
    t.close(5)
    assert len(memory.stored) == 1  # the parent's own; the child's went to the child's copy of Memory
    assert {r["_id"] for r in memory.stored.values()}.isdisjoint(child_sent)


def test_submit_takes_prebuilt_records_with_back_pressure(memory: Memory, spool_dir: Path) -> None:
    t = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory, max_queue=100)
    records = [
        {
            "_id": f"row-{i}",
            "_timestamp": "2026-01-01T00:00:00+00:00",
            "count": 2,
            "stage": "started",
            "channel": "paper",
        }
        for i in range(1000)
    ]
    records.append({"_id": "bad", "_timestamp": "2026-01-01", "count": 1, "stage": "started", "channel": "paper"})
    assert t.submit("transactions", records) == 1001  # waited for room instead of refusing
    assert t.flush(60).refused == 1
    t.close(1)
    assert len(memory.stored) == 1000
    assert t.stats.refused == 1  # the bad timestamp, reported


def test_sampling_keeps_journeys_whole_and_scales_counts(memory: Memory, spool_dir: Path) -> None:
    t = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory, sample_rate=0.1)
    for i in range(5000):
        t.start(f"s-{i}")
    for i in range(3000):
        t.complete(f"s-{i}")
    t.start(None, channel="phone", count=77)  # aggregates are never sampled
    t.cost(100, period="2026-Q1", cost_type="it")  # nor costs
    assert t.flush(60)
    t.close(1)
    builder = RecordBuilder(SERVICE, SECRET)
    stored = {r["_id"]: r for r in memory.of("transactions")}
    kept = 0
    for i in range(3000):
        h = builder.hash_transaction_id(f"s-{i}")
        start = builder.natural_id("transactions", "started", h) in stored
        done = builder.natural_id("transactions", "completed", h) in stored
        assert start == done  # a journey is kept or left out whole
        kept += start
    digital = [r for r in stored.values() if r["channel"] == "digital"]
    assert all(r["count"] == 10 for r in digital)
    started = sum(r["count"] for r in digital if r["stage"] == "started")
    assert 4000 <= started <= 6000  # ~5000, scaled back up
    assert [r["count"] for r in stored.values() if r["channel"] == "phone"] == [77]
    assert len(memory.of("costs")) == 1
    assert t.stats.sampled_out == 8000 - len(digital)
    assert kept > 0


def test_sample_rate_must_be_one_in_n(spool_dir: Path) -> None:
    with pytest.raises(perf_sdk.ConfigurationError, match="1/N"):
        perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=Memory(), sample_rate=0.3)


def test_debug_logs_through_logging(memory: Memory, spool_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    logger = logging.getLogger("perf_sdk")
    level, handlers = logger.level, list(logger.handlers)
    try:
        t = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory, debug=True)
        with caplog.at_level(logging.DEBUG, logger="perf_sdk"):
            t.complete("x")
            assert t.flush(60)
        t.close(1)
        messages = [r.getMessage() for r in caplog.records if r.name == "perf_sdk"]
        assert any("delivered 1 records" in m for m in messages)
        assert any("spool" in m and "open" in m for m in messages)
        assert SECRET not in " ".join(messages)
    finally:
        logger.setLevel(level)
        logger.handlers[:] = handlers


def test_submit_validated_records_skips_the_second_pass(memory: Memory, spool_dir: Path) -> None:
    import perf_sdk._tracker as tracker_module

    t = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=spool_dir, transport=memory)
    records = [
        {"_id": f"v-{i}", "_timestamp": "2026-01-01T00:00:00+00:00", "count": 1, "stage": "started", "channel": "paper"}
        for i in range(100)
    ]
    calls: list[str] = []
    original = tracker_module.validate_records

    def counting(data_type: str, recs: list[dict[str, Any]]) -> Any:
        calls.append(data_type)
        return original(data_type, recs)

    tracker_module.validate_records = counting  # type: ignore[assignment]
    try:
        assert t.submit("transactions", records, validated=True) == 100
        assert t.flush(60)
    finally:
        tracker_module.validate_records = original
        t.close(1)
    assert len(memory.stored) == 100
    assert calls == []  # trusted: validated once, by the caller
