"""Backfilled or live: how much of a service's transactions were loaded from earlier records.

A backfill (``perf-sdk backfill``, ``perf_sdk.backfill``) marks every record it
sends with ``"origin": "backfill"`` (:data:`~perf_sdk._backfill_rows.ORIGIN_FIELD`);
a record the Tracker sends live has no ``origin``. A published page says how
much of its figures came the first way, because history loaded from a
spreadsheet is only as good as the spreadsheet, and a reader comparing
periods should know which ones it made.

The read is one request per service, through the same read API as the
figures: the ``transactions`` data set's monthly sums of ``count`` per stage,
filtered to the backfilled records (``filter_by=origin:backfill``). The live
part is the rest: the figures' own totals less the backfilled ones, so nothing
else is read. A platform that cannot answer the query (a ``4xx``) gives no
note rather than no page; one that cannot be reached fails the service as
its other reads would.

:func:`backfill_note` turns that into one sentence of the page's notes,
counted over the periods the page shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

import httpx

from perf_sdk._backfill_rows import BACKFILL_ORIGIN, ORIGIN_FIELD
from perf_sdk._errors import RejectedError
from perf_sdk._kpi import PeriodKpis, whole_number
from perf_sdk._kpi_sources import _fetch as fetch_groups
from perf_sdk._kpi_sources import _start_day as start_day
from perf_sdk._periods import human_label
from perf_sdk._protocol import STAGES

__all__ = ["Backfilled", "backfill_note", "read_backfilled"]

#: The query's parameters besides its bounds.
_QUERY: Final = (
    ("period", "month"),
    ("filter_by", f"{ORIGIN_FIELD}:{BACKFILL_ORIGIN}"),
    ("group_by", "stage"),
    ("collect", "count:sum"),
)
#: Runs of consecutive months named one by one; past this many, the span and the number of months.
_MAX_RUNS: Final = 3


@dataclass(frozen=True)
class Backfilled:
    """A service's backfilled transactions: ``{(month start, stage): count}``, months holding any only."""

    months: Mapping[tuple[date, str], int]


def read_backfilled(
    http: httpx.Client, base: str, slug: str, start: date, end: date, headers: Mapping[str, str]
) -> Backfilled | None:
    """The service's backfilled transactions per month and stage between ``start`` and ``end`` (month starts).

    ``None`` when the platform has no ``transactions`` data set for the
    service or will not answer the query (a ``4xx``): the page then has no
    note. A platform that cannot be reached raises, as the figures' reads do.
    """
    bounds = (("start_at", f"{start.isoformat()}T00:00:00Z"), ("end_at", f"{end.isoformat()}T00:00:00Z"))
    try:
        groups = fetch_groups(http, f"{base}/data/{slug}/transactions", (*_QUERY, *bounds), headers)
    except RejectedError:
        return None
    if groups is None:
        return None
    months: dict[tuple[date, str], int] = {}
    for group in groups:
        stage = group.get("stage")
        if stage not in STAGES:
            continue
        for value in group.get("values", [group]):
            total = whole_number(value.get("count:sum"))
            if total is not None and total > 0 and "_start_at" in value:
                key = (start_day(value), str(stage))
                months[key] = months.get(key, 0) + total
    return Backfilled(dict(sorted(months.items())))


def backfill_note(backfilled: Backfilled | None, periods: Sequence[PeriodKpis]) -> str | None:
    """The sentence for the page's notes, or ``None`` when none of its periods' transactions were backfilled.

    >>> from perf_sdk._kpi import compute_report, Counts
    >>> report = compute_report(Counts({
    ...     (date(2025, 4, 1), "completed", "digital"): 600, (date(2025, 5, 1), "completed", "digital"): 400,
    ...     (date(2025, 6, 1), "completed", "digital"): 234}), period="quarter")
    >>> backfill_note(Backfilled({(date(2025, 4, 1), "completed"): 600, (date(2025, 5, 1), "completed"): 400}),
    ...               report.periods)
    '1,000 of the 1,234 completed transactions in these figures were loaded from earlier records (backfilled) rather than sent live by the service. Backfilled months: April 2025 to May 2025.'
    """
    if backfilled is None or not periods:
        return None
    first, end = periods[0].start, periods[-1].end
    shown = {key: n for key, n in backfilled.months.items() if first <= key[0] < end}
    totals = {
        "started": sum(c.started for p in periods for c in p.channels),
        "completed": sum(c.completed for p in periods for c in p.channels),
    }
    parts = []
    for stage in ("completed", "started"):
        total = totals[stage]
        loaded = min(total, sum(n for (_, s), n in shown.items() if s == stage))
        if loaded:
            share = f"all {total:,}" if loaded == total else f"{loaded:,} of the {total:,}"
            parts.append(f"{share} {stage} transactions")
    if not parts:
        return None
    what = " and ".join(parts)
    months = sorted({month for month, _ in shown})
    return (
        f"{what[0].upper()}{what[1:]} in these figures were loaded from earlier records (backfilled) rather than "
        f"sent live by the service. Backfilled months: {_months_text(months)}."
    )


def _months_text(months: Sequence[date]) -> str:
    """``April 2023 to March 2025``; ``April 2023 to June 2023 and September 2023``; or the span and a count."""
    runs: list[list[date]] = []
    for month in months:
        if runs and _month_index(month) == _month_index(runs[-1][-1]) + 1:
            runs[-1].append(month)
        else:
            runs.append([month])
    if len(runs) > _MAX_RUNS:
        return f"{len(months)} months between {_name(months[0])} and {_name(months[-1])}"
    words = [_name(run[0]) if len(run) == 1 else f"{_name(run[0])} to {_name(run[-1])}" for run in runs]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _month_index(month: date) -> int:
    return month.year * 12 + month.month


def _name(month: date) -> str:
    return human_label("month", month)
