"""What a reporting period is called when people read it.

Machine labels (``2026-Q1``, ``2026-03``, ``2025-26``) are good keys for files
and URLs, but UK government readers do not read ``2026-Q1``: they read
"January to March 2026", and a financial year as "2025-26" (GOV.UK style guide:
"financial year 2025 to 2026" in running text, "2025-26" in tables). Every page
the SDK publishes names periods through :func:`human_label`, so the wording is
decided once.

It is also the one module that says what a *label* means (:func:`parse_period_label`):
``2026-03`` a month, ``2026-Q1`` a quarter, ``2026`` a year, as ``Tracker.cost``,
backfill and the KPI file source all read them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Final, Literal, get_args

from perf_sdk._errors import ValidationError

__all__ = [
    "FINE_KINDS",
    "PERIOD_KINDS",
    "PERIOD_RULE",
    "Period",
    "PeriodKind",
    "PeriodLabel",
    "cost_period",
    "human_label",
    "long_date",
    "month_label",
    "month_start",
    "parse_cost_period_label",
    "parse_period_label",
    "period_containing",
    "periods_between",
    "short_label",
]

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
    if kind == "day":
        return f"{start.day} {_MONTHS[start.month - 1]} {start.year}"
    if kind == "week":  # "Week of 2 March 2026": weeks start on Monday, as backdrop's
        return f"Week of {start.day} {_MONTHS[start.month - 1]} {start.year}"
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


# --- labels: what 2026-03, 2026-Q1 and 2026 mean -----------------------------------------------------

PERIOD_RULE: Final = "must be a period label: 2026-03 (a month), 2026-Q1 (a quarter) or 2026 (a year)"
_LABEL_RE: Final = re.compile(r"^(\d{4})(?:-(0[1-9]|1[0-2])|-Q([1-4]))?$")


@dataclass(frozen=True)
class PeriodLabel:
    """A cost period: its granularity, its label and its first instant (UTC)."""

    granularity: Literal["month", "quarter", "year"]
    label: str
    start: datetime

    @property
    def end(self) -> datetime:
        """The first instant after the period."""
        months = {"month": 1, "quarter": 3, "year": 12}[self.granularity]
        y, m = divmod(self.start.month - 1 + months, 12)
        return self.start.replace(year=self.start.year + y, month=m + 1)


def parse_period_label(label: object, field: str = "period") -> PeriodLabel:
    """``2026-03`` → a month, ``2026-Q1`` → a quarter, ``2026`` → a year."""
    text = str(label).strip() if isinstance(label, (str, int)) and not isinstance(label, bool) else None
    m = _LABEL_RE.match(text or "")
    if m is None or not 1970 <= int(m.group(1)) <= 9999:
        raise ValidationError(field, label, PERIOD_RULE)
    year = int(m.group(1))
    if m.group(2):
        return PeriodLabel("month", f"{year}-{m.group(2)}", datetime(year, int(m.group(2)), 1, tzinfo=timezone.utc))
    if m.group(3):
        q = int(m.group(3))
        return PeriodLabel("quarter", f"{year}-Q{q}", datetime(year, 3 * q - 2, 1, tzinfo=timezone.utc))
    return PeriodLabel("year", str(year), datetime(year, 1, 1, tzinfo=timezone.utc))


def month_label(moment: datetime) -> str:
    """The label of the month (UTC) that holds ``moment``: ``2026-03``."""
    moment = moment.astimezone(timezone.utc)
    return f"{moment.year}-{moment.month:02d}"


# --- reporting periods: which day falls in which month, quarter, year or financial year -----------

PeriodKind = Literal["day", "week", "month", "quarter", "year", "financial-year"]
PERIOD_KINDS: Final[tuple[str, ...]] = get_args(PeriodKind)
#: Period kinds that need daily buckets.
FINE_KINDS: Final = frozenset({"day", "week"})
_COST_PERIODS: Final = ("month", "quarter", "year")


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def month_start(d: date) -> date:
    """The first day of ``d``'s month."""
    return date(d.year, d.month, 1)


@dataclass(frozen=True, order=True)
class Period:
    """A reporting period: ``start`` inclusive, ``end`` exclusive (as backdrop's ``_end_at``).

    Months, quarters and years are whole UTC calendar months or unions of them
    (monthly buckets suffice); days and weeks (Monday to Sunday, as backdrop's
    ``week``) need daily buckets (:attr:`Counts.bucket`).
    """

    start: date
    end: date
    kind: PeriodKind
    label: str

    def previous(self) -> Period:
        """The period just before, of the same kind (for the change between them)."""
        return period_containing(self.start - timedelta(days=1), self.kind)

    def next(self) -> Period:
        return period_containing(self.end, self.kind)

    def covers(self, start: date, end: date) -> bool:
        """Whether the span ``start`` .. ``end`` (exclusive) lies entirely inside this period."""
        return self.start <= start and end <= self.end


def period_containing(day: date, kind: str) -> Period:
    """The period of ``kind`` that holds ``day``; financial years start on 1 April (``2025-26``)."""
    if isinstance(day, datetime):
        day = day.astimezone(timezone.utc).date() if day.tzinfo else day.date()
    if kind == "day":
        return Period(day, day + timedelta(days=1), "day", day.isoformat())
    if kind == "week":
        start = day - timedelta(days=day.weekday())
        iso = start.isocalendar()
        return Period(start, start + timedelta(days=7), "week", f"{iso[0]}-W{iso[1]:02d}")
    if kind == "month":
        start = month_start(day)
        return Period(start, _add_months(start, 1), "month", f"{start:%Y-%m}")
    if kind == "quarter":
        q = (day.month - 1) // 3
        start = date(day.year, q * 3 + 1, 1)
        return Period(start, _add_months(start, 3), "quarter", f"{day.year}-Q{q + 1}")
    if kind == "year":
        start = date(day.year, 1, 1)
        return Period(start, date(day.year + 1, 1, 1), "year", str(day.year))
    if kind == "financial-year":
        first = day.year if day.month >= 4 else day.year - 1
        return Period(date(first, 4, 1), date(first + 1, 4, 1), "financial-year", f"{first}-{(first + 1) % 100:02d}")
    raise ValidationError("period", kind, f"one of {', '.join(PERIOD_KINDS)}")


def periods_between(first: date, last: date, kind: str) -> list[Period]:
    """Every period of ``kind`` that touches ``first`` .. ``last`` (both inclusive), whole."""
    if last < first:
        raise ValidationError("end", last, f"on or after the start ({first.isoformat()})")
    out = [period_containing(first, kind)]
    while out[-1].end <= last:
        out.append(out[-1].next())
    return out


def cost_period(granularity: str, day: date) -> tuple[date, date]:
    """The span ``(start, end)`` of a cost record, snapped to its granularity's boundaries.

    A cost record's ``_timestamp`` is the start of its period; snapping means a
    timestamp a few hours off (written in local time) still names the period
    it was meant for, the same way whichever source read it.
    """
    if granularity not in _COST_PERIODS:
        raise ValidationError("period", granularity, f"one of {', '.join(_COST_PERIODS)}")
    p = period_containing(day, granularity)
    return p.start, p.end


def parse_cost_period_label(label: str) -> tuple[str, date]:
    """``2026-03`` / ``2026-Q1`` / ``2026`` -> ``(granularity, start)``, the labels costs are named by.

    The same parser as ``Tracker.cost`` and backfill use (one rule for what a
    label is), read case-insensitively (``2026-q1``) as files are written.
    """
    parsed = parse_period_label(label.strip().upper() if isinstance(label, str) else label)
    return parsed.granularity, parsed.start.date()
