"""The service with the real default models: sentiment routed by script, embeddings, limits."""

from __future__ import annotations

import numpy as np
import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from megasense.service.app import create_app  # noqa: E402
from megasense.service.settings import ServiceSettings  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServiceSettings())) as c:
        yield c


def test_default_sentiment_in_english_and_chinese(client):
    texts = [
        "I love this phone, the battery lasts forever!",
        "Terrible service, my order arrived broken and nobody answered.",
        "这家酒店太差了，房间又脏又吵，再也不来了。",
        "服务非常好，房间干净，早餐丰盛，强烈推荐！",
    ]
    r = client.post("/v1/sentiment", json={"texts": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "default"
    assert [x["label"] for x in body["results"]] == ["positive", "negative", "negative", "positive"]
    for result in body["results"]:
        assert set(result["scores"]) == {"negative", "neutral", "positive"}
        assert abs(sum(result["scores"].values()) - 1) < 1e-4 and result["score"] == max(result["scores"].values())
    assert body["usage"]["texts"] == 4 and body["usage"]["chunks"] == 4
    models = {m["task"]: m for m in client.get("/v1/models").json()["data"]}
    assert models["sentiment"]["labels"] == ["negative", "neutral", "positive"]
    assert models["embedding"]["dimensions"] == 384


def test_real_embeddings_are_normalised_and_meaningful(client):
    r = client.post(
        "/v1/embeddings", json={"input": ["The hotel room was clean.", "Our room was tidy.", "Stocks fell."]}
    )
    assert r.status_code == 200
    vectors = np.array([d["embedding"] for d in r.json()["data"]])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert r.json()["usage"]["prompt_tokens"] > 6


def test_long_text_is_chunked_not_truncated(client):
    long = "The screen is gorgeous and the battery is great. " * 120
    r = client.post("/v1/sentiment", json={"text": long})
    assert r.status_code == 200
    assert r.json()["usage"]["chunks"] > 1 and r.json()["results"][0]["label"] == "positive"
