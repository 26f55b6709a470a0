"""The dashboard in a real browser: offline, from file://, on a desktop and a phone."""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from perf_sdk._dashboard import render_dashboard
from perf_sdk._kpi import Counts, compute_report

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

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    transactions, satisfaction, costs = {}, {}, {}
    months = [date(2025, m, 1) for m in range(1, 13)] + [date(2026, m, 1) for m in (1, 2, 3)]
    for i, month in enumerate(months):
        transactions[(month, "started", "digital")] = 1000 + 25 * i
        transactions[(month, "completed", "digital")] = 700 + 30 * i
        transactions[(month, "completed", "phone")] = 300 - 10 * i
        transactions[(month, "completed", "paper")] = 90 - 3 * i
        for rating, n in zip(range(1, 6), (20, 30, 50, 200, 150 + 5 * i), strict=True):
            satisfaction[(month, rating, "digital")] = n
        costs[("month", month, "all", "staff")] = 1_500_000 - 5_000 * i
    report = compute_report(
        Counts(transactions, satisfaction, costs),
        period="quarter",
        service="apply-for-a-licence",
        published_at=datetime(2026, 4, 2, 9, 30, tzinfo=timezone.utc),
    )
    return render_dashboard(report, tmp_path_factory.mktemp("dash") / "index.html")


def test_dashboard_renders_without_errors(dashboard: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            for name, width in (("dashboard", 1280), ("dashboard-phone", 390)):
                page = browser.new_page(viewport={"width": width, "height": 900})
                errors: list[str] = []
                requests: list[str] = []
                page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.on("request", lambda r, requests=requests: requests.append(r.url))
                page.goto(dashboard.as_uri())
                assert errors == []
                assert requests == [dashboard.as_uri()]  # nothing fetched beyond the file itself

                figures = page.locator(".headline .figure").all_inner_texts()
                names = page.locator(".headline-name").all_inner_texts()
                assert names == [
                    "Completion rate",
                    "User satisfaction",
                    "Cost per transaction",
                    "Digital take-up",
                ]
                assert len(figures) == 4
                assert all(f and f != "unknown" for f in figures)
                assert page.locator("svg[role=img]").count() == 5
                # No sideways scrolling on a phone: the page fits its viewport.
                assert page.evaluate("document.documentElement.scrollWidth") <= width

                # The data tables open from the keyboard.
                summary = page.locator("details.data summary").first
                summary.focus()
                page.keyboard.press("Enter")
                assert page.locator("details.data").first.get_attribute("open") is not None
                assert page.locator("details.data table").first.is_visible()
                page.keyboard.press("Enter")
                page.evaluate("document.activeElement.blur()")

                page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
                page.close()
        finally:
            browser.close()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
