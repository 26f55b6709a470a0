"""The read API's calendar periods, in UTC, and the time units the store keeps.

Backdrop's periods (``backdrop/core/timeseries.py``): hour, day, week (starting
Monday), month, quarter (January, April, July, October) and year. Everything
here works on zone-aware UTC datetimes; the store keeps instants as integer
microseconds since the Unix epoch and its rollup as whole hours since it, so
conversions live here too, in one place.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Final

__all__ = [
    "EPOCH",
    "MAX_US",
    "MIN_US",
    "PERIODS",
    "US_PER_HOUR",
    "floor",
    "from_us",
    "is_boundary",
    "iso",
    "span",
    "step",
    "to_us",
]

UTC: Final = timezone.utc
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
PERIODS: Final = ("hour", "day", "week", "month", "quarter", "year")
US_PER_HOUR: Final = 3_600_000_000
_ONE_US: Final = timedelta(microseconds=1)
#: The instants a Python datetime can hold in UTC, as microseconds since the epoch.
MIN_US: Final = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // _ONE_US
MAX_US: Final = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH) // _ONE_US
_MONTHS: Final = {"month": 1, "quarter": 3, "year": 12}


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch of a zone-aware datetime (any zone, any year)."""
    return (dt - EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """The UTC datetime of ``us`` microseconds since the epoch."""
    return EPOCH + timedelta(microseconds=us)


def iso(us: int) -> str:
    """Backdrop's form of an instant: ``2026-01-01T00:00:00+00:00``."""
    return from_us(us).isoformat()


def floor(period: str, dt: datetime) -> datetime:
    """The start of the ``period`` that holds ``dt`` (``dt`` in UTC)."""
    dt = dt.astimezone(UTC)
    if period == "hour":
        return dt.replace(minute=0, second=0, microsecond=0)
    day = dt.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    if period == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    if period == "year":
        return day.replace(month=1, day=1)
    raise ValueError(f"unknown period {period!r}")


def is_boundary(period: str, dt: datetime) -> bool:
    """Whether ``dt`` is the first instant of a ``period``."""
    return floor(period, dt) == dt


def step(period: str, start: datetime, n: int = 1) -> datetime:
    """``start`` (a boundary) moved by ``n`` periods; ``OverflowError`` past year 1..9999."""
    if period == "hour":
        return start + timedelta(hours=n)
    if period == "day":
        return start + timedelta(days=n)
    if period == "week":
        return start + timedelta(weeks=n)
    months = start.year * 12 + start.month - 1 + n * _MONTHS[period]
    year, month = divmod(months, 12)
    if not 1 <= year <= 9999:
        raise OverflowError("date out of range")
    return start.replace(year=year, month=month + 1)


def span(period: str, start: datetime, end: datetime, limit: int) -> list[tuple[datetime, datetime]]:
    """Every ``period`` from ``start`` (a boundary) until ``end``, at most ``limit`` of them.

    Raises ``OverflowError`` when there would be more than ``limit`` periods or
    they run past the year 9999.
    """
    periods: list[tuple[datetime, datetime]] = []
    lo = start
    while lo < end:
        if len(periods) >= limit:
            raise OverflowError(f"more than {limit} periods")
        hi = step(period, lo)
        periods.append((lo, hi))
        lo = hi
    return periods
