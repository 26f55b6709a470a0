"""The four mandatory KPIs, computed from counts.

Pure functions only: every source (the platform's read API, records in memory,
a local file) first reduces its data to a :class:`Counts`, and everything here
is arithmetic over it. That keeps the KPI definitions in one place, testable by
hand, and identical whichever source the numbers came from.

Definitions (GOV.UK Service Manual, ``shared/spec/PLATFORM.md``):

* completion rate = digital completed / digital started, same period;
* user satisfaction = answers rated 4 or 5 / all answers (and the retired
  platform's weighted score: 5 -> 100%, 4 -> 75% ... 1 -> 0%, averaged);
* cost per transaction = cost of the period, all channels, in pence / completed
  transactions, all channels;
* digital take-up = digital completed / completed in all channels.

A KPI without a denominator (or, for cost per transaction, a period without a
cost record) is *unknown*: its value is ``None``, never 0 or 100%.

Honest figures: a KPI that cannot be right (more completions than starts in a
period, a share above 100%) is *flagged*: its value is ``None`` and
:attr:`Kpi.flag` says why, so no output ever shows a plain 160%. The current,
unfinished period is *partial* (:attr:`PeriodKpis.partial`) and is not the
report's :attr:`KpiReport.headline` while a complete period exists.

One odd record never stops the KPIs: the platform keeps whatever a client
sent (as backdrop does), so :class:`CountsBuilder` skips a record whose value
is outside the vocabulary (a stage ``in-progress``, a rating of 7, a count of
-500 or 2.5, a cost period ``fortnight``), counts it in :attr:`Counts.skipped`
and never computes with it; the report says how many and why
(:attr:`KpiReport.data_notes`). A channel outside the vocabulary is counted
under ``other``, so the channels always add up to all completions.

With a performance definition (``perf-sdk.toml``, :mod:`perf_sdk._definition`)
each period also carries its targets' verdicts (met / missed / unknown) and the
service's other KPIs, computed from the measures in :attr:`Counts.measures`.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final, Literal

from perf_sdk import _csv
from perf_sdk._definition import Definition, OtherKpi, Target
from perf_sdk._errors import ValidationError
from perf_sdk._periods import (
    FINE_KINDS,
    PERIOD_KINDS,
    Period,
    PeriodKind,
    cost_period,
    month_start,
    parse_cost_period_label,
    period_containing,
    periods_between,
)
from perf_sdk._protocol import CHANNELS, COST_PERIODS, STAGES

if TYPE_CHECKING:
    from perf_sdk._around import AroundReport

__all__ = [
    "KPI_KEYS",
    "KPI_NAMES",
    "MAX_COUNT",
    "MAX_PENCE",
    "PERIOD_KINDS",
    "SKIP_REASONS",
    "ChannelKpis",
    "Counts",
    "CountsBuilder",
    "Kpi",
    "KpiReport",
    "Mark",
    "OtherKpiValue",
    "Period",
    "PeriodKind",
    "PeriodKpis",
    "TargetResult",
    "compute_report",
    "cost_period",
    "data_notes",
    "format_change",
    "format_fraction",
    "format_kpi",
    "format_pence",
    "format_value",
    "parse_cost_period_label",
    "period_containing",
    "periods_between",
    "whole_number",
]


#: The four mandatory KPIs, in the order the Service Manual lists them.
KPI_KEYS: Final = ("completion_rate", "user_satisfaction", "cost_per_transaction", "digital_take_up")
#: Their names as people read them (the CLI, the demo and the dashboard print these).
KPI_NAMES: Final[Mapping[str, str]] = {
    "completion_rate": "Completion rate",
    "user_satisfaction": "User satisfaction",
    "cost_per_transaction": "Cost per transaction",
    "digital_take_up": "Digital take-up",
    "satisfaction_score": "Satisfaction score",
}
#: Every KPI a period carries a change for: the four, plus the weighted score.
_TRENDED: Final = (*KPI_KEYS, "satisfaction_score")
RATINGS: Final = (1, 2, 3, 4, 5)

# ---------------------------------------------------------------------------
# Counts: the normalised input
# ---------------------------------------------------------------------------

TransactionKey = tuple[date, str, str]  # (month start, stage, channel)
SatisfactionKey = tuple[date, int, str]  # (month start, rating, channel)
CostKey = tuple[str, date, str, str]  # (granularity, cost period start, channel, cost_type)
MeasureKey = tuple[date, str]  # (bucket start, measure id)
Bucket = Literal["day", "month"]
#: A default meaning "no value given" (``None`` is a value a record can hold).
_NO_VALUE: Final = object()


@dataclass(frozen=True)
class Counts:
    """Everything the KPIs need, summed; buckets are one UTC month, or one UTC day.

    ``transactions``: (bucket start, stage, channel) -> count.
    ``satisfaction``: (bucket start, rating, channel) -> count of answers.
    ``costs``: (granularity, cost period start, channel, cost_type) -> pence.
    A key present in ``costs`` means cost records exist, even at 0 pence: that
    makes the cost per transaction known (possibly 0), where no key leaves it unknown.
    ``measures``: (bucket start, measure id) -> (sum of the measure's field,
    number of records carrying it), for the other KPIs of a definition.
    ``bucket``: ``month`` (enough for months and longer) or ``day`` (days and weeks too).
    ``skipped``: records left out because a value is outside the vocabulary,
    by ``"<data type>.<field>"`` (``"transactions.stage"``), see :data:`SKIP_REASONS`;
    ``relabelled``: records counted under channel ``other`` because theirs is
    not one of :data:`~perf_sdk._protocol.CHANNELS`; ``examples``: a few of
    the values behind each, for the note that says so (:meth:`data_notes`).
    """

    transactions: Mapping[TransactionKey, int] = field(default_factory=dict)
    satisfaction: Mapping[SatisfactionKey, int] = field(default_factory=dict)
    costs: Mapping[CostKey, int] = field(default_factory=dict)
    measures: Mapping[MeasureKey, tuple[float, int]] = field(default_factory=dict)
    bucket: Bucket = "month"
    skipped: Mapping[str, int] = field(default_factory=dict)
    relabelled: Mapping[str, int] = field(default_factory=dict)
    examples: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def data_dates(self) -> list[date]:
        """The buckets holding any data, to frame a report when no range is given."""
        days = {k[0] for k, v in self.transactions.items() if v}
        days.update(k[0] for k, v in self.satisfaction.items() if v)
        days.update(k[1] for k in self.costs)
        return sorted(days)

    def data_notes(self) -> list[str]:
        """What was skipped or relabelled, and why, in words (empty when every record was used)."""
        return data_notes(self.skipped, self.relabelled, self.examples)


#: The largest ``count`` one record may carry: the SDK's own rule (``_records.py``) and backfill's.
MAX_COUNT: Final = 1_000_000_000
#: The largest ``amount_pence`` one cost record may carry (``_records.py``).
MAX_PENCE: Final = 10**14
#: Why a record is skipped, by the field at fault (the second part of a ``skipped`` key).
SKIP_REASONS: Final[Mapping[str, str]] = {
    "stage": "its stage is not started or completed",
    "channel": "it has no channel",
    "rating": "its rating is not a whole number from 1 to 5",
    "count": f"its count is not a whole number from 1 to {MAX_COUNT:,}",
    "period": "its period is not month, quarter or year (nor a label such as 2026-Q1)",
    "amount_pence": f"its amount_pence is not a whole number of pence from 0 to {MAX_PENCE:,}",
    "_timestamp": "it has no valid _timestamp",
    "type": "it has none of stage, rating or amount_pence, so it is no transactions, satisfaction or costs record",
}
_EXAMPLES_KEPT: Final = 3
_COUNT_TEXT_RE: Final = re.compile(r"-?(?:\d+|\d{1,3}(?:,\d{3})+)")
#: The longest text read as a count: 1,000,000,000,000,000,000,000 with its commas, and then some.
_MAX_COUNT_TEXT: Final = 40


def whole_number(value: object) -> int | None:
    """``value`` as a whole number, or ``None``: an int, a float without a fraction, or text of digits.

    Text counts as a number because files are text (a CSV's ``3``, a
    spreadsheet's ``1,234``), and the platform keeps what a client sent.
    Booleans, fractions, non-finite floats and other text are not numbers here.

    >>> whole_number(3), whole_number(2.0), whole_number(" 1,234 "), whole_number("-5")
    (3, 2, 1234, -5)
    >>> whole_number(2.5), whole_number(True), whole_number("3 apples"), whole_number(None), whole_number("1" * 5000)
    (None, None, None, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_COUNT_TEXT:  # no count is this long; int() of 4,300 digits or more raises
            return None
        if text.isascii() and text.isdigit():  # the common case, a CSV's count
            return int(text)
        return int(text.replace(",", "")) if _COUNT_TEXT_RE.fullmatch(text) else None
    return None


def _shown(value: object) -> str:
    """A value for a note: its repr, cut short (a hostile record's text stays small)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def data_notes(
    skipped: Mapping[str, int],
    relabelled: Mapping[str, int] | None = None,
    examples: Mapping[str, tuple[str, ...]] | None = None,
) -> list[str]:
    """One line per reason: ``2 transactions records skipped: its stage is not started or completed (e.g. 'x')``.

    >>> data_notes({"satisfaction.rating": 1}, {}, {"satisfaction.rating": ("7",)})
    ['1 satisfaction record skipped: its rating is not a whole number from 1 to 5 (e.g. 7)']
    """
    relabelled = relabelled or {}
    examples = examples or {}
    lines = []
    for key, n in sorted(skipped.items()):
        data_type, _, fault = key.partition(".")
        why = SKIP_REASONS.get(fault, f"its {fault} is not valid")
        seen = examples.get(key, ())
        eg = f" (e.g. {', '.join(seen)})" if seen else ""
        lines.append(f"{n:,} {data_type} record{'' if n == 1 else 's'} skipped: {why}{eg}")
    for key, n in sorted(relabelled.items()):
        data_type = key.partition(".")[0]
        seen = examples.get(f"relabelled:{key}", ())
        eg = f" (e.g. {', '.join(seen)})" if seen else ""
        lines.append(
            f"{n:,} {data_type} record{'' if n == 1 else 's'} counted under channel 'other': "
            f"{'its' if n == 1 else 'their'} channel is not one of {', '.join(CHANNELS)}{eg}"
        )
    return lines


class CountsBuilder:
    """Accumulates records into a :class:`Counts`; sources feed it one record or one sum at a time.

    A value outside the vocabulary (a stage other than started or completed, a
    rating of 7, a negative, fractional or non-numeric count, a cost period of
    ``fortnight``) never stops the KPIs: the record is skipped and counted in
    :attr:`Counts.skipped`, never computed with. A channel outside the
    vocabulary is counted under ``other`` (and in :attr:`Counts.relabelled`), so
    that the channels always add up to all completions.

    ``records`` is how many records a value stands for: 1 for one record, the
    number of records summed for a sum the read API computed. One record's
    count must be 1 to :data:`MAX_COUNT`; a sum, any whole number from 0 (the
    read API leaves out records whose count is missing).
    """

    def __init__(self, bucket: Bucket = "month") -> None:
        if bucket not in ("day", "month"):
            raise ValidationError("bucket", bucket, "day or month")
        self.bucket: Bucket = bucket
        self._transactions: defaultdict[TransactionKey, int] = defaultdict(int)
        self._satisfaction: defaultdict[SatisfactionKey, int] = defaultdict(int)
        self._costs: defaultdict[CostKey, int] = defaultdict(int)
        self._measures: defaultdict[MeasureKey, list[float]] = defaultdict(lambda: [0.0, 0])
        self._skipped: defaultdict[str, int] = defaultdict(int)
        self._relabelled: defaultdict[str, int] = defaultdict(int)
        self._examples: dict[str, list[str]] = {}

    def _bucket(self, at: date) -> date:
        day = _utc_date(at)
        return day if self.bucket == "day" else month_start(day)

    def _example(self, key: str, value: object) -> None:
        if value is _NO_VALUE:
            return
        kept = self._examples.setdefault(key, [])
        shown = _shown(value)
        if len(kept) < _EXAMPLES_KEPT and shown not in kept:
            kept.append(shown)

    def skip(self, reason: str, records: int = 1, value: object = _NO_VALUE) -> None:
        """Leave ``records`` records out, counted under ``reason`` (``"transactions.stage"``), ``value`` shown."""
        if records > 0:
            self._skipped[reason] += records
            self._example(reason, value)

    def _channel(self, data_type: str, channel: object, records: int) -> str | None:
        if isinstance(channel, str) and channel in CHANNELS:
            return channel
        if channel is None or channel == "":
            self.skip(f"{data_type}.channel", records)
            return None
        if records > 0:
            self._relabelled[f"{data_type}.channel"] += records
            self._example(f"relabelled:{data_type}.channel", channel)
        return "other"

    def _amount(self, key: str, value: object, records: int, top: int, *, low: int = 1, each: bool) -> int | None:
        """A count (or pence) for ``records`` records, or ``None`` with the records skipped.

        ``each``: ``value`` is every one of the records' own value (the read API
        grouped by it), so it is checked as one record's and multiplied.
        """
        number = whole_number(value)
        single = records == 1 or each
        # A sum of ``records`` records is at most ``top`` each: a 400-digit sum overflowed the statistics.
        ok = number is not None and (low <= number <= top if single else 0 <= number <= top * records)
        if not ok or number is None:
            self.skip(key, max(records, 1), value)
            return None
        return number * records if each else number

    def add_transactions(
        self, at: date, stage: object, channel: object, count: object, *, records: int = 1, each: bool = False
    ) -> None:
        """``count`` events of ``stage`` in ``channel`` (``records`` records: 1, or a read API sum's).

        ``each=True``: ``count`` is each of the ``records`` records' count, not their sum.
        """
        if stage not in STAGES:
            self.skip("transactions.stage", max(records, 1), stage)
            return
        n = self._amount("transactions.count", count, records, MAX_COUNT, each=each)
        ch = None if n is None else self._channel("transactions", channel, records)
        if ch is not None and n:
            self._transactions[(self._bucket(at), str(stage), ch)] += n

    def add_satisfaction(
        self, at: date, rating: object, channel: object, count: object, *, records: int = 1, each: bool = False
    ) -> None:
        """``count`` answers of ``rating`` (1..5) in ``channel``; ``records`` and ``each`` as for transactions."""
        r = whole_number(rating)
        if r not in RATINGS:
            self.skip("satisfaction.rating", max(records, 1), rating)
            return
        n = self._amount("satisfaction.count", count, records, MAX_COUNT, each=each)
        ch = None if n is None else self._channel("satisfaction", channel, records)
        if ch is not None and n and r is not None:
            self._satisfaction[(self._bucket(at), r, ch)] += n

    def add_cost(
        self,
        granularity: object,
        at: date,
        channel: object,
        cost_type: object,
        amount_pence: object,
        *,
        records: int = 1,
        each: bool = False,
    ) -> None:
        """A cost of ``amount_pence`` for the ``granularity`` (month, quarter, year) period holding ``at``."""
        if granularity not in COST_PERIODS:
            self.skip("costs.period", max(records, 1), granularity)
            return
        pence = self._amount("costs.amount_pence", amount_pence, records, MAX_PENCE, low=0, each=each)
        if pence is None:
            return
        start, _ = cost_period(str(granularity), _utc_date(at))
        where = str(channel) if channel not in (None, "") else "all"
        kind = str(cost_type) if cost_type not in (None, "") else "other"
        self._costs[(str(granularity), start, where, kind)] += pence

    def add_measure(self, at: date, measure_id: str, total: float, records: int) -> None:
        """``records`` records carrying a measure's field, summing to ``total``, in the bucket of ``at``."""
        if records:
            cell = self._measures[(self._bucket(at), measure_id)]
            cell[0] += total
            cell[1] += records

    def build(self) -> Counts:
        measures = {k: (float(v[0]), int(v[1])) for k, v in self._measures.items()}
        return Counts(
            dict(self._transactions),
            dict(self._satisfaction),
            dict(self._costs),
            measures,
            self.bucket,
            dict(self._skipped),
            dict(self._relabelled),
            {k: tuple(v) for k, v in self._examples.items()},
        )


def _utc_date(at: date) -> date:
    if isinstance(at, datetime):
        return at.astimezone(timezone.utc).date() if at.tzinfo else at.date()
    return at


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Kpi:
    """One KPI: ``value`` = ``numerator / denominator``, or ``None`` when unknown.

    Ratios (completion rate, satisfaction, take-up) are fractions 0..1;
    cost per transaction is in pence. ``flag`` says why a figure that cannot
    be right (a share above 100%) is withheld: ``value`` is then ``None``.
    """

    value: float | None
    numerator: float
    denominator: float
    flag: str | None = None

    @property
    def known(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "numerator": self.numerator, "denominator": self.denominator}
        if self.flag is not None:
            out["flag"] = self.flag
        return out


def _ratio(numerator: float, denominator: float) -> Kpi:
    return Kpi(numerator / denominator if denominator else None, numerator, denominator)


def _share(numerator: float, denominator: float, what: str, of: str, *, flag_empty: bool = True) -> Kpi:
    """A ratio that is a share (at most 100%); above that it is flagged, never published.

    ``flag_empty=False`` leaves a share with no denominator merely unknown: a
    channel that records completions only (phone, paper) has no completion rate,
    and nothing is wrong with it.
    """
    kpi = _ratio(numerator, denominator)
    if numerator > denominator and (denominator or flag_empty):
        share = f" ({kpi.value * 100:.0f}%)" if kpi.value is not None else ""
        base = f"only {_count(denominator)} {of}" if denominator else f"no {of}"
        return Kpi(
            None,
            numerator,
            denominator,
            f"cannot be right: {_count(numerator)} {what} but {base}{share}; "
            "records are missing or dated in another period",
        )
    return kpi


@dataclass(frozen=True)
class Mark:
    """A change marker (``tracker.mark``, ``perf-sdk mark``): what changed, and when."""

    label: str
    at: datetime
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "at": self.at.isoformat(timespec="seconds"), "description": self.description}


@dataclass(frozen=True)
class TargetResult:
    """A target (from the definition) against a period's value: ``met``, ``missed`` or ``unknown``."""

    key: str
    target: Target
    value: float | None
    status: str
    unit: str = "percent"

    def describe(self) -> str:
        """The bound in words: ``at least 80.0%``, ``at most £25.00``."""
        parts = []
        if self.target.min is not None:
            parts.append(f"at least {_format_unit(self.unit, self.target.min)}")
        if self.target.max is not None:
            parts.append(f"at most {_format_unit(self.unit, self.target.max)}")
        return " and ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "min": self.target.min,
            "max": self.target.max,
            "period": self.target.period,
            "text": self.describe(),
        }


@dataclass(frozen=True)
class OtherKpiValue:
    """One of the definition's other KPIs in one period."""

    definition: OtherKpi
    kpi: Kpi
    target: TargetResult | None = None

    @property
    def key(self) -> str:
        return self.definition.key

    @property
    def unit(self) -> str:
        return self.definition.display_unit

    def formatted(self) -> str:
        if self.kpi.flag:
            return f"not shown ({self.kpi.flag})"
        return "unknown" if self.kpi.value is None else _format_unit(self.unit, self.kpi.value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.definition.name,
            "unit": self.unit,
            **self.kpi.to_dict(),
            "target": None if self.target is None else self.target.to_dict(),
        }


@dataclass(frozen=True)
class ChannelKpis:
    """One channel's part of a period: volumes, its own rates, and its share of completions."""

    channel: str
    started: int
    completed: int
    completion_rate: Kpi
    user_satisfaction: Kpi
    #: This channel's completions / all completions (the channel mix).
    share: Kpi

    def to_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "completed": self.completed,
            "completion_rate": self.completion_rate.to_dict(),
            "user_satisfaction": self.user_satisfaction.to_dict(),
            "share": self.share.to_dict(),
        }


@dataclass(frozen=True)
class PeriodKpis:
    """The KPIs of one period, their breakdowns, and the previous period's values."""

    period: PeriodKind
    start: date
    #: Exclusive, like backdrop's ``_end_at``.
    end: date
    label: str
    completion_rate: Kpi
    user_satisfaction: Kpi
    #: The retired platform's weighted score (5 -> 1.0, 4 -> 0.75 ... 1 -> 0.0), averaged.
    satisfaction_score: Kpi
    cost_per_transaction: Kpi
    digital_take_up: Kpi
    #: Answers per rating, 1..5, all channels.
    ratings: Mapping[int, int]
    channels: tuple[ChannelKpis, ...]
    #: Pence per cost type, from the cost records that lie inside this period.
    costs_by_type: Mapping[str, int]
    #: The previous period's value of each KPI key (``None`` where unknown there).
    previous: Mapping[str, float | None]
    #: The period has not ended yet (its figures will still grow).
    partial: bool = False
    #: The definition's targets that apply to this period, by KPI key.
    targets: Mapping[str, TargetResult] = field(default_factory=dict)
    #: The definition's other KPIs, in its order.
    other: tuple[OtherKpiValue, ...] = ()

    def kpi(self, key: str) -> Kpi:
        if key not in _TRENDED:
            raise KeyError(key)
        value: Kpi = getattr(self, key)
        return value

    @property
    def flags(self) -> dict[str, str]:
        """KPI key -> why its figure is withheld, for every flagged KPI of the period."""
        out = {key: self.kpi(key).flag for key in _TRENDED if self.kpi(key).flag}
        # the digital channel's rate is the headline completion rate: said once
        out.update(
            {
                f"{c.channel}.completion_rate": c.completion_rate.flag
                for c in self.channels
                if c.completion_rate.flag and c.channel != "digital"
            }
        )
        out.update({o.key: o.kpi.flag for o in self.other if o.kpi.flag})
        return {k: v for k, v in out.items() if v}

    def change(self, key: str) -> float | None:
        """This period's value minus the previous one's; ``None`` if either is unknown."""
        now, before = self.kpi(key).value, self.previous.get(key)
        return None if now is None or before is None else now - before

    @property
    def has_data(self) -> bool:
        return bool(
            self.completion_rate.denominator
            or self.digital_take_up.denominator
            or self.user_satisfaction.denominator
            or self.costs_by_type
            or any(c.started or c.completed for c in self.channels)
        )

    def to_dict(self) -> dict[str, Any]:
        """The period as ``perf-sdk kpis --format json`` prints it: API.md's keys first, extras after."""
        return {
            "period": self.period,
            "start": self.start.isoformat(),
            **{key: self.kpi(key).to_dict() for key in KPI_KEYS},
            "end": self.end.isoformat(),
            "label": self.label,
            "satisfaction_score": self.satisfaction_score.to_dict(),
            "change": {key: self.change(key) for key in _TRENDED},
            "ratings": {str(r): self.ratings.get(r, 0) for r in RATINGS},
            "channels": {c.channel: c.to_dict() for c in self.channels},
            "costs_by_type": dict(self.costs_by_type),
            "partial": self.partial,
            "flags": self.flags,
            "targets": {key: t.to_dict() for key, t in self.targets.items()},
            "other_kpis": {o.key: o.to_dict() for o in self.other},
        }


_CSV_FIELDS: Final = (
    "period",
    "label",
    "start",
    "end",
    *(f"{key}_{part}" for key in _TRENDED for part in ("value", "numerator", "denominator", "change")),
    "partial",
    "marks",
    *(f"{key}_flag" for key in _TRENDED),
    *(f"{key}_target" for key in KPI_KEYS),
)
_OTHER_CSV_PARTS: Final = ("value", "numerator", "denominator", "flag", "target")


@dataclass(frozen=True)
class KpiReport:
    """The KPIs of consecutive periods, ready to print, export or chart."""

    periods: tuple[PeriodKpis, ...]
    kind: PeriodKind
    service: str | None
    published_at: datetime
    #: The range asked for (``None`` when it came from the data), both inclusive.
    requested_start: date | None = None
    requested_end: date | None = None
    #: The performance definition the report was computed with (targets, other KPIs, title).
    definition: Definition | None = None
    #: Change markers in the report's range, oldest first (for charts and ``--around``).
    marks: tuple[Mark, ...] = ()
    #: Each mark's before/after comparison (``kpis(..., with_marks=True)``), for the dashboard.
    changes: tuple[AroundReport, ...] = ()
    #: Records left out (a value outside the vocabulary), by ``"<data type>.<field>"``: see :attr:`Counts.skipped`.
    skipped: Mapping[str, int] = field(default_factory=dict)
    #: Records counted under channel ``other`` (their channel is outside the vocabulary), by data type.
    relabelled: Mapping[str, int] = field(default_factory=dict)
    #: Both in words, one line per reason, for every output to show beside the figures.
    data_notes: tuple[str, ...] = ()

    def marks_in(self, period: PeriodKpis) -> tuple[Mark, ...]:
        """The marks whose UTC date falls inside ``period``."""
        return tuple(m for m in self.marks if period.start <= _utc_date(m.at) < period.end)

    @property
    def start(self) -> date | None:
        """First day covered by the report's periods."""
        return self.periods[0].start if self.periods else None

    @property
    def end(self) -> date | None:
        """Last day covered (inclusive)."""
        return self.periods[-1].end - timedelta(days=1) if self.periods else None

    @property
    def latest(self) -> PeriodKpis | None:
        return self.periods[-1] if self.periods else None

    @property
    def headline(self) -> PeriodKpis | None:
        """The period to show "at a glance": the latest *complete* one, if any (else the latest).

        The current period's figures are still growing (a month two days old
        has two days of completions against its costs), so it is shown in the
        table, marked partial, but never leads.
        """
        complete = [p for p in self.periods if not p.partial]
        return complete[-1] if complete else self.latest

    @property
    def title(self) -> str | None:
        return self.definition.title if self.definition else None

    @property
    def organisation(self) -> str | None:
        return self.definition.organisation if self.definition else None

    def __iter__(self) -> Iterator[PeriodKpis]:
        return iter(self.periods)

    def __len__(self) -> int:
        return len(self.periods)

    def to_list(self) -> list[dict[str, Any]]:
        return [{**p.to_dict(), "marks": [m.to_dict() for m in self.marks_in(p)]} for p in self.periods]

    def to_json(self, *, indent: int | None = 2) -> str:
        """API.md's shape: a JSON list, one object per period."""
        return json.dumps(self.to_list(), indent=indent)

    def to_csv(self) -> str:
        """One row a period; each KPI as value, numerator, denominator and change columns."""
        out = io.StringIO()
        others = [k.key for k in self.definition.kpis] if self.definition else []
        fields = [*_CSV_FIELDS, *(f"{key}_{part}" for key in others for part in _OTHER_CSV_PARTS)]
        writer = _csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for p in self.periods:
            row: dict[str, Any] = {
                "period": p.period,
                "label": p.label,
                "start": p.start.isoformat(),
                "end": p.end.isoformat(),
            }
            for key in _TRENDED:
                kpi = p.kpi(key)
                row[f"{key}_value"] = "" if kpi.value is None else repr(kpi.value)
                row[f"{key}_numerator"] = kpi.numerator
                row[f"{key}_denominator"] = kpi.denominator
                change = p.change(key)
                row[f"{key}_change"] = "" if change is None else repr(change)
                row[f"{key}_flag"] = kpi.flag or ""
            row["partial"] = "true" if p.partial else "false"
            row["marks"] = "; ".join(m.label for m in self.marks_in(p))
            for key in KPI_KEYS:
                target = p.targets.get(key)
                row[f"{key}_target"] = target.status if target else ""
            for o in p.other:
                row[f"{o.key}_value"] = "" if o.kpi.value is None else repr(o.kpi.value)
                row[f"{o.key}_numerator"] = o.kpi.numerator
                row[f"{o.key}_denominator"] = o.kpi.denominator
                row[f"{o.key}_flag"] = o.kpi.flag or ""
                row[f"{o.key}_target"] = o.target.status if o.target else ""
            writer.writerow(row)
        return out.getvalue()


# ---------------------------------------------------------------------------
# The arithmetic
# ---------------------------------------------------------------------------


@dataclass
class _Tally:
    started: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    completed: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    ratings: defaultdict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    costs: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    has_costs: bool = False
    #: measure id -> [sum, records]
    measures: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0.0, 0.0]))


def _tally(counts: Counts, kind: str) -> dict[date, _Tally]:
    """Roll monthly buckets (and cost periods) up into periods of ``kind``, keyed by period start."""
    if kind in FINE_KINDS and counts.bucket != "day":
        raise ValidationError("period", kind, "days and weeks need daily counts (CountsBuilder(bucket='day'))")
    tallies: defaultdict[date, _Tally] = defaultdict(_Tally)
    for (day, measure_id), (total, records) in counts.measures.items():
        cell = tallies[period_containing(day, kind).start].measures[measure_id]
        cell[0] += total
        cell[1] += records
    # Counts made by hand may hold other channels: counted under "other" here too, so channels add up.
    for (day, stage, channel), n in counts.transactions.items():
        t = tallies[period_containing(day, kind).start]
        (t.started if stage == "started" else t.completed)[channel if channel in CHANNELS else "other"] += n
    for (day, rating, channel), n in counts.satisfaction.items():
        tallies[period_containing(day, kind).start].ratings[(rating, channel if channel in CHANNELS else "other")] += n
    for (granularity, day, _channel, cost_type), pence in counts.costs.items():
        cost_start, cost_end = cost_period(granularity, day)
        p = period_containing(cost_start, kind)
        if p.covers(cost_start, cost_end):  # a cost counts only where it lies entirely inside
            t = tallies[p.start]
            t.costs[cost_type] += pence
            t.has_costs = True
    return tallies


def _channel_order(t: _Tally) -> list[str]:
    seen = set(t.started) | set(t.completed) | {ch for _, ch in t.ratings}
    return [c for c in CHANNELS if c in seen]


def _period_kpis(
    p: Period,
    t: _Tally,
    previous: Mapping[str, float | None],
    definition: Definition | None = None,
    today: date | None = None,
) -> PeriodKpis:
    completed_all = sum(t.completed.values())
    answers = sum(t.ratings.values())
    ratings = {r: sum(n for (rating, _), n in t.ratings.items() if rating == r) for r in RATINGS}
    satisfied = ratings[4] + ratings[5]
    weighted = sum(n * (r - 1) / 4 for r, n in ratings.items())
    cost_total = sum(t.costs.values())
    channels = []
    for ch in _channel_order(t):
        ch_answers = sum(n for (_, c), n in t.ratings.items() if c == ch)
        ch_satisfied = sum(n for (r, c), n in t.ratings.items() if c == ch and r >= 4)
        channels.append(
            ChannelKpis(
                channel=ch,
                started=t.started[ch],
                completed=t.completed[ch],
                completion_rate=_share(t.completed[ch], t.started[ch], "completions", "starts", flag_empty=False),
                user_satisfaction=_ratio(ch_satisfied, ch_answers),
                share=_ratio(t.completed[ch], completed_all),
            )
        )
    cost = _ratio(cost_total, completed_all)
    if not t.has_costs:
        cost = Kpi(None, cost_total, completed_all)
    values = {
        "completion_rate": _share(
            t.completed["digital"], t.started["digital"], "digital completions", "digital starts"
        ),
        "user_satisfaction": _share(satisfied, answers, "satisfied answers", "answers"),
        "satisfaction_score": _ratio(weighted, answers),
        "cost_per_transaction": cost,
        "digital_take_up": _share(t.completed["digital"], completed_all, "digital completions", "completions"),
    }
    return PeriodKpis(
        period=p.kind,
        start=p.start,
        end=p.end,
        label=p.label,
        **values,
        ratings=ratings,
        channels=tuple(channels),
        costs_by_type=dict(sorted(t.costs.items())),
        previous=previous,
        partial=today is not None and p.end > today,
        targets=_targets(definition, p.kind, values),
        other=_others(definition, p.kind, t),
    )


def _targets(definition: Definition | None, kind: str, values: Mapping[str, Kpi]) -> dict[str, TargetResult]:
    if definition is None:
        return {}
    out = {}
    for key in KPI_KEYS:
        target = definition.targets.for_key(key)
        if target is not None and target.applies_to(kind):
            value = values[key].value
            unit = "pence" if key == "cost_per_transaction" else "percent"
            out[key] = TargetResult(key, target, value, target.verdict(value), unit)
    return out


def _other_kpi(kpi: OtherKpi, t: _Tally) -> Kpi:
    """An other KPI from the period's measure totals (see :class:`~perf_sdk._definition.OtherKpi`)."""
    if kpi.compute == "ratio":
        assert kpi.numerator is not None and kpi.denominator is not None
        num = t.measures.get(kpi.numerator.id, (0.0, 0.0))[0]
        den = t.measures.get(kpi.denominator.id, (0.0, 0.0))[0]
        if kpi.display_unit == "percent":
            return _share(num, den, kpi.numerator.describe(), kpi.denominator.describe())
        return _ratio(num, den)
    assert kpi.of is not None
    total, records = t.measures.get(kpi.of.id, (0.0, 0.0))
    if kpi.compute == "sum":
        # No record at all is unknown (nothing was sent), never a silent 0.
        return Kpi(total if records else None, total, records)
    return _ratio(total, records)


def _others(definition: Definition | None, kind: str, t: _Tally) -> tuple[OtherKpiValue, ...]:
    if definition is None:
        return ()
    out = []
    for kpi in definition.kpis:
        value = _other_kpi(kpi, t)
        target = None
        if kpi.target is not None and kpi.target.applies_to(kind):
            target = TargetResult(kpi.key, kpi.target, value.value, kpi.target.verdict(value.value), kpi.display_unit)
        out.append(OtherKpiValue(kpi, value, target))
    return tuple(out)


def compute_periods(
    counts: Counts,
    periods: Iterable[Period],
    *,
    definition: Definition | None = None,
    today: date | None = None,
) -> list[PeriodKpis]:
    """The KPIs of each period, each with the values of the period just before it.

    ``today`` marks periods not yet ended as partial; ``definition`` adds targets and other KPIs.
    """
    wanted = list(periods)
    if not wanted:
        return []
    kind = wanted[0].kind
    tallies = _tally(counts, kind)
    cache: dict[date, PeriodKpis] = {}

    def bare(p: Period) -> PeriodKpis:
        if p.start not in cache:
            cache[p.start] = _period_kpis(p, tallies.get(p.start, _Tally()), {})
        return cache[p.start]

    out = []
    for p in wanted:
        before = bare(p.previous())
        previous = {key: before.kpi(key).value for key in _TRENDED}
        out.append(_period_kpis(p, tallies.get(p.start, _Tally()), previous, definition, today))
    return out


def compute_report(
    counts: Counts,
    *,
    period: str = "quarter",
    start: date | None = None,
    end: date | None = None,
    service: str | None = None,
    published_at: datetime | None = None,
    definition: Definition | None = None,
    today: date | None = None,
    marks: Iterable[Mark] = (),
) -> KpiReport:
    """A :class:`KpiReport` over whole periods of ``period`` touching ``start`` .. ``end`` (inclusive).

    Without ``start`` / ``end`` the report runs from the first to the last
    period holding data; with no data at all it has no periods. A period that
    ends after ``today`` (default: the UTC date of ``published_at``) is partial.

    >>> b = CountsBuilder()
    >>> b.add_transactions(date(2026, 1, 5), "started", "digital", 10)
    >>> b.add_transactions(date(2026, 2, 5), "completed", "digital", 8)
    >>> compute_report(b.build(), period="quarter").periods[0].completion_rate
    Kpi(value=0.8, numerator=8, denominator=10, flag=None)
    """
    if period not in PERIOD_KINDS:
        raise ValidationError("period", period, f"one of {', '.join(PERIOD_KINDS)}")
    kind: PeriodKind = period  # type: ignore[assignment]
    data = counts.data_dates()
    first = start or (min(data[0], end) if data and end else data[0] if data else end)
    last = end or (max(data[-1], first) if data and first else data[-1] if data else first)
    periods = periods_between(first, last, kind) if first and last else []
    published = published_at or datetime.now(timezone.utc)
    if today is None:
        today = published.astimezone(timezone.utc).date() if published.tzinfo else published.date()
    return KpiReport(
        periods=tuple(compute_periods(counts, periods, definition=definition, today=today)),
        kind=kind,
        service=service,
        published_at=published,
        requested_start=start,
        requested_end=end,
        definition=definition,
        marks=tuple(sorted(marks, key=lambda m: m.at)),
        skipped=dict(counts.skipped),
        relabelled=dict(counts.relabelled),
        data_notes=tuple(counts.data_notes()),
    )


# ---------------------------------------------------------------------------
# Formatting shared by the table, the demo and the dashboard
# ---------------------------------------------------------------------------


def format_pence(pence: float) -> str:
    return f"£{pence / 100:,.2f}"


def _format_unit(unit: str, value: float) -> str:
    """A number in its unit: ``percent`` -> ``80.0%``, ``pence`` -> ``£12.34``, else ``4.2 days``."""
    if unit == "percent":
        return f"{value * 100:.1f}%"
    if unit == "pence":
        return format_pence(value)
    number = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    return f"{number} {unit}".rstrip()


def format_kpi(key: str, kpi: Kpi) -> str:
    """A KPI's value, or why it is withheld: ``80.0%``, ``unknown``, ``not shown (cannot be right: ...)``."""
    if kpi.flag:
        return f"not shown ({kpi.flag})"
    return format_value(key, kpi.value)


def format_value(key: str, value: float | None) -> str:
    """A KPI value as people read it: ``80.0%``, ``£12.34``, or ``unknown``."""
    if value is None:
        return "unknown"
    if key == "cost_per_transaction":
        return format_pence(value)
    return f"{value * 100:.1f}%"


def format_change(key: str, change: float | None) -> str:
    """The change from the previous period in words that read aloud well: ``up 2.5 percentage points``."""
    if change is None:
        return "no comparison"
    if key == "cost_per_transaction":
        size = format_pence(abs(change))
        rounded = round(abs(change) / 100, 2)
    else:
        rounded = round(abs(change) * 100, 1)
        size = f"{rounded:.1f} percentage point{'' if rounded == 1 else 's'}"
    if rounded == 0:
        return "no change"
    return f"{'up' if change > 0 else 'down'} {size}"


def format_fraction(key: str, kpi: Kpi) -> str:
    """The arithmetic behind a value, e.g. ``8 / 10``; costs in pounds."""
    if key == "cost_per_transaction":
        return f"{format_pence(kpi.numerator)} / {_count(kpi.denominator)}"
    return f"{_count(kpi.numerator)} / {_count(kpi.denominator)}"


def _count(value: float) -> str:
    """Counts whole, with thousands separators (never ``1.1e+04``); weighted sums to 2 places."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"
