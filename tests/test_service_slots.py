"""The service's slot filling: ``POST /v1/slots``, and ``/v1/intent`` answers that carry their slots when a
slots model is served beside the intent model; on tiny models trained in seconds.

The slot model learns ``item`` (report, meeting, table, train, paper) and ``day`` (tuesday, today) in texts
of filler words; the intent model learns "praise" (positive words), "complain" (negative words) and the
out-of-scope "oos" (filler only). The app loads them from their directories as ``megasense serve
--intent-model DIR --slots-model DIR`` would.
"""

from __future__ import annotations

import csv
import json
import random
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from _sentiment_fixtures import (  # noqa: E402
    FILLER,
    NEGATIVE,
    POSITIVE,
    one_thread,  # noqa: F401 (an autouse fixture)
    save_base,
)
from megasense.cli.main import _register, app  # noqa: E402
from megasense.errors import ConfigError  # noqa: E402
from megasense.predictors.results import SentimentResult  # noqa: E402
from megasense.predictors.slots import Slot, SlotFiller, SlotResult  # noqa: E402
from megasense.service.app import create_app  # noqa: E402
from megasense.service.backends import check_model_names  # noqa: E402
from megasense.service.settings import ServiceSettings, load_settings  # noqa: E402
from megasense.training.slots import train_slots  # noqa: E402
from megasense.zoo.load import load_model  # noqa: E402

ITEMS = ["report", "meeting", "table", "train", "paper"]
DAYS = ["tuesday", "today"]
WORDS = [w for w in FILLER if w != "today"]  # "today" is a day here
SLOT_TAGS = ["O", "B-day", "I-day", "E-day", "S-day", "B-item", "I-item", "E-item", "S-item"]


def _cli(*args):
    if not any(c.name == "train" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, list(args))


def _write(path: Path, header: list[str], rows) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _slot_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Filler words, maybe a sentiment word, an item and (half the time) a day; the slots as JSON values."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        body = [rng.choice(WORDS) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.5:
            body.insert(rng.randrange(len(body) + 1), rng.choice(POSITIVE + NEGATIVE))
        values = {"item": rng.choice(ITEMS)}
        if rng.random() < 0.5:
            values["day"] = rng.choice(DAYS)
        for value in values.values():
            body.insert(rng.randrange(len(body) + 1), value)
        rows.append((" ".join(body), json.dumps(values)))
    return rows


def _intent_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["praise", "complain", "oos"])
        body = [rng.choice(FILLER) for _ in range(rng.randint(2, 5))]
        if label != "oos":
            body.insert(rng.randrange(len(body) + 1), rng.choice(POSITIVE if label == "praise" else NEGATIVE))
        rows.append((" ".join(body), label))
    return rows


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("slots-service")
    base = save_base(tmp)
    train, val = (_write(tmp / f"slots-{s}.csv", ["text", "slots"], _slot_rows(n, seed)) for s, n, seed in
                  (("train", 300, 1), ("val", 60, 2)))  # fmt: skip
    slots = tmp / "slots"
    options = {"epochs": 6, "lr": 3e-3, "batch_size": 16, "bf16": False, "warmup_ratio": 0.0}
    train_slots(train, val, base=str(base), output=slots, **options)
    paths = [_write(tmp / f"intent-{s}.csv", ["text", "label"], _intent_rows(n, seed)) for s, n, seed in
             (("train", 400, 3), ("val", 120, 4))]  # fmt: skip
    intent = tmp / "intent"
    result = _cli(
        "train", str(paths[0]), "--val", str(paths[1]), "--base", str(base), "--output", str(intent),
        "--epochs", "6", "--lr", "3e-3", "--batch-size", "16", "--no-bf16",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return {"base": base, "slots": slots, "intent": intent}


def _settings(**kw) -> ServiceSettings:
    return ServiceSettings(**{"model": "", "embedding_model": "", "max_wait_ms": 1.0, **kw})


@pytest.fixture(scope="module")
def client(models):
    settings = _settings(intent_model=str(models["intent"]), slots_model=str(models["slots"]))
    with TestClient(create_app(settings)) as c:
        yield c


def _found(result: dict) -> list[tuple[str, str]]:
    return [(s["slot"], s["value"]) for s in result["slots"]]


TEXTS = ["the report was good today", "we hate the train", "a meeting tuesday", "", "  "]


def test_slots_answer_per_text(client, models):
    r = client.post("/v1/slots", json={"texts": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == str(models["slots"])
    assert body["usage"] == {"texts": 5, "characters": sum(map(len, TEXTS)), "chunks": 3}
    results = body["results"]
    assert [_found(x) for x in results] == [
        [("item", "report"), ("day", "today")],
        [("item", "train")],
        [("item", "meeting"), ("day", "tuesday")],
        [],
        [],
    ]
    assert results[3] == {"slots": [], "tags": []} and results[4] == {"slots": [], "tags": ["O", "O"]}
    direct = SlotFiller(load_model(models["slots"]), name=str(models["slots"])).predict(TEXTS[:3])
    for got, want, text in zip(results, direct, TEXTS):
        assert set(got) == {"slots", "tags"} and len(got["tags"]) == len(text)
        expected = want.to_dict()
        assert got["tags"] == expected["tags"] and _found(got) == _found(expected)
        assert [s["score"] for s in got["slots"]] == pytest.approx([s["score"] for s in expected["slots"]], abs=1e-6)
        for slot in got["slots"]:
            assert set(slot) == {"slot", "value", "start", "end", "score"}
            assert text[slot["start"] : slot["end"]] == slot["value"] and 0 < slot["score"] <= 1
    one = client.post("/v1/slots", json={"text": "the paper"}).json()["results"]
    assert [_found(x) for x in one] == [[("item", "paper")]]


def test_intent_answers_carry_the_slots_of_the_same_texts(client):
    intents = client.post("/v1/intent", json={"texts": TEXTS, "top_k": 2})
    assert intents.status_code == 200, intents.text
    results = intents.json()["results"]
    slots = client.post("/v1/slots", json={"texts": TEXTS}).json()["results"]
    assert [x["label"] for x in results[:3]] == ["praise", "complain", "oos"]
    assert [x["slots"] for x in results] == [x["slots"] for x in slots]
    assert results[3]["slots"] == [] and results[3]["label"] == ""  # an empty text: no intent, no slots
    assert all(len(x["probs"]) == 2 for x in results[:3])  # top_k still applies to the intent
    text = client.get("/metrics").text
    assert 'megasense_texts_total{task="slots"}' in text and 'megasense_texts_total{task="intent"}' in text


def test_slots_request_shape_is_checked(client):
    for body, fragment in (
        ({"text": "the paper", "top_k": 2}, "top_k"),  # slots have no label probabilities to cut
        ({"texts": []}, "'texts' is empty"),
        ({"text": "a", "texts": ["b"]}, "exactly one of"),
    ):
        r = client.post("/v1/slots", json=body)
        assert r.status_code == 422 and fragment in r.json()["error"]["message"], r.text
    r = client.post("/v1/slots", json={"text": "the paper", "model": "slots-zh"})
    assert r.status_code == 422 and "'slots-zh' is not served here" in r.json()["error"]["message"]


def test_models_lists_the_slots_model_with_its_tags(client, models):
    cards = {m["task"]: m for m in client.get("/v1/models").json()["data"]}
    assert set(cards) == {"intent", "slots"}
    assert cards["slots"]["id"] == str(models["slots"]) and cards["slots"]["labels"] == SLOT_TAGS
    assert cards["slots"]["oos_label"] is None and cards["slots"]["dimensions"] is None
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "slots" in schemas["IntentResult"]["properties"] and "/v1/slots" in client.get("/openapi.json").text
    assert set(schemas["Slot"]["properties"]) == {"slot", "value", "start", "end", "score"}
    assert all(p.get("description") for p in schemas["SlotResult"]["properties"].values())


def test_without_a_slots_model_intents_have_no_slots_and_slots_are_404(models):
    with TestClient(create_app(_settings(intent_model=str(models["intent"])))) as c:
        result = c.post("/v1/intent", json={"text": "the report was good"}).json()["results"][0]
        assert result["label"] == "praise" and "slots" not in result
        r = c.post("/v1/slots", json={"text": "the report"})
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
        assert "no slots model enabled" in r.text and "--slots-model" in r.text
    with TestClient(create_app(_settings(slots_model=str(models["slots"])))) as c:  # slots alone
        assert _found(c.post("/v1/slots", json={"text": "the table"}).json()["results"][0]) == [("item", "table")]
        assert c.post("/v1/intent", json={"text": "good"}).status_code == 404


class _Meeting:
    """Fake backends that can only finish together: each waits (up to 10 s) until the other has started."""

    def __init__(self) -> None:
        self.started = {"intent": threading.Event(), "slots": threading.Event()}
        self.met: list[bool] = []

    def backend(self, task: str):
        meeting, other = self, "slots" if task == "intent" else "intent"

        class Backend:
            name, dimensions, oos_label = f"fake-{task}", None, ""
            labels = ("a", "b") if task == "intent" else ("O", "S-x")

            def __init__(self) -> None:
                self.task = task

            def run(self, texts):
                meeting.started[task].set()
                meeting.met.append(meeting.started[other].wait(10))
                if task == "intent":
                    return [SentimentResult(label="a", score=0.9, probs={"a": 0.9, "b": 0.1}) for _ in texts]
                return [
                    SlotResult(slots=(Slot("x", t[:1], 0, 1, 0.8),), tags=("S-x",) + ("O",) * (len(t) - 1))
                    for t in texts
                ]

        return Backend()


def test_intent_and_slots_models_run_concurrently():
    meeting = _Meeting()
    backends = [meeting.backend("intent"), meeting.backend("slots")]
    with TestClient(create_app(_settings(), backends=lambda s: backends)) as c:
        r = c.post("/v1/intent", json={"texts": ["hello", "yes"]})
    assert r.status_code == 200, r.text
    assert meeting.met == [True, True]  # each model ran while the other was running
    assert [x["slots"] for x in r.json()["results"]] == [
        [{"slot": "x", "value": "h", "start": 0, "end": 1, "score": 0.8}],
        [{"slot": "x", "value": "y", "start": 0, "end": 1, "score": 0.8}],
    ]


@pytest.mark.parametrize(
    "setting, model, fragment",
    [
        ("slots_model", "intent", "is a classification model (labels complain, oos, praise); /v1/slots needs a token"),
        ("slots_model", "base", "is an encoder model; /v1/slots needs a token-classification model"),
        ("intent_model", "slots", "'token_classification' model, not a classifier"),
    ],
)
def test_a_model_of_the_wrong_kind_is_refused_at_start_up(models, setting, model, fragment):
    app = create_app(_settings(**{setting: str(models[model])}))
    with pytest.raises(ConfigError, match=f"^{setting}=") as caught, TestClient(app):
        pass
    assert fragment in str(caught.value)


def test_slots_settings_from_flags_env_and_file(tmp_path, monkeypatch):
    import megasense.service.server as server

    with pytest.raises(ConfigError, match=r"slots_model='intent-en' is the shipped intent model, not a slots model"):
        load_settings(slots_model="intent-en")
    with pytest.raises(ConfigError, match=r"slots_model='nowhere': no such model directory"):
        check_model_names(load_settings(slots_model="nowhere"))
    toml = tmp_path / "serve.toml"
    toml.write_text('slots_model = "my-slots"\n', encoding="utf-8")
    assert load_settings(toml).slots_model == "my-slots"
    monkeypatch.setenv("MEGASENSE_SLOTS_MODEL", "env-slots")
    assert load_settings(toml).slots_model == "env-slots"
    monkeypatch.setenv("MEGASENSE_SLOTS_MODEL", "")  # empty: not served, whatever the file says
    assert load_settings(toml).slots_model is None
    seen = []
    monkeypatch.setattr(server, "serve", seen.append)
    result = _cli("serve", "--slots-model", "flag-slots", "--intent-model", "intent-en")
    assert result.exit_code == 0, result.output
    assert (seen[0].slots_model, seen[0].intent_model) == ("flag-slots", "intent-en")
