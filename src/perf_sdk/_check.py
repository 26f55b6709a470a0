"""``perf-sdk check``: is the service on target, has anything slipped, is data still arriving?

One pass over the latest *complete* period of each kind the definition checks
(day, week, month, quarter by default; the current period is partial and
would alarm on every Monday morning), with four rules:

* **below target**: a KPI with a target in the definition that the period missed;
* **significant drop**: completion rate, user satisfaction and digital take-up
  against their own trailing baseline (the ``baseline_periods`` periods before,
  pooled; for a day, the same weekday of the weeks before). The test is
  Newcombe's hybrid score interval for the difference ``latest - baseline``
  (:mod:`perf_sdk._stats`): a drop is significant when the whole interval lies
  below zero. The default confidence is 99%, not 95%: a run makes up to twelve
  comparisons (four period kinds, three KPIs), and at 95% a steady service
  would raise a false alarm on about one run in four. Every comparison is
  reported with its interval, significant or not, so a reader sees how close
  it came;
* **no records**: a data set silent for longer than ``max_silence_hours``
  (the platform's freshness: its newest ``_timestamp``), and, given a spool
  directory, the SDK's oldest waiting record older than ``max_spool_age_minutes``
  or dead letters waiting;
* **too few answers**: fewer satisfaction answers than ``min_answers`` in a
  month or quarter: too few to say anything about satisfaction;
* **cannot be right**: a week, month or quarter whose figures are flagged
  (more completions than starts): recording is broken somewhere. A day's
  flag is only a note, since a day's completions may follow yesterday's starts.

Pure evaluation (:func:`evaluate`) over :class:`~perf_sdk._kpi.Counts` and
freshness facts, so every rule is tested by hand; :func:`check` gathers those
facts from records or the read API. Records outside the vocabulary (a stage of
``in-progress``, a negative count) never reach a rule: the sources skip and
count them, and the report lists them among its notes (``skipped`` in JSON).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import httpx

from perf_sdk._definition import Definition, load_definition
from perf_sdk._errors import ConfigurationError
from perf_sdk._kpi import (
    KPI_NAMES,
    Counts,
    Kpi,
    Period,
    PeriodKpis,
    compute_periods,
    format_kpi,
    period_containing,
)
from perf_sdk._protocol import SLUG_RE, parse_timestamp
from perf_sdk._records import MAX_CLOCK_SKEW
from perf_sdk._stats import Difference, newcombe_difference, wilson_interval

__all__ = ["CheckReport", "Comparison", "Finding", "check", "evaluate", "unreadable"]

#: The KPIs tested for a drop: proportions, where a two-sample interval means something.
DROP_KPIS: Final = ("completion_rate", "user_satisfaction", "digital_take_up")
#: Satisfaction answers are counted over months and quarters (a day or week of a small service is always few).
ANSWER_PERIODS: Final = ("month", "quarter")


#: What :func:`spool_state` reads of a spool directory: the oldest waiting record's age (seconds), the dead
#: letters, and the files that cannot be read (name and why).
SpoolState = tuple[float | None, int, tuple[str, ...]]


@dataclass(frozen=True)
class Finding:
    """One thing that needs attention; ``rule`` is ``below_target``, ``significant_drop``,
    ``cannot_be_right``, ``no_records``, ``spool_age``, ``dead_letters``, ``too_few_answers``
    or ``platform_unreadable`` (the platform could not be read, so nothing was checked)."""

    rule: str
    message: str
    kpi: str | None = None
    period: str | None = None
    label: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "kpi": self.kpi,
            "period": self.period,
            "label": self.label,
            "message": self.message,
            **({"details": dict(self.details)} if self.details else {}),
        }


@dataclass(frozen=True)
class Comparison:
    """A KPI's latest complete period against its baseline, with Newcombe's interval."""

    kpi: str
    period: str
    label: str
    baseline_labels: tuple[str, ...]
    difference: Difference

    def describe(self) -> str:
        d = self.difference
        verdict = "significant drop" if d.significant_drop else "no significant drop"
        return (
            f"{KPI_NAMES[self.kpi]} {self.label}: {_pct(d.after.estimate)} "
            f"({_n(d.after.successes)}/{_n(d.after.trials)}) vs baseline {_pct(d.before.estimate)} "
            f"({_n(d.before.successes)}/{_n(d.before.trials)}, {self.baseline_labels[0]} to "
            f"{self.baseline_labels[-1]}): difference {_pts(d.difference)}, "
            f"{d.confidence * 100:.0f}% interval {_pts(d.low)} to {_pts(d.high)}: {verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kpi": self.kpi,
            "period": self.period,
            "label": self.label,
            "baseline": list(self.baseline_labels),
            **self.difference.to_dict(),
            "significant_drop": self.difference.significant_drop,
            "method": "newcombe-hybrid-score",
        }


@dataclass(frozen=True)
class CheckReport:
    """Everything one ``perf-sdk check`` run found; ``exit_status`` 0 (all well) or 1 (attention)."""

    service: str | None
    checked_at: datetime
    findings: tuple[Finding, ...]
    comparisons: tuple[Comparison, ...]
    #: ``(period kind, label)`` of each period checked.
    periods: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = ()
    #: Every target evaluated, met or not: ``{"period", "label", "kpi", "value", "status", "text"}``.
    targets: tuple[Mapping[str, Any], ...] = ()
    #: Records left out for a value outside the vocabulary, by ``"<data type>.<field>"`` (a note, not a finding).
    skipped: Mapping[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def exit_status(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        who = self.service or "the service"
        if self.ok:
            return f"perf-sdk check: {who}: all well ({len(self.periods)} periods checked)"
        n = len(self.findings)
        return f"perf-sdk check: {who}: {n} thing{'s' if n != 1 else ''} need{'' if n != 1 else 's'} attention"

    def to_text(self) -> str:
        lines = [self.summary()]
        lines += [f"  ! {f.message}" for f in self.findings]
        if self.targets:
            lines.append("Targets:")
            lines += [f"  {t['name']} {t['label']}: {t['shown']} ({t['text']}): {t['status']}" for t in self.targets]
        if self.comparisons:
            lines.append("Drops against the baseline (Newcombe interval on the difference):")
            lines += [f"  {c.describe()}" for c in self.comparisons]
        lines += [f"  - {note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "checked_at": self.checked_at.isoformat(timespec="seconds"),
            "status": "ok" if self.ok else "attention",
            "exit_status": self.exit_status,
            "periods": [{"period": k, "label": label} for k, label in self.periods],
            "findings": [f.to_dict() for f in self.findings],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "targets": [{k: v for k, v in t.items() if k not in ("name", "shown")} for t in self.targets],
            "notes": list(self.notes),
            "skipped": dict(self.skipped),
        }


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


def _pts(value: float) -> str:
    return f"{value * 100:+.1f} pts"


def _n(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"


# ---------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------


def _target_findings(p: PeriodKpis) -> list[Finding]:
    out = []
    for key, result in p.targets.items():
        if result.status == "missed":
            out.append(
                Finding(
                    "below_target",
                    f"{KPI_NAMES[key]} {p.label} is {format_kpi(key, p.kpi(key))}; the target is {result.describe()}",
                    key,
                    p.period,
                    p.label,
                    {"value": result.value, **result.to_dict()},
                )
            )
    for other in p.other:
        if other.target is not None and other.target.status == "missed":
            out.append(
                Finding(
                    "below_target",
                    f"{other.definition.name} {p.label} is {other.formatted()}; "
                    f"the target is {other.target.describe()}",
                    other.key,
                    p.period,
                    p.label,
                    {"value": other.kpi.value, **other.target.to_dict()},
                )
            )
    return out


def _target_rows(p: PeriodKpis) -> list[dict[str, Any]]:
    """Every target of the period, met, missed or unknown, for the report."""
    rows = []
    for key, result in p.targets.items():
        rows.append((key, KPI_NAMES[key], format_kpi(key, p.kpi(key)), result))
    for other in p.other:
        if other.target is not None:
            rows.append((other.key, other.definition.name, other.formatted(), other.target))
    return [
        {
            "period": p.period,
            "label": p.label,
            "kpi": key,
            "value": result.value,
            "status": result.status,
            "text": result.describe(),
            "name": name,
            "shown": shown,
        }
        for key, name, shown, result in rows
    ]


def _compare(key: str, latest: PeriodKpis, baseline: Sequence[PeriodKpis], confidence: float) -> Comparison | None:
    """The latest period against the pooled baseline, or ``None`` when either side has nothing to test."""
    now = latest.kpi(key)
    pool = [p.kpi(key) for p in baseline if _testable(p.kpi(key))]
    before_x, before_n = sum(k.numerator for k in pool), sum(k.denominator for k in pool)
    if not _testable(now) or not before_n:
        return None
    diff = newcombe_difference(before_x, before_n, now.numerator, now.denominator, confidence)
    return Comparison(key, latest.period, latest.label, tuple(p.label for p in baseline), diff)


def _testable(kpi: Kpi) -> bool:
    """A proportion an interval can be put on: not flagged, some trials, successes between 0 and the trials.

    The sources never give a negative count (such records are skipped), but
    :class:`~perf_sdk._kpi.Counts` made by hand might: no traceback for them either.
    """
    return not kpi.flag and kpi.denominator > 0 and 0 <= kpi.numerator <= kpi.denominator


def _drop_findings(comparisons: Sequence[Comparison]) -> list[Finding]:
    return [
        Finding("significant_drop", c.describe(), c.kpi, c.period, c.label, c.to_dict())
        for c in comparisons
        if c.difference.significant_drop
    ]


def _answers_finding(p: PeriodKpis, minimum: int) -> Finding | None:
    answers = int(p.user_satisfaction.denominator)
    if p.period not in ANSWER_PERIODS or answers >= minimum or not p.has_data:
        return None  # a period with no data at all is a note, not a satisfaction problem
    details: dict[str, Any] = {"answers": answers, "min_answers": minimum}
    width = ""
    if answers and _testable(p.user_satisfaction):  # how little the answers there are can say: the interval
        i = wilson_interval(p.user_satisfaction.numerator, answers)
        details["interval"] = [i.low, i.high]
        width = f" (its 95% interval runs from {_pct(i.low)} to {_pct(i.high)})"
    return Finding(
        "too_few_answers",
        f"{answers} satisfaction answer{'s' if answers != 1 else ''} in {p.label}: fewer than {minimum}, "
        f"too few to say anything about user satisfaction{width}; ask more users (link the survey from "
        "the last page)",
        "user_satisfaction",
        p.period,
        p.label,
        details,
    )


def _freshness_findings(
    definition: Definition, newest: Mapping[str, datetime | None], now: datetime, where: str = "on the platform"
) -> list[Finding]:
    """A data set silent for longer than its ``max_silence_hours``; ``where`` names the source in the message."""
    out = []
    for data_type, hours in definition.checks.max_silence_hours.items():
        if data_type not in newest:
            continue
        last = newest[data_type]
        if last is None:
            out.append(
                Finding(
                    "no_records",
                    f"no {data_type} records at all {where} (expected one at least every {hours:g} h)",
                    details={"data_type": data_type, "max_silence_hours": hours, "newest": None},
                )
            )
            continue
        silent = (now - last).total_seconds() / 3600.0
        if silent > hours:
            out.append(
                Finding(
                    "no_records",
                    f"no {data_type} records for {silent:.1f} h (newest {last.isoformat(timespec='seconds')}; "
                    f"expected at least every {hours:g} h): is the service recording, is the SDK delivering?",
                    details={
                        "data_type": data_type,
                        "max_silence_hours": hours,
                        "silent_hours": round(silent, 2),
                        "newest": last.isoformat(timespec="seconds"),
                    },
                )
            )
    return out


def _spool_findings(definition: Definition, spool: SpoolState | None) -> list[Finding]:
    if spool is None:
        return []
    age, dead, unreadable = spool
    out = []
    if unreadable:
        out.append(
            Finding(
                "spool_unreadable",
                f"{len(unreadable)} spool file(s) cannot be read ({unreadable[0]}): the records in them are "
                "not being delivered; see perf-sdk spool status",
                details={"files": list(unreadable)},
            )
        )
    limit = definition.checks.max_spool_age_minutes
    if age is not None and age / 60.0 > limit:
        out.append(
            Finding(
                "spool_age",
                f"the SDK's oldest waiting record is {age / 60.0:.1f} min old (more than {limit:g} min): "
                "the platform is down or refusing; see perf-sdk spool status",
                details={"oldest_pending_age_seconds": round(age, 3), "max_spool_age_minutes": limit},
            )
        )
    if dead:
        out.append(
            Finding(
                "dead_letters",
                f"{dead} record(s) the platform refused for good are in the spool's dead letters: "
                "see perf-sdk spool dead, fix, then perf-sdk spool replay-dead",
                details={"dead_letters": dead},
            )
        )
    return out


def latest_complete(kind: str, today: date) -> Period:
    """The latest period of ``kind`` that has ended by ``today`` (exclusive)."""
    return period_containing(today, kind).previous()


def baseline_for(latest: Period, n: int) -> list[Period]:
    """The ``n`` periods a latest period is compared with, oldest first.

    Weeks, months and quarters: the ``n`` just before. Days: the same weekday
    of the ``n`` weeks before (a Sunday against Sundays), because most services'
    traffic and completion rate follow the week, and a Monday compared with the
    weekend before it would alarm every week.
    """
    if latest.kind == "day":
        return [period_containing(latest.start - timedelta(weeks=k), "day") for k in range(n, 0, -1)]
    out = [latest.previous()]
    while len(out) < n:
        out.insert(0, out[0].previous())
    return out


def evaluate(
    counts: Counts,
    definition: Definition,
    *,
    now: datetime,
    service: str | None = None,
    newest: Mapping[str, datetime | None] | None = None,
    spool: SpoolState | None = None,
    where: str = "on the platform",
) -> CheckReport:
    """Every rule over daily ``counts``; ``newest`` is each data set's newest record time
    (``None``: no records), ``spool`` is ``(oldest waiting age in seconds, dead letters)``,
    ``where`` names the source in messages (``on the platform``, ``in the records file``)."""
    if counts.bucket != "day":
        raise ConfigurationError("perf-sdk check needs daily counts (CountsBuilder(bucket='day'))")
    today = now.astimezone(timezone.utc).date()
    checks = definition.checks
    findings: list[Finding] = []
    comparisons: list[Comparison] = []
    checked: list[tuple[str, str]] = []
    notes: list[str] = []
    targets: list[Mapping[str, Any]] = []
    for kind in checks.periods:
        latest = latest_complete(kind, today)
        periods = [*baseline_for(latest, checks.baseline_periods), latest]
        computed = compute_periods(counts, periods, definition=definition, today=today)
        *baseline, last = computed
        checked.append((kind, last.label))
        if not last.has_data:
            notes.append(f"{kind} {last.label}: no data")
        findings += _target_findings(last)
        targets += _target_rows(last)
        kind_comparisons = [c for key in DROP_KPIS if (c := _compare(key, last, baseline, checks.confidence))]
        comparisons += kind_comparisons
        findings += _drop_findings(kind_comparisons)
        answers = _answers_finding(last, checks.min_answers)
        if answers is not None:
            findings.append(answers)
        for key, reason in last.flags.items():
            if kind == "day":  # a day's completions may belong to yesterday's starts: worth a note only
                notes.append(f"{kind} {last.label}: {KPI_NAMES.get(key, key)} not shown: {reason}")
            else:
                findings.append(
                    Finding(
                        "cannot_be_right",
                        f"{KPI_NAMES.get(key, key)} {last.label} {reason}: is every start still recorded?",
                        key,
                        kind,
                        last.label,
                        {"reason": reason},
                    )
                )
    findings += _freshness_findings(definition, newest or {}, now, where)
    findings += _spool_findings(definition, spool)
    notes += counts.data_notes()
    return CheckReport(
        service,
        now,
        tuple(findings),
        tuple(comparisons),
        tuple(checked),
        tuple(notes),
        tuple(targets),
        dict(counts.skipped),
    )


def unreadable(service: str | None, now: datetime, error: Exception) -> CheckReport:
    """The report of a run that could not read the platform (down, timing out, 5xx): attention, exit 1.

    For a cron job or a CronJob, a platform that cannot be read is something
    to look at, like a silent data set, not a mistake in the command (exit 2);
    with ``--webhook`` the alert says so too.
    """
    return CheckReport(
        service,
        now,
        (
            Finding(
                "platform_unreadable",
                f"the platform cannot be read, so nothing was checked: {error}",
                details={"error": str(error)},
            ),
        ),
        (),
        (),
    )


# ---------------------------------------------------------------------------
# Gathering the facts
# ---------------------------------------------------------------------------


def _newest_in_records(
    records: Mapping[str, Any], data_types: Sequence[str], now: datetime
) -> dict[str, datetime | None]:
    """Each data type's newest record at or before ``now`` (and the SDK's clock skew): one stamped in 2099 must
    not stand for a data set that went silent."""
    from perf_sdk._kpi_sources import _timestamp_or_none

    latest = now + timedelta(seconds=MAX_CLOCK_SKEW)
    out: dict[str, datetime | None] = {}
    for data_type in data_types:
        times = [at for r in records.get(data_type, ()) if (at := _timestamp_or_none(r)) is not None and at <= latest]
        out[data_type] = max(times) if times else None
    return out


def _newest_on_platform(
    base: str, service: str, data_types: Sequence[str], token: str | None, client: httpx.Client, now: datetime
) -> dict[str, datetime | None]:
    """Each data set's newest ``_timestamp`` at or before ``now``: one ``sort_by=_timestamp:descending&limit=1`` read.

    Bounded by ``end_at`` (``now`` and the SDK's clock skew): one record stamped in 2099 kept the
    ``no_records`` rule from ever firing again.
    """
    from perf_sdk._kpi_sources import _fetch, _in_backdrops_shape

    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    end_at = (now + timedelta(seconds=MAX_CLOCK_SKEW)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: dict[str, datetime | None] = {}
    with _in_backdrops_shape(base):
        for data_type in data_types:
            rows = _fetch(
                client,
                f"{base}/data/{service}/{data_type}",
                (("sort_by", "_timestamp:descending"), ("limit", "1"), ("end_at", end_at)),
                headers,
            )
            stamp = rows[0].get("_timestamp") if rows else None
            if stamp is not None and not isinstance(stamp, str):
                raise TypeError("_timestamp is not text")
            parsed = parse_timestamp(stamp) if stamp else None
            if parsed is None and stamp:
                parsed = datetime.fromisoformat(stamp)
            out[data_type] = (
                None if parsed is None else (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc))
            )
    return out


def _records_by_type(path: str | os.PathLike[str]) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """A records file's rows by data type: ``amount_pence`` costs, ``rating`` satisfaction, ``stage``
    transactions, ``label`` marks; and the rows that are none of these (skipped, and counted)."""
    from perf_sdk._kpi_sources import _record_type, read_records_file

    out: dict[str, list[dict[str, Any]]] = {"transactions": [], "satisfaction": [], "costs": []}
    other: list[dict[str, Any]] = []
    for row in read_records_file(path):
        data_type = _record_type(row)
        if data_type is not None:
            out[data_type].append(row)
        elif row.get("label") not in (None, ""):
            out.setdefault("marks", []).append(row)
        else:
            other.append(row)
    return out, other


def spool_state(spool_dir: str | os.PathLike[str]) -> SpoolState:
    """``(age in seconds of the oldest waiting record, dead letters, files that cannot be read)`` across a spool
    directory's files (a damaged one held records nobody was told about: it said nothing before)."""
    from perf_sdk._spool import inspect_spool_dir

    files = inspect_spool_dir(Path(spool_dir))
    oldest = min((f.oldest_accepted_at for f in files if f.oldest_accepted_at is not None), default=None)
    unreadable = tuple(f"{f.path.name}: {f.error}" for f in files if f.error)
    return (None if oldest is None else max(0.0, time.time() - oldest)), sum(f.dead for f in files), unreadable


def _window_start(definition: Definition, today: date) -> date:
    n = definition.checks.baseline_periods
    starts = [baseline_for(latest_complete(kind, today), n)[0].start for kind in definition.checks.periods]
    return min(starts) if starts else today - timedelta(days=1)


def check(
    *,
    definition: Definition | str | os.PathLike[str] | None = None,
    service: str | None = None,
    records: Mapping[str, Any] | None = None,
    path: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    read_endpoint: str | None = None,
    token: str | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    now: datetime | None = None,
    timeout: float = 30.0,
    client: httpx.Client | None = None,
) -> CheckReport:
    """Run every rule of ``definition`` for ``service``, from ``records`` or the platform's read API.

    ``records`` is a mapping ``{"transactions": [...], ...}`` in the platform's
    shape (custom data types included, for other KPIs' targets); without it the
    records file at ``path`` (CSV, JSONL ...: each row's data type told by its
    fields, as ``perf-sdk kpis --file``), or the
    read API at ``read_endpoint`` / ``endpoint`` (or ``PERF_SDK_READ_ENDPOINT`` /
    ``PERF_SDK_ENDPOINT``) is read. ``now`` defaults to the current time.
    Without a definition the default checks run (drops, silence, answers; no targets).
    """
    from perf_sdk._kpi_sources import counts_from_read_api, counts_from_records, resolve_read_settings

    if definition is None:
        definition = Definition()
    elif not isinstance(definition, Definition):
        definition = load_definition(definition)
    moment = now or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        raise ConfigurationError("now must be a zone-aware datetime")
    today = moment.astimezone(timezone.utc).date()
    silence_types = tuple(definition.checks.max_silence_hours)
    spool = spool_state(spool_dir) if spool_dir is not None else None
    untyped: list[dict[str, Any]] = []
    where = "in the records"
    if path is not None and records is None:
        records, untyped = _records_by_type(path)
        where = f"in {Path(path).name}"
    if records is not None:
        counts = counts_from_records(records, measures=definition.measures(), bucket="day")
        if untyped:  # rows of no known type: skipped and counted like any record outside the vocabulary
            extra = counts_from_records(untyped, bucket="day")
            counts = replace(
                counts,
                skipped={**counts.skipped, **extra.skipped},
                examples={**counts.examples, **extra.examples},
            )
        newest = _newest_in_records(records, silence_types, moment)
        return evaluate(
            counts,
            definition,
            now=moment,
            service=service or definition.service,
            newest=newest,
            spool=spool,
            where=where,
        )
    settings = resolve_read_settings(
        service=service or definition.service, endpoint=endpoint, read_endpoint=read_endpoint, token=token
    )
    if not settings.read_endpoint:
        raise ConfigurationError(
            "no platform to check: pass --read-endpoint / --endpoint (or set PERF_SDK_READ_ENDPOINT or PERF_SDK_ENDPOINT)"
        )
    if not settings.service or not SLUG_RE.match(settings.service):
        raise ConfigurationError(
            'no service to check: pass --service (or set PERF_SDK_SERVICE, or service = "..." in the definition)'
        )
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    try:
        counts = counts_from_read_api(
            settings.read_endpoint,
            settings.service,
            start=_window_start(definition, today),
            end=today + timedelta(days=1),
            token=settings.token,
            client=http,
            measures=definition.measures(),
            bucket="day",
        )
        newest = _newest_on_platform(
            settings.read_endpoint, settings.service, silence_types, settings.token, http, moment
        )
    finally:
        if own:
            http.close()
    return evaluate(counts, definition, now=moment, service=settings.service, newest=newest, spool=spool)
