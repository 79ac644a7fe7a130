"""The service's intent and emotion endpoints, on tiny models trained in seconds by ``megasense train``.

The intent model learns "praise" (positive words), "complain" (negative words), "schedule" (neutral
words) and the out-of-scope "oos" (filler only); the emotion model learns "joy" and "anger", both when
a text has both kinds of word. The app loads them from their directories as ``megasense serve
--intent-model DIR --emotion-model DIR`` would.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from _sentiment_fixtures import (  # noqa: E402
    FILLER,
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    one_thread,  # noqa: F401 (an autouse fixture)
    save_base,
)
from megasense.cli.main import _register, app  # noqa: E402
from megasense.errors import ConfigError  # noqa: E402
from megasense.predictors.sentiment import load_predictor  # noqa: E402
from megasense.service.app import create_app  # noqa: E402
from megasense.service.backends import ClassifierBackend  # noqa: E402
from megasense.service.settings import ServiceSettings, load_settings  # noqa: E402

INTENTS = {"praise": POSITIVE, "complain": NEGATIVE, "schedule": NEUTRAL}
INTENT_LABELS = ["complain", "oos", "praise", "schedule"]


def _cli(*args):
    if not any(c.name == "train" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, list(args))


def _rows(n: int, seed: int, kinds: dict[str, tuple[list[str], ...]], most: int) -> list[tuple[str, str]]:
    """Texts of 2 to ``most`` filler words with one word from each word list of a randomly chosen label
    (the data of test_classification.py)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(list(kinds))
        body = [rng.choice(FILLER) for _ in range(rng.randint(2, most))]
        for words in kinds[label]:
            body.insert(rng.randrange(len(body) + 1), rng.choice(words))
        rows.append((" ".join(body), label))
    return rows


def _train(tmp: Path, base: Path, name: str, kinds, *, most: int, seed: int, epochs: int, lr: str, extra=()) -> Path:
    paths = []
    for split, n, split_seed in (("train", 400, seed), ("val", 120, seed + 1)):
        path = tmp / f"{name}-{split}.csv"
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(_rows(n, split_seed, kinds, most))
        paths.append(path)
    out = tmp / name
    result = _cli(
        "train", str(paths[0]), "--val", str(paths[1]), "--base", str(base), "--output", str(out),
        "--epochs", str(epochs), "--lr", lr, "--batch-size", "16", "--no-bf16", *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("classifiers")
    base = save_base(tmp)
    intents = {**{k: (v,) for k, v in INTENTS.items()}, "oos": ()}
    intent = _train(tmp, base, "intent", intents, most=5, seed=1, epochs=6, lr="3e-3")
    emotions = {"joy": (POSITIVE,), "anger": (NEGATIVE,), "joy,anger": (POSITIVE, NEGATIVE)}
    emotion = _train(tmp, base, "emotion", emotions, most=4, seed=3, epochs=20, lr="1e-2", extra=["--multi-label"])
    return {"base": base, "intent": intent, "emotion": emotion}


def _settings(**kw) -> ServiceSettings:
    return ServiceSettings(**{"model": "", "embedding_model": "", "max_wait_ms": 1.0, **kw})


@pytest.fixture(scope="module")
def client(models):
    settings = _settings(intent_model=str(models["intent"]), emotion_model=str(models["emotion"]))
    with TestClient(create_app(settings)) as c:
        yield c


def test_intent_answers_with_out_of_scope(client, models):
    texts = ["this was excellent", "it was awful today", "the meeting is tuesday", "it is the so a"]
    r = client.post("/v1/intent", json={"texts": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == str(models["intent"])
    assert body["usage"] == {"texts": 4, "characters": sum(map(len, texts)), "chunks": 4}
    results = body["results"]
    assert [x["label"] for x in results] == ["praise", "complain", "schedule", "oos"]
    assert [x["out_of_scope"] for x in results] == [False, False, False, True]
    direct = load_predictor(models["intent"]).predict(texts)
    for got, want in zip(results, direct):
        assert set(got) == {"label", "score", "probs", "chunks", "out_of_scope"}  # no `labels`, no `scores`
        assert list(got["probs"]) == INTENT_LABELS  # every label, in the model's order
        assert got["score"] == pytest.approx(want.score, abs=1e-5)
        assert got["probs"] == pytest.approx(want.probs, abs=1e-5)


def test_emotion_answers_every_label_most_probable_first(client):
    r = client.post("/v1/emotion", json={"texts": ["good and bad", "happy today", "it was awful"]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert set(results[0]["labels"]) == {"joy", "anger"}
    assert results[1]["labels"] == ["joy"] and results[2]["labels"] == ["anger"]
    for result in results:
        assert result["label"] == ",".join(result["labels"])
        probs = [result["probs"][label] for label in result["labels"]]
        assert probs == sorted(probs, reverse=True) and result["score"] == pytest.approx(probs[0])
        assert "out_of_scope" not in result


def test_top_k_keeps_the_most_probable_labels(client):
    text = {"text": "it was awful today"}
    full = client.post("/v1/intent", json=text).json()["results"][0]["probs"]
    top = client.post("/v1/intent", json={**text, "top_k": 2}).json()["results"][0]["probs"]
    assert list(top) == sorted(full, key=lambda label: -full[label])[:2]
    assert top == pytest.approx({label: full[label] for label in top})
    one = client.post("/v1/emotion", json={"text": "good and bad", "top_k": 1}).json()["results"][0]
    assert len(one["probs"]) == 1 and len(one["labels"]) == 2  # top_k cuts probs, never the predicted labels
    for body, fragment in (
        ({**text, "top_k": 5}, "top_k=5 is more than the 4 labels"),
        ({**text, "top_k": 0}, "top_k"),
        ({**text, "top_k": "2"}, "top_k"),
    ):
        r = client.post("/v1/intent", json=body)
        assert r.status_code == 422 and fragment in r.json()["error"]["message"], r.text


def test_a_model_not_served_is_422(client, models):
    r = client.post("/v1/intent", json={"text": "hello", "model": "intent-en"})
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    assert "'intent-en' is not served here" in message and str(models["intent"]) in message
    assert client.post("/v1/intent", json={"text": "hello", "model": "default"}).status_code == 200


def test_models_lists_each_task_with_its_labels(client, models):
    cards = {m["task"]: m for m in client.get("/v1/models").json()["data"]}
    assert set(cards) == {"intent", "emotion"}
    assert cards["intent"]["id"] == str(models["intent"]) and cards["intent"]["labels"] == INTENT_LABELS
    assert cards["intent"]["oos_label"] == "oos"
    assert cards["emotion"]["labels"] == ["anger", "joy"] and cards["emotion"]["oos_label"] is None
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/intent", "/v1/emotion", "/v1/sentiment"} <= set(paths)


def test_metrics_per_task(client):
    client.post("/v1/intent", json={"texts": ["good", "bad", "the"]})
    client.post("/v1/emotion", json={"text": "happy"})
    text = client.get("/metrics").text
    assert 'megasense_requests_total{endpoint="/v1/intent",status="200"}' in text
    assert 'megasense_texts_total{task="emotion"}' in text and 'megasense_texts_total{task="intent"}' in text
    assert 'megasense_batch_texts_count{task="intent"}' in text


def test_endpoints_without_a_model_are_404(models):
    predictor = load_predictor(models["intent"])
    backend = ClassifierBackend("tiny-intent", predictor, "intent")
    with TestClient(create_app(_settings(), backends=lambda s: [backend])) as c:
        assert c.post("/v1/intent", json={"text": "good"}).json()["results"][0]["label"] == "praise"
        r = c.post("/v1/emotion", json={"text": "good"})
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
        assert "no emotion model enabled" in r.json()["error"]["message"] and "--emotion-model" in r.text
        assert c.post("/v1/sentiment", json={"text": "good"}).status_code == 404


def test_settings_check_the_model_names(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="intent_model='default' is the sentiment routing rule"):
        load_settings(intent_model="default")
    with pytest.raises(ConfigError, match=r"intent_model='emotion-en' is the shipped emotion model.*intent-en"):
        load_settings(intent_model="emotion-en")
    with pytest.raises(ConfigError, match="emotion_model='sentiment-en' is the shipped sentiment model"):
        load_settings(emotion_model="sentiment-en")
    toml = tmp_path / "serve.toml"
    toml.write_text('intent_model = "intent-en"\nemotion_model = "emotion-en"\n', encoding="utf-8")
    monkeypatch.setenv("MEGASENSE_EMOTION_MODEL", "")  # empty: not served, whatever the file says
    settings = load_settings(toml)
    assert (settings.intent_model, settings.emotion_model) == ("intent-en", None)
    assert settings.classifier_models() == {"sentiment": "default", "intent": "intent-en"}
    assert load_settings(toml, intent_model="my-intents").intent_model == "my-intents"  # flags win


@pytest.mark.parametrize(
    "setting, model, fragment",
    [
        ("intent_model", "emotion", "is a multi-label classifier (labels anger, joy); /v1/intent answers one"),
        ("emotion_model", "intent", "is a single-label classifier (labels complain, oos, praise, schedule)"),
        ("intent_model", "base", "not a classifier"),
    ],
)
def test_a_model_of_the_wrong_kind_is_refused_at_start_up(models, setting, model, fragment):
    app = create_app(_settings(**{setting: str(models[model])}))
    with pytest.raises(ConfigError, match=f"^{setting}=") as caught, TestClient(app):
        pass
    assert fragment in str(caught.value)


def test_serve_flags_reach_the_settings(monkeypatch):
    import megasense.service.server as server

    seen = []
    monkeypatch.setattr(server, "serve", seen.append)
    result = _cli("serve", "--intent-model", "intent-en", "--emotion-model", "emotion-en", "--model", "sentiment-en")
    assert result.exit_code == 0, result.output
    assert (seen[0].intent_model, seen[0].emotion_model, seen[0].model) == ("intent-en", "emotion-en", "sentiment-en")
