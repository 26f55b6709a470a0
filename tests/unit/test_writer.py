"""The writer stage: build() as a pure function, and the thread's persist-everything stop.

build() is called directly, with no thread, disk or clock: every queued item
ends in exactly one of stored, refused or sampled out, and one bad record never
takes its neighbours down.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pydantic_core
from hypothesis import given, settings
from hypothesis import strategies as st

from perf_sdk._errors import ValidationError
from perf_sdk._records import RecordBuilder
from perf_sdk._writer import (
    BUILT,
    COMPLETE,
    COST,
    GENERIC,
    MARK,
    SATISFACTION,
    SLICE,
    START,
    VALIDATED,
    Refusal,
    Writer,
    build,
)
from tests.conftest import SECRET, SERVICE

AT = 1_780_000_000.0  # 2026-05-28


def builder(sample_every: int = 1) -> RecordBuilder:
    return RecordBuilder(SERVICE, SECRET, sample_every)


def stored(built: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(ds, r) for ds, _, body in built.segments for r in json.loads(body)]


def test_every_kind_of_call_has_a_builder() -> None:
    items = [
        (START, "t1", "digital", AT, 1),
        (COMPLETE, "t1", "digital", AT, 1),
        (SATISFACTION, 5, None, "digital", AT, 1),
        (COST, 125_000, "2026-Q1", "staff", "all", AT, 1),
        (GENERIC, "feedback", {"comment": "fine"}, AT, 1),
        (
            BUILT,
            "transactions",
            {
                "_id": "b1",
                "_timestamp": "2026-01-01T00:00:00+00:00",
                "count": 1,
                "stage": "started",
                "channel": "phone",
            },
        ),
        (MARK, "release 1.4", None, AT),
        (
            VALIDATED,
            "transactions",
            {
                "_id": "v1",
                "_timestamp": "2026-01-01T00:00:00+00:00",
                "count": 3,
                "stage": "completed",
                "channel": "paper",
            },
        ),
    ]
    built = build(items, builder())
    assert not built.refusals
    by_type: dict[str, int] = {}
    for dataset, n, _ in built.segments:
        by_type[dataset.split("/")[1]] = by_type.get(dataset.split("/")[1], 0) + n
    assert by_type == {"transactions": 4, "satisfaction": 1, "costs": 1, "feedback": 1, "marks": 1}
    (mark,) = [r for ds, r in stored(built) if ds.endswith("/marks")]
    assert mark["label"] == "release 1.4" and mark["count"] == 1


def test_a_lone_surrogate_refuses_its_record_and_keeps_its_neighbours() -> None:
    """Issue 12 item 2: a surrogateescape-decoded string next to valid records, in one chunk."""
    items = [
        (COMPLETE, "t1", "digital", AT, 1),
        (GENERIC, "feedback", {"comment": "caf\udce9"}, AT, 1),
        (GENERIC, "feedback", {"comment": "café"}, AT, 1),
        (START, "caf\udce9", "digital", AT, 1),  # in the transaction id: hashing fails for this one only
        (START, "t2", "digital", AT, 1),
    ]
    built = build(items, builder())
    kept = stored(built)
    assert len(kept) == 3
    assert {r.get("comment") for _, r in kept} == {None, "café"}
    assert len(built.refusals) == 2
    fields = sorted(r.error.field for r in built.refusals if isinstance(r.error, ValidationError))
    assert fields == ["comment", "transaction_id"]
    for refusal in built.refusals:
        assert "\udce9" not in str(refusal.error)  # printable: a log handler on UTF-8 must not choke on it


def test_every_item_is_stored_refused_or_sampled_out() -> None:
    items: list[tuple[Any, ...]] = []
    for i in range(300):
        items.append((START, f"t{i}", "digital", AT, 1))
        items.append((SATISFACTION, 1 + i % 7, None, "digital", AT, 1))  # ratings 6 and 7 refused
        items.append((COMPLETE, None, "web", AT, 1))  # bad channel
    built = build(items, builder(sample_every=4))
    refused = sum(r.count for r in built.refusals)
    assert built.records + refused + built.sampled_out == len(items)
    assert built.sampled_out > 0 and refused > 0 and built.records > 0


def test_before_send_failures_are_per_record() -> None:
    def hook(record: dict[str, Any]) -> Any:
        if record["count"] == 2:
            raise RuntimeError("hook bug")
        if record["count"] == 3:
            return ["not", "a", "record"]
        if record["count"] == 4:
            return None  # dropped on purpose: not a refusal
        return record | {"office": "leeds"}

    items = [(START, None, "digital", AT, n) for n in (1, 2, 3, 4, 5)]
    built = build(items, builder(), before_send=hook)
    assert sorted(r["count"] for _, r in stored(built)) == [1, 5]
    assert all(r["office"] == "leeds" for _, r in stored(built))
    assert len(built.refusals) == 2
    assert any("before_send raised RuntimeError" in str(r.error) for r in built.refusals)
    assert any(isinstance(r.error, ValidationError) and r.error.field == "before_send" for r in built.refusals)


def test_segments_respect_the_batch_size() -> None:
    items = [(START, f"t{i}", "digital", AT, 1) for i in range(25)]
    built = build(items, builder(), batch_size=10)
    assert [n for _, n, _ in built.segments] == [10, 10, 5]


def test_a_future_timestamp_is_refused() -> None:
    built = build(
        [(START, "t1", "digital", time.time() + 3600, 1), (START, "t2", "digital", time.time(), 1)], builder()
    )
    assert built.records == 1
    (refusal,) = built.refusals
    assert isinstance(refusal.error, ValidationError) and "future" in refusal.error.rule


def general(items: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The records the builder's general path (one call each) makes of START and COMPLETE items."""
    b = builder()
    records = [b.transaction("started" if it[0] == START else "completed", *it[1:]) for it in items]
    return [r for r in records if r is not None]


def test_journeys_are_written_byte_for_byte_as_the_general_path_writes_them() -> None:
    """Starts and completions go in runs written from a template: pydantic's JSON of the same records."""
    items: list[tuple[Any, ...]] = []
    for i in range(60):
        channel = ("digital", "phone", "paper", "face_to_face", "other")[i // 7 % 5]
        items.append((START if i % 3 else COMPLETE, f"t{i % 11}", channel, AT + i * 0.35, 1 + i // 25))
    items.insert(5, (START, "t1", "paper", int(AT) + 1, 2))  # an int time: the general path, kept in its place
    items.insert(9, (COMPLETE, "t2", "digital", AT + 0.5, 10**9))
    items.insert(20, (COMPLETE, "ünïcode ✓", "other", AT + 7.25, 3))
    built = build(items, builder())
    assert not built.refusals
    [(dataset, n, body)] = built.segments
    assert dataset == f"{SERVICE}/transactions" and n == len(items)
    assert body == pydantic_core.to_json(general(items))
    assert list(built.stored["transactions"]) == json.loads(body)


def test_a_journey_without_a_transaction_id_keeps_its_place() -> None:
    items = [
        (START, "t1", "digital", AT, 1),
        (START, None, "digital", AT, 1),  # a random id, from the general path
        (START, "t1", "phone", AT, 1),  # the same id as the first: the platform keeps the last one sent
    ]
    records = json.loads(build(items, builder()).segments[0][2])
    assert [r["channel"] for r in records] == ["digital", "digital", "phone"]
    assert records[0]["_id"] == records[2]["_id"] != records[1]["_id"]


def test_journeys_and_records_built_elsewhere_share_segments_of_the_batch_size() -> None:
    validated = {"_timestamp": "2026-01-01T00:00:00+00:00", "count": 1, "stage": "started", "channel": "phone"}
    items: list[tuple[Any, ...]] = [(VALIDATED, "transactions", validated | {"_id": f"v{i}"}) for i in range(4)]
    items += [(COMPLETE, f"t{i}", "digital", AT + i, 1) for i in range(9)]
    built = build(items, builder(), batch_size=3)
    assert [n for _, n, _ in built.segments] == [3, 3, 3, 3, 1]
    records = [r for _, r in stored(built)]
    assert [r["_id"] for r in records[:4]] == ["v0", "v1", "v2", "v3"]
    assert records[4:] == general(items[4:])
    assert records == list(built.stored["transactions"])


def test_a_chunk_is_checked_and_written_a_slice_at_a_time_with_the_same_verdicts() -> None:
    """pydantic-core is called a SLICE of records at a time (each call holds the GIL); refusals keep their record."""
    n = 2 * SLICE + 7
    items: list[tuple[Any, ...]] = [(SATISFACTION, 1 + i % 7, None, "digital", AT, 1) for i in range(n)]
    items += [(GENERIC, "feedback", {"comment": "caf\udce9" if i == SLICE + 3 else "ok"}, AT, 1) for i in range(n)]
    built = build(items, builder(), before_send=lambda record: record)  # every record through the schema
    kept = stored(built)
    assert sorted({r["rating"] for ds, r in kept if ds.endswith("/satisfaction")}) == [1, 2, 3, 4, 5]
    assert sum(ds.endswith("/feedback") for ds, _ in kept) == n - 1
    too_high = [r for r in built.refusals if isinstance(r.error, ValidationError) and r.error.field == "rating"]
    assert sorted(r.records[0]["rating"] for r in too_high) == sorted(1 + i % 7 for i in range(n) if i % 7 >= 5)
    assert len(built.refusals) == len(too_high) + 1
    assert built.records + len(built.refusals) == len(items)


# --- the thread ---------------------------------------------------------------------------------


class Outbox:
    """An in-memory spool that can refuse (a full disk) or be missing."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.segments: list[tuple[str, int, bytes]] = []
        self.refuse = refuse
        self.closed = False

    def append(self, segments: list[tuple[str, int, bytes]], accepted_at: float) -> None:
        if self.refuse:
            raise OSError(28, "No space left on device")
        self.segments.extend(segments)

    def should_hold_appends(self) -> bool:
        return False

    def has_room(self, nbytes: int) -> bool:
        return True

    @property
    def records(self) -> int:
        return sum(n for _, n, _ in self.segments)


class Stats:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last_error: str | None = None

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def error(self, message: str) -> None:
        self.last_error = message

    def journeys(self, data_type: str, records: Any) -> None:
        pass


def make_writer(outbox: Outbox | None, refusals: list[Refusal], stats: Stats, **kw: Any) -> Writer:
    return Writer(
        builder=builder,
        open_outbox=lambda: outbox,
        refuse=refusals.append,
        stats=stats,
        commit_interval=kw.pop("commit_interval", 10.0),  # only an explicit wake or stop drains
        **kw,
    )


def test_stop_persists_everything_queued_even_with_no_time_left() -> None:
    """Issue 12 item 1: the deadline bounds waiting for a stuck writer, never persisting."""
    outbox, refusals, stats = Outbox(), [], Stats()
    writer = make_writer(outbox, refusals, stats)
    writer.start()
    for i in range(50_000):
        writer.queue.append((COMPLETE, f"t{i}", "digital", AT, 1))
    lost = writer.stop(time.monotonic())  # a deadline already passed
    assert lost == 0
    assert outbox.records == 50_000
    assert not writer.running and writer.pending() == 0


def test_stop_reports_what_a_full_disk_kept_out() -> None:
    outbox, refusals, stats = Outbox(refuse=True), [], Stats()
    writer = make_writer(outbox, refusals, stats, commit_interval=0.01)
    writer.start()
    for i in range(1_234):
        writer.queue.append((START, f"t{i}", "digital", AT, 1))
    lost = writer.stop(time.monotonic() + 0.2)
    assert lost == 1_234
    assert stats.counts["unpersisted"] == 1_234
    assert outbox.records == 0


def test_stop_with_no_spool_reports_every_record() -> None:
    refusals: list[Refusal] = []
    stats = Stats()
    writer = make_writer(None, refusals, stats)
    writer.start()
    for i in range(10):
        writer.queue.append((START, f"t{i}", "digital", AT, 1))
    assert writer.stop(time.monotonic() + 0.1) == 10
    assert stats.counts["unpersisted"] == 10


def test_wait_drained_returns_after_a_commit_that_began_after_the_call() -> None:
    outbox, refusals, stats = Outbox(), [], Stats()
    writer = make_writer(outbox, refusals, stats)
    writer.start()
    writer.queue.append((START, "t1", "digital", AT, 1))
    assert writer.wait_drained(time.monotonic() + 60)
    assert outbox.records == 1
    writer.stop(time.monotonic() + 60)


def test_a_lost_spool_continues_into_a_fresh_one_without_losing_records(tmp_path: Any) -> None:
    """Issue 12 item 10, the writer's side: SpoolLostError means a fresh spool; held and salvaged segments kept."""
    from perf_sdk._spool import SpoolLostError

    salvaged = [(f"{SERVICE}/transactions", 1, b'[{"_id":"old"}]')]

    class Vanishing(Outbox):
        def append(self, segments: list[tuple[str, int, bytes]], accepted_at: float) -> None:
            raise SpoolLostError(tmp_path / "x.spool", "replaced", salvaged=salvaged)

    fresh = Outbox()
    reopened = threading.Event()

    def reopen(error: BaseException) -> Outbox:
        reopened.set()
        return fresh

    refusals: list[Refusal] = []
    stats = Stats()
    writer = Writer(
        builder=builder,
        open_outbox=Vanishing,
        refuse=refusals.append,
        stats=stats,
        commit_interval=10.0,
        on_spool_lost=reopen,
    )
    writer.start()
    for i in range(100):
        writer.queue.append((START, f"t{i}", "digital", AT, 1))
    assert writer.stop(time.monotonic() + 60) == 0
    assert reopened.is_set()
    assert fresh.records == 101  # the 100 held in memory, and the one read back from the lost file
    assert "spool lost" in (stats.last_error or "")


@settings(max_examples=300, deadline=None)
@given(
    channel=st.one_of(
        st.sampled_from(["digital", "phone", "paper", "face_to_face", "other", "web", "", "Digital"]),
        st.just(["digital"]),
        st.just({"a": 1}),
        st.none(),
    ),
    count=st.one_of(st.integers(-2, 3), st.just(10**9), st.just(10**9 + 1), st.booleans(), st.floats(0, 3)),
    rating=st.one_of(st.integers(-1, 7), st.booleans(), st.just(4.0)),
)
def test_the_fast_check_agrees_with_the_schema(channel: Any, count: Any, rating: Any) -> None:
    """Records the builder made skip the schema pass only when the schema would have passed them."""
    items = [
        (START, "t1", channel, AT, count),
        (COMPLETE, None, channel, AT, count),
        (SATISFACTION, rating, None, channel, AT, count),
    ]
    fast = build(items, builder())
    full = build(items, builder(), before_send=lambda record: record)  # a hook forces the schema on every record

    def shape(built: Any) -> list[tuple[str, tuple[tuple[str, Any], ...]]]:
        return sorted((ds, tuple(sorted((k, v) for k, v in r.items() if k != "_id"))) for ds, r in stored(built))

    assert shape(fast) == shape(full)
    assert len(fast.refusals) == len(full.refusals)


def _by_id(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        out.setdefault(record["_id"], []).append(record)
    return out


def test_interleaved_starts_and_completions_make_long_runs_and_keep_each_ids_order() -> None:
    # A service's traffic: starts on one channel, completions on another, one after the other. Run by run in
    # arrival order those were runs of one, each paying a run's own cost (1.6 times the CPU of the general
    # path). Runs now stay open side by side within a second; records of different ids may swap places,
    # records of one id never do (the platform keeps the last one sent).
    items: list[tuple[Any, ...]] = []
    for i in range(400):
        kind, channel = (START, "phone") if i % 2 else (COMPLETE, "digital")
        items.append((kind, f"t{i % 37}", channel if i % 5 else "paper", AT + i * 0.004, 1 + i % 3))
    built = build(items, builder())
    assert not built.refusals
    [(_, n, body)] = built.segments
    records, expected = json.loads(body), general(items)
    assert n == len(items) and sorted(map(json.dumps, records)) == sorted(map(json.dumps, expected))
    assert _by_id(records) == _by_id(expected)  # every id's records in the order they were recorded
    assert records != expected  # grouped, not in arrival order
    assert list(built.stored["transactions"]) == records


def test_a_record_recorded_again_within_a_second_is_still_sent_last() -> None:
    items = [
        (START, "t1", "digital", AT, 1),
        (START, "t2", "phone", AT + 0.1, 1),
        (START, "t1", "phone", AT + 0.2, 1),
        (START, "t3", "digital", AT + 0.3, 1),
        (START, "t1", "digital", AT + 0.4, 2),
        (START, "t1", "paper", int(AT) + 1, 1),  # an int time: the general path, after all of them
    ]
    records = json.loads(build(items, builder()).segments[0][2])
    [rid] = {r["_id"] for r in general(items[:1])}
    assert [(r["channel"], r["count"]) for r in records if r["_id"] == rid] == [
        ("digital", 1),
        ("phone", 1),
        ("digital", 2),
        ("paper", 1),
    ]
