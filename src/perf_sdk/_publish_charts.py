"""Small static SVG charts, drawn by hand for the published pages.

Why not a charting library: a site of 1,000 services draws 5,000 charts, and
rendering Vega-Lite to SVG costs tens of milliseconds each; these take well
under one. Drawing the SVG ourselves also lets every chart be exactly what an
accessible page needs: one ``<svg role="img">`` named by ``aria-label`` and a
``<title>`` (axe's ``svg-img-alt``), no nested roles, a ``viewBox`` sized for a
phone (360 units wide, so 14-unit text stays about 14 px at 390 px and grows
on a desktop), and no legend inside the picture (the page writes it as HTML
text, which zooms and reads aloud). The figures are always in a table beside.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Final

__all__ = ["bar_chart", "line_chart", "stacked_chart"]

WIDTH: Final = 360
HEIGHT: Final = 220
_LEFT: Final = 58
_RIGHT: Final = 10
_TOP: Final = 12
_BOTTOM: Final = 34
_TEXT: Final = "#0b0c0c"
_GRID: Final = "#b1b4b6"
_BLUE: Final = "#1d70b8"
_FONT: Final = 14


def _open(label: str) -> list[str]:
    esc = html.escape(label)
    return [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{esc}" focusable="false" '
        f'font-family="Arial,Helvetica,sans-serif" font-size="{_FONT}" fill="{_TEXT}">',
        f"<title>{esc}</title>",
    ]


def _plot() -> tuple[float, float, float, float]:
    return _LEFT, _TOP, WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM


def _y_axis(top: float, fmt: Callable[[float], str], ticks: int = 4) -> list[str]:
    x0, y0, w, h = _plot()
    out = []
    for i in range(ticks + 1):
        value = top * i / ticks
        y = y0 + h - h * i / ticks
        out.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_GRID}" stroke-width="1"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 5:.1f}" text-anchor="end">{html.escape(fmt(value))}</text>')
    return out


def _x_labels(labels: Sequence[str | None]) -> list[str]:
    """Labels under the columns; ``None`` leaves a column unlabelled (the caller thins them)."""
    x0, y0, w, h = _plot()
    n = len(labels)
    out = []
    for i, text in enumerate(labels):
        if not text:
            continue
        x = x0 + w * (i + 0.5) / n
        anchor = "middle"
        if n > 1 and i == 0 and x - 4 * len(text) < 0:
            anchor = "start"
        out.append(f'<text x="{x:.1f}" y="{y0 + h + 22}" text-anchor="{anchor}">{html.escape(text)}</text>')
    return out


_STEPS: Final = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0)


def _nice_top(values: Sequence[float], floor: float) -> float:
    """The axis top: four equal steps of a round size (1, 1.5, 2, 2.5, 3, 4, 5 or 7.5 times a power of ten)."""
    top = max([floor, *values])
    if top <= 0:
        return 1.0
    raw = top / 4
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(s for s in _STEPS if s * magnitude >= raw * (1 - 1e-9)) * magnitude
    return round(step * 4, 10)


def line_chart(
    label: str,
    values: Sequence[float | None],
    x_labels: Sequence[str | None],
    fmt: Callable[[float], str],
    marks: Sequence[float] = (),
    partial: Sequence[bool] = (),
) -> str:
    """A line of fractions (0..1, or above when completions outrun starts); gaps where unknown.

    A ``partial`` period's point is hollow: its figure is still growing.

    ``marks``: change markers as positions in periods (2.5 is halfway through the third), drawn as dashed
    vertical lines; the page names them in text beside the chart.
    """
    x0, y0, w, h = _plot()
    top = _nice_top([v for v in values if v is not None], 1.0) if any(v and v > 1 for v in values) else 1.0
    n = len(values)
    parts = _open(label) + _y_axis(top, fmt)
    segment: list[str] = []
    segments: list[list[str]] = []
    dots = []
    for i, v in enumerate(values):
        if v is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        x = x0 + w * (i + 0.5) / n
        y = y0 + h - h * v / top
        segment.append(f"{x:.1f},{y:.1f}")
        hollow = ' fill="#fff" stroke-width="2"' if i < len(partial) and partial[i] else ""
        dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{4 if n <= 24 else 2.5}"{hollow}/>')
    if segment:
        segments.append(segment)
    parts.extend(
        f'<polyline points="{" ".join(s)}" fill="none" stroke="{_BLUE}" stroke-width="3"/>'
        for s in segments
        if len(s) > 1
    )
    parts.append(f'<g fill="{_BLUE}" stroke="{_BLUE}">{"".join(dots)}</g>')
    parts += _x_labels(x_labels)
    for position in marks:
        x = x0 + w * min(max(position, 0.0), n) / n
        parts.append(
            f'<line class="mark" x1="{x:.1f}" x2="{x:.1f}" y1="{y0}" y2="{y0 + h}" stroke="{_TEXT}" '
            'stroke-width="2" stroke-dasharray="4 3"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    label: str,
    values: Sequence[float | None],
    x_labels: Sequence[str | None],
    fmt: Callable[[float], str],
    partial: Sequence[bool] = (),
) -> str:
    """One bar a period (unknown periods have none); a ``partial`` period's bar is an outline."""
    x0, y0, w, h = _plot()
    top = _nice_top([v for v in values if v is not None], 1.0)
    n = len(values)
    parts = _open(label) + _y_axis(top, fmt)
    bars = []
    for i, v in enumerate(values):
        if v is None:
            continue
        bw = w / n * 0.7
        x = x0 + w * i / n + (w / n - bw) / 2
        bh = h * v / top
        hollow = f' fill="#fff" stroke="{_BLUE}" stroke-width="2"' if i < len(partial) and partial[i] else ""
        bars.append(f'<rect x="{x:.1f}" y="{y0 + h - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}"{hollow}/>')
    parts.append(f'<g fill="{_BLUE}">{"".join(bars)}</g>')
    parts += _x_labels(x_labels)
    parts.append("</svg>")
    return "".join(parts)


def stacked_chart(
    label: str,
    columns: Sequence[Sequence[int]],
    colours: Sequence[str],
    x_labels: Sequence[str | None],
    partial: Sequence[bool] = (),
) -> str:
    """Each column's parts as shares of 100% (the first part at the bottom); empty columns stay empty.

    A ``partial`` period's column is paler, with a dashed outline.
    """
    x0, y0, w, h = _plot()
    n = len(columns)
    parts = _open(label) + _y_axis(1.0, lambda v: f"{v * 100:.0f}%")
    for i, column in enumerate(columns):
        total = sum(column)
        if not total:
            continue
        bw = w / n * 0.7
        x = x0 + w * i / n + (w / n - bw) / 2
        y = y0 + h
        pale = ' fill-opacity="0.45"' if i < len(partial) and partial[i] else ""
        for part, colour in zip(column, colours, strict=True):
            if not part:
                continue
            ph = h * part / total
            y -= ph
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{ph:.1f}" fill="{colour}"{pale}/>')
        if pale:
            parts.append(
                f'<rect x="{x:.1f}" y="{y0:.1f}" width="{bw:.1f}" height="{h:.1f}" fill="none" '
                f'stroke="{_TEXT}" stroke-width="1.5" stroke-dasharray="4 3"/>'
            )
    parts += _x_labels(x_labels)
    parts.append("</svg>")
    return "".join(parts)
