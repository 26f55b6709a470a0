"""Bad input at the recording door: never a crash in the default mode, always a clear error in strict mode."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import perf_sdk
from perf_sdk.testing import capture
from tests.conftest import SECRET, SERVICE

anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=10)
    | st.datetimes(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


class Memory:
    def __init__(self) -> None:
        self.stored: dict[str, Any] = {}
        self.lock = threading.Lock()

    def send(self, data_type: str, body: bytes) -> None:
        for r in json.loads(body):
            with self.lock:
                self.stored[r["_id"]] = r

    def close(self) -> None:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(txn=anything, channel=anything, at=anything, count=anything, rating=anything, amount=anything, period=anything)
def test_strict_mode_raises_only_validation_errors(
    txn: Any, channel: Any, at: Any, count: Any, rating: Any, amount: Any, period: Any
) -> None:
    with capture(service=SERVICE) as t:
        for call in (
            lambda: t.start(txn, channel=channel, at=at, count=count),
            lambda: t.complete(txn, channel=channel, at=at, count=count),
            lambda: t.satisfaction(rating, channel=channel, transaction_id=txn, at=at, count=count),
            lambda: t.cost(amount, period=period, cost_type=channel, channel=channel, at=at, count=count),
            lambda: t.record("custom-type", at=at, count=count, field=rating, other=amount),
        ):
            error = None
            try:
                call()
            except perf_sdk.ValidationError as exc:
                error = exc
            assert error is None or (error.field and error.rule)
        for _, record in t.records:
            assert isinstance(record["_id"], str)


def test_default_mode_never_raises_whatever_it_is_given(tmp_path: Path) -> None:
    memory = Memory()
    tracker = perf_sdk.Tracker(service=SERVICE, secret=SECRET, spool_dir=tmp_path, transport=memory)
    values: list[Any] = [
        None,
        True,
        -1,
        0,
        2**70,
        1.5,
        float("nan"),
        "",
        "x" * 100_000,
        b"bytes",
        [1],
        {"a": {"b": [1]}},
    ]
    calls = 0
    for v in values:
        for w in values:
            tracker.start(v, channel=w, count=v)
            tracker.complete(w, channel=v, at=w)
            tracker.satisfaction(v, channel=w)
            tracker.cost(v, period=w, cost_type=v)
            tracker.record("custom-type", nested={"deep": [v, w]}, at=v)
            calls += 5
    tracker.complete("the-good-one")
    result = tracker.flush(60)  # falsy: the bad calls were refused (and counted)
    assert result.pending == 0 and not result.timed_out, result
    tracker.close(10)
    assert len(memory.stored) >= 1
    assert tracker.stats.refused + tracker.stats.spooled == calls + 1
