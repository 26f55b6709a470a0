"""A service's performance page: one self-contained, accessible HTML file.

A service publishes its KPIs to people who may read them offline, on a phone,
with a screen reader, or years later from an archive. So the page fetches
nothing and needs no script: charts are small static SVGs drawn by
``_publish_charts`` (each one ``role="img"`` with its text alternative), every
chart's figures are also a table, periods are named as UK government readers
name them ("January to March 2026", "2025-26"), and a print stylesheet opens
the tables. WCAG 2.2 AA is checked with axe-core in
``tests/integration/test_dashboard_browser.py``.

The same page is ``perf-sdk kpis --format html`` (one report, no site around
it) and each service's page of ``perf-sdk publish`` (with a :class:`PageContext`:
the service's title and organisation, its rank and the median across
services, links to its data files, schema.org JSON-LD).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timezone
from pathlib import Path
from typing import Any, Final

from perf_sdk._kpi import (
    KPI_KEYS,
    KPI_NAMES,
    RATINGS,
    KpiReport,
    PeriodKpis,
    format_change,
    format_fraction,
    format_pence,
    format_value,
    period_containing,
)
from perf_sdk._periods import human_label, long_date, short_label
from perf_sdk._protocol import CHANNELS
from perf_sdk._publish_charts import bar_chart, line_chart, stacked_chart
from perf_sdk._publish_files import RATING_LABELS, ServiceInfo

__all__ = ["PageContext", "dashboard_html", "json_ld", "latest_complete", "render_dashboard"]

_RATING_COLOURS: Final = ("#d4351c", "#f47738", "#6f777b", "#85994b", "#00703c")
_CHANNEL_COLOURS: Final = {
    "digital": "#1d70b8",
    "phone": "#f47738",
    "paper": "#4c2c92",
    "face_to_face": "#28a197",
    "other": "#505a5f",
}
_ADJECTIVES: Final = {
    "day": "Daily",
    "week": "Weekly",
    "month": "Monthly",
    "quarter": "Quarterly",
    "year": "Yearly",
    "financial-year": "Financial-year",
}
_WHAT: Final = {
    "completion_rate": "digital transactions completed out of those started",
    "user_satisfaction": "answers rating the service 4 or 5 out of all answers",
    "cost_per_transaction": "cost of the service, all channels, per completed transaction",
    "digital_take_up": "completed transactions that were digital",
}


@dataclass(frozen=True)
class PageContext:
    """What a published site adds around one service's figures."""

    info: ServiceInfo
    #: Periods ending after this day are partial (not over when published).
    as_of: date
    #: ``(link text, href)`` of the service's data files.
    files: Sequence[tuple[str, str]] = ()
    #: KPI key -> (rank, out of how many services with a value), for the latest complete period.
    ranks: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    #: KPI key -> the median across services, same period.
    medians: Mapping[str, float | None] = field(default_factory=dict)
    #: Link back to the services list, if there is one.
    home: str | None = None
    json_ld: Mapping[str, Any] | None = None
    #: Notes about this service's data, as plain text, after the general ones under "About these figures".
    notes: Sequence[str] = ()


def _start(iso: str) -> str:
    try:
        return long_date(date.fromisoformat(iso))
    except ValueError:
        return iso


def _report_info(report: KpiReport) -> ServiceInfo:
    """Without a site: the definition's title and organisation, else the slug as given."""
    slug = report.service or "service"
    return ServiceInfo(slug, report.title or slug, report.organisation or "")


def render_dashboard(report: KpiReport, path: str | os.PathLike[str]) -> Path:
    """Write the dashboard to ``path`` (directories created) and return it."""
    target = Path(path)
    page = dashboard_html(report)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


def latest_complete(periods: Sequence[PeriodKpis], as_of: date) -> PeriodKpis | None:
    """The last period over by ``as_of`` (the one headline figures are for)."""
    done = [p for p in periods if p.end <= as_of and not p.partial]
    return done[-1] if done else None


def _name(p: PeriodKpis, as_of: date) -> str:
    words = human_label(p.period, p.start, p.end)
    return f"{words} (partial)" if p.partial or p.end > as_of else words


def json_ld(data: Mapping[str, Any]) -> str:
    """A schema.org block; ``<`` escaped so no text inside can close the script element."""
    text = json.dumps(data, indent=1, ensure_ascii=False).replace("<", "\\u003c")
    return f'<script type="application/ld+json">{text}</script>'


def dashboard_html(report: KpiReport, context: PageContext | None = None) -> str:
    """The page as one HTML string: no external file, readable from ``file://``."""
    esc = html.escape
    info = context.info if context else _report_info(report)
    as_of = context.as_of if context else report.published_at.astimezone(timezone.utc).date()
    title = info.title
    published = report.published_at.astimezone(timezone.utc)
    adjective = _ADJECTIVES[report.kind]
    if report.start and report.end:
        span = f"{adjective} figures from {long_date(report.start)} to {long_date(report.end)}"
    else:
        span = "No data in the period asked for"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en-GB">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}: service performance</title>",
        f"<style>{CSS}</style>",
        json_ld(context.json_ld) if context and context.json_ld else "",
        "</head>",
        "<body>",
        '<a class="skip-link" href="#main">Skip to main content</a>',
        '<header class="masthead"><div class="width">',
        f'<p class="eyebrow"><a href="{esc(context.home)}">All services</a></p>'
        if context and context.home
        else '<p class="eyebrow">Service performance</p>',
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">{esc(info.organisation)}</p>' if info.organisation else "",
        f'<p class="meta">{esc(info.description)}</p>' if info.description else "",
        f'<p class="meta">Running since {esc(_start(info.start_date))}.</p>' if info.start_date else "",
        f'<p class="meta">{esc(span)}. Published on <time datetime="{published.isoformat()}">'
        f"{esc(long_date(published.date()))} at {published:%H:%M} UTC</time>.</p>",
        "</div></header>",
        '<main id="main" class="width" tabindex="-1">',
    ]
    if not report.periods:
        parts.append('<p class="empty">There are no records for this service in the period asked for.</p>')
    else:
        latest = report.periods[-1]
        if latest.end > as_of:
            parts.append(
                '<div class="notice"><p><strong>'
                f"{esc(human_label(latest.period, latest.start, latest.end))} is not over yet.</strong> "
                "Its figures are partial and marked as such; the headline figures are for the last "
                "complete period.</p></div>"
            )
        parts.append(_headlines(report, as_of, context))
        charts = _Charts(report, as_of)
        parts += [
            '<div class="charts">',
            charts.completion_rate(),
            charts.user_satisfaction(),
            charts.cost_per_transaction(),
            charts.digital_take_up(),
            charts.channel_mix(),
            "</div>",
        ]
        parts += [change.to_html() for change in report.changes]  # before/after each change marker
    parts.append(_notes(context.notes if context else ()))
    if context and context.files:
        links = "".join(f'<li><a href="{esc(href)}">{esc(text)}</a></li>' for text, href in context.files)
        parts.append(
            '<section aria-labelledby="files-heading"><h2 id="files-heading">Data files</h2>'
            "<p>The figures on this page, for every period, free to reuse under the Open Government "
            f'Licence v3.0.</p><ul class="files">{links}</ul></section>'
        )
    parts += [
        "</main>",
        '<footer class="width"><p>Completion rate, user satisfaction, cost per transaction and '
        "digital take-up are the four KPIs every government service measures (GOV.UK Service Manual).</p>"
        "</footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _notes(extra: Sequence[str] = ()) -> str:
    own = "".join(f"<li>{html.escape(note)}</li>" for note in extra)
    return (
        '<section aria-labelledby="notes-heading"><h2 id="notes-heading">About these figures</h2>'
        '<ul class="notes">'
        "<li>A figure shown as <em>unknown</em> had nothing to divide by in its period: no transactions "
        "started, no answers, no completed transactions, or no cost records. It is never shown as 0%.</li>"
        "<li>A period marked <em>partial</em> was not over when this page was published; its figures "
        "will grow.</li>"
        "<li>Records sent live by the service and records loaded from its history (backfilled) count "
        "the same; a period's figures can change when history is loaded.</li>"
        "<li>A period's cost is the cost records whose own period lies inside it: a month's costs count "
        "in its quarter and year.</li>"
        f"{own}</ul></section>"
    )


def _trend(key: str, p: PeriodKpis, previous_name: str) -> tuple[str, str, str]:
    change = p.change(key)
    words = format_change(key, change)
    if change is None:
        return f"No comparison with {previous_name}", "", "flat"
    if words == "no change":
        return f"No change from {previous_name}", "&#9654;", "flat"
    # Colour says good or bad (a falling cost is good); the words and arrow say which way.
    good = (change > 0) != (key == "cost_per_transaction")
    arrow = "&#9650;" if change > 0 else "&#9660;"
    return f"{words[0].upper()}{words[1:]} from {previous_name}", arrow, "good" if good else "bad"


def _headlines(report: KpiReport, as_of: date, context: PageContext | None) -> str:
    p = latest_complete(report.periods, as_of) or report.periods[-1]
    previous_name = human_label(p.period, period_containing(p.start, p.period).previous().start)
    esc = html.escape
    items = []
    for key in KPI_KEYS:
        kpi = p.kpi(key)
        trend, arrow, css = _trend(key, p, previous_name)
        if kpi.flag:
            basis = f"Not shown: {kpi.flag}"
        elif kpi.denominator or key != "cost_per_transaction":
            basis = f"{format_fraction(key, kpi)} {_WHAT[key]}"
        else:
            basis = "no completed transactions"
        extra = ""
        target = p.targets.get(key)
        if target is not None:
            extra += f'<p class="basis">Target: {esc(target.describe())}, {esc(target.status)}</p>'
        if context and key in context.ranks:
            rank, of = context.ranks[key]
            median = format_value(key, context.medians.get(key))
            extra += f'<p class="basis">Ranked {rank} of {of} services; median {esc(median)}</p>'
        items.append(
            f'<li class="headline" id="headline-{key.replace("_", "-")}">'
            f'<h3 class="headline-name">{KPI_NAMES[key]}</h3>'
            f'<p class="figure">{"not shown" if kpi.flag else esc(format_value(key, kpi.value))}</p>'
            f'<p class="trend trend-{css}">'
            + (f'<span aria-hidden="true">{arrow}</span> ' if arrow else "")
            + f"{esc(trend)}</p>"
            f'<p class="basis">{esc(basis)}</p>{extra}'
            "</li>"
        )
    others = "".join(
        f'<tr><th scope="row">{esc(o.definition.name)}</th><td class="num">{esc(o.formatted())}</td>'
        f"<td>{esc(o.target.describe() + ', ' + o.target.status) if o.target else ''}</td></tr>"
        for o in p.other
    )
    other_kpis = (
        '<h3 class="other-heading">Other KPIs</h3><div class="table-wrap"><table><thead><tr>'
        '<th scope="col">KPI</th><th scope="col">Value</th><th scope="col">Target</th></tr></thead>'
        f"<tbody>{others}</tbody></table></div>"
        if others
        else ""
    )
    name = _name(p, as_of)
    return (
        '<section aria-labelledby="headlines-heading">'
        f'<h2 id="headlines-heading">{esc(name)} at a glance</h2>'
        f'<ul class="headlines">{"".join(items)}</ul>{other_kpis}'
        "</section>"
    )


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{value * 100:.1f}%"


def _count(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"


def _channel(p: PeriodKpis, channel: str) -> int:
    return next((c.completed for c in p.channels if c.channel == channel), 0)


class _Charts:
    """One section per chart: heading, SVG with its text alternative, HTML legend, and its data table."""

    def __init__(self, report: KpiReport, as_of: date) -> None:
        self.report = report
        self.periods: Sequence[PeriodKpis] = report.periods
        self.kind = report.kind
        self.as_of = as_of
        self.names = [_name(p, as_of) for p in self.periods]
        self.unit = {"financial-year": "financial year"}.get(report.kind, report.kind)
        self.x = _axis_labels(self.periods)
        self.partial = [p.partial or p.end > as_of for p in self.periods]

    def completion_rate(self) -> str:
        return self._rate("completion_rate", "Digital completed", "Digital started")

    def digital_take_up(self) -> str:
        return self._rate("digital_take_up", "Digital completed", "Completed, all channels")

    def _rate(self, key: str, num_name: str, den_name: str) -> str:
        name = KPI_NAMES[key]
        description = f"Line chart of {name.lower()} by {self.unit}. {self._summary(key)}"
        marks, note = self._marks()
        svg = line_chart(
            f"{name}. {description}",
            [p.kpi(key).value for p in self.periods],
            self.x,
            lambda v: f"{v * 100:.0f}%",
            marks,
            self.partial,
        )
        rows = [
            [n, _pct(p.kpi(key).value), _count(p.kpi(key).numerator), _count(p.kpi(key).denominator)]
            for n, p in zip(self.names, self.periods, strict=True)
        ]
        return self._section(key, name, svg, description, ["Period", name, num_name, den_name], rows, note=note)

    def _marks(self) -> tuple[list[float], str | None]:
        """Change markers (``perf-sdk mark``) as chart positions, and a sentence naming them."""
        positions, words = [], []
        for i, p in enumerate(self.periods):
            for m in self.report.marks_in(p):
                day = m.at.astimezone(timezone.utc).date()
                positions.append(i + (day - p.start).days / max(1, (p.end - p.start).days))
                words.append(f"{m.label} ({day.day} {day:%B %Y})")
        if not words:
            return positions, None
        return positions, "Dashed lines mark changes to the service: " + "; ".join(words) + "."

    def user_satisfaction(self) -> str:
        key = "user_satisfaction"
        name = KPI_NAMES[key]
        description = f"Stacked bar chart of the share of answers at each level, by {self.unit}. {self._summary(key)}"
        svg = stacked_chart(
            f"{name}. {description}",
            [[p.ratings.get(r, 0) for r in RATINGS] for p in self.periods],
            _RATING_COLOURS,
            self.x,
            self.partial,
        )
        rows = [
            [
                n,
                _pct(p.user_satisfaction.value),
                _pct(p.satisfaction_score.value),
                *(f"{p.ratings.get(r, 0):,}" for r in RATINGS),
                _count(p.user_satisfaction.denominator),
            ]
            for n, p in zip(self.names, self.periods, strict=True)
        ]
        return self._section(
            key,
            name,
            svg,
            description,
            [
                "Period",
                "Satisfied or very satisfied",
                "Overall score",
                *(RATING_LABELS[r] for r in RATINGS),
                "Answers",
            ],
            rows,
            legend=[(RATING_LABELS[r], c) for r, c in zip(reversed(RATINGS), reversed(_RATING_COLOURS), strict=True)],
            note="User satisfaction is the share of answers rating the service satisfied or very satisfied. "
            "The overall score counts very satisfied as 100%, satisfied as 75%, neither as 50%, dissatisfied "
            "as 25% and very dissatisfied as 0%, averaged.",
        )

    def cost_per_transaction(self) -> str:
        key = "cost_per_transaction"
        name = KPI_NAMES[key]
        description = f"Bar chart of cost per transaction in pounds by {self.unit}. {self._summary(key)}"
        values = [None if (v := p.cost_per_transaction.value) is None else v / 100 for p in self.periods]
        svg = bar_chart(f"{name}. {description}", values, self.x, _pounds_tick, self.partial)
        rows = [
            [
                n,
                format_value(key, p.cost_per_transaction.value),
                format_pence(p.cost_per_transaction.numerator) if p.costs_by_type else "no cost records",
                _count(p.cost_per_transaction.denominator),
            ]
            for n, p in zip(self.names, self.periods, strict=True)
        ]
        return self._section(
            key, name, svg, description, ["Period", name, "Total cost", "Completed, all channels"], rows
        )

    def channel_mix(self) -> str:
        channels = [c for c in CHANNELS if any(_channel(p, c) for p in self.periods)]
        channels += sorted({c.channel for p in self.periods for c in p.channels} - set(CHANNELS))
        channels = channels or ["digital"]
        words = [c.replace("_", " ") for c in channels]
        colours = [_CHANNEL_COLOURS.get(c, "#505a5f") for c in channels]
        latest = self.periods[-1]
        total = sum(_channel(latest, c) for c in channels)
        mix = ", ".join(
            f"{w} {_pct(_channel(latest, c) / total if total else None)}" for c, w in zip(channels, words, strict=True)
        )
        summary = f"In {self.names[-1]}: {mix}." if total else f"No completed transactions in {self.names[-1]}."
        description = f"Stacked bar chart of completed transactions by channel, by {self.unit}. {summary}"
        svg = stacked_chart(
            f"Channel mix. {description}",
            [[_channel(p, c) for c in channels] for p in self.periods],
            colours,
            self.x,
            self.partial,
        )
        rows = []
        for n, p in zip(self.names, self.periods, strict=True):
            all_ = sum(_channel(p, c) for c in channels)
            cells = [f"{_channel(p, c):,} ({_pct(_channel(p, c) / all_ if all_ else None)})" for c in channels]
            rows.append([n, *cells, f"{all_:,}"])
        return self._section(
            "channel_mix",
            "Channel mix",
            svg,
            description,
            ["Period", *(f"Completed, {w}" for w in words), "Completed, all channels"],
            rows,
            legend=list(reversed(list(zip(words, colours, strict=True)))),
        )

    def _summary(self, key: str) -> str:
        known = [(n, p) for n, p in zip(self.names, self.periods, strict=True) if p.kpi(key).value is not None]
        if not known:
            return "No figures are known in this range."
        (n0, first), (n1, last) = known[0], known[-1]
        if first is last:
            return f"{n0}: {format_value(key, first.kpi(key).value)}."
        return f"From {format_value(key, first.kpi(key).value)} in {n0} to {format_value(key, last.kpi(key).value)} in {n1}."

    def _section(
        self,
        key: str,
        name: str,
        svg: str,
        description: str,
        header: list[str],
        rows: list[list[str]],
        *,
        legend: Sequence[tuple[str, str]] = (),
        note: str | None = None,
    ) -> str:
        slug = key.replace("_", "-")
        esc = html.escape
        head = "".join(f'<th scope="col">{esc(h)}</th>' for h in header)
        body = "".join(
            f'<tr><th scope="row">{esc(r[0])}</th>' + "".join(f'<td class="num">{esc(c)}</td>' for c in r[1:]) + "</tr>"
            for r in rows
        )
        keys = "".join(
            f'<li><span class="swatch" style="background:{colour}"></span>{esc(text)}</li>' for text, colour in legend
        )
        return (
            f'<section class="chart-section" aria-labelledby="{slug}-heading">'
            f'<h2 id="{slug}-heading">{esc(name)}</h2>'
            + (f'<p class="note">{esc(note)}</p>' if note else "")
            + f'<figure class="chart">{svg}'
            + (f'<ul class="legend" aria-label="Key">{keys}</ul>' if keys else "")
            + f"<figcaption>{esc(description)}{_PARTIAL_NOTE if any(self.partial) else ''}</figcaption></figure>"
            f'<details class="data"><summary>{esc(name)}: the figures as a table</summary>'
            f'<div class="table-wrap" role="region" aria-labelledby="{slug}-caption" tabindex="0">'
            f'<table><caption id="{slug}-caption">{esc(name)} by {self.unit}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></details>"
            "</section>"
        )


_PARTIAL_NOTE: Final = " The last period is not over yet: it is drawn hollow or paler."


def _pounds_tick(value: float) -> str:
    return f"£{value:,.0f}" if value >= 100 or float(value).is_integer() else f"£{value:,.2f}"


def _axis_labels(periods: Sequence[PeriodKpis]) -> list[str | None]:
    """Labels that fit under 360 units: every period when few, else the years, thinned to about six."""
    n = len(periods)
    if not periods:
        return []
    kind = periods[0].period
    if kind == "quarter" and n <= 4:
        return [short_label("quarter", p.start).rsplit(" ", 1)[0] for p in periods]
    if kind == "month" and n <= 6:
        return [short_label("month", p.start).split(" ")[0] for p in periods]
    if kind in ("year", "financial-year"):
        step = max(1, -(-n // 5))
        return [human_label(kind, p.start) if i % step == 0 else None for i, p in enumerate(periods)]
    firsts = [i for i, p in enumerate(periods) if p.start.month == 1] or [0]
    step = max(1, -(-len(firsts) // 5))
    keep = set(firsts[::step])
    return [str(p.start.year) if i in keep else None for i, p in enumerate(periods)]


CSS: Final = """
*,*::before,*::after{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font-family:Arial,Helvetica,sans-serif;font-size:1.1875rem;line-height:1.4;color:#0b0c0c;
background:#fff}
.width{max-width:960px;margin:0 auto;padding:0 15px}
.skip-link{position:absolute;left:-9999px;top:0;padding:10px 15px;background:#fd0;color:#0b0c0c}
.skip-link:focus{left:0;z-index:10}
a{color:#1d70b8}
a:visited{color:#4c2c92}
a:hover{color:#003078}
:focus-visible{outline:3px solid #fd0;outline-offset:0;box-shadow:0 0 0 6px #0b0c0c}
.masthead{background:#0b0c0c;color:#fff;padding:20px 0 24px;border-bottom:10px solid #1d70b8}
.masthead a,.masthead a:visited{color:#fff}
.masthead h1{margin:0 0 8px;font-size:2rem;line-height:1.15;overflow-wrap:anywhere}
.eyebrow{margin:0 0 4px;color:#f3f2f1;font-size:1rem}
.meta{margin:0 0 4px;color:#f3f2f1;font-size:1rem}
main{padding-top:10px;padding-bottom:20px}
main:focus{outline:none}
h2{font-size:1.5rem;margin:36px 0 12px}
.notice{border-left:10px solid #1d70b8;background:#f3f2f1;padding:10px 15px;margin:20px 0 0}
.notice p{margin:0}
.headlines{list-style:none;margin:0;padding:0;display:grid;gap:15px;
grid-template-columns:repeat(auto-fit,minmax(200px,1fr))}
.headline{border-top:5px solid #1d70b8;background:#f3f2f1;padding:12px 15px 15px}
.headline-name{margin:0;font-size:1.1875rem}
.figure{margin:6px 0 4px;font-size:2.6rem;font-weight:700;line-height:1.1}
.trend{margin:0 0 6px;font-weight:700;font-size:1rem}
.trend-good{color:#005a30}.trend-bad{color:#942514}.trend-flat{color:#505a5f}
.basis{margin:0 0 4px;color:#505a5f;font-size:1rem}
.charts{display:grid;gap:0 40px;grid-template-columns:repeat(auto-fit,minmax(min(100%,420px),1fr))}
.chart-section{border-top:1px solid #b1b4b6;margin-top:36px;min-width:0}
.note{color:#505a5f;margin:0 0 10px;font-size:1rem}
figure.chart{margin:0}
figure.chart svg{display:block;width:100%;height:auto}
.legend{list-style:none;margin:8px 0 0;padding:0;display:flex;flex-wrap:wrap;gap:4px 16px;font-size:1rem}
.swatch{display:inline-block;width:14px;height:14px;margin-right:6px;vertical-align:-2px;border:1px solid #0b0c0c}
figcaption{color:#505a5f;font-size:1rem;margin-top:6px}
details.data{margin-top:12px}
details.data summary{cursor:pointer;color:#1d70b8;text-decoration:underline;padding:4px 0;font-size:1rem}
details.data summary:hover{color:#003078}
.table-wrap{overflow-x:auto;margin-top:8px}
table{border-collapse:collapse;width:100%;font-size:1rem}
caption{text-align:left;font-weight:700;padding:0 0 8px}
th,td{border-bottom:1px solid #b1b4b6;padding:8px 12px 8px 0;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
thead th{border-bottom:2px solid #0b0c0c}
.other-heading{margin:24px 0 8px}
.notes,.files{padding-left:20px}
.notes li,.files li{margin-bottom:6px}
footer{color:#505a5f;font-size:1rem;padding-bottom:30px;margin-top:40px}
footer p{border-top:1px solid #b1b4b6;padding-top:15px;margin:0}
.empty{font-size:1.25rem;margin:30px 0}
@media (max-width:640px){body{font-size:1rem}.masthead h1{font-size:1.6rem}.figure{font-size:2.2rem}
h2{font-size:1.3rem}.headlines{grid-template-columns:1fr 1fr}}
@media (max-width:420px){.headlines{grid-template-columns:1fr}}
@media print{.skip-link,details.data summary{display:none}.masthead{background:#fff;color:#0b0c0c;
border-bottom:2px solid #0b0c0c}.masthead a,.eyebrow,.meta{color:#0b0c0c}
.table-wrap{overflow:visible}.chart-section,.headline,tr{break-inside:avoid}
a[href]::after{content:" (" attr(href) ")";font-size:.8em}
details.data::details-content{content-visibility:visible;display:block}}
"""
