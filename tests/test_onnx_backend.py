"""The ONNX Runtime backend on the shipped sentiment-en model: fp32 matches torch, per-channel int8 stays
close, the export is cached and reused, written atomically, and a missing onnxruntime names the extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from _shared import shared_texts
from megasense.inference import onnx_backend
from megasense.inference.onnx_backend import INT8_FILE, OnnxUnavailableError, cached_onnx, model_key
from megasense.predictors.sentiment import SentimentClassifier
from megasense.zoo.load import load_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def loaded():
    return load_model("sentiment-en")


@pytest.fixture(scope="module")
def tweets():
    return shared_texts("tweets-sentiment-en/val.csv", 200)


@pytest.fixture(scope="module")
def fp32(loaded, tweets):
    return SentimentClassifier(loaded, precision="fp32").predict(tweets)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEGASENSE_HOME", str(tmp_path))  # after `loaded`: the torch model is already on disk
    return tmp_path


def test_onnx_fp32_matches_torch(loaded, tweets, fp32, home):
    onnx = SentimentClassifier(loaded, precision="onnx")
    assert onnx.precision == "onnx"
    got = onnx.predict(tweets)
    assert got.labels == fp32.labels
    np.testing.assert_allclose(got.probs, fp32.probs, atol=1e-4)
    assert [p.name for p in (home / "onnx").glob("*/*.onnx")] == ["model.onnx"]


def test_onnx_int8_stays_close_to_fp32(loaded, tweets, fp32, home):
    int8 = SentimentClassifier(loaded, precision="onnx-int8")
    got = int8.predict(tweets)
    same = np.mean([a == b for a, b in zip(fp32.labels, got.labels)])
    # Measured on these 200 tweets: 97.5% same label, mean |prob diff| 0.011 (torch's own int8: 94%, 0.025).
    assert same >= 0.95, same
    assert np.abs(fp32.probs - got.probs).mean() < 0.02
    quantized = next((home / "onnx").glob(f"*/{INT8_FILE}"))
    assert quantized.stat().st_size < 0.4 * (quantized.parent / "model.onnx").stat().st_size


def test_second_load_reuses_the_cache(loaded, home, monkeypatch):
    first = cached_onnx(loaded.model, "onnx-int8")
    stamp = first.stat().st_mtime_ns

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds the model")

    monkeypatch.setattr(onnx_backend, "export_fp32", no_export)
    monkeypatch.setattr(onnx_backend, "quantize_int8", no_export)
    assert cached_onnx(loaded.model, "onnx-int8") == first
    assert first.stat().st_mtime_ns == stamp
    SentimentClassifier(loaded, precision="onnx-int8").predict(["a lovely day"])


def test_the_cache_key_follows_the_weights(loaded):
    key = model_key(loaded.model)
    assert key == model_key(loaded.model)
    changed = load_model("sentiment-en").model
    with torch.no_grad():
        changed.classifier.bias[0] += 1e-3
    assert model_key(changed) != key


def test_a_failed_export_leaves_no_file(loaded, home, monkeypatch):
    def broken(model, args, path, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half a graph")
        raise RuntimeError("export failed")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(RuntimeError, match="export failed"):
        cached_onnx(loaded.model, "onnx")
    assert not [p for p in home.rglob("*") if p.is_file()]


def test_missing_onnxruntime_names_the_extra(loaded, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(OnnxUnavailableError, match=r"pip install 'megasense\[onnx\]'"):
        SentimentClassifier(loaded, precision="onnx-int8")


def test_cli_predict_with_onnx_int8(home, tmp_path):
    from test_precision import run_predict_cli

    rows = run_predict_cli(tmp_path, "onnx-int8")
    assert [r["label"] for r in rows[:2]] == ["positive", "negative"]
    assert list((home / "onnx").glob(f"*/{INT8_FILE}"))


def test_cli_refuses_onnx_without_onnxruntime(home, tmp_path, monkeypatch):
    from test_precision import cli, write_posts

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = cli(
        "predict", str(write_posts(tmp_path)), "--model", "sentiment-en", "--precision", "onnx", "--no-progress"
    )
    assert result.exit_code == 2
    assert "megasense[onnx]" in result.output
    assert "Traceback" not in result.output
