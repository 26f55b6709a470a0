"""The hand-drawn SVG charts: named for assistive technology, scaled to round numbers, honest about gaps."""

from __future__ import annotations

import re

import pytest

from perf_sdk._publish_charts import _nice_top, bar_chart, line_chart, stacked_chart


def _pct(v: float) -> str:
    return f"{v * 100:.0f}%"


@pytest.mark.parametrize(
    ("values", "floor", "top"),
    [([0.5], 1.0, 1.0), ([24.0], 1.0, 30.0), ([31.0], 1.0, 40.0), ([190.0], 1.0, 200.0), ([1.2], 1.0, 1.2)],
)
def test_axis_tops_are_four_round_steps(values: list[float], floor: float, top: float) -> None:
    assert _nice_top(values, floor) == top


def test_every_chart_is_one_named_image() -> None:
    for svg in (
        line_chart("Completion rate. Up.", [0.5, 0.6], ["2025", None], _pct),
        bar_chart("Cost. Down.", [12.0, None], ["2025", None], str),
        stacked_chart("Mix.", [[1, 2], [0, 0]], ["#000", "#fff"], ["2025", None]),
    ):
        assert svg.startswith("<svg ") and svg.endswith("</svg>")
        assert svg.count('role="img"') == 1
        assert re.search(r'aria-label="[^"]+"', svg)
        assert re.search(r"<title>[^<]+</title>", svg)
        assert 'viewBox="0 0 360 220"' in svg and " width=" not in svg.split(">")[0]


def test_unknown_values_leave_gaps_not_zeros() -> None:
    svg = line_chart("x", [0.5, None, 0.7, 0.8], [None] * 4, _pct)
    assert svg.count("<circle") == 3
    assert svg.count("<polyline") == 1  # a lone point before the gap has no line
    bars = bar_chart("x", [None, 3.0], [None, None], str)
    assert bars.count("<rect") == 1


def test_partial_periods_are_drawn_differently() -> None:
    line = line_chart("x", [0.5, 0.6], [None, None], _pct, partial=[False, True])
    assert line.count('fill="#fff"') == 1
    stacked = stacked_chart("x", [[1, 1], [1, 1]], ["#111", "#222"], [None, None], partial=[False, True])
    assert stacked.count('fill-opacity="0.45"') == 2 and 'stroke-dasharray="4 3"' in stacked


def test_labels_are_escaped() -> None:
    svg = bar_chart('<b>"x"</b>', [1.0], ["<i>"], str)
    assert "<b>" not in svg and "<i>" not in svg
