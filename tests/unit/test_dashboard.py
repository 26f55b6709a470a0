"""The dashboard is one self-contained, accessible HTML file."""

from __future__ import annotations

import re
import sys
from datetime import date, datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest

from perf_sdk._dashboard import dashboard_html, render_dashboard
from perf_sdk._kpi import Counts, KpiReport, compute_report

PUBLISHED = datetime(2026, 4, 2, 9, 30, tzinfo=timezone.utc)


def _report(**kwargs: object) -> KpiReport:
    transactions = {}
    satisfaction = {}
    costs = {}
    for i, month in enumerate([date(2025, m, 1) for m in range(1, 13)] + [date(2026, m, 1) for m in (1, 2, 3)]):
        transactions[(month, "started", "digital")] = 100 + i
        transactions[(month, "completed", "digital")] = 70 + i
        transactions[(month, "completed", "phone")] = 30
        transactions[(month, "completed", "face_to_face")] = 5
        for rating in range(1, 6):
            satisfaction[(month, rating, "digital")] = rating * 3 + i
        costs[("month", month, "all", "staff")] = 200_000
    counts = Counts(transactions, satisfaction, costs)
    return compute_report(counts, service="apply-for-a-licence", published_at=PUBLISHED, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def page() -> str:
    return dashboard_html(_report(period="quarter"))


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if a.get("id"):
            self.ids.append(str(a["id"]))


def _parse(page: str) -> _Collector:
    c = _Collector()
    c.feed(page)
    return c


def test_self_contained(page: str) -> None:
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<script" not in page.lower()  # (a published page carries only JSON-LD, no code)
    assert "<link" not in page.lower()
    assert "@import" not in page
    assert "url(http" not in page


def test_headline_figures_and_trend(page: str) -> None:
    for name in ("Completion rate", "User satisfaction", "Cost per transaction", "Digital take-up"):
        assert f'<h3 class="headline-name">{name}</h3>' in page
    assert "January to March 2026 at a glance" in page
    assert "from October to December 2025" in page
    assert "2026-Q1" not in page and "2025-Q4" not in page  # never a bare machine label
    assert "Published on" in page
    assert 'datetime="2026-04-02T09:30:00+00:00"' in page
    assert "Quarterly figures from 1 January 2025 to 31 March 2026" in page


def test_every_chart_has_a_text_alternative_and_a_table(page: str) -> None:
    parsed = _parse(page)
    svgs = [a for tag, a in parsed.tags if tag == "svg"]
    assert len(svgs) == 5
    for a in svgs:
        assert a.get("role") == "img"
        assert a.get("aria-label")  # axe's svg-img-alt: the image is named
        assert "viewbox" in a  # scales with the column (HTMLParser lower-cases names)
        assert "width" not in a
    assert page.count("<title>") == 1 + 5  # the page's, and one inside each chart
    assert not [a for tag, a in parsed.tags if a.get("role") and tag not in ("svg", "div")]
    tables = page.count("<table>")
    assert tables == 5
    assert page.count("<caption") == 5
    assert page.count("<details") == 5
    assert 'scope="col"' in page
    assert 'scope="row"' in page
    # scrollable table regions are focusable and named
    regions = [a for tag, a in parsed.tags if a.get("role") == "region"]
    assert len(regions) == 5
    assert all(a.get("tabindex") == "0" and a.get("aria-labelledby") for a in regions)


def test_ids_are_unique_across_inlined_svgs(page: str) -> None:
    ids = _parse(page).ids
    assert len(ids) == len(set(ids))
    for ref in re.findall(r"url\(#([^)]+)\)", page):
        assert ref in ids


def test_phone_ready(page: str) -> None:
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "@media (max-width:640px)" in page
    assert '<html lang="en-GB">' in page


def test_unknown_figures_say_unknown() -> None:
    counts = Counts({(date(2026, 1, 1), "started", "digital"): 3}, {}, {})
    page = dashboard_html(compute_report(counts, service="svc", published_at=PUBLISHED))
    assert page.count('<p class="figure">unknown</p>') == 3  # satisfaction, cost, take-up
    assert '<p class="figure">0.0%</p>' in page  # completion: 0 of 3 is a real 0%


def test_empty_report() -> None:
    page = dashboard_html(compute_report(Counts(), service="svc", published_at=PUBLISHED))
    assert "There are no records" in page
    assert "<svg" not in page


def test_financial_years_and_months() -> None:
    fy = dashboard_html(_report(period="financial-year"))
    assert "2025-26 at a glance" in fy
    assert "2024-25" in fy and "(partial)" not in fy
    months = dashboard_html(_report(period="month"))
    assert "March 2026 at a glance" in months


def test_render_dashboard_writes_the_file(tmp_path: Path) -> None:
    target = render_dashboard(_report(), tmp_path / "site" / "index.html")
    assert target == tmp_path / "site" / "index.html"
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_partial_period_is_marked_and_not_the_headline() -> None:
    report = _report(period="quarter")
    page = dashboard_html(
        compute_report(
            Counts(
                {(date(2026, 1, 1), "started", "digital"): 10, (date(2026, 4, 1), "started", "digital"): 5},
                {},
                {},
            ),
            service="svc",
            published_at=datetime(2026, 5, 10, tzinfo=timezone.utc),
        )
    )
    assert "April to June 2026 is not over yet." in page
    assert "April to June 2026 (partial)" in page
    assert "January to March 2026 at a glance" in page
    assert "The last period is not over yet: it is drawn hollow or paler." in page
    assert '<circle cx="' in page and 'fill="#fff" stroke-width="2"/>' in page  # the partial point is hollow
    assert report.periods


def test_satisfaction_levels_are_named() -> None:
    page = dashboard_html(_report())
    for label in (
        "Very dissatisfied",
        "Dissatisfied",
        "Neither satisfied nor dissatisfied",
        "Satisfied",
        "Very satisfied",
    ):
        assert f'<th scope="col">{label}</th>' in page


def test_print_stylesheet(page: str) -> None:
    assert "@media print" in page


def test_no_chart_library_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vl_convert", None)
    monkeypatch.setitem(sys.modules, "altair", None)
    assert "<svg" in dashboard_html(_report())
