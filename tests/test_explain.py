"""Word attributions: words and deletions, faithfulness by deletion on real sentences (both methods), the
CLI (highlighted text, table, --json, files), the API and POST /v1/explain."""

from __future__ import annotations

import json

import numpy as np
import pytest

from megasense.cli.main import main
from megasense.errors import MegasenseInputError
from megasense.predictors.explain import Explainer, Explanation, WordAttribution, delete_spans, faithfulness, word_spans
from megasense.predictors.results import SentimentBatch

LABELS = ("negative", "neutral", "positive")
SENTENCES = [
    "I absolutely love this phone, the battery is amazing",
    "The delivery was late and the box was broken, terrible service",
    "worst purchase ever, do not buy this again",
    "Great screen but awful battery life, very disappointed",
    "The staff were friendly and the room was spotless",
    "This update ruined everything, the app crashes all the time",
]


class KeywordPredictor:
    """Negative for each 'bad' or 'awful', positive for each 'good': a model whose reasons are known."""

    name = "keywords"
    labels = LABELS
    multi_label = False
    oos_label = ""

    def predict(self, texts, progress=None):
        probs = []
        for text in texts:
            words = text.lower().split()
            neg = sum(w.strip(",.") in ("bad", "awful") for w in words)
            pos = sum(w.strip(",.") == "good" for w in words)
            logits = np.array([neg * 2.0, 0.5, pos * 2.0])
            probs.append(np.exp(logits) / np.exp(logits).sum())
        probs = np.array(probs).reshape(len(texts), 3)
        labels = [LABELS[i] for i in probs.argmax(1)]
        return SentimentBatch(
            labels=labels, scores=probs.max(1), probs=probs, label_names=LABELS, chunks=[1] * len(texts)
        )


def test_word_spans_and_deletion() -> None:
    text = "Don't buy it: 电池很差, really!"
    words = [text[s:e] for s, e in word_spans(text)]
    assert words[:3] == ["Don't", "buy", "it"] and "really" in words and "电池" in words and "," not in words
    assert delete_spans("the box was broken today", [(8, 11), (12, 18)]) == "the box today"
    assert delete_spans("bad", [(0, 3)]) == ""


def test_occlusion_finds_the_words_the_model_uses() -> None:
    explainer = Explainer(KeywordPredictor())
    (e,) = explainer.explain(["the food was awful and the service bad, the view good"])
    assert e.label == "negative" and [w.word for w in e.top(2)] == ["awful", "bad"]
    assert next(w for w in e.words if w.word == "good").attribution < 0  # spoke against the label
    assert all(w.attribution == 0 for w in e.words if w.word in ("the", "food", "and"))
    check = faithfulness(explainer, explainer.explain(["awful food and a bad view from the small room"] * 3), k=2)
    assert check.top_drop > check.random_drop and check.wins == 3
    with pytest.raises(MegasenseInputError, match="method 'shap'"):
        Explainer(KeywordPredictor(), method="shap")


def test_html_is_escaped_and_coloured_by_attribution() -> None:
    e = Explanation(
        "<b>bad</b> & good",
        "negative",
        0.9,
        "occlusion",
        [WordAttribution("bad", 3, 6, 0.5), WordAttribution("good", 14, 18, -0.25)],
    )
    html = e.to_html()
    assert html.startswith("&lt;b&gt;<span") and "&amp;" in html and "<b>" not in html
    assert "rgba(34,160,80,0.60)" in html and "rgba(210,50,50,0.30)" in html and 'title="+0.500"' in html


@pytest.fixture(scope="module")
def sentiment_en():
    from megasense.predictors.sentiment import load_predictor

    return load_predictor("sentiment-en", precision="fp32")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["occlusion", "ig"])
def test_deleting_top_words_changes_the_score_more_than_random_words(sentiment_en, method) -> None:
    explainer = Explainer(sentiment_en, method=method, steps=16)
    explanations = explainer.explain(SENTENCES)
    check = faithfulness(explainer, explanations, k=2, draws=5)
    assert check.texts == len(SENTENCES)
    assert check.top_drop > 2 * check.random_drop, check
    assert check.wins >= len(SENTENCES) - 1, check
    tops = {e.text: [w.word.lower() for w in e.top(3)] for e in explanations}
    assert "love" in tops[SENTENCES[0]] or "amazing" in tops[SENTENCES[0]]
    assert "worst" in tops[SENTENCES[2]]


def test_cli_prints_highlighted_text_table_and_json(tmp_path, monkeypatch, capsys) -> None:
    from megasense.predictors import sentiment

    monkeypatch.setattr(sentiment, "load_predictor", lambda *a, **k: KeywordPredictor())
    with pytest.raises(SystemExit) as done:
        main(["explain", "the soup was awful, good bread", "--top", "2"])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    assert "negative" in out and "awful" in out and "attribution" in out
    source = tmp_path / "posts.jsonl"
    source.write_text("\n".join(json.dumps({"body": t}) for t in ["bad bad day", "good good food", "meh"]) + "\n")
    with pytest.raises(SystemExit) as done:
        main(["explain", str(source), "--text-col", "body", "--json", "--no-progress"])
    assert done.value.code in (0, None)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["negative", "positive", "neutral"] and rows[1]["top"] == ["good", "good"]
    with pytest.raises(SystemExit) as done:
        main(["explain", str(source), "--text-col", "text", "--no-progress"])
    assert done.value.code == 2 and "'text'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["explain", "fine", "--method", "lime"])
    assert done.value.code == 2 and "--method 'lime'" in capsys.readouterr().err


def test_api_explain_takes_a_loaded_predictor() -> None:
    import megasense

    one = megasense.explain("good phone, bad case, awful screen", model=KeywordPredictor(), top=1)
    assert one["label"] == "negative" and len(one["top"]) == 1 and one["method"] == "occlusion"
    assert len(megasense.explain(["good", "bad"], model=KeywordPredictor())) == 2


def test_service_explain_endpoint() -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from megasense.service.app import create_app
    from megasense.service.backends import ClassifierBackend
    from megasense.service.settings import ServiceSettings

    settings = ServiceSettings(embedding_model=None, max_chars_per_text=100)
    app = create_app(settings, backends=lambda s: [ClassifierBackend("keywords", KeywordPredictor())])
    with TestClient(app) as client:
        answer = client.post("/v1/explain", json={"text": "awful screen, good battery", "top": 1})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"] == "keywords" and body["results"][0]["top"] == ["awful"]
        assert {w["word"] for w in body["results"][0]["words"]} == {"awful", "screen", "good", "battery"}
        assert client.post("/v1/explain", json={"texts": ["x"] * 17}).status_code == 413
        assert client.post("/v1/explain", json={"text": "x" * 101}).status_code == 413
        assert client.post("/v1/explain", json={"text": "x", "method": "lime"}).status_code == 422
        assert client.post("/v1/explain", json={"text": "x", "task": "intent"}).status_code == 404


def test_analysis_report_and_dashboard_highlight_representative_posts(tmp_path) -> None:
    pytest.importorskip("duckdb")
    from _analytics_fakes import english_rows, run_fake_analysis, write_csv

    rows = english_rows(90)
    rows[0]["text"] = "<b>the battery and charge power</b> great"
    result = run_fake_analysis(write_csv(tmp_path / "in.csv", rows), tmp_path / "out", {"reducer": "pca"})
    assert "explain" in result.summary["timings"]
    import duckdb

    with duckdb.connect(str(tmp_path / "out" / "analysis.duckdb"), read_only=True) as con:
        explained = con.execute("SELECT topic, label, words, html FROM explanations").df()
    assert len(explained) >= 3 and set(explained["label"]) <= {"positive", "negative", "neutral"}
    words = json.loads(explained["words"].iloc[0])
    assert words and {"word", "start", "end", "attribution"} <= set(words[0])
    mood = [w for _, row in explained.iterrows() for w in json.loads(row["words"]) if w["word"] in ("great", "bad")]
    assert mood and all(w["attribution"] > 0 for w in mood)  # the fake scorer's reasons, found
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert html.count('<p class="explained">') == len(explained) and "<b>the battery" not in html
    from fastapi.testclient import TestClient

    from megasense.analytics.dashboard import create_dashboard_app

    with TestClient(create_dashboard_app(tmp_path / "out")) as client:
        assert (
            "/explain.js" in client.get("/").text and "x-posts" in client.get("/explain.js").text + client.get("/").text
        )
        topic = int(explained["topic"].iloc[0])
        posts = client.get(f"/api/explanations?topic={topic}").json()["posts"]
        assert posts and all(p["topic"] == topic and p["words"] for p in posts)
        assert len(client.get("/api/explanations").json()["posts"]) == len(explained)
