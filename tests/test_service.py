"""The HTTP service: every endpoint and error, concurrency, and arbitrary input (never a 500)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from _live import serving  # noqa: E402
from megasense.predictors.results import SentimentResult  # noqa: E402
from megasense.service.app import create_app  # noqa: E402
from megasense.service.auth import hash_key  # noqa: E402
from megasense.service.backends import EmbeddingBackend  # noqa: E402
from megasense.service.settings import ServiceSettings, load_settings  # noqa: E402

LABELS = ("negative", "neutral", "positive")


class EchoSentiment:
    """A backend whose answer is a function of the text, so every client can check its own results."""

    name = "echo"
    task = "sentiment"
    labels = LABELS
    dimensions = None

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[int] = []

    def run(self, texts: list[str]) -> list[SentimentResult]:
        self.batches.append(len(texts))
        time.sleep(self.delay)
        out = []
        for text in texts:
            label = LABELS[len(text) % 3]
            scores = {lab: (0.8 if lab == label else 0.1) for lab in LABELS}
            out.append(SentimentResult(label=label, score=0.8, probs=scores, chunks=1 + len(text) // 100))
        return out


@pytest.fixture(scope="module")
def tiny_embedder():
    from megasense.config import HeadConfig, preset
    from megasense.formats.release import LoadedModel
    from megasense.models import build_model
    from megasense.predictors.embedding import SentenceEmbedder
    from megasense.tokenization import Tokenizer
    from megasense.zoo.embedded import find_embedded, package_path

    tok = Tokenizer.load(package_path(find_embedded("all-minilm-l6-v2")))
    cfg = preset("bert-tiny").replace(vocab_size=tok.vocab_size, make_vocab_size_divisible_by=128)
    model = build_model(cfg, HeadConfig(task="embedding"))
    model.init_weights()
    loaded = LoadedModel(
        model=model.eval(), config=cfg, head=HeadConfig(task="embedding"), tokenizer=tok, path="tiny", metadata={}
    )
    return SentenceEmbedder(loaded, max_length=cfg.max_position_embeddings)


def _settings(**kw) -> ServiceSettings:
    base = dict(max_texts_per_request=8, max_chars_per_text=200, max_chars_per_request=600, max_wait_ms=2.0)
    return ServiceSettings(**{**base, **kw})


@pytest.fixture
def client(tiny_embedder):
    app = create_app(_settings(), backends=lambda s: [EchoSentiment(), EmbeddingBackend("tiny", tiny_embedder)])
    with TestClient(app) as c:
        yield c


def test_sentiment_one_and_many(client):
    r = client.post("/v1/sentiment", json={"texts": ["good", "so bad", "好"], "model": "default"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "echo"
    assert [x["label"] for x in body["results"]] == [LABELS[4 % 3], LABELS[6 % 3], LABELS[1 % 3]]
    first = body["results"][0]
    assert set(first["probs"]) == set(LABELS) and first["chunks"] == 1
    assert first["scores"] == first["probs"]  # the deprecated name carries the same numbers
    assert body["usage"] == {"texts": 3, "characters": 11, "chunks": 3}
    one = client.post("/v1/sentiment", json={"text": "fine"}).json()
    assert len(one["results"]) == 1


def test_embeddings_in_the_shape_clients_speak(client, tiny_embedder):
    r = client.post("/v1/embeddings", json={"input": ["hello there", "你好"], "model": "tiny"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
    expected = tiny_embedder.embed(["hello there", "你好"])
    for d, e in zip(body["data"], expected):
        assert len(d["embedding"]) == 32
        assert max(abs(a - b) for a, b in zip(d["embedding"], e.tolist())) < 1e-5
    assert body["usage"]["prompt_tokens"] == sum(len(i) for i in tiny_embedder.encode(["hello there", "你好"]))
    single = client.post("/v1/embeddings", json={"input": "just one"}).json()
    assert len(single["data"]) == 1


def test_models_health_ready_metrics(client):
    models = client.get("/v1/models").json()["data"]
    assert {m["task"]: m["id"] for m in models} == {"sentiment": "echo", "embedding": "tiny"}
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"ready": True}
    client.post("/v1/sentiment", json={"texts": ["a", "b"]})
    client.post("/v1/sentiment", json={"texts": 3})
    text = client.get("/metrics").text
    assert 'megasense_requests_total{endpoint="/v1/sentiment",status="200"}' in text
    assert 'megasense_errors_total{type="invalid_request"} 1.0' in text
    assert 'megasense_texts_total{task="sentiment"} 2.0' in text
    assert "megasense_batch_texts_bucket" in text and "megasense_request_seconds_bucket" in text
    assert "megasense_queue_texts" in text
    assert "/v1/sentiment" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"texts": "not a list"}, "texts"),
        ({"texts": [1, 2]}, "texts.0"),
        ({"texts": []}, "empty"),
        ({"texts": ["a"], "text": "b"}, "exactly one"),
        ({}, "exactly one"),
        ({"texts": ["a"], "colour": "red"}, "colour"),
        ({"text": None}, "exactly one"),
        ({"texts": ["a"], "model": "gpt-9"}, "not served here"),
    ],
)
def test_malformed_fields_are_422_naming_the_field(client, body, fragment):
    r = client.post("/v1/sentiment", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "invalid_request"
    assert fragment in r.json()["error"]["message"]


def test_invalid_json_and_lone_surrogates(client):
    r = client.post("/v1/sentiment", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_json"  # not JSON at all: 400, not 422
    r = client.post(
        "/v1/sentiment", content=b'{"texts": ["ok", "\\ud800"]}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and "text 1" in r.json()["error"]["message"]
    r = client.post("/v1/embeddings", json={"input": []})
    assert r.status_code == 422


@pytest.mark.parametrize(
    "body, kind, limit",
    [
        ({"texts": ["x"] * 9}, "too_many_texts", "max_texts_per_request=8"),
        ({"text": "x" * 201}, "text_too_long", "max_chars_per_text=200"),
        ({"texts": ["x" * 200] * 4}, "request_too_large", "max_chars_per_request=600"),
    ],
)
def test_limits_are_413_naming_the_limit(client, body, kind, limit):
    r = client.post("/v1/sentiment", json=body)
    assert r.status_code == 413
    assert r.json()["error"]["type"] == kind and limit in r.json()["error"]["message"]


def test_api_keys_hashed_file_and_env(tmp_path, tiny_embedder, monkeypatch):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# operators\n{hash_key('s3cret')}\n", encoding="utf-8")
    monkeypatch.setenv("MEGASENSE_API_KEYS", "other-key")
    settings = load_settings(api_keys_file=keys)
    app = create_app(settings, backends=lambda s: [EchoSentiment()])
    with TestClient(app) as c:
        assert c.post("/v1/sentiment", json={"text": "x"}).status_code == 401
        r = c.post("/v1/sentiment", json={"text": "x"}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert (
            c.post("/v1/sentiment", json={"text": "x"}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        )
        assert c.post("/v1/sentiment", json={"text": "x"}, headers={"X-API-Key": "other-key"}).status_code == 200
        assert c.get("/health").status_code == 200  # probes need no key
    bad = tmp_path / "plain.txt"
    bad.write_text("s3cret\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"plain\.txt, line 1: expected a SHA-256"):
        create_app(load_settings(api_keys_file=bad))


def test_cors_only_from_settings(tiny_embedder):
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(_settings(), backends=lambda s: [EchoSentiment()])) as c:
        assert "access-control-allow-origin" not in c.options("/v1/sentiment", headers=headers).headers
    app = create_app(_settings(cors_origins="https://app.example"), backends=lambda s: [EchoSentiment()])
    with TestClient(app) as c:
        ok = c.options("/v1/sentiment", headers={**headers, "Origin": "https://app.example"})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
    with pytest.raises(ValueError, match="'\\*' is refused"):
        ServiceSettings(cors_origins=["*"])


def test_settings_from_toml_env_and_flags(tmp_path, monkeypatch):
    toml = tmp_path / "serve.toml"
    toml.write_text('port = 9000\nmax_batch_size = 16\nmodel = "sentiment-en"\n', encoding="utf-8")
    monkeypatch.setenv("MEGASENSE_MAX_BATCH_SIZE", "32")
    s = load_settings(toml, port=9100)
    assert (s.port, s.max_batch_size, s.model) == (9100, 32, "sentiment-en")
    toml.write_text("prot = 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="prot"):
        load_settings(toml)


def test_not_ready_is_503(tiny_embedder):
    app = create_app(_settings(), backends=lambda s: [EchoSentiment()])
    with TestClient(app) as c:
        assert c.post("/v1/embeddings", json={"input": "x"}).status_code == 404  # not enabled here
    c = TestClient(app)  # without the lifespan: models never loaded
    assert c.get("/ready").status_code == 503
    r = c.post("/v1/sentiment", json={"text": "x"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
BODIES = (
    JSON
    | st.fixed_dictionaries(
        {}, optional={"texts": st.lists(st.text(), max_size=10) | JSON, "text": st.text() | JSON, "model": JSON}
    )
    | st.fixed_dictionaries({}, optional={"input": st.lists(st.text(), max_size=10) | st.text() | JSON, "model": JSON})
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, path=st.sampled_from(["/v1/sentiment", "/v1/embeddings"]))
def test_arbitrary_json_and_unicode_never_give_a_500(client, body, path):
    r = client.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    assert r.status_code in (200, 413, 422), (body, r.status_code, r.text)
    assert client.get("/health").status_code == 200


@pytest.fixture
def live(tiny_embedder):
    """A real uvicorn server on a free loopback port, in a thread, with a slow backend."""
    backend = EchoSentiment(delay=0.02)
    app = create_app(_settings(max_batch_size=32, max_queue_texts=64), backends=lambda s: [backend])
    with serving(app, start_timeout=20) as url:
        yield url, backend


def test_concurrent_clients_each_get_their_own_results_and_batches_merge(live):
    url, backend = live

    async def one_client(i: int, http: httpx.AsyncClient) -> bool:
        texts = [f"client {i} text {j} " + "x" * ((i + j) % 5) for j in range(1 + i % 4)]
        r = await http.post(f"{url}/v1/sentiment", json={"texts": texts}, timeout=30)
        return r.status_code == 200 and [x["label"] for x in r.json()["results"]] == [LABELS[len(t) % 3] for t in texts]

    async def main() -> list[bool]:
        async with httpx.AsyncClient() as http:
            return await asyncio.gather(*(one_client(i, http) for i in range(24)))

    assert all(asyncio.run(main()))
    assert max(backend.batches) > 4, backend.batches  # requests were merged into shared model calls
    assert sum(backend.batches) == sum(1 + i % 4 for i in range(24))


def test_queue_full_is_429_with_retry_after(live):
    url, _ = live

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient() as http:
            body = {"texts": ["y"] * 8}
            return await asyncio.gather(*(http.post(f"{url}/v1/sentiment", json=body, timeout=30) for _ in range(40)))

    responses = asyncio.run(main())
    codes = {r.status_code for r in responses}
    assert codes <= {200, 429} and 429 in codes and 200 in codes
    full = next(r for r in responses if r.status_code == 429)
    assert int(full.headers["retry-after"]) >= 1 and "max_queue_texts=64" in full.json()["error"]["message"]
