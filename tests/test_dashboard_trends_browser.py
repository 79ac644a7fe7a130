"""The trends pages in a real headless browser: the dashboard's forecast, map, hierarchy and tables, and the report.

An analysis with forecasts and ``--topics`` is served; the panel's charts must render (plotly SVG),
the backtest table list every forecast series, the forecast menu switch series, and the offline
report draw the same sections. Screenshots go to test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import pytest

from _analytics_fakes import english_rows, run_fake_analysis, write_csv
from _browser import ARTIFACTS, CHROMIUM, FLAGS, serve_dashboard

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")
pytest.importorskip("statsmodels")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    root = tmp_path_factory.mktemp("trends")
    rows = english_rows(180)
    defaults = {"time_col": "date", "reducer": "pca", "min_topic_size": 10, "clusterer": "kmeans"}
    run_fake_analysis(write_csv(root / "in.csv", rows), root / "out", defaults, forecast=True, n_topics=3, horizon=5)
    return root / "out"


def _page(pw, errors: list[str]):
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.on("pageerror", lambda e: errors.append(str(e)))
    return browser, page


def test_dashboard_trends_panel_renders_and_the_menu_switches_series(analysis):
    errors: list[str] = []
    with serve_dashboard(analysis) as url, sync_api.sync_playwright() as pw:
        browser, page = _page(pw, errors)
        try:
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(url) else outside.append(r.url))
            page.goto(url)
            page.wait_for_selector("body[data-trends-ready='1']", timeout=30_000)
            for chart in ("t-forecast", "t-map", "t-tree"):
                assert page.locator(f"#{chart} .main-svg").count() >= 1, f"{chart} did not render"
            backtest = page.locator("#t-backtest tr").all_inner_texts()
            assert len(backtest) == 1 + 4 * 2  # a header, then all documents and 3 topics x volume and sentiment
            assert "all documents" in backtest[1]
            assert len(page.locator("#t-emerging tr").all_inner_texts()) == 1 + 3
            assert page.locator("#t-map .point").count() == 3  # one bubble per merged topic
            title = page.locator("#t-forecast .gtitle").text_content()
            page.locator("#t-forecast .updatemenu-header-group").click()
            page.locator("#t-forecast .updatemenu-dropdown-button").nth(1).click()
            page.wait_for_function(
                f"document.querySelector('#t-forecast .gtitle').textContent !== {title!r}", timeout=10_000
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-trends.png"), full_page=True)
        finally:
            browser.close()
        assert not outside, f"the page reached beyond the dashboard: {outside[:3]}"
    assert not errors, errors


def test_report_trend_sections_render_offline(analysis):
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser, page = _page(pw, errors)
        try:
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith("file:") else outside.append(r.url))
            page.goto((analysis / "report.html").as_uri())
            page.wait_for_selector(".plot-container .main-svg", timeout=30_000)
            headings = page.locator("h2").all_inner_texts()
            for section in ("Forecasts", "Forecast backtest", "Emerging topics", "Intertopic distance map"):
                assert section in headings
            assert "Topic hierarchy" in headings
            assert page.locator("table.backtest tr").count() == 1 + 4 * 2
            assert page.locator(".plot-container").count() >= 8  # the report's charts and the three new ones
            page.screenshot(path=str(ARTIFACTS / "report-trends.png"), full_page=True)
        finally:
            browser.close()
        assert not outside, outside[:3]
    assert not errors, errors
