"""The dashboard in a real headless browser (Debian's chromium driven by Playwright's client).

The page loads with no network beyond the dashboard itself, the three charts render, a filter narrows
the table, and a screenshot is kept in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import pytest

from _analytics_fakes import english_rows, small_analysis
from _browser import ARTIFACTS, CHROMIUM, FLAGS, serve_dashboard

sync_api = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def dashboard_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    rows = english_rows(90)
    rows[1]["text"] = "质量很好，电池耐用 battery great"
    out = small_analysis(root, rows)
    with serve_dashboard(out) as url:
        yield url


def test_page_loads_charts_render_and_a_filter_changes_the_table(dashboard_url):
    outside: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("request", lambda r: None if r.url.startswith(dashboard_url) else outside.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(dashboard_url)
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            for chart in ("c-sentiment", "c-time", "c-topics"):
                assert page.locator(f"#{chart} .main-svg").count() >= 1, f"{chart} did not render"
            assert page.inner_text("#count") == "90 documents match"
            rows_before = page.locator("#docs tr").count()
            assert rows_before == 50
            assert "质量很好" in page.inner_text("#docs")  # Chinese text reaches the table intact
            page.evaluate("document.body.dataset.ready = '0'")
            page.select_option("#sentiment", "negative")
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            count = int(page.inner_text("#count").split()[0])
            assert 0 < count < 90
            cells = page.locator("#docs tr td:nth-child(5)").all_inner_texts()
            assert cells and set(cells) == {"negative"}
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert not outside, f"the page reached beyond the dashboard: {outside[:3]}"
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
