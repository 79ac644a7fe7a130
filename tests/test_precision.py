"""The precision option: int8 and bf16 stay close to fp32 on real tweets; unknown values fail clearly."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from _shared import shared_texts
from megasense.cli.main import _register, app
from megasense.inference.quantize import resolve_precision
from megasense.predictors.sentiment import SentimentClassifier, load_predictor
from megasense.zoo.load import load_model


@pytest.fixture(scope="module")
def loaded():
    return load_model("sentiment-en")


def test_unknown_precision_is_refused_before_loading():
    with pytest.raises(
        ValueError, match=r"unknown precision 'fp8'; choose one of auto, fp32, bf16, int8, onnx, onnx-int8"
    ):
        load_predictor("no-such-model", precision="fp8")


def test_auto_resolves_to_a_concrete_precision():
    assert resolve_precision("auto") in {"fp32", "bf16"}
    assert resolve_precision("int8") == "int8"
    with pytest.raises(ValueError, match="precision 'onnx-int8' runs on the CPU only, not on cuda"):
        resolve_precision("onnx-int8", "cuda")


def test_int8_agrees_with_fp32_on_real_tweets(loaded):
    texts = shared_texts("tweets-sentiment-en/val.csv", 200)
    fp32 = SentimentClassifier(loaded, precision="fp32").predict(texts)
    int8 = SentimentClassifier(loaded, precision="int8")
    assert int8.precision == "int8"
    got = int8.predict(texts)
    same = np.mean([a == b for a, b in zip(fp32.labels, got.labels)])
    # Measured 94% same label here (96.3% on 1,500 train tweets): torch's per-channel dynamic int8 moves
    # borderline tweets, which is why "auto" never picks it. The bound guards against a worse int8 path.
    assert same >= 0.92, same
    assert np.abs(fp32.probs - got.probs).mean() < 0.03
    # the fp32 model itself was not quantized in place
    assert SentimentClassifier(loaded, precision="fp32").predict(texts).probs == pytest.approx(fp32.probs)


POSTS = ["What a wonderful, happy day with friends!", "This is the worst service I have ever had, awful.", "ok"]


def cli(*args):
    if not any(c.name == "predict" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, list(args))


def write_posts(directory):
    path = directory / "posts.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(POSTS))
    return path


def run_predict_cli(directory, precision: str) -> list[dict]:
    """``megasense predict posts.csv --model sentiment-en --precision <precision>``: the JSONL rows written."""
    out = directory / "out.jsonl"
    args = ("predict", str(write_posts(directory)), "--model", "sentiment-en", "--output", str(out))
    result = cli(*args, "--precision", precision, "--no-progress")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(POSTS) and {"label", "score", "prob_positive", "text"} <= set(rows[0])
    return rows


def test_cli_predict_with_int8(tmp_path):
    rows = run_predict_cli(tmp_path, "int8")
    assert [r["label"] for r in rows[:2]] == ["positive", "negative"]


def test_cli_refuses_an_unknown_precision(tmp_path):
    result = cli("predict", str(write_posts(tmp_path)), "--model", "sentiment-en", "--precision", "fp8")
    assert result.exit_code == 2 and "unknown precision 'fp8'" in result.output and "Traceback" not in result.output
