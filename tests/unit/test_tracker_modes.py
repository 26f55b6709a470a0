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
