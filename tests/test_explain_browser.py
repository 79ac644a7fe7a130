"""The dashboard's explanations panel in a real headless browser: each representative post drawn with its words
on coloured backgrounds, text inserted as text (an HTML tag in a post stays visible text), and the panel
following the topic filter."""

from __future__ import annotations

import pytest

from _analytics_fakes import english_rows, small_analysis
from _browser import ARTIFACTS, CHROMIUM, FLAGS, serve_dashboard

sync_api = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


def test_explanations_panel_highlights_words_and_follows_the_topic(tmp_path):
    rows = english_rows(90)
    for row in rows[:30]:
        row["text"] = "<img src=x onerror=alert(1)> " + row["text"]
    out = small_analysis(tmp_path, rows)
    from megasense.analytics.explanations import explanations_payload

    assert len(explanations_payload(out)["posts"]) >= 3
    with serve_dashboard(out) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: errors.append("a dialog opened: " + d.message))
            page.goto(url)
            page.wait_for_selector("#x-posts p.x-post", timeout=30_000)
            posts = page.locator("#x-posts p.x-post")
            assert posts.count() >= 3
            coloured = page.locator("#x-posts span").evaluate_all(
                "spans => spans.filter(s => s.style.background.includes('rgba')).length"
            )
            assert coloured >= posts.count()
            values = page.locator("#topic option").evaluate_all("options => options.map(o => o.value)")
            first_topic = next(v for v in values if v and int(v) >= 0)  # not "all", not the outliers
            page.evaluate("document.getElementById('x-posts').dataset.ready = '0'")
            page.select_option("#topic", first_topic)
            page.wait_for_selector("#x-posts[data-ready='1'] p.x-post", timeout=30_000)
            assert 1 <= page.locator("#x-posts p.x-post").count() <= 3
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-explanations.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
