"""Aspect discovery, listed aspects and brands in ``analyze``, on fake models: tables, report, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _analytics_fakes import FakeEmbedder, FakeResult, FakeScorer, run_fake_analysis, write_csv
from _analytics_fakes import sql as _sql
from megasense.analytics.aspects import AspectScorer, AspectSettings, aspect_tables, clause_of, discover_aspects
from megasense.analytics.phrases import PhraseExtractor, split_sentences
from megasense.analytics.terms import Term, TermMatcher, read_terms
from megasense.errors import ConfigError

PCA = {"reducer": "pca", "min_topic_size": 5}


class FakePair:
    """A pair classifier by rule: the words right after the aspect decide (``great``/``better`` positive, ``bad``/
    ``worse`` negative); "A is better than B" is positive for A and negative for B."""

    name = "fake-pair"

    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def predict(self, texts, *, aspects):
        self.pairs += list(zip(texts, aspects))
        labels = [self._label(t.lower(), a.lower()) for t, a in zip(texts, aspects)]
        probs = np.full((len(labels), 3), 0.1)
        for i, label in enumerate(labels):
            probs[i, FakeResult.label_names.index(label)] = 0.8
        return FakeResult(labels, probs.max(axis=1), probs)

    @staticmethod
    def _label(text: str, aspect: str) -> str:
        if f"than {aspect}" in text:
            return "negative" if "better than" in text else "positive"
        after = text.split(aspect, 1)[-1][:25]
        if any(w in after for w in ("great", "better", "love")):
            return "positive"
        if any(w in after for w in ("bad", "worse", "broken")):
            return "negative"
        return "neutral"


def _reviews(n: int = 60) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        text = [
            "The battery is great. The screen is bad.",
            "Samsung is better than Apple for the price.",
            "The delivery was bad, the battery life is great.",
            "The screen is great. Apple support is great.",
        ][i % 4]
        rows.append({"text": text, "date": f"2024-{1 + i % 3:02d}-{1 + i % 28:02d}"})
    return rows


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("aspects")
    brands = root / "brands.toml"
    brands.write_text(
        '[[brand]]\nname = "Apple"\naliases = ["iPhone"]\nzh = ["苹果"]\n\n'
        '[[brand]]\nname = "Samsung"\nzh = ["三星"]\n',
        encoding="utf-8",
    )
    source = write_csv(root / "reviews.csv", _reviews())
    pair = FakePair()
    result = run_fake_analysis(
        source, root / "out", PCA, time_col="date", aspects="auto", brands=brands, aspect_scorer=pair, report=True
    )
    return root / "out", result, pair


def test_discovered_aspects_are_counted_with_sentiment_and_examples(analysed):
    out, result, _ = analysed
    aspects = _sql(out, "SELECT * FROM aspects ORDER BY mentions DESC")
    names = aspects["aspect"].tolist()
    assert {"battery", "screen", "delivery"} <= set(names), names
    assert not {"apple", "samsung"} & set(names)  # brands are not aspects
    battery = aspects.set_index("aspect").loc["battery"]
    assert battery["positive"] == 1.0 and battery["negative"] == 0.0 and battery["net_sentiment"] == 1.0
    screen = aspects.set_index("aspect").loc["screen"]
    assert screen["mentions"] == 30 and screen["positive"] == 0.5 and screen["negative"] == 0.5
    examples = json.loads(screen["examples"])
    assert {e["sentiment"] for e in examples} == {"positive", "negative"}
    assert result.summary["aspects"]["source"] == "discovered"
    mentions = _sql(out, "SELECT * FROM aspect_mentions")
    assert set(mentions.columns) >= {"doc_id", "aspect", "form", "sentiment", "score"}


def test_brands_sentiment_follows_the_comparison(analysed):
    out, _, pair = analysed
    mentions = _sql(out, "SELECT * FROM brand_mentions")
    compared = mentions[mentions["doc_id"] % 4 == 1].set_index("brand")["sentiment"]
    assert (compared.loc["Samsung"] == "positive").all() and (compared.loc["Apple"] == "negative").all()
    brands = _sql(out, "SELECT * FROM brands").set_index("brand")
    assert brands.loc["Apple", "mentions"] == 30 and brands.loc["Samsung", "mentions"] == 15
    assert brands["share_of_voice"].sum() == pytest.approx(1.0)
    co = _sql(out, "SELECT * FROM brand_comentions")
    assert co.to_dict("records") == [{"brand_a": "Apple", "brand_b": "Samsung", "documents": 15}]
    series = _sql(out, "SELECT * FROM brand_timeseries")
    assert series.groupby("period")["share_of_voice"].sum().round(6).eq(1.0).all()
    # the comparison rules decide both brands there: the pair model never sees those (sentence, brand) pairs
    compared = [a for t, a in pair.pairs if t.startswith("Samsung is better")]
    assert compared and not {"Samsung", "Apple"} & set(compared), compared  # its aspects ("price") still go
    assert set(mentions.loc[mentions["doc_id"] % 4 == 1, "comparison"]) == {"than"}
    assert set(mentions.loc[mentions["doc_id"] % 4 != 1, "comparison"]) == {""}


def test_report_has_aspect_and_brand_pages(analysed):
    out, _, _ = analysed
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Aspects" in page and "Brands" in page and "Share of voice" in page
    assert "Samsung is better than Apple for the price." in page


def test_listed_aspects_override_discovery(tmp_path):
    aspects = tmp_path / "aspects.toml"
    aspects.write_text('[[aspect]]\nname = "power"\nsynonyms = ["battery", "battery life"]\n', encoding="utf-8")
    source = write_csv(tmp_path / "in.csv", _reviews(20))
    result = run_fake_analysis(source, tmp_path / "out", PCA, aspects=aspects, aspect_scorer=FakePair(), report=False)
    table = _sql(tmp_path / "out", "SELECT * FROM aspects")
    assert table["aspect"].tolist() == ["power"] and table["mentions"].item() == 10
    assert table["source"].item() == "listed" and result.summary["aspects"]["source"] == "listed"
    forms = _sql(tmp_path / "out", "SELECT DISTINCT form FROM aspect_mentions ORDER BY form")["form"].tolist()
    assert forms == ["battery", "battery life"]  # the longest form wins where forms overlap


def test_chinese_mentions_use_the_clause_scorer(tmp_path):
    brands = tmp_path / "brands.toml"
    brands.write_text('[[brand]]\nname = "Huawei"\nzh = ["华为"]\n[[brand]]\nname = "Xiaomi"\nzh = ["小米"]\n')
    rows = [{"text": "华为的屏幕很好，小米的电池很差"}] * 6
    source = write_csv(tmp_path / "in.csv", rows)
    pair = FakePair()
    run_fake_analysis(source, tmp_path / "out", PCA, lang="zh", brands=brands, aspect_scorer=pair, report=False)
    table = _sql(tmp_path / "out", "SELECT brand, positive, negative FROM brands ORDER BY brand")
    assert table.to_dict("records") == [
        {"brand": "Huawei", "positive": 1.0, "negative": 0.0},
        {"brand": "Xiaomi", "positive": 0.0, "negative": 1.0},
    ]
    assert pair.pairs == []  # Chinese sentences never reach the English pair model


def test_term_files_are_checked_with_the_entry_named(tmp_path):
    bad = tmp_path / "brands.toml"
    bad.write_text('[[brand]]\nname = "Apple"\nalias = ["iPhone"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"brands.toml: \[\[brand\]\] number 1: unknown keys \['alias'\]"):
        read_terms(bad, "brand")
    bad.write_text('[[brand]]\nname = "Apple"\n[[brand]]\nname = "apple"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="named more than once"):
        read_terms(bad, "brand")
    bad.write_text('[[aspect]]\nname = "x"\nsynonyms = "y"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="'synonyms' must be a list"):
        read_terms(bad, "aspect")
    bad.write_text("name = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"expected \[\[aspect\]\] tables"):
        read_terms(bad, "aspect")


def test_matcher_whole_words_longest_first_and_chinese_substrings():
    matcher = TermMatcher([Term("Apple", ("Apple", "苹果")), Term("battery", ("battery", "battery life"))])
    assert matcher.find("apple's battery life beats pineapple") == [(0, "apple"), (1, "battery life")]
    assert matcher.find("我买了苹果手机") == [(0, "苹果")]
    brands = TermMatcher([Term("OPPO", ("OPPO",)), Term("vivo", ("vivo",))])
    assert brands.find("相比OPPO，vivo的拍照更好") == [(0, "OPPO"), (1, "vivo")]  # Latin names touching Chinese
    assert brands.find("OPPOS and vivo2 are other words") == []
    assert TermMatcher([]).find("anything") == []


def test_phrases_sentences_and_clauses():
    extract = PhraseExtractor()
    assert extract("The battery life of this laptop is great but the screen is dim.") == [
        "battery life",
        "laptop",
        "screen",
    ]
    assert split_sentences("Good food. Slow service!\nNice view") == ["Good food.", "Slow service!", "Nice view"]
    assert clause_of("the food was great but the service was slow", "service") == "the service was slow"
    assert clause_of("华为很好，小米很差", "小米") == "小米很差"


def test_discovery_merges_similar_phrases_and_needs_enough_documents():
    texts = ["The battery is fine."] * 3 + ["The batteries died."] * 3 + ["The keyboard is nice."] * 2

    class Embed:
        def embed(self, phrases):
            return np.array([[1.0, 0.0] if p.startswith("batter") else [0.0, 1.0] for p in phrases])

    found = discover_aspects(lambda: iter([(range(8), texts)]), Embed(), AspectSettings(min_documents=3))
    assert found == [Term("battery", ("battery", "batteries"))]


def test_no_scorer_leaves_sentiment_empty():
    tables, facts = aspect_tables(
        lambda: iter([([0, 1], ["Apple is fine.", "Apple again."])]),
        AspectSettings(brands=[Term("Apple", ("Apple",))], discover=False),
        embedder=None,
        scorer=AspectScorer(),
    )
    assert tables["brands"]["mentions"].item() == 2 and np.isnan(tables["brands"]["positive"].item())
    assert set(tables) == {"brands", "brand_mentions", "brand_comentions"} and facts["aspects"]["scored"] is False


def test_fake_scorer_is_the_sentence_fallback():
    scorer = AspectScorer(None, FakeScorer())
    labels, _ = scorer.predict(["the food was great but the service was bad"], ["service"])
    assert labels == ["negative"]
    assert isinstance(FakeEmbedder().embed(["x"]), np.ndarray)


def test_dashboard_serves_the_aspect_and_brand_panel(analysed, tmp_path):
    from fastapi.testclient import TestClient

    from megasense.analytics.dashboard import create_dashboard_app

    out, _, _ = analysed
    client = TestClient(create_dashboard_app(out))
    assert 'id="aspects-panel"' in client.get("/").text
    assert client.get("/aspects.js").status_code == 200
    data = client.get("/api/aspects").json()
    assert all(data["figures"][name] is not None for name in ("aspects", "brands", "voice", "comentions"))
    apple = next(r for r in data["brands"] if r["name"] == "Apple")
    assert apple["mentions"] == 30 and apple["examples"]
    assert {r["name"] for r in data["aspects"]} >= {"battery", "screen"}
    plain = run_fake_analysis(write_csv(tmp_path / "in.csv", _reviews(20)), tmp_path / "plain", PCA, report=False)
    empty = TestClient(create_dashboard_app(plain.directory)).get("/api/aspects").json()
    assert empty == {
        "figures": dict.fromkeys(("aspects", "brands", "voice", "comentions")),
        "aspects": [],
        "brands": [],
    }


@pytest.mark.slow
def test_aspect_panel_renders_in_a_real_browser(analysed):
    from _browser import CHROMIUM, FLAGS, serve_dashboard

    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("uvicorn")
    out, _, _ = analysed
    with serve_dashboard(out) as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector("body[data-aspects-ready='1']", timeout=30_000)
            for chart in ("a-aspects", "a-brands", "a-voice", "a-comentions"):
                assert page.locator(f"#{chart} .main-svg").count() >= 1, f"{chart} did not render"
            assert "Samsung is better than Apple for the price." in page.inner_text("#a-brand-rows")
            assert not errors, errors
        finally:
            browser.close()


def test_a_bad_brands_file_fails_before_any_model_runs(tmp_path):
    from megasense.cli.main import main

    source = write_csv(tmp_path / "in.csv", _reviews(4))
    bad = tmp_path / "brands.toml"
    bad.write_text('[[brand]]\nname = ""\n', encoding="utf-8")
    with pytest.raises(SystemExit) as stopped:
        main(["analyze", str(source), "--brands", str(bad), "--out", str(tmp_path / "out"), "--no-progress"])
    assert stopped.value.code != 0 and not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match=r"number 1: 'name' must be a non-empty string"):
        run_fake_analysis(source, tmp_path / "out2", PCA, brands=bad)
