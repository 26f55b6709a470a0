"""One bad record never takes its neighbours down, end to end (issue 12 item 2).

A lone surrogate (what a WSGI server's ``surrogateescape`` decoding makes of
undecodable request bytes) in one record, next to valid records of every type,
through the real pipeline to the local platform. Before the fix the writer's
whole chunk was lost: ``flush()`` reported nothing pending, no ``on_error``,
and the platform held 0 records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import perf_sdk
from perf_sdk import ValidationError
from tests.conftest import SERVICE, TOKEN


def test_a_lone_surrogate_is_refused_alone_and_reported(make_tracker: Callable[..., perf_sdk.Tracker]) -> None:
    from perf_sdk.platform import LocalPlatform

    errors: list[tuple[BaseException, list[dict[str, Any]]]] = []
    with LocalPlatform(token=TOKEN) as platform:
        tracker = make_tracker(endpoint=platform.url, on_error=lambda e, records: errors.append((e, records)))
        tracker.complete("txn-1")
        tracker.record("feedback", comment="caf\udce9")
        tracker.record("feedback", comment="café")
        tracker.satisfaction(5)
        tracker.start("caf\udce9")
        for i in range(3_000):  # a whole chunk's worth of neighbours
            tracker.start(f"n{i}")
        result = tracker.flush(60)
        assert result.pending == 0
        assert result.refused == 2 and not result  # flush() does not call this a success
        assert len(platform.records(SERVICE, "transactions")) == 3_001
        assert [r["comment"] for r in platform.records(SERVICE, "feedback")] == ["café"]
        assert len(platform.records(SERVICE, "satisfaction")) == 1
    assert sorted(e.field for e, _ in errors if isinstance(e, ValidationError)) == ["comment", "transaction_id"]
    health = tracker.health()
    assert health.counters["refused"] == 2 and "surrogate" in (health.last_error or "")
