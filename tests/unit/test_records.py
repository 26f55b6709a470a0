"""Records: shapes, validation messages, ids and hashing."""

from __future__ import annotations

import math
import string
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perf_sdk import ValidationError
from perf_sdk._protocol import CHANNELS, record_problems
from perf_sdk._records import MAX_CLOCK_SKEW, RecordBuilder, parse_period_label, validate_records

SECRET = "k" * 32
builder = RecordBuilder("apply-for-a-licence", SECRET)
AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


def test_transaction_record_has_the_platform_shape() -> None:
    rec = builder.transaction("completed", "txn-1", "digital", AT, 1)
    (good,), bad = validate_records("transactions", [rec])
    assert bad == []
    assert set(good) == {"_id", "_timestamp", "count", "stage", "channel"}
    assert good["_timestamp"] == "2026-03-04T05:06:07+00:00"
    assert record_problems(good) == []


def test_transaction_ids_are_deterministic_and_never_clear() -> None:
    a = builder.transaction("completed", "txn-1", "digital", AT, 1)
    b = builder.transaction("completed", "txn-1", "phone", AT + timedelta(days=1), 1)
    start = builder.transaction("started", "txn-1", "digital", AT, 1)
    assert a["_id"] == b["_id"]  # a refresh or double submit is one record
    assert start["_id"] != a["_id"]
    assert "txn-1" not in repr(a)
    other = RecordBuilder("apply-for-a-licence", "z" * 32).transaction("completed", "txn-1", "digital", AT, 1)
    assert other["_id"] != a["_id"]  # the key matters: ids are not guessable without the secret


@settings(max_examples=100, deadline=None)
@given(stage=st.sampled_from(["started", "completed"]), txns=st.lists(st.text(min_size=1, max_size=40), max_size=8))
def test_ids_in_bulk_are_the_ids_one_at_a_time(stage: str, txns: list[str]) -> None:
    # The writer hashes a run of records in one call; the platform upserts by these ids, so they must not move.
    ids = builder.transaction_ids(stage, [*txns, "caf\udce9"])
    assert ids[-1] is None  # in its place: refused by hash_transaction_id, with its message
    assert ids[:-1] == [builder.natural_id("transactions", stage, builder.hash_transaction_id(t)) for t in txns]
    assert builder.ids_in_bulk
    assert not RecordBuilder("s", SECRET, sample_every=2).ids_in_bulk and not RecordBuilder("s", None).ids_in_bulk


@settings(max_examples=300, deadline=None)
@given(
    stage=st.sampled_from(["started", "completed"]),
    txn=st.text(min_size=1, max_size=40),
    offset=st.floats(min_value=0, max_value=0.999999),
)
def test_the_fast_path_builds_the_record_the_general_path_builds(stage: str, txn: str, offset: float) -> None:
    # A float time in a second the builder has seen takes a one-frame path; an int time, a datetime or a
    # new second takes the general one. Both must give the same id and timestamp, or a refresh would
    # count twice depending on how its time was passed.
    fresh = RecordBuilder("apply-for-a-licence", SECRET)
    second = int(AT.timestamp())
    general = fresh.transaction(stage, txn, "digital", AT, 1)  # a datetime: the general path, caches the second
    fast = fresh.transaction(stage, txn, "digital", second + offset, 1)
    by_int = RecordBuilder("apply-for-a-licence", SECRET).transaction(stage, txn, "digital", second, 1)
    assert fast == general == by_int
    assert fast["_id"] == fresh.natural_id("transactions", stage, fresh.hash_transaction_id(txn))


@pytest.mark.parametrize("at", [math.inf, -math.inf, math.nan])
def test_a_time_that_is_not_finite_is_refused_after_a_cached_second(at: float) -> None:
    fresh = RecordBuilder("apply-for-a-licence", SECRET)
    fresh.transaction("started", "t", "digital", AT.timestamp(), 1)
    with pytest.raises(ValidationError, match="finite"):
        fresh.transaction("started", "t", "digital", at, 1)


def test_the_last_second_of_1969_has_its_timestamp() -> None:
    # The time cache once started at second -1 with no text, so this time got an empty _timestamp.
    rec = RecordBuilder("apply-for-a-licence", SECRET).transaction("started", "t", "digital", -0.5, 1)
    assert rec["_timestamp"] == "1969-12-31T23:59:59+00:00"


def test_transaction_without_id_gets_random_128_bit_id() -> None:
    ids = {builder.transaction("started", None, "phone", AT, 5)["_id"] for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_cost_id_is_its_period_type_and_channel() -> None:
    a = builder.cost(100, "2026-Q1", "staff", "all", AT, 1)
    b = builder.cost(250, "2026-Q1", "staff", "all", AT, 1)
    c = builder.cost(100, "2026-Q2", "staff", "all", AT, 1)
    assert a["_id"] == b["_id"] != c["_id"]
    assert a["_timestamp"] == "2026-01-01T00:00:00+00:00"
    assert a["period"] == "quarter"


def test_cost_without_period_is_the_month_of_at() -> None:
    rec = builder.cost(100, None, "it", "all", AT, 1)
    assert rec["period"] == "month"
    assert rec["_timestamp"] == "2026-03-01T00:00:00+00:00"


def test_satisfaction_tied_to_a_transaction_is_one_answer() -> None:
    a = builder.satisfaction(5, "txn-9", "digital", AT, 1)
    b = builder.satisfaction(2, "txn-9", "digital", AT, 1)
    assert a["_id"] == b["_id"]
    assert builder.satisfaction(5, None, "digital", AT, 1)["_id"] != a["_id"]


@pytest.mark.parametrize(
    ("label", "granularity", "start"),
    [
        ("2026-03", "month", datetime(2026, 3, 1, tzinfo=timezone.utc)),
        ("2026-Q4", "quarter", datetime(2026, 10, 1, tzinfo=timezone.utc)),
        ("2026", "year", datetime(2026, 1, 1, tzinfo=timezone.utc)),
        (2025, "year", datetime(2025, 1, 1, tzinfo=timezone.utc)),
    ],
)
def test_period_labels(label: object, granularity: str, start: datetime) -> None:
    p = parse_period_label(label)
    assert (p.granularity, p.start) == (granularity, start)
    assert p.end > p.start


@pytest.mark.parametrize("label", ["2026-13", "2026-Q5", "26", "2026-1", "Q1-2026", "", None, True, "2026-00"])
def test_bad_period_labels_name_the_rule(label: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_period_label(label)
    assert info.value.field == "period"
    assert info.value.value == label
    assert "2026-Q1" in info.value.rule


@pytest.mark.parametrize(
    ("data_type", "record", "field", "rule_part"),
    [
        ("transactions", {"stage": "finished"}, "stage", "started, completed"),
        ("transactions", {"channel": "web"}, "channel", "digital"),
        ("transactions", {"count": 0}, "count", "positive"),
        ("transactions", {"count": True}, "count", "positive"),
        ("transactions", {"count": 1.5}, "count", "positive"),
        ("satisfaction", {"rating": 6}, "rating", "1 (very dissatisfied) to 5"),
        ("satisfaction", {"rating": "5"}, "rating", "1 (very dissatisfied) to 5"),
        ("costs", {"amount_pence": -1}, "amount_pence", "non-negative"),
        ("costs", {"amount_pence": 12.5}, "amount_pence", "whole"),
        ("costs", {"cost_type": "Staff Costs"}, "cost_type", "slug"),
        ("costs", {"channel": "web"}, "channel", "or all"),
    ],
)
def test_validation_errors_name_field_value_and_rule(
    data_type: str, record: dict[str, object], field: str, rule_part: str
) -> None:
    base = {
        "transactions": builder.transaction("started", "t", "digital", AT, 1),
        "satisfaction": builder.satisfaction(4, None, "digital", AT, 1),
        "costs": builder.cost(1, "2026", "it", "all", AT, 1),
    }[data_type]
    good, bad = validate_records(data_type, [base, base | record])
    assert len(good) == 1
    ((index, error),) = bad
    assert index == 1
    assert (error.field, error.value) == (field, record[field])
    assert rule_part in error.rule
    assert field in str(error)


@pytest.mark.parametrize(
    "at",
    [datetime(2026, 1, 1), "2026-01-01T00:00:00Z", None, datetime(2026, 1, 1).date()],
)
def test_at_must_be_aware(at: object) -> None:
    with pytest.raises(ValidationError) as info:
        builder.timestamp(at)
    assert info.value.field == "at"
    assert "timezone-aware" in info.value.rule


def test_at_in_another_zone_is_sent_as_utc() -> None:
    bst = timezone(timedelta(hours=1))
    assert builder.timestamp(datetime(2026, 7, 1, 0, 30, tzinfo=bst)) == "2026-06-30T23:30:00+00:00"


def test_builder_repr_hides_the_secret() -> None:
    assert SECRET not in repr(builder)


def test_transaction_id_must_be_a_string() -> None:
    with pytest.raises(ValidationError) as info:
        builder.transaction("started", ["x"], "digital", AT, 1)
    assert info.value.field == "transaction_id"
    assert info.value.value == "<redacted>"


def test_custom_data_type_uses_platform_rules() -> None:
    rec = builder.generic("applications-by-region", {"region": "wales"}, AT, 3)
    good, bad = validate_records("applications-by-region", [rec, rec | {"Bad Key": 1}, rec | {"nested": {"a": 1}}])
    assert len(good) == 1
    assert [i for i, _ in bad] == [1, 2]


# --- properties: the models and the platform agree -----------------------------------------------

aware_datetimes = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=st.timezones()
)
counts = st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=True), st.text(max_size=3))
ratings = st.one_of(st.integers(-3, 9), st.text(max_size=2), st.none())
channels = st.one_of(st.sampled_from(CHANNELS), st.text(string.ascii_letters + "_", max_size=12))


def _future(at: datetime) -> bool:
    """Beyond the clock-skew allowance: refused, like any record from the future."""
    return at.timestamp() > time.time() + MAX_CLOCK_SKEW


@settings(max_examples=300, deadline=None)
@given(
    stage=st.sampled_from(["started", "completed", "Started", "done"]),
    txn=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
    channel=channels,
    at=aware_datetimes,
    count=counts,
)
def test_every_accepted_transaction_is_one_the_platform_accepts(
    stage: str, txn: str | None, channel: str, at: datetime, count: object
) -> None:
    if _future(at):  # the builder refuses a future time as it builds
        with pytest.raises(ValidationError):
            builder.transaction(stage, txn, channel, at, count)
        return
    rec = builder.transaction(stage, txn, channel, at, count)
    good, bad = validate_records("transactions", [rec])
    for r in good:
        assert record_problems(r) == []
        assert r["stage"] in ("started", "completed")
        assert r["channel"] in CHANNELS
        assert type(r["count"]) is int and r["count"] >= 1
    should_pass = (
        stage in ("started", "completed")
        and channel in CHANNELS
        and type(count) is int
        and 1 <= count <= 10**9
        and not _future(at)
    )
    assert bool(good) == should_pass
    assert len(bad) == (0 if should_pass else 1)


@settings(max_examples=200, deadline=None)
@given(rating=ratings, channel=channels, at=aware_datetimes)
def test_every_accepted_answer_is_one_the_platform_accepts(rating: object, channel: str, at: datetime) -> None:
    if _future(at):
        with pytest.raises(ValidationError):
            builder.satisfaction(rating, None, channel, at, 1)
        return
    rec = builder.satisfaction(rating, None, channel, at, 1)
    good, _ = validate_records("satisfaction", [rec])
    for r in good:
        assert record_problems(r) == []
    assert bool(good) == (type(rating) is int and 1 <= rating <= 5 and channel in CHANNELS and not _future(at))


@settings(max_examples=200, deadline=None)
@given(
    extra_key=st.text(max_size=8),
    extra_value=st.one_of(st.integers(), st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=2)),
)
def test_models_refuse_what_the_platform_refuses(extra_key: str, extra_value: object) -> None:
    rec = builder.generic("custom-data", {}, AT, 1)
    rec[extra_key] = extra_value
    good, _ = validate_records("custom-data", [rec])
    count = rec["count"]  # a service's own data type is summed like the known ones: the same count rule
    assert bool(good) == (record_problems(rec) == [] and type(count) is int and 1 <= count <= 1_000_000_000)


@settings(max_examples=200, deadline=None)
@given(ts=st.text(alphabet="0123456789-T:Z+. ", max_size=30))
def test_timestamps_the_platform_refuses_are_refused(ts: str) -> None:
    rec = builder.transaction("started", None, "digital", AT, 1) | {"_timestamp": ts}
    good, _ = validate_records("transactions", [rec])
    if good:
        assert record_problems(good[0]) == []
