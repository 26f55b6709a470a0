"""What a reporting period is called when people read it.

Machine labels (``2026-Q1``, ``2026-03``, ``2025-26``) are good keys for files
and URLs, but UK government readers do not read ``2026-Q1``: they read
"January to March 2026", and a financial year as "2025-26" (GOV.UK style guide:
"financial year 2025 to 2026" in running text, "2025-26" in tables). Every page
the SDK publishes names periods through :func:`human_label`, so the wording is
decided once.

The parsing of period labels lives in ``_records.py`` for now and is expected
to move here, beside the naming, so that one module says what a label means.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Final

__all__ = ["human_label", "long_date", "short_label"]

_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def human_label(kind: str, start: date, end: date | None = None) -> str:
    """The period of ``kind`` starting on ``start`` as a reader says it.

    ``end`` (exclusive) is only needed for a span of no standard kind.

    >>> human_label("quarter", date(2026, 1, 1))
    'January to March 2026'
    >>> human_label("financial-year", date(2025, 4, 1))
    '2025-26'
    >>> human_label("month", date(2026, 3, 1)), human_label("year", date(2026, 1, 1))
    ('March 2026', '2026')
    >>> human_label("quarter", date(2025, 11, 1))
    'November 2025 to January 2026'
    """
    if kind == "month":
        return f"{_MONTHS[start.month - 1]} {start.year}"
    if kind == "year":
        return str(start.year)
    if kind == "financial-year":
        return f"{start.year}-{(start.year + 1) % 100:02d}"
    if kind == "quarter":
        end = end or _months_later(start, 3)
    if end is None:
        raise ValueError(f"a period of kind {kind!r} needs its end")
    last = end - timedelta(days=1)
    if (last.year, last.month) == (start.year, start.month):
        return f"{_MONTHS[start.month - 1]} {start.year}"
    first = _MONTHS[start.month - 1] + ("" if start.year == last.year else f" {start.year}")
    return f"{first} to {_MONTHS[last.month - 1]} {last.year}"


def short_label(kind: str, start: date) -> str:
    """A chart axis label where space is short: ``Jan-Mar 2026``, ``Mar 2026``, ``2025-26``."""
    if kind == "month":
        return f"{_MONTHS[start.month - 1][:3]} {start.year}"
    if kind == "quarter":
        last = _months_later(start, 2)
        return f"{_MONTHS[start.month - 1][:3]}-{_MONTHS[last.month - 1][:3]} {last.year}"
    return human_label(kind, start)


def long_date(day: date) -> str:
    """``2 April 2026``: GOV.UK's date style, no leading zero, no ordinal."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _months_later(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)
