"""Periods are named as UK government readers read them, never as a bare machine label."""

from __future__ import annotations

from datetime import date

import pytest

from perf_sdk._periods import human_label, long_date, short_label


@pytest.mark.parametrize(
    ("kind", "start", "expected"),
    [
        ("quarter", date(2026, 1, 1), "January to March 2026"),
        ("quarter", date(2025, 10, 1), "October to December 2025"),
        ("month", date(2026, 3, 1), "March 2026"),
        ("year", date(2026, 1, 1), "2026"),
        ("financial-year", date(2025, 4, 1), "2025-26"),
        ("financial-year", date(1999, 4, 1), "1999-00"),
    ],
)
def test_human_label(kind: str, start: date, expected: str) -> None:
    assert human_label(kind, start) == expected


def test_a_span_across_years_names_both() -> None:
    assert human_label("quarter", date(2025, 11, 1)) == "November 2025 to January 2026"
    assert human_label("custom", date(2026, 2, 1), date(2026, 3, 1)) == "February 2026"


def test_a_custom_span_needs_its_end() -> None:
    with pytest.raises(ValueError, match="needs its end"):
        human_label("custom", date(2026, 2, 1))


def test_short_and_long() -> None:
    assert short_label("quarter", date(2026, 1, 1)) == "Jan-Mar 2026"
    assert short_label("month", date(2026, 3, 1)) == "Mar 2026"
    assert short_label("financial-year", date(2025, 4, 1)) == "2025-26"
    assert long_date(date(2026, 4, 2)) == "2 April 2026"
