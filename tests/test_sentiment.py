"""Sentiment task, batched prediction, evaluation and the predict / evaluate / train commands, on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from _sentiment_fixtures import (
    one_thread,  # noqa: F401 (an autouse fixture)
    save_base,
    tiny_base,
    tiny_tokenizer,
    toy_rows,
    write_csv,
)
from megasense.api import sentiment
from megasense.cli.main import COMMANDS, _register, app
from megasense.files.tables import TableError
from megasense.formats.adapter import classifier_on
from megasense.predictors.jobs import evaluate_file, predict_file
from megasense.predictors.labels import LabelError
from megasense.predictors.sentiment import SentimentClassifier, SentimentRouter
from megasense.predictors.windows import SentimentTask
from megasense.training.finetune import FinetuneConfig, train_from_files
from megasense.zoo.load import load_model

LABELS = ("negative", "neutral", "positive")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny classifier trained on the toy task, saved by ``megasense.train``'s library function."""
    tmp = tmp_path_factory.mktemp("trained")
    base_dir = save_base(tmp)
    train_csv = write_csv(tmp / "train.csv", toy_rows(320, 0))
    val_csv = write_csv(tmp / "val.csv", toy_rows(90, 1))
    config = FinetuneConfig(epochs=5, batch_size=16, lr=3e-3, bf16=False, progress=False, patience=None)
    result = train_from_files(train_csv, val_csv, base=str(base_dir), output=tmp / "model", config=config)
    assert result.report["accuracy"] >= 0.9
    return tmp / "model"


@pytest.fixture(scope="module")
def classifier(trained):
    return SentimentClassifier(load_model(trained), bf16=False)


def test_short_texts_are_one_window_long_texts_overlapping_windows(tmp_path):
    task = SentimentTask(tiny_tokenizer(tmp_path), LABELS, max_length=16, overlap=4)
    long_text = " ".join(["good"] * 12 + ["bad"] * 12 + ["table"] * 6)  # 30 tokens
    plan = task.encode(["good day", long_text])
    assert plan.windows[0] == 1 and plan.sequences[0] == task.tokenizer.encode("good day")
    windows = [s for s, o in zip(plan.sequences, plan.owner) if o == 1]
    assert plan.windows[1] == len(windows) == 3  # 14 tokens per window, stride 10: [0,14) [10,24) [20,30)
    cls, sep = task.tokenizer.encode("")
    assert all(len(w) <= 16 and w[0] == cls and w[-1] == sep for w in windows)
    body = task.tokenizer.encode(long_text, add_special_tokens=False)
    assert windows[1][1:-1] == body[10:24] and windows[0][-5:-1] == windows[1][1:5]  # 4 tokens of overlap
    assert plan.weight[1:] == [14, 14, 10]


def test_aggregation_weights_windows_and_restriction_renormalises(tmp_path):
    task = SentimentTask(tiny_tokenizer(tmp_path), LABELS, max_length=16, overlap=4)
    plan = task.encode(["good", " ".join(["bad"] * 30)])
    logits = torch.zeros(len(plan.sequences), 3)
    logits[0] = torch.tensor([0.0, 0.0, 5.0])
    logits[1:, 0] = 4.0
    logits[-1] = torch.tensor([0.0, 0.0, 4.0])  # the short last window votes the other way, with less weight
    result = task.aggregate(logits, plan)
    assert result.labels == ["positive", "negative"] and result.chunks[1] == 3
    np.testing.assert_allclose(result.probs.sum(axis=1), 1.0, rtol=1e-6)
    binary = task.restricted(["negative", "positive"]).aggregate(torch.tensor([[1.0, 9.0, 0.0]]), task.encode(["x"]))
    assert binary.label_names == ("negative", "positive") and binary.labels == ["negative"]
    np.testing.assert_allclose(binary.probs[0], torch.softmax(torch.tensor([1.0, 0.0]), 0).numpy(), rtol=1e-6)
    with pytest.raises(LabelError, match="choose at least two"):
        task.restricted(["positive"])


def test_classifier_predicts_the_toy_task_and_api_shapes(classifier):
    out = sentiment(["it was so good today", "it was awful and sad", "the report of tuesday"], model=classifier)
    assert [o["label"] for o in out] == ["positive", "negative", "neutral"]
    assert all(abs(sum(o["probs"].values()) - 1) < 1e-5 and o["score"] == max(o["probs"].values()) for o in out)
    one = sentiment("very bad", model=classifier, labels=["negative", "positive"])
    assert one["label"] == "negative" and set(one["probs"]) == {"negative", "positive"}


def test_long_text_is_chunked_not_truncated(classifier):
    # A tail that flips the sentiment must count: truncation at 64 tokens would only see the neutral start.
    text = " ".join(["table"] * 70 + ["awful"] * 70)
    result = classifier.predict([text])
    assert result.chunks[0] > 1
    assert result.probs[0, 0] > classifier.predict([" ".join(["table"] * 62)]).probs[0, 0]


def test_predict_file_adds_columns_keeps_rows_and_is_atomic(classifier, tmp_path):
    src = tmp_path / "posts.csv"
    pd.DataFrame({"id": [1, 2, 3, 4], "body": ["so good", "  ", "awful day", "the train"]}).to_csv(src, index=False)
    out = tmp_path / "out.parquet"
    summary = predict_file(classifier, src, out, text_col="body", chunk_rows=2)
    frame = pd.read_parquet(out)
    assert summary.rows == 4 and summary.skipped_empty == 1
    assert list(frame.columns) == [
        "id", "body", "label", "score", "prob_negative", "prob_neutral", "prob_positive", "chunks"
    ]  # fmt: skip
    assert frame["label"].tolist() == ["positive", "", "negative", "neutral"]
    assert frame["id"].tolist() == [1, 2, 3, 4] or frame["id"].tolist() == ["1", "2", "3", "4"]
    preview = predict_file(classifier, src, None, text_col="body", chunk_rows=1, preview_rows=2)
    assert preview.rows == 4 and sum(len(f) for f in preview.frames) == 2  # printing keeps memory bounded
    with pytest.raises(TableError, match=r"rows 3"):
        predict_file(classifier, src, tmp_path / "strict.csv", text_col="body", strict=True)
    assert not (tmp_path / "strict.csv").exists() and not list(tmp_path.glob(".strict.csv.tmp-*"))
    with pytest.raises(TableError, match="refusing to overwrite the input"):
        predict_file(classifier, src, src, text_col="body")
    with pytest.raises(TableError, match="the columns are: 'id', 'body'"):
        predict_file(classifier, src, tmp_path / "x.csv", text_col="text")


def test_evaluate_reports_metrics_restriction_and_baseline(classifier, tmp_path):
    rows = [(t, {"positive": "pos", "negative": "消极"}[y]) for t, y in toy_rows(60, 5, ("negative", "positive"))]
    data = write_csv(tmp_path / "binary.csv", rows)
    report = evaluate_file(classifier, data)
    for key in ("n", "accuracy", "macro_f1", "weighted_f1", "macro_recall", "per_class", "confusion_matrix", "ece"):
        assert key in report
    assert report["n"] == 60 and report["labels"] == ["negative", "positive"] and report["restricted"]
    assert "restricted to negative, positive" in report["note"] and report["accuracy"] >= 0.9
    assert report["baseline"]["name"] == "vader" and 0.0 <= report["baseline"]["accuracy"] <= 1.0
    assert len(report["confusion_matrix"]["matrix"]) == 2
    bad = write_csv(tmp_path / "bad.csv", [("good", "positive"), ("bad", "meh"), ("x", "meh")])
    with pytest.raises(LabelError, match=r"'meh' \(rows 3, 4"):
        evaluate_file(classifier, bad)


def test_router_sends_chinese_to_the_multilingual_model(classifier):
    calls = []

    class Spy(SentimentClassifier):
        def predict(self, texts, *, progress=None):
            calls.append(list(texts))
            return super().predict(texts, progress=progress)

    spy = object.__new__(Spy)
    spy.__dict__.update(classifier.__dict__)
    router = SentimentRouter(classifier, lambda: spy)
    result = router.predict(["so good", "服务很好", "awful"])
    assert calls == [["服务很好"]] and result.labels[0] == "positive" and result.labels[2] == "negative"
    lazy = SentimentRouter(classifier, lambda: pytest.fail("loaded the multilingual model for English text"))
    assert lazy.predict(["good"]).labels == ["positive"]


def test_classifier_on_rejects_a_decoder(tmp_path):
    base = tiny_base(tmp_path)
    model, head = classifier_on(base, LABELS)
    assert head.labels == LABELS and model.classifier.out_features == 3
    assert torch.equal(
        model.state_dict()["embedding.word_embeddings.weight"], base.model.embedding.word_embeddings.weight
    )


def _cli(*args):
    if "predict" not in app.registered_commands and not any(c.name == "predict" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, list(args))


def test_cli_predict_evaluate_and_errors(trained, tmp_path):
    assert {"predict", "evaluate", "train"} <= set(COMMANDS)
    data = write_csv(tmp_path / "in.csv", toy_rows(20, 9))
    out = tmp_path / "out.jsonl"
    result = _cli("predict", str(data), "--model", str(trained), "--output", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 20 and {"label", "score", "prob_positive", "text"} <= set(lines[0])
    shown = _cli("predict", str(data), "--model", str(trained), "--no-progress")
    assert shown.exit_code == 0, shown.output
    assert sum(shown.output.count(label) for label in LABELS) >= 20  # a table row per text
    report = tmp_path / "report.json"
    ev = _cli("evaluate", str(data), "--model", str(trained), "--report", str(report), "--no-progress")
    assert ev.exit_code == 0, ev.output
    assert "macro recall" in ev.output and json.loads(report.read_text())["n"] == 20
    missing = _cli("predict", str(data), "--model", str(trained), "--text-col", "body", "--no-progress")
    assert missing.exit_code == 2 and "the columns are: 'text', 'label'" in missing.output
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    for bad, message in ((empty, "empty"), (tmp_path, "is a directory")):
        r = _cli("predict", str(bad), "--model", str(trained), "--no-progress")
        assert r.exit_code == 2 and message in r.output
    invalid = tmp_path / "latin1.csv"
    invalid.write_bytes("text,label\nok,positive\ncaf\xe9,neutral\n".encode("latin-1"))
    r = _cli("predict", str(invalid), "--model", str(trained), "--no-progress")
    assert r.exit_code == 2 and "row 3" in r.output and "UTF-8" in r.output


def test_cli_train_writes_a_release_with_a_card(tmp_path):
    base_dir = save_base(tmp_path)
    train_csv = write_csv(tmp_path / "train.csv", [(t, str(LABELS.index(y))) for t, y in toy_rows(96, 2)])
    out = tmp_path / "mine"
    args = ["train", str(train_csv), "--val", str(train_csv), "--base", str(base_dir), "--output", str(out)]
    r = _cli(*args, "--epochs", "1", "--lora", "--no-bf16", "--augment")
    assert r.exit_code == 0, r.output
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "macro_recall" in card and "megasense train" in card and "EDA" in card
    assert load_model(out).head.labels == LABELS and (out / "adapter" / "adapter.safetensors").is_file()
    again = _cli(*args, "--epochs", "1")
    assert again.exit_code == 2 and "already exists" in again.output


def test_an_input_column_named_label_is_kept_not_overwritten(classifier, tmp_path):
    src = tmp_path / "gold.csv"
    pd.DataFrame({"text": ["so good", "awful day"], "label": ["pos", "neg"]}).to_csv(src, index=False)
    summary = predict_file(classifier, src, tmp_path / "out.csv")
    frame = pd.read_csv(tmp_path / "out.csv")
    assert summary.renamed == ["label"]
    assert frame["input_label"].tolist() == ["pos", "neg"]
    assert frame["label"].tolist() == ["positive", "negative"]


def test_cli_predict_and_evaluate_read_the_input_once_with_a_progress_bar(trained, tmp_path, monkeypatch):
    from megasense.files import tables

    data = write_csv(tmp_path / "in.csv", toy_rows(30, 4))
    opened: list[str] = []
    real = tables.read_chunks

    def counting(path, **kwargs):
        opened.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(tables, "read_chunks", counting)
    monkeypatch.setattr("megasense.predictors.jobs.read_chunks", counting)
    for command in (["predict", "--output", str(tmp_path / "out.csv")], ["evaluate"]):
        opened.clear()
        result = _cli(command[0], str(data), "--model", str(trained), "--progress", *command[1:])
        assert result.exit_code == 0, result.output
        assert opened == [str(data)], f"{command[0]} read the input {len(opened)} times"
        assert "30/30" in result.output  # the bar's total, estimated from the share of the file read
