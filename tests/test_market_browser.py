"""The market dashboard in a real headless browser (Debian's chromium driven by Playwright's client), as
test_dashboard_browser.py does for analytics: the page loads with no network beyond the dashboard, the five
charts render, the metrics table fills, choosing another ticker redraws the price chart, and a screenshot
is kept in test-artifacts/ for a person to look at."""

from __future__ import annotations

import pytest

from _analytics_fakes import FakeScorer
from _browser import ARTIFACTS, CHROMIUM, FLAGS, serve_dashboard
from _market_fakes import synthetic_market

sync_api = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def market_url(tmp_path_factory):
    from megasense.market.dashboard import create_market_app
    from megasense.market.pipeline import MarketSettings, run_market

    root = tmp_path_factory.mktemp("market-browser")
    texts, prices = synthetic_market(root)
    run_market(
        texts,
        prices,
        root / "out",
        scorer=FakeScorer(),
        model_key="kw",
        cache_path=None,
        settings=MarketSettings(val_start="2015-07-01", test_start="2015-10-01"),
    )
    with serve_dashboard(root / "out", app=create_market_app(root / "out")) as url:
        yield url


@pytest.mark.slow  # a market run, a server and a browser: about a minute on a loaded machine
def test_market_page_draws_every_chart_and_switches_ticker(market_url):
    outside: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.on("request", lambda r: None if r.url.startswith(market_url) else outside.append(r.url))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(market_url)
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            for chart in ("c-price", "c-strategies", "c-calibration", "c-events", "c-importance"):
                assert page.locator(f"#{chart} .main-svg").count() >= 1, f"{chart} did not render"
            table = page.inner_text("#metrics")
            assert "always-up" in table and "(selected)" in table
            first = page.eval_on_selector("#ticker", "s => s.value")
            assert f"{first}: price and sentiment" in page.inner_text("#c-price")
            other = next(t for t in ("AAA", "BBB") if t != first)
            page.evaluate("document.body.dataset.ready = '0'")
            page.select_option("#ticker", other)
            page.wait_for_selector("body[data-ready='1']", timeout=30_000)
            assert f"{other}: price and sentiment" in page.inner_text("#c-price")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "market-dashboard.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    assert not outside, f"the page reached beyond the dashboard: {outside[:3]}"
    assert (ARTIFACTS / "market-dashboard.png").stat().st_size > 10_000
