"""(text, aspect) pair classification: encoding, training, ``predict`` / ``evaluate`` / ``train --aspect-col``.

The toy task puts the label in the aspect alone (the text is filler; the aspect is a sentiment word), so a
model that never saw the aspect could not beat a third: learning it shows the pair reaches the encoder.
"""

from __future__ import annotations

import csv
import json
import random

import pytest
from typer.testing import CliRunner

from _analytics_fakes import write_csv as write
from _sentiment_fixtures import (
    FILLER,
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    one_thread,  # noqa: F401 (an autouse fixture)
    save_base,
    tiny_tokenizer,
)
from megasense.cli.main import _register, app
from megasense.errors import MegasenseInputError
from megasense.predictors.windows import SentimentTask
from megasense.zoo import load_model

WORDS = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}


def _cli(*args):
    if not any(c.name == "train" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, list(args))


def pair_rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(list(WORDS))
        text = " ".join(rng.choice(FILLER) for _ in range(rng.randint(3, 6)))
        rows.append({"text": text, "aspect": rng.choice(WORDS[label]), "label": label})
    return rows


def test_pairs_encode_text_then_aspect_and_every_window_carries_the_aspect(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path)
    task = SentimentTask(tokenizer, max_length=16, overlap=2)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    good = tokenizer.token_to_id("good")
    plan = task.encode(["the table was bad", " ".join(["the"] * 30)], ["good", "good"])
    first = plan.sequences[0]
    assert first[0] == cls and first[-2:] == [good, sep] and first.count(sep) == 2
    assert plan.windows[0] == 1 and plan.windows[1] > 1 and len(plan.sequences) == 1 + plan.windows[1]
    assert all(len(s) <= 16 and s[-2:] == [good, sep] for s in plan.sequences)
    covered = sum(w for o, w in zip(plan.owner, plan.weight) if o == 1)
    assert covered >= 30  # the long text is all read (windows overlap)
    with pytest.raises(Exception, match="2 texts but 1 aspects"):
        task.encode(["a", "b"], ["good"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pairs")
    base = save_base(tmp)
    train = write(tmp / "train.csv", pair_rows(360, 1))
    val = write(tmp / "val.csv", pair_rows(120, 2))
    out = tmp / "pair-model"
    result = _cli(
        "train", str(train), "--val", str(val), "--aspect-col", "aspect", "--base", str(base), "--output", str(out),
        "--epochs", "6", "--lr", "3e-3", "--batch-size", "16", "--no-bf16", "--monitor", "accuracy",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return tmp, out, val


def test_training_on_pairs_learns_from_the_aspect_and_records_it(trained):
    _, out, val = trained
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["head"]["pair"] == "aspect"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "--aspect-col aspect" in card  # the card's evaluate command reads the pairs as training did
    report = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert report["head"]["labels"] == ["negative", "neutral", "positive"]
    result = _cli("evaluate", str(val), "--model", str(out), "--aspect-col", "aspect", "--no-progress")
    assert result.exit_code == 0, result.output
    accuracy = float(result.output.split("accuracy")[1].split()[0].strip(":= "))
    assert accuracy >= 0.9, result.output


def test_predict_with_aspect_col_and_clear_errors_without(trained):
    tmp, out, val = trained
    scored = tmp / "scored.csv"
    result = _cli(
        "predict", str(val), "--model", str(out), "--aspect-col", "aspect", "-o", str(scored), "--no-progress"
    )
    assert result.exit_code == 0, result.output
    with open(scored, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 120 and sum(r["label"] == r["input_label"] for r in rows) >= 108
    missing = _cli("predict", str(val), "--model", str(out), "--no-progress")
    assert missing.exit_code != 0 and "--aspect-col" in missing.output
    wrong = _cli("predict", str(val), "--model", str(out), "--aspect-col", "nope", "--no-progress")
    assert wrong.exit_code != 0 and "nope" in wrong.output
    blank = write(tmp / "blank.csv", [{"text": "the table", "aspect": "good"}, {"text": "a paper", "aspect": " "}])
    refused = _cli("predict", str(blank), "--model", str(out), "--aspect-col", "aspect", "--no-progress")
    assert refused.exit_code != 0 and "rows 3" in refused.output, refused.output


def test_a_text_model_refuses_pairs(trained, tmp_path):
    from megasense.predictors.sentiment import load_predictor

    _, out, _ = trained
    pair_model = load_model(out)
    text_model = load_model(out)
    text_model.head = type(pair_model.head)(**{**pair_model.head.to_dict(), "pair": "", "labels": ("a", "b", "c")})
    with pytest.raises(MegasenseInputError, match="reads texts alone"):
        load_predictor(text_model).predict(["the table"], aspects=["good"])
    with pytest.raises(MegasenseInputError, match="1 texts but 2 aspects"):
        load_predictor(pair_model).predict(["the table"], aspects=["good", "bad"])
    text = "the it was very"
    result = load_predictor(pair_model).predict([text] * 12, aspects=[*POSITIVE, *NEGATIVE])
    assert sum(label == "positive" for label in result.labels[:6]) >= 5, result.labels  # one text, two answers
    assert sum(label == "negative" for label in result.labels[6:]) >= 5, result.labels
