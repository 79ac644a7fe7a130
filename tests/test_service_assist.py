"""``POST /v1/assist`` and the chat model ``assistant``: the HTTP layer over fake models (fast), and once over
the shipped models (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from megasense.assistant.assistant import Assistant  # noqa: E402
from megasense.assistant.recommend import Recommender  # noqa: E402
from megasense.predictors.generation import ChatPrompt, ChatStream  # noqa: E402
from megasense.service import app as app_module  # noqa: E402
from megasense.service.app import create_app  # noqa: E402
from megasense.service.chat import ChatBackend  # noqa: E402
from megasense.service.settings import ServiceSettings  # noqa: E402
from test_assistant import CATALOGUE, BagOfWords, FakeEmotion, FakeGenerator, FakeIntent  # noqa: E402

SPEAKER = Path(__file__).resolve().parents[1] / "examples" / "assistant" / "smart-speaker.toml"


class EchoResponder:
    """A stand-in plain chat model."""

    name = "echo"
    context_tokens = 512

    def respond(self, messages, config, stop):
        return ChatStream.of_text(messages[-1]["content"], ChatPrompt(ids=[1]), completion_tokens=1)


@pytest.fixture()
def client(monkeypatch, tmp_path):
    catalogue = tmp_path / "catalogue.toml"
    catalogue.write_text("name = 'x'\n", encoding="utf-8")  # the real one is faked below
    generator = FakeGenerator(*["Alarms can wake you at seven."] * 10)

    def fake_assistant(settings):
        return Assistant(
            CATALOGUE,
            intent=FakeIntent(),
            emotion=FakeEmotion(),
            recommender=Recommender(CATALOGUE, BagOfWords()),
            generator=generator,
        )

    monkeypatch.setattr(app_module, "load_assistant", fake_assistant)
    settings = ServiceSettings(model="", embedding_model="", assistant_catalogue=str(catalogue))
    with TestClient(create_app(settings, backends=lambda s: [ChatBackend(EchoResponder())])) as http:
        yield http, generator


def test_assist_keeps_the_conversation_in_the_state_it_returns(client):
    http, _ = client
    first = http.post("/v1/assist", json={"text": "what's the weather in Paris?"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["intent"] == "weather" and body["slots"] == {"city": "Paris"}
    assert body["feature"]["id"] == "weather" and body["recommendations"][0]["kind"] == "request"
    follow = http.post("/v1/assist", json={"text": "and tomorrow?", "state": body["state"]}).json()
    assert follow["intent"] == "weather" and follow["carried_intent"]
    assert follow["slots"] == {"city": "Paris", "date": "tomorrow"}
    alone = http.post("/v1/assist", json={"text": "and tomorrow?"}).json()  # no state: nothing to follow
    assert alone["intent"] is None and alone["feature"] is None


def test_assist_profiles_and_errors(client):
    http, _ = client
    history = [{"time": "2026-11-01T08:00:00Z", "user": "ana", "feature": "timers", "event": "used"}] * 4
    body = http.post("/v1/assist", json={"text": "set an alarm", "history": history, "reply": False}).json()
    assert [r["id"] for r in body["recommendations"]][:2] == ["alarms", "timers"] and body["reply"] == ""
    bad = http.post("/v1/assist", json={"text": "hi", "history": [{**history[0], "feature": "nope"}]})
    assert bad.status_code == 422 and "history[0].feature" in bad.json()["error"]["message"]
    assert http.post("/v1/assist", json={"text": "hi", "state": {"turns": 3}}).status_code == 422
    assert http.post("/v1/assist", json={"text": ""}).status_code == 422
    assert http.post("/v1/assist", json={"text": "hi", "k": 0}).status_code == 422


def test_the_chat_api_serves_the_assistant_beside_the_plain_model(client):
    http, generator = client
    models = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert models["echo"]["routes"] == ["assistant"]
    plain = http.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]})
    assert plain.json()["choices"][0]["message"]["content"] == "hi"
    messages = [{"role": "user", "content": "set an alarm for seven"}]
    grounded = http.post("/v1/chat/completions", json={"model": "assistant", "messages": messages})
    assert grounded.status_code == 200, grounded.text
    assert grounded.json()["choices"][0]["message"]["content"] == "Alarms can wake you at seven."
    assert "Alarms" in generator.calls[-1][0]["content"]  # grounded on the catalogue's feature
    with http.stream(
        "POST", "/v1/chat/completions", json={"model": "assistant", "messages": messages, "stream": True}
    ) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and any("Alarms can wake you" in e for e in events)


def test_no_assistant_no_endpoint():
    with TestClient(create_app(ServiceSettings(model="", embedding_model=""), backends=lambda s: [])) as http:
        answer = http.post("/v1/assist", json={"text": "hi"})
    assert answer.status_code == 404 and "--assistant-catalogue" in answer.json()["error"]["message"]


@pytest.mark.slow
def test_assist_with_the_shipped_models():
    settings = ServiceSettings(model="default", embedding_model="", assistant_catalogue=str(SPEAKER))
    with TestClient(create_app(settings)) as http:
        first = http.post("/v1/assist", json={"text": "set an alarm for seven tomorrow"}).json()
        assert first["intent"] == "alarm" and first["feature"]["id"] == "alarms"
        assert first["reply_source"] == "template" and "Alarms" in first["reply"]  # no chat model: templates
        angry = http.post("/v1/assist", json={"text": "this stupid speaker never works, I'm so angry"}).json()
        assert angry["recommendations"][0]["kind"] == "help"
        assert "anger" in angry["emotions"] and angry["sentiment"] == "negative"
