"""The published pages in a real browser: axe-core finds nothing, on a desktop and a phone, offline.

Chromium is installed by CI (``apt-get install chromium``); without it these
tests are skipped with a message that says so. axe-core is driven through
``axe-playwright-python`` with the WCAG 2.0, 2.1 and 2.2 A/AA rules and
axe's best practices.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from perf_sdk._dashboard import render_dashboard
from perf_sdk._kpi import Counts, compute_report
from perf_sdk._publish import publish

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE_RULES = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
    }
}
WIDTHS = (1280, 390)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (CI: apt-get install chromium)"
    ),
]


def _counts(shift: int) -> Counts:
    transactions, satisfaction, costs = {}, {}, {}
    months = [date(2025, m, 1) for m in range(1, 13)] + [date(2026, m, 1) for m in (1, 2, 3)]
    for i, month in enumerate(months):
        transactions[(month, "started", "digital")] = 1000 + 25 * i + shift
        transactions[(month, "completed", "digital")] = 700 + 30 * i
        transactions[(month, "completed", "phone")] = 300 - 10 * i
        transactions[(month, "completed", "paper")] = 90 - 3 * i + shift
        for rating, n in zip(range(1, 6), (20, 30, 50, 200, 150 + 5 * i + shift), strict=True):
            satisfaction[(month, rating, "digital")] = n
        costs[("month", month, "all", "staff")] = 1_500_000 - 5_000 * i + shift
    return Counts(transactions, satisfaction, costs)


def _records(counts: Counts) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for (day, stage, channel), n in counts.transactions.items():
        out.append({"_timestamp": f"{day}T12:00:00Z", "stage": stage, "channel": channel, "count": n})
    for (day, rating, channel), n in counts.satisfaction.items():
        out.append({"_timestamp": f"{day}T12:00:00Z", "rating": rating, "channel": channel, "count": n})
    for (granularity, day, channel, cost_type), pence in counts.costs.items():
        out.append(
            {
                "_timestamp": f"{day}T00:00:00Z",
                "period": granularity,
                "amount_pence": pence,
                "channel": channel,
                "cost_type": cost_type,
            }
        )
    return out


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    report = compute_report(
        _counts(0),
        period="quarter",
        service="apply-for-a-licence",
        published_at=datetime(2026, 4, 2, 9, 30, tzinfo=timezone.utc),
    )
    return render_dashboard(report, tmp_path_factory.mktemp("dash") / "index.html")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    publish(
        out,
        records={
            "apply-for-a-licence": _records(_counts(0)),
            "renew-a-permit": _records(_counts(40)),
            "book-a-driving-test": _records(_counts(80)),
        },
        metadata={
            "apply-for-a-licence": {"title": "Apply for a licence", "organisation": "Licensing Office"},
            "renew-a-permit": {"title": "Renew a permit", "organisation": "Permit Agency"},
        },
        # mid-quarter: the current quarter is partial, marked on every page
        published_at="2026-02-15T09:30:00Z",
        base_url="https://perf.example.gov.uk/",
    )
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser: Any, path: Path, width: int) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    return page, errors, requests


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(
    "name",
    [
        "index.html",
        "apply-for-a-licence/index.html",
        "sorted/cost-per-transaction-ascending.html",
        "organisations/permit-agency.html",
        "filtered/completion-rate-above-median.html",
    ],
)
def test_axe_finds_no_violations(browser: Any, site: Path, name: str, width: int) -> None:
    axe = pytest.importorskip("axe_playwright_python.sync_playwright")
    page, errors, requests = _open(browser, site / name, width)
    try:
        results = axe.Axe().run(page, options=AXE_RULES)
        assert results.violations_count == 0, results.generate_report()
        assert errors == []
        assert requests == [(site / name).as_uri()]  # nothing fetched: works offline, from file://
        # no sideways scrolling of the page itself (a wide table scrolls in its own region)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        page.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_dashboard_alone_passes_axe_too(browser: Any, dashboard: Path, width: int) -> None:
    axe = pytest.importorskip("axe_playwright_python.sync_playwright")
    page, errors, _ = _open(browser, dashboard, width)
    try:
        results = axe.Axe().run(page, options=AXE_RULES)
        assert results.violations_count == 0, results.generate_report()
        assert errors == []
        assert page.locator("svg[role=img]").count() == 5
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{width}.png"), full_page=True)
    finally:
        page.close()


def test_chart_text_is_legible_and_inside_the_chart_on_a_phone(browser: Any, site: Path) -> None:
    page, _, _ = _open(browser, site / "apply-for-a-licence" / "index.html", 390)
    try:
        sizes = page.evaluate(
            """() => [...document.querySelectorAll('svg[role=img]')].flatMap(svg => {
                const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
                return [...svg.querySelectorAll('text')].map(t => {
                    const box = t.getBBox();
                    return {px: parseFloat(getComputedStyle(t).fontSize) * scale,
                            left: box.x, right: box.x + box.width, width: svg.viewBox.baseVal.width};
                });
            })"""
        )
        assert sizes
        assert min(s["px"] for s in sizes) >= 12  # rendered size in CSS pixels
        assert all(s["left"] >= 0 and s["right"] <= s["width"] for s in sizes), "a label is clipped"
    finally:
        page.close()


def test_keyboard_sorts_and_opens_the_tables(browser: Any, site: Path) -> None:
    page, _, _ = _open(browser, site / "index.html", 1280)
    try:
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
        link = page.get_by_role("link", name="Completion rate")
        link.focus()
        page.keyboard.press("Enter")
        page.wait_for_url("**/sorted/completion-rate-descending.html", timeout=30_000)
        assert page.locator("th[aria-sort=descending]").inner_text().startswith("Completion rate")
        page.get_by_role("link", name="Apply for a licence").focus()
        page.keyboard.press("Enter")
        page.wait_for_url("**/apply-for-a-licence/index.html", timeout=30_000)
        summary = page.locator("details.data summary").first
        summary.focus()
        page.keyboard.press("Enter")
        assert page.locator("details.data table").first.is_visible()
    finally:
        page.close()


def test_the_search_box_filters_when_script_runs(browser: Any, site: Path) -> None:
    page, _, _ = _open(browser, site / "index.html", 1280)
    try:
        page.get_by_label("Filter services by name or organisation").fill("permit")
        assert page.locator("table.list tbody tr:visible").count() == 1
        assert page.get_by_role("status").inner_text() == "1 services match"
    finally:
        page.close()


def test_print_shows_every_table(browser: Any, site: Path) -> None:
    page, _, _ = _open(browser, site / "apply-for-a-licence" / "index.html", 1280)
    try:
        page.emulate_media(media="print")
        tables = page.locator("details.data table")
        assert tables.count() == 5
        assert all(tables.nth(i).is_visible() for i in range(5))
    finally:
        page.close()


def test_partial_period_and_reader_labels(browser: Any, site: Path) -> None:
    page, _, _ = _open(browser, site / "apply-for-a-licence" / "index.html", 1280)
    try:
        text = page.locator("main").inner_text()
        assert "January to March 2026 is not over yet." in text
        assert "October to December 2025 at a glance" in text
        assert "2025-Q4" not in text and "2026-Q1" not in text
    finally:
        page.close()


@pytest.mark.parametrize(
    "name",
    [
        "index.html",
        "sorted/completion-rate-descending.html",
        "organisations/permit-agency.html",
        "filtered/completion-rate-above-median.html",
    ],
)
def test_the_services_list_fits_a_phone_without_scrolling_sideways(browser: Any, site: Path, name: str) -> None:
    """Issue 15: at 390 px each service is a card, each figure named by its column; still a table underneath."""
    page, _, _ = _open(browser, site / name, 390)
    try:
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        wrap = page.evaluate(
            "(() => { const w = document.querySelector('.table-wrap'); return [w.scrollWidth, w.clientWidth]; })()"
        )
        assert wrap[0] <= wrap[1], f"the table scrolls sideways in its region: {wrap}"
        labels = page.evaluate(
            """() => [...document.querySelectorAll('table.list tbody tr')].map(tr => {
                const headings = [...document.querySelectorAll('table.list thead th')].map(th =>
                    th.firstChild && th.firstChild.nodeType === 3 ? th.firstChild.textContent
                        : (th.querySelector('a') ? th.querySelector('a').firstChild.textContent : th.textContent));
                return [...tr.children].map((cell, i) => [cell.tagName,
                    getComputedStyle(cell, '::before').content.split('/')[0].trim(), headings[i]]);
            })"""
        )
        assert labels
        for row in labels:
            for tag, label, heading in row:
                if tag == "TD":
                    assert label == f'"{heading}"', (label, heading)  # the card names each figure by its column
        tree = page.context.new_cdp_session(page).send("Accessibility.getFullAXTree")["nodes"]
        roles = {n["role"]["value"] for n in tree if "role" in n}
        assert {"table", "row", "columnheader", "rowheader", "cell"} <= roles, roles  # still a table to a reader
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"services-list-390-{name.replace('/', '-')}.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.parametrize("width", [390, 430])
def test_a_service_page_with_unknown_figures_fits_a_phone(browser: Any, tmp_path: Path, width: int) -> None:
    """ "unknown" in a headline is wider than a number: two headlines a row must still fit, or one a row."""
    records = [r for r in _records(_counts(0)) if "stage" in r]  # no answers, no costs: two KPIs unknown
    publish(tmp_path, records={"register-a-birth": records}, published_at="2026-02-15T09:30:00Z")
    page, _, _ = _open(browser, tmp_path / "register-a-birth" / "index.html", width)
    try:
        assert page.locator(".headline .figure", has_text="unknown").count() == 2
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    finally:
        page.close()
