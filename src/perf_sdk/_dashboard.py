"""The KPI dashboard: one self-contained, accessible HTML file.

A service publishes its KPIs to people who may read them offline, on a phone,
with a screen reader, or years later from an archive. So the page has no
script and fetches nothing: charts are drawn once with altair and rendered to
static SVG by vl-convert, inlined, each with a text alternative and the same
figures as a data table (WCAG 2.1 AA). Needs the ``dashboard`` extra.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Final

from perf_sdk._errors import ConfigurationError
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
from perf_sdk._protocol import CHANNELS

__all__ = ["dashboard_html", "render_dashboard"]

# GOV.UK Design System colours: text and accents meet WCAG AA on white.
_TEXT: Final = "#0b0c0c"
_SECONDARY: Final = "#505a5f"
_BLUE: Final = "#1d70b8"
_RATING_COLOURS: Final = ("#d4351c", "#f47738", "#b1b4b6", "#85994b", "#00703c")
_RATING_NAMES: Final = {
    1: "1 very dissatisfied",
    2: "2 dissatisfied",
    3: "3 neither",
    4: "4 satisfied",
    5: "5 very satisfied",
}
_CHANNEL_COLOURS: Final = {
    "digital": "#1d70b8",
    "phone": "#f47738",
    "paper": "#4c2c92",
    "face_to_face": "#28a197",
    "other": "#505a5f",
}
_CHANNEL_NAMES: Final = {"face_to_face": "face to face"}
_ADJECTIVES: Final = {
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


def _modules() -> tuple[Any, Any]:
    try:
        import altair
        import vl_convert
    except ImportError as exc:
        raise ConfigurationError(
            f"the KPI dashboard needs altair and vl-convert ({exc.name} is missing): pip install 'perf-sdk[dashboard]'"
        ) from exc
    return altair, vl_convert


def render_dashboard(report: KpiReport, path: str | os.PathLike[str]) -> Path:
    """Write the dashboard to ``path`` (directories created) and return it."""
    target = Path(path)
    page = dashboard_html(report)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


def dashboard_html(report: KpiReport) -> str:
    """The dashboard as one HTML string: no script, no external file, readable from ``file://``."""
    alt, vlc = _modules()
    esc = html.escape
    service = report.service or "Service"
    published = report.published_at.astimezone(timezone.utc)
    adjective = _ADJECTIVES[report.kind]
    if report.start and report.end:
        span = f"{adjective} figures from {_long_date(report.start)} to {_long_date(report.end)}"
    else:
        span = "No data in the period asked for"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en-GB">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(service)}: performance</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        '<a class="skip-link" href="#main">Skip to main content</a>',
        '<header class="masthead"><div class="width">',
        '<p class="eyebrow">Service performance</p>',
        f"<h1>{esc(service)}</h1>",
        f'<p class="meta">{esc(span)}.<br>Published at <time datetime="{published.isoformat()}">'
        f"{esc(_long_datetime(published))}</time>.</p>",
        "</div></header>",
        '<main id="main" class="width" tabindex="-1">',
    ]
    if not report.periods:
        parts.append('<p class="empty">There are no records for this service in the period asked for.</p>')
    else:
        parts.append(_headlines(report))
        charts = _Charts(alt, vlc, report)
        parts.extend(
            [
                '<div class="charts">',
                charts.completion_rate(),
                charts.user_satisfaction(),
                charts.cost_per_transaction(),
                charts.digital_take_up(),
                charts.channel_mix(),
                "</div>",
            ]
        )
    parts += [
        "</main>",
        '<footer class="width"><p>Completion rate, user satisfaction, cost per transaction and '
        "digital take-up are the four KPIs every government service measures (GOV.UK Service Manual). "
        "A figure shown as <em>unknown</em> had nothing to divide by in its period: no transactions, "
        "no answers, or no cost records.</p></footer>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def _long_datetime(at: datetime) -> str:
    return f"{at.day} {at:%B %Y at %H:%M} UTC"


def _headlines(report: KpiReport) -> str:
    latest = report.periods[-1]
    previous_label = period_containing(latest.start, report.kind).previous().label
    items = []
    for key in KPI_KEYS:
        kpi = latest.kpi(key)
        change = latest.change(key)
        words = format_change(key, change)
        if change is None:
            trend, arrow, css = f"No comparison with {previous_label}", "", "flat"
        elif words == "no change":
            trend, arrow, css = f"No change from {previous_label}", "&#9654;", "flat"
        else:
            # Colour says good or bad (a falling cost is good); the words and arrow say which way.
            good = (change > 0) != (key == "cost_per_transaction")
            arrow, css = ("&#9650;" if change > 0 else "&#9660;"), ("good" if good else "bad")
            trend = f"{words[0].upper()}{words[1:]} from {previous_label}"
        basis = (
            f"{format_fraction(key, kpi)} {_WHAT[key]}"
            if kpi.denominator or key != "cost_per_transaction"
            else "no completed transactions"
        )
        items.append(
            f'<li class="headline" id="headline-{key.replace("_", "-")}">'
            f'<h3 class="headline-name">{KPI_NAMES[key]}</h3>'
            f'<p class="figure">{html.escape(format_value(key, kpi.value))}</p>'
            f'<p class="trend trend-{css}">'
            + (f'<span aria-hidden="true">{arrow}</span> ' if arrow else "")
            + f"{html.escape(trend)}</p>"
            f'<p class="basis">{html.escape(basis)}</p>'
            "</li>"
        )
    return (
        '<section aria-labelledby="headlines-heading">'
        f'<h2 id="headlines-heading">{html.escape(latest.label)} at a glance</h2>'
        f'<ul class="headlines">{"".join(items)}</ul>'
        "</section>"
    )


def _pct(value: float | None) -> str:
    return "unknown" if value is None else f"{value * 100:.1f}%"


class _Charts:
    """One section per chart: heading, inlined SVG with its text alternative, and its data table."""

    def __init__(self, alt: Any, vlc: Any, report: KpiReport) -> None:
        self.alt = alt
        self.vlc = vlc
        self.report = report
        self.periods: Sequence[PeriodKpis] = report.periods
        self.order = [p.label for p in self.periods]
        self.count = 0
        self.unit = {"financial-year": "financial year"}.get(report.kind, report.kind)

    # -- charts ---------------------------------------------------------------

    def completion_rate(self) -> str:
        return self._rate_section(
            "completion_rate",
            "Digital completed",
            "Digital started",
        )

    def digital_take_up(self) -> str:
        return self._rate_section(
            "digital_take_up",
            "Digital completed",
            "Completed, all channels",
        )

    def _rate_section(self, key: str, num_name: str, den_name: str) -> str:
        alt = self.alt
        name = KPI_NAMES[key]
        values = [{"period": p.label, "value": p.kpi(key).value} for p in self.periods]
        # Completions can outnumber starts (started last period): never cut a point off.
        top = max([1.0, *(v for p in self.periods if (v := p.kpi(key).value) is not None)])
        base = alt.Chart(alt.Data(values=values)).encode(
            x=self._x(),
            y=alt.Y(
                "value:Q",
                title=name,
                axis=alt.Axis(format=".0%"),
                scale=alt.Scale(domain=[0, top]),
            ),
            tooltip=[alt.Tooltip("period:O"), alt.Tooltip("value:Q", format=".1%")],
        )
        chart = base.mark_line(color=_BLUE, strokeWidth=3) + base.mark_point(color=_BLUE, filled=True, size=70)
        rows = [
            [p.label, _pct(p.kpi(key).value), f"{p.kpi(key).numerator:,g}", f"{p.kpi(key).denominator:,g}"]
            for p in self.periods
        ]
        return self._section(
            key,
            chart,
            f"Line chart of {name.lower()} by {self.unit}. {self._summary(key)}",
            ["Period", name, num_name, den_name],
            rows,
        )

    def user_satisfaction(self) -> str:
        alt = self.alt
        key = "user_satisfaction"
        values = [
            {"period": p.label, "rating": _RATING_NAMES[r], "order": r, "answers": p.ratings.get(r, 0)}
            for p in self.periods
            for r in RATINGS
        ]
        chart = (
            alt.Chart(alt.Data(values=values))
            .mark_bar()
            .encode(
                x=self._x(),
                y=alt.Y("answers:Q", stack="normalize", title="Share of answers", axis=alt.Axis(format=".0%")),
                color=alt.Color(
                    "rating:N",
                    title="Rating",
                    sort=[_RATING_NAMES[r] for r in RATINGS],
                    scale=alt.Scale(domain=[_RATING_NAMES[r] for r in RATINGS], range=list(_RATING_COLOURS)),
                    legend=alt.Legend(orient="bottom", columns=3),
                ),
                order=alt.Order("order:Q", sort="descending"),
                tooltip=["period:O", "rating:N", "answers:Q"],
            )
        )
        rows = [
            [
                p.label,
                _pct(p.user_satisfaction.value),
                _pct(p.satisfaction_score.value),
                *(f"{p.ratings.get(r, 0):,}" for r in RATINGS),
                f"{p.user_satisfaction.denominator:,g}",
            ]
            for p in self.periods
        ]
        return self._section(
            key,
            chart,
            f"Stacked bar chart of answers by rating, 1 to 5, by {self.unit}. {self._summary(key)}",
            [
                "Period",
                "User satisfaction (4 or 5)",
                "Weighted score",
                *(f"Rating {_RATING_NAMES[r]}" for r in RATINGS),
                "All answers",
            ],
            rows,
            note="User satisfaction is the share of answers rating the service 4 or 5. The weighted score "
            "counts 5 as 100%, 4 as 75%, 3 as 50%, 2 as 25% and 1 as 0%, averaged.",
        )

    def cost_per_transaction(self) -> str:
        alt = self.alt
        key = "cost_per_transaction"
        values = [
            {
                "period": p.label,
                "pounds": None if p.cost_per_transaction.value is None else p.cost_per_transaction.value / 100,
            }
            for p in self.periods
        ]
        chart = (
            alt.Chart(alt.Data(values=values))
            .mark_bar(color=_BLUE)
            .encode(
                x=self._x(),
                y=alt.Y(
                    "pounds:Q",
                    title="Cost per transaction (£)",
                    axis=alt.Axis(labelExpr="'£' + format(datum.value, ',.2f')"),
                ),
                tooltip=["period:O", alt.Tooltip("pounds:Q", format=",.2f", title="£")],
            )
        )
        rows = [
            [
                p.label,
                format_value(key, p.cost_per_transaction.value),
                format_pence(p.cost_per_transaction.numerator) if p.costs_by_type else "no cost records",
                f"{p.cost_per_transaction.denominator:,g}",
            ]
            for p in self.periods
        ]
        return self._section(
            key,
            chart,
            f"Bar chart of cost per transaction in pounds by {self.unit}. {self._summary(key)}",
            ["Period", "Cost per transaction", "Total cost", "Completed, all channels"],
            rows,
            note="A period's cost is the cost records whose own period lies inside it: a month's costs count "
            "in its quarter and year, a quarter's costs not in a monthly figure.",
        )

    def channel_mix(self) -> str:
        alt = self.alt
        channels = [c for c in CHANNELS if any(_channel(p, c) for p in self.periods)]
        channels += sorted({c.channel for p in self.periods for c in p.channels} - set(CHANNELS))
        if not channels:
            channels = ["digital"]
        names = [_CHANNEL_NAMES.get(c, c) for c in channels]
        colours = [_CHANNEL_COLOURS.get(c, _SECONDARY) for c in channels]
        values = [
            {"period": p.label, "channel": _CHANNEL_NAMES.get(c, c), "completed": _channel(p, c)}
            for p in self.periods
            for c in channels
        ]
        chart = (
            alt.Chart(alt.Data(values=values))
            .mark_bar()
            .encode(
                x=self._x(),
                y=alt.Y(
                    "completed:Q",
                    stack="normalize",
                    title="Share of completed transactions",
                    axis=alt.Axis(format=".0%"),
                ),
                color=alt.Color(
                    "channel:N",
                    title="Channel",
                    sort=names,
                    scale=alt.Scale(domain=names, range=colours),
                    legend=alt.Legend(orient="bottom", columns=3),
                ),
                tooltip=["period:O", "channel:N", "completed:Q"],
            )
        )
        rows = []
        for p in self.periods:
            total = sum(c.completed for c in p.channels)
            cells = [f"{_channel(p, c):,} ({_pct(_channel(p, c) / total if total else None)})" for c in channels]
            rows.append([p.label, *cells, f"{total:,}"])
        latest = self.periods[-1]
        mix = ", ".join(
            f"{n} {_pct(_channel(latest, c) / sum(x.completed for x in latest.channels))}"
            for c, n in zip(channels, names, strict=True)
            if latest.channels and sum(x.completed for x in latest.channels)
        )
        summary = f"In {latest.label}: {mix}." if mix else f"No completed transactions in {latest.label}."
        return self._section(
            "channel_mix",
            chart,
            f"Stacked bar chart of completed transactions by channel, by {self.unit}. {summary}",
            ["Period", *(f"Completed, {n}" for n in names), "Completed, all channels"],
            rows,
            title="Channel mix",
        )

    # -- plumbing -------------------------------------------------------------

    def _x(self) -> Any:
        """Periods along the bottom, slanted once there are too many to sit side by side."""
        angle = 0 if len(self.order) <= 6 else -45
        return self.alt.X(
            "period:O", sort=self.order, title=None, axis=self.alt.Axis(labelAngle=angle, labelOverlap=True)
        )

    def _summary(self, key: str) -> str:
        known = [p for p in self.periods if p.kpi(key).value is not None]
        if not known:
            return "No figures are known in this range."
        first, last = known[0], known[-1]
        if first is last:
            return f"{first.label}: {format_value(key, first.kpi(key).value)}."
        return (
            f"From {format_value(key, first.kpi(key).value)} in {first.label} "
            f"to {format_value(key, last.kpi(key).value)} in {last.label}."
        )

    def _section(
        self,
        key: str,
        chart: Any,
        description: str,
        header: list[str],
        rows: list[list[str]],
        *,
        title: str | None = None,
        note: str | None = None,
    ) -> str:
        self.count += 1
        slug = key.replace("_", "-")
        name = title or KPI_NAMES[key]
        esc = html.escape
        svg = self._svg(chart, f"c{self.count}", f"{slug}-chart-title", name, description)
        head = "".join(f'<th scope="col">{esc(h)}</th>' for h in header)
        body = "".join(
            "<tr>"
            + f'<th scope="row">{esc(r[0])}</th>'
            + "".join(f'<td class="num">{esc(c)}</td>' for c in r[1:])
            + "</tr>"
            for r in rows
        )
        return (
            f'<section class="chart-section" aria-labelledby="{slug}-heading">'
            f'<h2 id="{slug}-heading">{esc(name)}</h2>'
            + (f'<p class="note">{esc(note)}</p>' if note else "")
            + f'<figure class="chart">{svg}<figcaption>{esc(description)}</figcaption></figure>'
            f'<details class="data"><summary>{esc(name)}: the figures as a table</summary>'
            f'<div class="table-wrap" role="region" aria-labelledby="{slug}-caption" tabindex="0">'
            f'<table><caption id="{slug}-caption">{esc(name)} by {self.unit}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></details>"
            "</section>"
        )

    def _svg(self, chart: Any, prefix: str, title_id: str, title: str, description: str) -> str:
        spec = (
            chart.properties(width=400, height=220)
            .configure(font="Arial, Helvetica, sans-serif", background="white", aria=False)
            .configure_axis(labelColor=_TEXT, titleColor=_TEXT, labelFontSize=13, titleFontSize=13, gridColor="#e5e6e7")
            .configure_legend(labelColor=_TEXT, titleColor=_TEXT, labelFontSize=13, titleFontSize=13)
            .configure_view(stroke=None)
            .to_dict()
        )
        svg: str = self.vlc.vegalite_to_svg(spec)
        return _accessible_svg(svg, prefix, title_id, title, description)


def _channel(p: PeriodKpis, channel: str) -> int:
    return next((c.completed for c in p.channels if c.channel == channel), 0)


_ID_RE: Final = re.compile(r'\bid="([^"]+)"')


def _accessible_svg(svg: str, prefix: str, title_id: str, title: str, description: str) -> str:
    """Make a vl-convert SVG safe to inline beside others, responsive, and named for assistive technology.

    Each render numbers its clip paths from 1, so ids are prefixed per chart;
    the fixed size becomes a viewBox that scales to the column.
    """
    ids = set(_ID_RE.findall(svg))
    for old in sorted(ids, key=len, reverse=True):
        new = f"{prefix}-{old}"
        svg = svg.replace(f'id="{old}"', f'id="{new}"')
        svg = svg.replace(f"url(#{old})", f"url(#{new})")
        svg = svg.replace(f'href="#{old}"', f'href="#{new}"')
    start = svg.index("<svg")
    end = svg.index(">", start)
    opening = svg[start:end]
    rest = svg[end + 1 :]
    size = re.search(r'\bwidth="([\d.]+)"\s+height="([\d.]+)"', opening)
    width, height = (size.group(1), size.group(2)) if size else ("600", "300")
    opening = re.sub(r'\s(width|height|role|aria-[a-z]+)="[^"]*"', "", opening)
    if "viewBox" not in opening:
        opening += f' viewBox="0 0 {width} {height}"'
    esc: Callable[[str], str] = html.escape
    return (
        f'{opening} role="img" aria-labelledby="{title_id}" focusable="false" '
        f'preserveAspectRatio="xMinYMin meet" style="max-width:{width}px">'
        f'<title id="{title_id}">{esc(title)}. {esc(description)}</title>{rest}'
    )


_CSS: Final = """
*,*::before,*::after{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;font-family:Arial,Helvetica,sans-serif;font-size:1.1875rem;line-height:1.4;color:#0b0c0c;
background:#fff}
.width{max-width:960px;margin:0 auto;padding:0 15px}
.skip-link{position:absolute;left:-9999px;top:0;padding:10px 15px;background:#fd0;color:#0b0c0c}
.skip-link:focus{left:0;z-index:10}
a{color:#1d70b8}
:focus-visible{outline:3px solid #fd0;outline-offset:0;box-shadow:0 0 0 6px #0b0c0c}
.masthead{background:#0b0c0c;color:#fff;padding:20px 0 24px;border-bottom:10px solid #1d70b8}
.masthead h1{margin:0 0 8px;font-size:2rem;line-height:1.15;overflow-wrap:anywhere}
.eyebrow{margin:0 0 4px;color:#f3f2f1;font-size:1rem;letter-spacing:.02em}
.meta{margin:0;color:#f3f2f1;font-size:1rem}
main{padding-top:10px;padding-bottom:20px}
main:focus{outline:none}
h2{font-size:1.5rem;margin:36px 0 12px}
.headlines{list-style:none;margin:0;padding:0;display:grid;gap:15px;
grid-template-columns:repeat(auto-fit,minmax(200px,1fr))}
.headline{border-top:5px solid #1d70b8;background:#f3f2f1;padding:12px 15px 15px}
.headline-name{margin:0;font-size:1.1875rem}
.figure{margin:6px 0 4px;font-size:2.6rem;font-weight:700;line-height:1.1}
.trend{margin:0 0 6px;font-weight:700;font-size:1rem}
.trend-good{color:#005a30}.trend-bad{color:#942514}.trend-flat{color:#505a5f}
.basis{margin:0;color:#505a5f;font-size:.95rem}
.charts{display:grid;gap:0 40px;grid-template-columns:repeat(auto-fit,minmax(min(100%,420px),1fr))}
.chart-section{border-top:1px solid #b1b4b6;margin-top:36px;min-width:0}
.note{color:#505a5f;margin:0 0 10px;font-size:1rem}
figure.chart{margin:0}
figure.chart svg{display:block;width:100%;height:auto}
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
footer{color:#505a5f;font-size:1rem;padding-bottom:30px;margin-top:40px}
footer p{border-top:1px solid #b1b4b6;padding-top:15px;margin:0}
.empty{font-size:1.25rem;margin:30px 0}
@media (max-width:640px){body{font-size:1rem}.masthead h1{font-size:1.6rem}.figure{font-size:2.2rem}
h2{font-size:1.3rem}.headlines{grid-template-columns:1fr 1fr}}
@media (max-width:380px){.headlines{grid-template-columns:1fr}}
@media print{.skip-link{display:none}details.data{display:block}}
"""
