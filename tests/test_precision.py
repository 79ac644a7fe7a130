"""The precision option: int8 and bf16 stay close to fp32 on real tweets; unknown values fail clearly."""

from __future__ import annotations

import numpy as np
import pytest

from _shared import shared_texts
from megasense.checkpoints.loading import load_model
from megasense.inference.quantize import resolve_precision
from megasense.inference.sentiment import SentimentClassifier, load_predictor


@pytest.fixture(scope="module")
def loaded():
    return load_model("sentiment-en")


def test_unknown_precision_is_refused_before_loading():
    with pytest.raises(ValueError, match=r"unknown precision 'fp8'; choose one of auto, fp32, bf16, int8"):
        load_predictor("no-such-model", precision="fp8")


def test_auto_resolves_to_a_concrete_precision():
    assert resolve_precision("auto") in {"fp32", "bf16"}
    assert resolve_precision("int8") == "int8"


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
