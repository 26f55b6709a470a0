"""The Tracker's public seams and modes: a sink, disabled, hooks checked early, the secret only when needed."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

import perf_sdk
from perf_sdk import AsyncTracker, ConfigurationError, ValidationError
from perf_sdk.testing import InMemorySink, capture
from tests.conftest import SECRET, SERVICE


class ListSink:
    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []

    def write(self, data_type: str, records: list[dict[str, Any]]) -> None:
        self.got.extend((data_type, r) for r in records)


def test_a_sink_receives_validated_records_on_the_callers_thread(tmp_path: Path) -> None:
    sink = ListSink()
    tracker = perf_sdk.Tracker(service=SERVICE, secret=SECRET, sink=sink, spool_dir=tmp_path / "never")
    tracker.start("txn-1")
    tracker.satisfaction(4)
    tracker.mark("release 1.4")
    assert [dt for dt, _ in sink.got] == ["transactions", "satisfaction", "marks"]
    start = sink.got[0][1]
    assert start["_id"] == tracker.transaction_record_id("txn-1", "started")
    assert "txn-1" not in repr(sink.got)  # hashed, never in clear
    assert not (tmp_path / "never").exists()  # no spool, no thread, no network
    assert tracker.close()


def test_a_sink_that_raises_is_reported_not_raised() -> None:
    class Broken:
        def write(self, data_type: str, records: list[dict[str, Any]]) -> None:
            raise RuntimeError("sink bug")

    errors: list[BaseException] = []
    tracker = perf_sdk.Tracker(service=SERVICE, secret=SECRET, sink=Broken(), on_error=lambda e, r: errors.append(e))
    tracker.complete("t")
    assert "sink raised RuntimeError" in str(errors[0])
    assert tracker.flush().refused == 1


def test_something_that_is_not_a_sink_is_refused_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="write"):
        perf_sdk.Tracker(service=SERVICE, secret=SECRET, sink=object())  # type: ignore[arg-type]


def test_capture_is_built_on_the_public_seam() -> None:
    import perf_sdk.testing as testing

    source = Path(testing.__file__).read_text(encoding="utf-8")
    assert "perf_sdk._tracker import Tracker" in source
    assert "_BUILT" not in source and "_slow_enqueue" not in source and "_ensure_started" not in source
    with capture(service=SERVICE) as tracker:
        assert isinstance(tracker.memory, InMemorySink)
        tracker.start("a")
        tracker.complete("a")
        assert tracker.counts() == {"started": 1, "completed": 1}


# --- disabled ---------------------------------------------------------------------------------------


def test_no_endpoint_means_disabled_calls_accepted_and_dropped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for var in ("PERF_SDK_ENDPOINT", "PERF_SDK_TOKEN", "PERF_SDK_SECRET", "PERF_SDK_SERVICE", "PERF_SDK_ENABLED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with caplog.at_level(logging.INFO, logger="perf_sdk"):
        tracker = perf_sdk.Tracker()
        tracker.start("txn")  # no secret either: nothing is hashed when nothing is sent
        tracker.complete("txn")
        tracker.satisfaction(99)  # invalid, and still nothing to report: the SDK is off
    assert not tracker.enabled
    assert "disabled" in repr(tracker)
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert "no endpoint" in caplog.records[0].getMessage()
    assert tracker.flush(1)
    assert tracker.close(1)
    assert not (tmp_path / "state").exists()  # no spool was created


def test_disabled_by_variable_even_with_an_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERF_SDK_ENABLED", "0")
    tracker = perf_sdk.Tracker(
        service=SERVICE, endpoint="https://perf.example.gov.uk", token="t", secret=SECRET, spool_dir=tmp_path / "s"
    )
    tracker.complete("x")
    assert not tracker.enabled and tracker.close(1)
    assert not (tmp_path / "s").exists()


def test_disabled_strict_still_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERF_SDK_ENDPOINT", raising=False)
    tracker = perf_sdk.Tracker(service=SERVICE, strict=True)
    tracker.complete(None)  # valid: accepted (and dropped)
    with pytest.raises(ValidationError) as info:
        tracker.satisfaction(9)
    assert info.value.field == "rating"


# --- hooks checked at construction -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("hook", "value"),
    [
        ("on_error", lambda error: None),
        ("on_dead_letter", lambda: None),
        ("before_send", lambda record, extra: record),
        ("on_error", "not a function"),
    ],
)
def test_a_hook_with_the_wrong_shape_fails_at_construction(hook: str, value: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=hook):
        perf_sdk.Tracker(service=SERVICE, secret=SECRET, sink=ListSink(), **{hook: value})


def test_hooks_with_defaults_or_star_args_are_fine() -> None:
    perf_sdk.Tracker(
        service=SERVICE,
        secret=SECRET,
        sink=ListSink(),
        on_error=lambda *args: None,
        on_dead_letter=lambda error, records, extra=None: None,
        before_send=lambda record, **kw: record,
    )


# --- the secret only when something must be hashed --------------------------------------------------


def test_no_secret_is_needed_until_an_id_must_be_hashed() -> None:
    sink = ListSink()
    errors: list[BaseException] = []
    tracker = perf_sdk.Tracker(service=SERVICE, sink=sink, on_error=lambda e, r: errors.append(e))
    tracker.start(None, channel="phone", count=40)  # aggregates carry no id
    tracker.satisfaction(5)
    tracker.cost(100, period="2026-Q1", cost_type="staff")
    assert len(sink.got) == 3 and not errors
    tracker.complete("txn-1")  # this one needs the secret
    (error,) = errors
    assert isinstance(error, ValidationError) and error.field == "transaction_id"
    assert "PERF_SDK_SECRET" in error.rule and "txn-1" not in str(error)


def test_strict_without_a_secret_raises_at_the_first_id() -> None:
    tracker = perf_sdk.Tracker(service=SERVICE, sink=ListSink(), strict=True)
    tracker.start(None)
    with pytest.raises(ValidationError, match="secret"):
        tracker.start("txn-1")


# --- strict refusals at the call ---------------------------------------------------------------------


def test_strict_refuses_lone_surrogates_at_the_call() -> None:
    with capture(service=SERVICE) as tracker:
        with pytest.raises(ValidationError) as info:
            tracker.record("feedback", comment="caf\udce9")
        assert info.value.field == "comment"
        assert "surrogate" in info.value.rule
        with pytest.raises(ValidationError) as info:
            tracker.complete("caf\udce9")
        assert info.value.field == "transaction_id"
        str(info.value).encode()  # printable: a log line on a UTF-8 stream must not fail


def test_strict_refuses_future_times_at_the_call() -> None:
    with capture(service=SERVICE) as tracker:
        tracker.complete("ok", at=time.time() + 60)  # clock skew is tolerated
        with pytest.raises(ValidationError) as info:
            tracker.complete("late", at=time.time() + 3600)
        assert info.value.field == "at" and "future" in info.value.rule


# --- AsyncTracker mirrors the Tracker ------------------------------------------------------------------


def test_async_tracker_has_the_trackers_recording_methods_stats_and_health() -> None:
    async def main() -> None:
        with capture(service=SERVICE) as captured:
            tracker = AsyncTracker(tracker=captured)
            for name in ("start", "complete", "satisfaction", "cost", "record", "mark", "health"):
                assert callable(getattr(tracker, name))
            tracker.start("a")
            tracker.complete("a")
            tracker.mark("release")
            assert tracker.stats is captured.stats
            health = tracker.health()  # a plain call, as on the Tracker
            assert health.spool_depth == 0
            assert (await tracker.health()).spool_depth == 0  # the earlier, awaited spelling still works
            assert captured.counts()["completed"] == 1
            assert len(captured.of("marks")) == 1

    asyncio.run(main())


# --- found by review: each of these lost, miscounted or blocked before -----------------------------


class Held:
    """A platform that stores by _id."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}

    def send(self, data_type: str, body: bytes) -> None:
        import json

        for record in json.loads(body):
            self.stored[record["_id"]] = record

    def close(self) -> None:
        return None


def test_a_bad_submitted_record_is_refused_alone(tmp_path: Path) -> None:
    platform = Held()
    tracker = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=tmp_path / "s", transport=platform)
    for i in range(1_500):
        tracker.complete(f"c{i}")
    good = {"_id": "ok", "_timestamp": "2026-01-01T00:00:00+00:00", "count": 1, "stage": "started", "channel": "paper"}
    assert tracker.submit("transactions", [good, "not a record", None]) == 3  # type: ignore[list-item]
    result = tracker.flush(60)
    assert result.pending == 0 and result.refused == 2 and not result
    assert len(platform.stored) == 1_501
    tracker.close(5)


def test_submit_refuses_a_data_type_that_is_not_a_slug(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    tracker = perf_sdk.Tracker(
        service=SERVICE,
        secret=SECRET,
        spool_dir=tmp_path / "s",
        transport=Held(),
        on_error=lambda e, r: errors.append(e),
    )
    assert tracker.submit("a?token=x", [{"_id": "x"}]) == 0
    assert isinstance(errors[0], ValidationError) and errors[0].field == "data_type"
    tracker.close(5)


def test_a_hook_that_hangs_cannot_make_close_report_success(tmp_path: Path) -> None:
    """Records the writer holds while a before_send hook hangs are counted, not silently lost."""
    import threading

    release = threading.Event()

    def hangs(record: dict[str, Any]) -> dict[str, Any]:
        release.wait(120)
        return record

    tracker = perf_sdk.Tracker(
        service=SERVICE, secret=SECRET, spool_dir=tmp_path / "s", transport=Held(), before_send=hangs
    )
    for i in range(100):
        tracker.complete(f"h{i}")
    assert not tracker.persist(0.5)  # not on disk: persist() must not say it is
    result = tracker.close(0.5)
    release.set()
    assert not result and result.pending == 100 and result.unpersisted == 100
    assert tracker.stats.unpersisted == 100


def test_after_close_flush_and_a_second_close_report_what_the_first_close_left(tmp_path: Path) -> None:
    class Down(Held):
        def send(self, data_type: str, body: bytes) -> None:
            raise perf_sdk.RetryableError("down")

    tracker = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=tmp_path / "s", transport=Down())
    for i in range(100):
        tracker.complete(f"d{i}")
    first = tracker.close(0.5)
    assert first.pending == 100 and not first
    assert tracker.flush(1) == first  # not a success: the records wait on disk for the next process
    assert tracker.close(1) == first


def test_close_from_a_hook_does_not_raise_and_a_later_close_finishes(tmp_path: Path) -> None:
    holder: dict[str, perf_sdk.Tracker] = {}
    outcome: list[object] = []

    def closes(record: dict[str, Any]) -> dict[str, Any]:
        if "tracker" in holder and not outcome:
            outcome.append(holder["tracker"].close(1))  # on the writer's own thread
        return record

    tracker = perf_sdk.Tracker(
        service=SERVICE, secret=SECRET, spool_dir=tmp_path / "s", transport=Held(), before_send=closes
    )
    holder["tracker"] = tracker
    tracker.complete("x")
    assert tracker.persist(30) or tracker.closed
    assert outcome and not isinstance(outcome[0], BaseException)
    assert tracker.closed


def test_a_forked_child_does_not_inherit_a_held_stats_lock(tmp_path: Path) -> None:
    import os

    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    tracker = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=tmp_path / "s", transport=Held())
    tracker.stats._lock.acquire()  # a parent thread updating a counter at the moment of fork()
    try:
        pid = os.fork()
        if pid == 0:  # the child: counting must not deadlock
            ok = tracker.stats._lock.acquire(timeout=10)
            os._exit(0 if ok else 1)
    finally:
        tracker.stats._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    tracker.close(5)


def test_counts_of_a_services_own_data_type_follow_the_same_rule() -> None:
    with capture(service=SERVICE) as tracker:
        for bad in (-5, 0, "lots", True, 1.5, 10**30):
            with pytest.raises(ValidationError) as info:
                tracker.record("feedback", count=bad, comment="x")
            assert info.value.field == "count"
        tracker.record("feedback", count=3, comment="x")


def test_a_switched_off_strict_tracker_without_a_secret_still_takes_transaction_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PERF_SDK_ENDPOINT", raising=False)
    tracker = perf_sdk.Tracker(service=SERVICE, strict=True)
    tracker.start("txn-1")  # nothing is sent, so nothing needs the service's secret


@pytest.mark.parametrize("at", [float("nan"), float("inf"), 1e300])
def test_impossible_times_name_the_at_argument(at: float) -> None:
    with capture(service=SERVICE) as tracker, pytest.raises(ValidationError) as info:
        tracker.complete("x", at=at)
    assert info.value.field == "at"


def test_refusals_are_logged_at_most_twenty_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    tracker = perf_sdk.Tracker(service=SERVICE, secret=SECRET, sink=ListSink())
    tracker.close()
    with caplog.at_level(logging.WARNING, logger="perf_sdk"):
        for i in range(1_000):
            tracker.complete(f"late{i}")
    assert tracker.stats.refused == 1_000  # every one counted
    assert len(caplog.records) == 20


def test_a_closed_tracker_is_freed(tmp_path: Path) -> None:
    import gc
    import weakref

    tracker = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=tmp_path / "s", transport=Held())
    tracker.complete("x")
    assert tracker.close(10)
    ref = weakref.ref(tracker)
    del tracker
    gc.collect()
    assert ref() is None
