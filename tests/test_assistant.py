"""The assistant end to end: understanding in context, recommendation, grounded replies and their fallback,
the chat responder, ``megasense assist`` / ``megasense chat``. Fake models keep the fast tests fast; the
slow ones run the shipped models on the shipped catalogue."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from megasense.assistant.assistant import Assistant, AssistantResponder, Session
from megasense.assistant.catalogue import catalogue_from_dict
from megasense.assistant.history import UsageEvent
from megasense.assistant.recommend import Recommender
from megasense.config import GenerationConfig
from megasense.errors import MegasenseInputError
from megasense.predictors.generation import ChatReply
from megasense.predictors.results import SentimentResult

ROOT = Path(__file__).resolve().parents[1]
SPEAKER = ROOT / "examples" / "assistant" / "smart-speaker.toml"

CATALOGUE = catalogue_from_dict(
    {
        "name": "Test speaker",
        "feature": [
            {"id": "weather", "name": "Weather", "description": "Forecasts for today or any day, in any city.",
             "intents": ["weather"], "examples": ["will it rain tomorrow"]},
            {"id": "alarms", "name": "Alarms", "description": "Wake up to an alarm at a time you choose.",
             "intents": ["alarm"], "examples": ["wake me up at seven"]},
            {"id": "timers", "name": "Timers", "description": "Count down minutes while you cook.",
             "intents": ["timer"], "examples": ["set a timer for ten minutes"]},
            {"id": "help", "name": "Help and tips", "description": "Step-by-step help when something goes wrong.",
             "intents": ["what_can_i_ask_you"], "help": True},
        ],
    }
)  # fmt: skip

KEYWORDS = {"weather": "weather", "alarm": "alarm", "timer": "timer", "rain": "weather"}


class FakeIntent:
    """'weather' / 'alarm' / 'timer' by keyword, else out of scope."""

    oos_label = "oos"

    def predict(self, texts):
        out = []
        for text in texts:
            label = next((v for k, v in KEYWORDS.items() if k in text.lower()), "oos")
            probs = {name: 0.02 for name in ("weather", "alarm", "timer", "oos")}
            probs[label] = 0.94
            out.append(SentimentResult(label=label, score=0.94, probs=probs))
        return out


class FakeEmotion:
    def predict(self, texts):
        return [
            SentimentResult(label="x", score=0.9, probs={}, labels=("anger",) if "stupid" in t else ("neutral",))
            for t in texts
        ]


class BagOfWords:
    def embed(self, texts):
        rows = []
        for text in texts:
            v = np.zeros(64)
            for word in text.lower().split():
                v[sum(map(ord, word)) % 64] += 1
            rows.append(v / max(np.linalg.norm(v), 1e-9))
        return np.asarray(rows)


class FakeGenerator:
    """Replies with the next of ``replies``; counts calls."""

    context_tokens = 2048

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict]] = []

    def chat(self, messages, config, *, stop=()):
        self.calls.append(messages)
        text = self.replies.pop(0)
        return ChatReply(text=text, finish_reason="stop", prompt_tokens=10, completion_tokens=5)

    def chat_ids(self, messages, max_new_tokens):
        from megasense.predictors.generation import ChatPrompt

        return ChatPrompt(ids=[1, 2, 3])

    class tokenizer:
        @staticmethod
        def encode(text, add_special_tokens=False):
            return text.split()


def make_assistant(generator=None, history=()):
    return Assistant(
        CATALOGUE,
        intent=FakeIntent(),
        emotion=FakeEmotion(),
        recommender=Recommender(CATALOGUE, BagOfWords()).fit(history),
        generator=generator,
        history=history,
    )


def test_follow_up_keeps_the_intent_and_carries_the_city():
    assistant = make_assistant()
    session = Session()
    first = assistant.assist("what's the weather in Paris?", session=session)
    assert first.turn.intent == "weather" and first.turn.slots == {"city": "Paris"}
    assert first.feature is not None and first.feature.feature.id == "weather"
    second = assistant.assist("and tomorrow?", session=session)
    assert second.reading.intent == "oos"  # the model alone cannot tell
    assert second.turn.intent == "weather" and second.turn.carried_intent
    assert second.turn.slots == {"city": "Paris", "date": "tomorrow"}
    assert second.feature.feature.id == "weather"
    assert [m["role"] for m in session.messages] == ["user", "assistant"] * 2
    # template replies (no chat model) read the slots back
    assert second.reply_source == "template" and "Paris" in second.reply


def test_a_bare_number_is_a_time_for_an_alarm_and_a_number_elsewhere():
    assistant = make_assistant()
    assert assistant.assist("set an alarm for seven").turn.slots == {"time": "seven"}
    assert assistant.assist("set a timer for seven").turn.slots.get("time") is None


def test_grounded_model_reply_is_kept_when_it_passes_the_checks():
    generator = FakeGenerator("Sure, Alarms can wake you at seven.")
    result = make_assistant(generator).assist("set an alarm for seven")
    assert result.reply_source == "model" and result.reply == "Sure, Alarms can wake you at seven."
    system = generator.calls[0][0]
    assert system["role"] == "system" and "Alarms" in system["content"]  # the feature's facts ground it
    assert generator.calls[0][1:3] == [  # one example exchange for the feature, then the user's words
        {"role": "user", "content": "wake me up at seven"},
        {"role": "assistant", "content": generator.calls[0][2]["content"]},
    ]
    assert generator.calls[0][-1] == {"role": "user", "content": "set an alarm for seven"}


@pytest.mark.parametrize(
    ("generated", "problem"),
    [
        ("", "empty"),
        ("Your balance is $500.", "states '500'"),
        ("That's a great idea! Let me know.", "off topic"),
        ("I've booked a table for two.", "claims an action"),
    ],
)
def test_a_failed_check_falls_back_to_the_template(generated, problem):
    result = make_assistant(FakeGenerator(generated)).assist("set an alarm for seven")
    assert result.reply_source == "template" and problem in result.reply_problem
    assert result.reply.startswith("I can help with that: Alarms")


def test_long_replies_are_cut_to_two_sentences():
    generator = FakeGenerator("Alarms can wake you. Pick any time. Also I love pizza and rain.")
    result = make_assistant(generator).assist("set an alarm please")
    assert result.reply == "Alarms can wake you. Pick any time."


def test_out_of_scope_abstains_without_asking_the_model():
    generator = FakeGenerator()
    result = make_assistant(generator).assist("what's my credit card balance")
    assert result.feature is None and result.turn.out_of_scope
    assert generator.calls == []  # nothing to ground a reply on: the template, not an invented answer
    assert result.reply_source == "template" and "can't help with that yet" in result.reply


def test_a_frustrated_user_is_offered_help_first():
    result = make_assistant().assist("this stupid alarm never works")
    kinds = [(r.feature.id, r.kind) for r in result.recommendations]
    assert kinds[:2] == [("help", "help"), ("alarms", "request")]
    assert result.reply.startswith("Sorry that's been frustrating.")


def test_sessions_take_the_users_profile_from_the_history():
    t = datetime(2026, 11, 1, tzinfo=UTC)
    history = [UsageEvent(t, "ana", "timers", "used")] * 4 + [UsageEvent(t, "bo", "alarms", "used")]
    assistant = make_assistant(history=history)
    with pytest.raises(MegasenseInputError, match="2 users"):
        assistant.session()
    with pytest.raises(MegasenseInputError, match="no event"):
        assistant.session("cy")
    result = assistant.assist("what's the weather", session=assistant.session("ana"))
    assert [r.feature.id for r in result.recommendations][:2] == ["weather", "timers"]
    assert "Timers" in result.recommendations[1].reason or "timer" in result.recommendations[1].reason.lower()


def test_chat_responder_replays_the_conversation_for_context():
    generator = FakeGenerator("Weather says rain tomorrow in Paris is likely, take a coat.")
    responder = AssistantResponder(make_assistant(generator))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "what's the weather in Paris?"},
        {"role": "assistant", "content": "Sunny in Paris."},
        {"role": "user", "content": "and tomorrow?"},
    ]
    reply = responder.respond(messages, GenerationConfig(max_new_tokens=16), ()).read()
    assert reply.text.startswith("Weather says rain tomorrow")
    system = generator.calls[0][0]["content"]
    assert "weather" in system and "Paris" in system and "tomorrow" in system  # the follow-up, in context
    assert generator.calls[0][1:3] == messages[1:3]  # the earlier turns, as they were
    with pytest.raises(MegasenseInputError, match="no user message"):
        responder.respond([{"role": "system", "content": "x"}], GenerationConfig(), ())


# ------------------------------------------------------------------------------------ real models


@pytest.fixture(scope="module")
def cli():
    from megasense.cli.main import _register, app

    _register()
    return lambda *args, **kw: CliRunner().invoke(app, list(args), **kw)


@pytest.mark.slow
def test_assist_cli_with_the_shipped_models(cli, tmp_path):
    history = tmp_path / "history.jsonl"
    history.write_text(
        "\n".join(
            json.dumps({"time": f"2026-11-0{d}T08:00:00Z", "user": "alex", "feature": "timers", "event": "used"})
            for d in range(1, 6)
        )
        + "\n",
        encoding="utf-8",
    )
    result = cli(
        "assist", "set an alarm for seven tomorrow", "-c", str(SPEAKER), "--history", str(history),
        "--json", "--chat-model", "",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["intent"] == "alarm" and answer["feature"]["id"] == "alarms"
    assert answer["slots"]["date"] == "tomorrow"
    assert any(r["kind"] in ("favourite", "discover") for r in answer["recommendations"])
    assert answer["reply_source"] == "template" and "Alarms" in answer["reply"]
    missing = cli("assist", "hello")
    assert missing.exit_code == 2 and "--catalogue is required" in missing.output


@pytest.mark.slow
def test_chat_cli_scripted_conversation(cli):
    script = "what's the weather in Paris?\nand tomorrow?\n/reset\nand tomorrow?\n"
    result = cli("chat", "-c", str(SPEAKER), "--model", "", input=script)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("intent")]
    assert lines[0].startswith("intent weather |") and "city=Paris" in lines[0]
    assert "(follow-up)" in lines[1] and "city=Paris" in lines[1] and "date=tomorrow" in lines[1]
    assert "(follow-up)" not in lines[2]  # after /reset there is nothing to follow up
