"""Before and after a change marker: did the change do what the team expected?

``tracker.mark("release 1.4")`` / ``perf-sdk mark`` store a record in the
``marks`` data set; ``perf-sdk kpis --around "release 1.4"`` compares each KPI
over two equal windows of whole UTC days, just before and just after it.

* Windows: ``window`` days each. A mark at midnight UTC starts the *after*
  window that day; a mark during a day leaves that day out of both windows
  (it holds traffic from before and after the change), so *after* starts the
  next day and *before* ends at the start of the mark's day.
* Completion rate, user satisfaction and digital take-up are proportions: each
  window's value has a Wilson score interval and the difference *after - before*
  Newcombe's hybrid score interval (:mod:`perf_sdk._stats`); the change is
  *significant* when that interval excludes zero.
* Cost per transaction is a plain difference (a cost is not a count of
  successes, so no interval): each window's cost is the cost records' amounts
  pro-rated by the days of their period inside the window (a quarter's
  £90,000 puts £1,000 a day into a 90-day quarter), over the window's
  completions in all channels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx

from perf_sdk._errors import ConfigurationError, ValidationError
from perf_sdk._kpi import KPI_KEYS, KPI_NAMES, Counts, Kpi, Mark, _ratio, _share, format_kpi
from perf_sdk._kpi_sources import marks_from_records
from perf_sdk._periods import cost_period
from perf_sdk._stats import Difference, newcombe_difference

__all__ = ["AroundReport", "KpiChange", "Mark", "around", "kpis_around", "marks_from_records", "windows_around"]

PROPORTIONS = ("completion_rate", "user_satisfaction", "digital_take_up")


@dataclass(frozen=True)
class KpiChange:
    """One KPI before and after; ``difference`` (Newcombe) only for proportions."""

    key: str
    before: Kpi
    after: Kpi
    change: float | None
    difference: Difference | None

    @property
    def significant(self) -> bool | None:
        """``None`` where no test applies (cost per transaction, or a window without data)."""
        return None if self.difference is None else self.difference.significant

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "change": self.change,
            "low": None if self.difference is None else self.difference.low,
            "high": None if self.difference is None else self.difference.high,
            "significant": self.significant,
        }
        if self.difference is not None:
            out["method"] = "newcombe-hybrid-score"
            out["before"]["interval"] = [self.difference.before.low, self.difference.before.high]
            out["after"]["interval"] = [self.difference.after.low, self.difference.after.high]
        return out

    def describe(self) -> str:
        name = KPI_NAMES[self.key]
        before, after = format_kpi(self.key, self.before), format_kpi(self.key, self.after)
        if self.change is None:
            return f"{name}: {before} before, {after} after: no comparison"
        if self.key == "cost_per_transaction":
            sign = "+" if self.change >= 0 else "-"
            return f"{name}: {before} -> {after}, {sign}£{abs(self.change) / 100:,.2f} (a plain difference)"
        assert self.difference is not None
        d = self.difference
        verdict = "significant" if d.significant else "not significant"
        return (
            f"{name}: {before} -> {after}, {d.difference * 100:+.1f} pts, "
            f"{d.confidence * 100:.0f}% interval {d.low * 100:+.1f} to {d.high * 100:+.1f} pts: {verdict}"
        )


@dataclass(frozen=True)
class AroundReport:
    mark: Mark
    window_days: int
    before_start: date
    before_end: date  # exclusive
    after_start: date
    after_end: date  # exclusive
    changes: tuple[KpiChange, ...]
    service: str | None = None
    notes: tuple[str, ...] = ()

    def change(self, key: str) -> KpiChange:
        return next(c for c in self.changes if c.key == key)

    def to_dict(self) -> dict[str, Any]:
        last = timedelta(days=1)
        return {
            "service": self.service,
            "mark": {
                "label": self.mark.label,
                "at": self.mark.at.isoformat(timespec="seconds"),
                "description": self.mark.description,
            },
            "window_days": self.window_days,
            "before": {"start": self.before_start.isoformat(), "end": (self.before_end - last).isoformat()},
            "after": {"start": self.after_start.isoformat(), "end": (self.after_end - last).isoformat()},
            **{c.key: c.to_dict() for c in self.changes},
            "notes": list(self.notes),
        }

    def to_text(self) -> str:
        last = timedelta(days=1)
        lines = [
            f"KPIs around {self.mark.label!r} ({self.mark.at.isoformat(timespec='seconds')})"
            + (f" for {self.service}" if self.service else ""),
            f"before: {self.before_start} to {self.before_end - last}; after: {self.after_start} to "
            f"{self.after_end - last} ({self.window_days} days each)",
        ]
        if self.mark.description:
            lines.append(self.mark.description)
        lines.append("")
        lines += [c.describe() for c in self.changes]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """A page section: the mark, its windows, and each KPI before and after, in a table."""
        import html

        esc = html.escape
        last = timedelta(days=1)
        slug = "change-" + "".join(c if c.isalnum() else "-" for c in self.mark.label.lower()).strip("-")
        rows = []
        for c in self.changes:
            if c.difference is not None:
                d = c.difference
                interval = f"{d.low * 100:+.1f} to {d.high * 100:+.1f} points"
                verdict = "a real change" if d.significant else "could be chance"
                change = f"{d.difference * 100:+.1f} points"
            else:
                interval = "no interval (a plain difference)" if c.change is not None else ""
                verdict = ""
                change = "" if c.change is None else f"{'+' if c.change >= 0 else '-'}£{abs(c.change) / 100:,.2f}"
            cells = [format_kpi(c.key, c.before), format_kpi(c.key, c.after), change or "no comparison", interval]
            rows.append(
                f'<tr><th scope="row">{esc(KPI_NAMES[c.key])}</th>'
                + "".join(f'<td class="num">{esc(x)}</td>' for x in cells)
                + f"<td>{esc(verdict)}</td></tr>"
            )
        when = f"{self.mark.at.astimezone(timezone.utc):%d %B %Y %H:%M} UTC"
        notes = "".join(f"<li>{esc(n)}</li>" for n in self.notes)
        return (
            f'<section aria-labelledby="{slug}-heading">'
            f'<h2 id="{slug}-heading">Before and after: {esc(self.mark.label)}</h2>'
            + (f"<p>{esc(self.mark.description)}</p>" if self.mark.description else "")
            + f"<p>Marked {esc(when)}. Before: {self.before_start:%d %B %Y} to "
            f"{self.before_end - last:%d %B %Y}; after: {self.after_start:%d %B %Y} to "
            f"{self.after_end - last:%d %B %Y} ({self.window_days} days each). A change is real when its 95% "
            "interval (Newcombe's method) does not include zero.</p>"
            f'<div class="table-wrap" role="region" aria-labelledby="{slug}-caption" tabindex="0"><table>'
            f'<caption id="{slug}-caption">Each KPI before and after {esc(self.mark.label)}</caption>'
            '<thead><tr><th scope="col">KPI</th><th scope="col">Before</th><th scope="col">After</th>'
            '<th scope="col">Change</th><th scope="col">95% interval</th><th scope="col">Meaning</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>" + (f"<ul>{notes}</ul>" if notes else "") + "</section>"
        )

    def to_csv_rows(self) -> list[dict[str, Any]]:
        rows = []
        for c in self.changes:
            rows.append(
                {
                    "kpi": c.key,
                    "before_value": "" if c.before.value is None else repr(c.before.value),
                    "before_numerator": c.before.numerator,
                    "before_denominator": c.before.denominator,
                    "after_value": "" if c.after.value is None else repr(c.after.value),
                    "after_numerator": c.after.numerator,
                    "after_denominator": c.after.denominator,
                    "change": "" if c.change is None else repr(c.change),
                    "low": "" if c.difference is None else repr(c.difference.low),
                    "high": "" if c.difference is None else repr(c.difference.high),
                    "significant": "" if c.significant is None else str(c.significant).lower(),
                    "flag": c.before.flag or c.after.flag or "",
                }
            )
        return rows


def windows_around(at: datetime, days: int) -> tuple[date, date, date, date]:
    """``(before_start, before_end, after_start, after_end)``, ends exclusive, in whole UTC days."""
    if days < 1:
        raise ValidationError("window", days, "at least 1 day")
    moment = at.astimezone(timezone.utc)
    day = moment.date()
    at_midnight = moment.hour == moment.minute == moment.second == moment.microsecond == 0
    after_start = day if at_midnight else day + timedelta(days=1)
    before_end = day
    return before_end - timedelta(days=days), before_end, after_start, after_start + timedelta(days=days)


def _window(counts: Counts, start: date, end: date) -> dict[str, Kpi]:
    """The four KPIs over the days ``start`` .. ``end`` (exclusive) of daily ``counts``."""
    inside = range((end - start).days)
    days = {start + timedelta(days=i) for i in inside}
    started = completed = digital_started = digital_completed = 0
    for (day, stage, channel), n in counts.transactions.items():
        if day in days:
            if stage == "started":
                started += n
                digital_started += n if channel == "digital" else 0
            else:
                completed += n
                digital_completed += n if channel == "digital" else 0
    answers = satisfied = 0
    for (day, rating, _channel), n in counts.satisfaction.items():
        if day in days:
            answers += n
            satisfied += n if rating >= 4 else 0
    cost, has_cost = 0.0, False
    for (granularity, period_start, _channel, _type), pence in counts.costs.items():
        first, stop = cost_period(granularity, period_start)
        overlap = (min(stop, end) - max(first, start)).days
        if overlap > 0:
            cost += pence * overlap / (stop - first).days
            has_cost = True
    cost_kpi = _ratio(cost, completed) if has_cost else Kpi(None, cost, completed)
    return {
        "completion_rate": _share(digital_completed, digital_started, "digital completions", "digital starts"),
        "user_satisfaction": _share(satisfied, answers, "satisfied answers", "answers"),
        "cost_per_transaction": cost_kpi,
        "digital_take_up": _share(digital_completed, completed, "digital completions", "completions"),
    }


def _testable(kpi: Kpi) -> bool:
    """A proportion an interval can be put on (the sources skip negative counts; hand-made counts might not)."""
    return kpi.denominator > 0 and 0 <= kpi.numerator <= kpi.denominator


def around(
    counts: Counts,
    mark: Mark,
    *,
    window: int = 28,
    confidence: float = 0.95,
    service: str | None = None,
    today: date | None = None,
) -> AroundReport:
    """Each KPI over ``window`` days before and after ``mark``, with the difference and its interval."""
    if counts.bucket != "day":
        raise ValidationError("counts", counts.bucket, "daily counts (CountsBuilder(bucket='day'))")
    b0, b1, a0, a1 = windows_around(mark.at, window)
    before, after = _window(counts, b0, b1), _window(counts, a0, a1)
    changes = []
    for key in KPI_KEYS:
        x, y = before[key], after[key]
        change = None if x.value is None or y.value is None else y.value - x.value
        diff = None
        if key in PROPORTIONS and change is not None:
            if _testable(x) and _testable(y):
                diff = newcombe_difference(x.numerator, x.denominator, y.numerator, y.denominator, confidence)
            else:
                change = None  # no proportion to compare: no comparison, never a traceback
        changes.append(KpiChange(key, x, y, change, diff))
    notes = []
    now = today or datetime.now(timezone.utc).date()
    if a1 > now:
        notes.append(
            f"the after window runs to {a1 - timedelta(days=1)}, past today ({now}): it is partial, and the "
            "comparison will change"
        )
    if mark.at.astimezone(timezone.utc).time() != datetime.min.time():
        notes.append(f"{mark.at.astimezone(timezone.utc).date()}, the mark's own day, is in neither window")
    notes += counts.data_notes()
    return AroundReport(mark, window, b0, b1, a0, a1, tuple(changes), service, tuple(notes))


def _parse_moment(text: str) -> datetime | None:
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def resolve_mark(text: str, marks: Iterable[Mark]) -> tuple[Mark, str | None]:
    """The mark a ``--around`` argument names: a stored label (the latest, if marked more than once) or an ISO time.

    Returns the mark and a note when a choice was made.
    """
    found = [m for m in marks if m.label == text]
    if found:
        note = None
        if len(found) > 1:
            times = ", ".join(m.at.isoformat(timespec="seconds") for m in found)
            note = f"{text!r} was marked {len(found)} times ({times}); compared around the latest"
        return found[-1], note
    at = _parse_moment(text)
    if at is not None:
        return Mark(text, at), None
    raise ConfigurationError(
        f"--around {text!r}: no change marker has that label (record one with perf-sdk mark LABEL, or "
        "tracker.mark(LABEL)); or give a time, e.g. --around 2026-03-02T09:00:00Z"
    )


def _marks_on_platform(base: str, service: str, label: str, token: str | None, client: httpx.Client) -> list[Mark]:
    from perf_sdk._kpi_sources import marks_from_read_api

    return marks_from_read_api(client, base, service, token, (("filter_by", f"label:{label}"),))


def kpis_around(
    mark: str,
    *,
    service: str | None = None,
    records: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    path: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    read_endpoint: str | None = None,
    token: str | None = None,
    window: int = 28,
    today: date | None = None,
    timeout: float = 30.0,
    client: httpx.Client | None = None,
) -> AroundReport:
    """Each KPI for ``window`` days before and after the change marker ``mark`` (a label, or an ISO time).

    From ``records`` (a mapping of data type to records, ``marks`` included),
    a records file (``path``; rows with a ``label`` are marks), or the
    platform's read API (``read_endpoint`` / ``endpoint`` or the ``PERF_SDK_*``
    variables, for ``service``).
    """
    from perf_sdk._kpi_sources import (
        counts_from_read_api,
        counts_from_records,
        read_records_file,
        resolve_read_settings,
    )

    if records is not None or path is not None:
        if records is not None:
            stored = marks_from_records(records.get("marks", ()))
            data = {k: v for k, v in records.items() if k != "marks"}
            counts = counts_from_records(data, bucket="day")
        else:
            assert path is not None
            rows = list(read_records_file(path))
            stored = marks_from_records(r for r in rows if "label" in r)
            counts = counts_from_records((r for r in rows if "label" not in r), bucket="day")
        chosen, note = resolve_mark(mark, stored)
        report = around(counts, chosen, window=window, service=service, today=today)
    else:
        settings = resolve_read_settings(service=service, endpoint=endpoint, read_endpoint=read_endpoint, token=token)
        if not settings.read_endpoint or not settings.service:
            raise ConfigurationError(
                "--around needs the platform (--read-endpoint / --endpoint, PERF_SDK_READ_ENDPOINT or "
                "PERF_SDK_ENDPOINT) and --service (PERF_SDK_SERVICE), or a records file with --file"
            )
        own = client is None
        http = client or httpx.Client(timeout=timeout)
        try:
            stored = _marks_on_platform(settings.read_endpoint, settings.service, mark, settings.token, http)
            chosen, note = resolve_mark(mark, stored)
            b0, _, _, a1 = windows_around(chosen.at, window)
            counts = counts_from_read_api(
                settings.read_endpoint,
                settings.service,
                start=b0,
                end=a1,
                token=settings.token,
                client=http,
                bucket="day",
            )
        finally:
            if own:
                http.close()
        report = around(counts, chosen, window=window, service=settings.service, today=today)
    if note:
        report = AroundReport(
            report.mark,
            report.window_days,
            report.before_start,
            report.before_end,
            report.after_start,
            report.after_end,
            report.changes,
            report.service,
            (note, *report.notes),
        )
    return report
