"""Text classification beyond sentiment: intents with an out-of-scope answer, multi-label emotions, many labels.

The tiny word-level model learns toy intents in seconds: "praise" (positive words), "complain"
(negative words), "schedule" (neutral words), and "oos" (filler words only). Training, calibration,
prediction and evaluation run through the same commands as sentiment.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

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
from megasense.config import HeadConfig
from megasense.errors import ConfigError, LabelError
from megasense.predictors.calibration import calibrate_oos_threshold, fit_temperature, tune_label_thresholds
from megasense.predictors.labels import SENTIMENT_LABELS, infer_labels, read_gold
from megasense.predictors.metrics import multilabel_report, out_of_scope_report
from megasense.predictors.results import MAX_PROB_COLUMNS, SentimentBatch
from megasense.predictors.windows import SentimentTask, WindowPlan

INTENT_WORDS = {"praise": POSITIVE, "complain": NEGATIVE, "schedule": NEUTRAL}


def _cli(*args):
    if not any(c.name == "train" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, list(args))


def intent_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        intent = rng.choice([*INTENT_WORDS, "oos"])
        body = [rng.choice(FILLER) for _ in range(rng.randint(2, 5))]
        if intent != "oos":
            body.insert(rng.randrange(len(body) + 1), rng.choice(INTENT_WORDS[intent]))
        rows.append((" ".join(body), intent))
    return rows


def emotion_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """'joy' for a positive word, 'anger' for a negative one, both when both occur."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = rng.choice([("joy",), ("anger",), ("joy", "anger")])
        body = [rng.choice(FILLER) for _ in range(rng.randint(2, 4))]
        for label in labels:
            body.insert(rng.randrange(len(body) + 1), rng.choice(POSITIVE if label == "joy" else NEGATIVE))
        rows.append((" ".join(body), ",".join(labels)))
    return rows


def write(path: Path, rows, header=("text", "intent")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def intents(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("intents")
    base = save_base(tmp)
    train = write(tmp / "train.csv", intent_rows(400, 1))
    val = write(tmp / "val.csv", intent_rows(120, 2))
    out = tmp / "intent-model"
    result = _cli(
        "train", str(train), "--val", str(val), "--label-col", "intent", "--base", str(base), "--output", str(out),
        "--epochs", "6", "--lr", "3e-3", "--batch-size", "16", "--no-bf16",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return tmp, out, val


def test_intent_training_learns_labels_from_the_data_and_calibrates_out_of_scope(intents):
    _, out, _ = intents
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    head = config["head"]
    assert head["labels"] == ["complain", "oos", "praise", "schedule"]  # the column's values, sorted
    assert head["oos_label"] == "oos" and isinstance(head["oos_threshold"], float)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "in_scope_accuracy" in card and "oos_recall" in card and "Out-of-scope answer" in card
    assert head["temperature"] > 0 and "temperature-scaled" in card  # scores calibrated on the validation data


def test_intent_evaluate_reports_out_of_scope_metrics(intents):
    tmp, out, val = intents
    report = tmp / "report.json"
    result = _cli(
        "evaluate", str(val), "--model", str(out), "--label-col", "intent", "--report", str(report), "--no-progress"
    )
    assert result.exit_code == 0, result.output
    assert "in-scope accuracy" in result.output
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["in_scope_accuracy"] > 0.9 and data["oos_recall"] > 0.8, data
    assert "baseline" not in data  # VADER is a sentiment baseline
    assert data["n_oos"] + data["n_in_scope"] == data["n"] == 120


def test_intent_predict_and_unknown_gold_labels(intents):
    tmp, out, val = intents
    pred = tmp / "pred.csv"
    result = _cli("predict", str(val), "--model", str(out), "--output", str(pred), "--no-progress")
    assert result.exit_code == 0, result.output
    with open(pred, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["label"] for r in rows} <= {"complain", "oos", "praise", "schedule"}
    assert sum(r["label"] == r["intent"] for r in rows) / len(rows) > 0.85
    bad = write(tmp / "bad.csv", [("good day", "praise"), ("bad day", "complian")])
    result = _cli("evaluate", str(bad), "--model", str(out), "--label-col", "intent", "--no-progress")
    assert result.exit_code == 2
    assert "'complian' (rows 3; 1 in all)" in result.output and "bad.csv" in result.output


def test_multi_label_training_predicts_label_sets(tmp_path):
    base = save_base(tmp_path)
    header = ("text", "emotions")
    train = write(tmp_path / "train.csv", emotion_rows(400, 3), header)
    val = write(tmp_path / "val.csv", emotion_rows(120, 4), header)
    out = tmp_path / "emotions"
    result = _cli(
        "train", str(train), "--val", str(val), "--label-col", "emotions", "--multi-label", "--base", str(base),
        "--output", str(out), "--epochs", "30", "--lr", "5e-3", "--batch-size", "16", "--no-bf16", "--patience", "30",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    head = json.loads((out / "config.json").read_text(encoding="utf-8"))["head"]
    assert head["multi_label"] and head["labels"] == ["anger", "joy"] and len(head["thresholds"]) == 2
    report = tmp_path / "report.json"
    result = _cli(
        "evaluate", str(val), "--model", str(out), "--label-col", "emotions", "--report", str(report), "--no-progress"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["multi_label"] and data["micro_f1"] > 0.9 and data["accuracy"] > 0.8, data
    from megasense.predictors.sentiment import load_predictor

    batch = load_predictor(out).predict(["good and bad", "happy today", "it was awful"])
    assert set(batch.label_sets[0]) == {"joy", "anger"}
    assert batch.label_sets[1] == ("joy",) and batch.label_sets[2] == ("anger",)
    assert batch[0].to_dict()["labels"] and batch.labels[0] in ("joy,anger", "anger,joy")


def test_labels_are_inferred_and_gold_is_checked_against_the_model():
    assert infer_labels(["pos", "neg", "neutral"]) == SENTIMENT_LABELS
    assert infer_labels(["alarm", "timer", "alarm", " oos "]) == ("alarm", "oos", "timer")
    assert infer_labels(["joy,anger", "neutral"], multi_label=True) == ("anger", "joy", "neutral")
    with pytest.raises(LabelError, match="1 distinct"):
        infer_labels(["alarm", "alarm"])
    assert read_gold(["alarm", "timer "], ("alarm", "timer")) == ["alarm", "timer"]
    assert read_gold(["joy, anger", "joy"], ("anger", "joy"), multi_label=True) == [("joy", "anger"), ("joy",)]
    with pytest.raises(LabelError, match=r"'' \(rows 3"):  # a text with no label at all is a gap in the data
        read_gold(["joy", " "], ("anger", "joy"), multi_label=True)
    with pytest.raises(LabelError, match=r"'sadness' \(rows 3"):
        read_gold(["joy", "sadness"], ("anger", "joy"), multi_label=True)
    with pytest.raises(LabelError, match=r"'' \(rows 2"):
        read_gold([None, "alarm"], ("alarm", "timer"))


def test_oos_threshold_refuses_the_budgeted_share_of_in_scope_texts():
    # labels: a, b, oos (index 2); in-scope scores of 100 in-scope texts are 1..100, out-of-scope ones low.
    in_scope = np.concatenate([np.arange(1.0, 101.0), [0.5, 2.5]])
    probs = np.tile([0.8, 0.1, 0.1], (102, 1))
    gold = [0] * 100 + [2, 2]
    threshold, measured = calibrate_oos_threshold(in_scope, probs, gold, 2, budget=0.02)
    assert 2.5 < threshold < 3.5  # the 2% quantile of the in-scope scores
    assert measured["in_scope_accuracy"] == pytest.approx(0.98) and measured["oos_recall"] == 1.0
    assert calibrate_oos_threshold(in_scope[:2], probs[:2], [2, 2], 2) == (None, {})  # no in-scope text


def test_label_thresholds_maximise_each_labels_f1():
    probs = np.array([[0.3, 0.9], [0.25, 0.8], [0.1, 0.7], [0.05, 0.2]])
    gold = np.array([[1, 1], [1, 1], [0, 1], [0, 0]], dtype=bool)
    low, high = tune_label_thresholds(probs, gold)
    assert 0.1 < low <= 0.25 and 0.2 < high <= 0.7
    assert tune_label_thresholds(probs, np.zeros((4, 2), dtype=bool)) == (0.5, 0.5)  # no positives: default


def test_task_answers_out_of_scope_below_the_threshold(tmp_path):
    task = SentimentTask(tiny_tokenizer(tmp_path), ("a", "b", "oos"), oos_label="oos", oos_threshold=1.0)
    logits = torch.tensor([[3.0, 0.0, 0.0], [-1.0, -1.5, 0.0], [0.0, 0.0, 4.0]])
    plan = WindowPlan(sequences=[[0]] * 3, owner=[0, 1, 2], weight=[1, 1, 1], windows=[1, 1, 1])
    batch = task.aggregate(logits, plan)
    assert batch.in_scope_scores == pytest.approx(torch.logsumexp(logits[:, :2], -1).numpy())
    assert batch.labels == ["a", "oos", "oos"]  # the second by its low in-scope score, the third by its logit
    assert batch.scores[1] == pytest.approx(batch.probs[1, 2])  # the out-of-scope label's own probability
    multi = SentimentTask(tiny_tokenizer(tmp_path), ("x", "y", "z"), multi_label=True, thresholds=(0.5, 0.3, 0.9))
    sets = multi.decode(np.array([[0.6, 0.4, 0.8], [0.1, 0.2, 0.3]], dtype=np.float32), [1, 1]).label_sets
    assert sets == [("x", "y"), ("z",)]  # above their thresholds, most probable first; else the top one


def test_temperature_scaling_recovers_an_overconfident_models_temperature(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3000, 3)) * 4
    truth = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(axis=1, keepdims=True)  # the true T is 2.5
    gold = np.array([rng.choice(3, p=p) for p in truth])
    raw = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert fit_temperature(raw, gold) == pytest.approx(2.5, rel=0.1)
    assert fit_temperature(truth, gold) == pytest.approx(1.0, abs=0.1)  # already calibrated: left alone
    # a masked row (a binary source) is fitted over its allowed labels only
    mask = np.tile([True, False, True], (len(gold), 1))
    binary = np.where(gold == 1, 0, gold)
    assert 0.05 < fit_temperature(raw, binary, mask=mask) < 20
    task = SentimentTask(tiny_tokenizer(tmp_path), ("a", "b", "c"), temperature=2.0)
    plan = WindowPlan(sequences=[[0]], owner=[0], weight=[1], windows=[1])
    probs = task.probabilities(torch.tensor([[2.0, 0.0, -2.0]]), plan)[0]
    assert probs == pytest.approx(torch.softmax(torch.tensor([1.0, 0.0, -1.0]), -1).numpy(), abs=1e-6)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="temperature"):
            HeadConfig(task="classification", labels=("a", "b"), temperature=bad)


def test_many_labels_write_a_top_column_instead_of_one_column_per_label():
    names = tuple(f"intent_{i}" for i in range(MAX_PROB_COLUMNS + 3))
    probs = np.full((1, len(names)), 0.01, dtype=np.float32)
    probs[0, 4], probs[0, 7] = 0.6, 0.25
    batch = SentimentBatch(labels=["intent_4"], scores=np.array([0.6]), probs=probs, label_names=names, chunks=[1])
    columns = batch.columns()
    assert not any(c.startswith("prob_") for c in columns)
    assert columns["top"][0].startswith("intent_4=0.600; intent_7=0.250; ")


def test_metrics_for_out_of_scope_and_multi_label():
    m = out_of_scope_report(["a", "b", "oos", "oos"], ["a", "oos", "oos", "b"], "oos")
    assert m["in_scope_accuracy"] == 0.5 and m["oos_recall"] == 0.5 and m["oos_precision"] == 0.5
    r = multilabel_report([("x",), ("x", "y")], [("x",), ("x",)], ["x", "y"])
    assert r["accuracy"] == 0.5 and r["per_class"]["y"]["recall"] == 0.0 and r["micro_f1"] == pytest.approx(0.8)


def test_probe_head_fits_the_head_before_fine_tuning(tmp_path):
    """A linear probe on the frozen encoder: with fine-tuning all but switched off (one step at a tiny learning
    rate), the probed head already tells skewed toy intents apart; a fresh head answers the majority."""
    from _sentiment_fixtures import tiny_base
    from megasense.training.finetune import FinetuneConfig, finetune, read_examples

    rows = [r for r in intent_rows(600, 5) if r[1] != "oos"]
    rows = [r for r in rows if r[1] == "praise"][:40] + [r for r in rows if r[1] != "praise"]  # skewed
    data = read_examples(write(tmp_path / "skewed.csv", rows), label_col="intent")
    accuracy = {}
    for probe in (False, True):
        config = FinetuneConfig(
            probe_head=probe, max_steps=1, lr=1e-8, warmup_ratio=0.0, bf16=False, progress=False, class_weights="none"
        )
        result = finetune(tiny_base(tmp_path), data, None, config)
        from megasense.predictors.sentiment import load_predictor

        predicted = load_predictor(result.loaded, precision="fp32").predict(data.texts).labels
        gold = [data.label_names[y] for y in data.labels]
        accuracy[probe] = sum(p == g for p, g in zip(predicted, gold)) / len(gold)
    assert accuracy[True] > 0.9 and accuracy[True] > accuracy[False] + 0.2, accuracy


def test_a_batch_slices_like_a_list():
    names = ("negative", "neutral", "positive")
    probs = np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]
    batch = SentimentBatch(
        labels=["negative", "neutral", "positive", "positive"],
        scores=np.ones(4),
        probs=probs,
        label_names=names,
        chunks=[1, 1, 2, 1],
    )
    head = batch[1:3]
    assert isinstance(head, SentimentBatch) and len(head) == 2
    assert head.labels == ["neutral", "positive"] and head.chunks == [1, 2]
    assert head[1].label == "positive" and head[1].probs["positive"] == 1.0
    assert [r.label for r in batch[::-1]] == ["positive", "positive", "neutral", "negative"]
