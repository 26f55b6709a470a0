"""The platform's lenient record rules beside the SDK's strict ones (``perf_sdk._protocol``).

What the SDK sends stays strict; what a platform accepts from any client is what
backdrop accepts. Names are matched whole, ASCII only.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from perf_sdk._protocol import (
    KEY_RE,
    SLUG_RE,
    has_lone_surrogate,
    parse_lenient_timestamp,
    parse_timestamp,
    platform_record_problems,
    record_problems,
)

UTC = timezone.utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-15T10:00:00.123456+00:00", datetime(2024, 1, 15, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-01-15T10:00:00.250Z", datetime(2024, 1, 15, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2024-01-15T10:00:00.123456789Z", datetime(2024, 1, 15, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-01-15T10:00:00", datetime(2024, 1, 15, 10, tzinfo=UTC)),
        ("2024-01-15T10:00", datetime(2024, 1, 15, 10, tzinfo=UTC)),
        ("2024-01-15 10:00:00+00:00", datetime(2024, 1, 15, 10, tzinfo=UTC)),
        ("2024-01-15", datetime(2024, 1, 15, tzinfo=UTC)),
        ("2024-01-15T10:00:00+0100", datetime(2024, 1, 15, 9, tzinfo=UTC)),
        ("2024-01-15T10:00:00-05", datetime(2024, 1, 15, 15, tzinfo=UTC)),
    ],
)
def test_lenient_timestamps_backdrop_accepts(text: str, expected: datetime) -> None:
    parsed = parse_lenient_timestamp(text)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is not None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-02-30",
        "2024-01-15T24:00:00Z",
        "2024-01-15T10:00:00+24:00",
        "2024-01-15T10:00:00+01:60",
        "15/01/2024",
        "2024-01-15T10:00:00Z\n",
        "\uff12\uff10\uff12\uff14-01-15",  # full-width digits
        "2024-01-15T10:00:00 UTC",
        "now",
    ],
)
def test_lenient_timestamps_still_refuse_what_is_not_a_time(text: str) -> None:
    assert parse_lenient_timestamp(text) is None


@pytest.mark.parametrize(
    "text", ["2024-01-15T10:00:00.250Z", "2024-01-15T10:00:00", "2024-01-15", "2024-01-15T10:00:00Z\n"]
)
def test_what_the_sdk_sends_stays_strict(text: str) -> None:
    assert parse_timestamp(text) is None
    assert record_problems({"_timestamp": text})


def test_the_sdk_rules_refuse_null_the_platform_rules_take_it() -> None:
    record = {"_timestamp": "2024-01-15T10:00:00.5Z", "note": None, "_start_at": "2024-01-15"}
    assert record_problems(record)
    assert platform_record_problems(record) == []


@pytest.mark.parametrize("name", ["svc\n", "svc\r\n", "caf\u00e9", "s\u0131c", "\u0130d"])
def test_names_are_matched_whole_and_ascii(name: str) -> None:
    assert SLUG_RE.match(name) is None
    assert KEY_RE.match(name.lower()) is None
    assert platform_record_problems({name: 1})


def test_lone_surrogates_are_found_in_values_and_keys() -> None:
    assert has_lone_surrogate("caf\udce9")
    assert not has_lone_surrogate("caf\u00e9")
    assert not has_lone_surrogate("plain")
    problems = platform_record_problems({"comment": "caf\udce9", "ok": "fine"})
    assert problems == ["the value for field 'comment' is not valid Unicode (a lone surrogate): 'caf\\\\udce9'"]
    assert platform_record_problems({"caf\udce9": 1})[0].startswith("'caf\\\\udce9' is not a valid key")


def test_a_fraction_is_kept_to_the_microsecond() -> None:
    parsed = parse_lenient_timestamp("2024-01-15T23:59:59.999999+00:00")
    assert parsed is not None
    assert parsed + timedelta(microseconds=1) == datetime(2024, 1, 16, tzinfo=UTC)
