"""The finance dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

The app is served on a real socket with a seeded SQLite database. The browser signs in with basic auth,
sees the totals and the SVG chart, changes the period with the form, and downloads the CSV. At phone,
tablet, laptop and desktop widths nothing is wider than the viewport and the at-risk list shows its
open cases. `make browser` installs Chromium (`.ci/run` calls it); elsewhere these tests skip and say why.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from pathlib import Path

import pytest

from tests.conftest import base_config
from tests.integration.test_finance_dataset import FINANCE_PASSWORD, FINANCE_USER, NOW, seed
from webhook_app import create_app, migrate
from webhook_app.clock import FrozenClock

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path(os.environ.get("FINANCE_SCREENSHOT", "/tmp/finance-dashboard.png"))

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _playwright():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium with `make browser` (needs root or sudo)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(
            "playwright is not installed: `pip install -e '.[dev]'` (never `playwright install`: "
            "the test drives Debian's chromium)"
        )
    return sync_playwright


@pytest.fixture
def served_app(tmp_path):
    """The app on 127.0.0.1:<free port> (werkzeug in a thread) over a seeded SQLite file."""
    from werkzeug.serving import make_server

    config = base_config(
        f"sqlite:///{tmp_path / 'finance.sqlite3'}", FINANCE_USERNAME=FINANCE_USER, FINANCE_PASSWORD=FINANCE_PASSWORD
    )
    app = create_app(config, clock=FrozenClock(NOW))
    db = app.extensions["webhook_app"].db
    migrate.upgrade(db)
    seed(db)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        db.dispose()


def test_finance_dashboard_in_chromium_totals_chart_period_change_and_csv_download(served_app, tmp_path):
    sync_playwright = _playwright()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(
                http_credentials={"username": FINANCE_USER, "password": FINANCE_PASSWORD},
                accept_downloads=True,
                viewport={"width": 1280, "height": 900},
            )
            page = context.new_page()
            csp_violations = []
            page.on("console", lambda m: csp_violations.append(m.text) if "Content Security Policy" in m.text else None)

            response = page.goto(f"{served_app}/finance")
            assert response.status == 200
            # Dates are typed and shown as ISO dates, like the headings (a date input would use the locale).
            assert page.get_attribute("#since", "type") == "text"
            assert page.input_value("#since") == "2025-04-02" and page.input_value("#until") == "2025-06-30"
            # Default period: the last 90 days, with each currency's totals.
            assert page.text_content("#period-label").startswith("2025-04-02 – 2025-06-30")
            usd = page.locator("#currency-usd")
            assert usd.locator("[data-figure=recovered-net] .value").inner_text() == "$43.00"
            assert usd.locator("[data-figure=recovery-rate] .value").inner_text() == "60.0%"
            assert usd.locator("[data-figure=lost] .value").inner_text() == "$100.00"
            assert usd.locator("[data-figure=at-risk] .value").inner_text() == "$40.00"
            jpy = page.locator("#currency-jpy")
            assert jpy.locator("[data-figure=recovered-net] .value").inner_text() == "¥15,800"
            # The chart is drawn: an SVG per currency with visible bars, laid out by the browser.
            chart = page.locator("#chart-usd")
            assert chart.is_visible()
            box = chart.bounding_box()
            assert box["width"] > 300 and box["height"] > 80
            assert page.locator("#chart-usd rect.bar").count() == 7  # 3 recovered, 2 refunded, 2 lost weeks
            assert page.locator("#ledger tbody tr").count() == 10
            # The stylesheet loaded under the strict CSP (no inline styles): figures are laid out as a grid.
            assert page.eval_on_selector(".figures", "e => getComputedStyle(e).display") == "grid"
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            # Change the period with the form: April only.
            page.fill("#since", "2025-04-01")
            page.fill("#until", "2025-04-30")
            with page.expect_navigation():
                page.click("#apply")
            assert "since=2025-04-01" in page.url and "until=2025-04-30" in page.url
            assert page.text_content("#period-label").startswith("2025-04-01 – 2025-04-30")
            assert usd.locator("[data-figure=recovered-net] .value").inner_text() == "-$51.00"
            assert page.locator("#currency-eur").count() == 0
            assert page.locator("#ledger tbody tr").count() == 3

            # Download the CSV for that period.
            with page.expect_download() as download_info:
                page.click("#download-csv")
            download = download_info.value
            assert download.suggested_filename == "recoveries_2025-04-01_2025-04-30.csv"
            target = tmp_path / download.suggested_filename
            download.save_as(str(target))
            rows = list(csv.DictReader(io.StringIO(target.read_text())))
            assert [r["entry_key"] for r in rows] == ["refund:ch_u0:10000", "recovery:in_u1", "recovery:in_j1"]
            assert rows[1]["amount"] == "49.00" and rows[2]["amount"] == "5000"

            # A preset link changes the period too (plain links, no JavaScript).
            page.click("text=Last 30 days")
            assert page.text_content("#period-label").startswith("2025-06-01 – 2025-06-30")
            assert csp_violations == []  # nothing inline was refused by the strict policy
        finally:
            browser.close()


WIDTHS = (390, 768, 1024, 1440)
# Every element's right edge (rounded) beyond the viewport, and whether the page itself scrolls sideways.
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (Math.round(box.right) > width || Math.round(box.left) < 0) {
      const name = `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${el.className || ''}`;
      wide.push(`${name} ${Math.round(box.left)}..${Math.round(box.right)}`);
    }
  }
  return {width, scrollWidth: document.documentElement.scrollWidth, wide: wide.slice(0, 30)};
}"""


@pytest.mark.parametrize("width", WIDTHS)
def test_finance_dashboard_fits_the_viewport_and_shows_who_is_at_risk(served_app, width):
    sync_playwright = _playwright()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(
                http_credentials={"username": FINANCE_USER, "password": FINANCE_PASSWORD},
                viewport={"width": width, "height": 900},
            )
            page = context.new_page()
            assert page.goto(f"{served_app}/finance?since=2025-04-01&until=2025-06-30").status == 200
            layout = page.evaluate(OVERFLOW_JS)
            assert layout["width"] == width
            assert layout["scrollWidth"] <= width, layout
            assert layout["wide"] == [], layout
            # The at-risk list shows the seeded open case: who, the invoice number, what happens next.
            grace = page.locator('#at-risk tr[data-invoice="in_uo1"]')
            assert grace.is_visible()
            text = grace.inner_text()
            assert "grace.hopper@example.com" in text and "INV-UO1" in text and "Reminder 2" in text
            page.screenshot(path=str(SCREENSHOT.with_name(f"finance-{width}.png")), full_page=True)
            # The rate by month, on its own page, fits too.
            with page.expect_navigation():
                page.click("#months-link")
            page.wait_for_load_state()
            assert page.locator("#months-failure-usd").is_visible()
            layout = page.evaluate(OVERFLOW_JS)
            assert layout["scrollWidth"] <= width and layout["wide"] == [], layout
        finally:
            browser.close()
