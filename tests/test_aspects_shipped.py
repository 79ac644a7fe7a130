"""The shipped ``aspect-sentiment-en`` on real sentences: comparisons of two brands, and the commands end to end.

tests/data/aspects/brand_comparisons.csv holds 20 sentences written for this, each comparing two brands
("Samsung is better than Apple."), as 40 (sentence, brand, label) rows: positive for the better brand,
negative for the worse.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from _shared import shared_path
from megasense.formats.adapter import ADAPTER_WEIGHTS
from megasense.zoo.shipped import ASSETS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (ASSETS / "aspect-sentiment-en" / ADAPTER_WEIGHTS).is_file(), reason="aspect-sentiment-en is not shipped"
    ),
]
COMPARISONS = Path(__file__).parent / "data" / "aspects" / "brand_comparisons.csv"


@pytest.fixture(scope="module")
def predictor():
    import torch

    from megasense.predictors.sentiment import load_predictor

    torch.set_num_threads(1)
    return load_predictor("aspect-sentiment-en")


def test_comparisons_score_as_the_card_reports(predictor):
    """How often "X is better than Y" reads positive for X and negative for Y: the card's number (0.450 of the
    pairs; the model mostly gives both brands the sentence's tone), so a retrained model must update it."""
    with open(COMPARISONS, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    batch = predictor.predict([r["text"] for r in rows], aspects=[r["aspect"] for r in rows])
    accuracy = sum(label == r["label"] for label, r in zip(batch.labels, rows)) / len(rows)
    card = (ASSETS / "aspect-sentiment-en" / "README.md").read_text(encoding="utf-8")
    assert f"{accuracy:.3f} of the pairs right" in card, accuracy


def test_an_aspect_the_text_does_not_name_is_neutral(predictor):
    batch = predictor.predict(["The pasta was delicious."] * 2, aspects=["pasta", "parking"])
    assert batch.labels == ["positive", "neutral"]


def test_semeval_restaurants_held_out_fifth(predictor):
    """Above the majority label (0.617) and TF-IDF + LR trained in-domain (0.717) on the benchmark's split."""
    import random

    path = shared_path("absa-semeval14-en/restaurants-train.csv")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    sentences = sorted({r["text"] for r in rows})
    random.Random(0).shuffle(sentences)
    held = set(sentences[: len(sentences) // 5])
    test = [r for r in rows if r["text"] in held]
    batch = predictor.predict([r["text"] for r in test], aspects=[r["aspect"] for r in test])
    accuracy = sum(label == r["label"] for label, r in zip(batch.labels, test)) / len(test)
    assert len(test) == 697 and accuracy >= 0.72, accuracy


def test_predict_and_evaluate_with_aspect_col(tmp_path):
    from typer.testing import CliRunner

    from megasense.cli.main import _register, app

    if not any(c.name == "evaluate" for c in app.registered_commands):
        _register()
    runner = CliRunner()
    out = tmp_path / "scored.csv"
    args = ["--model", "aspect-sentiment-en", "--aspect-col", "aspect", "--no-progress"]
    result = runner.invoke(app, ["predict", str(COMPARISONS), "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    with open(out, encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 40
    result = runner.invoke(app, ["evaluate", str(COMPARISONS), *args])
    assert result.exit_code == 0 and "accuracy" in result.output, result.output
    result = runner.invoke(app, ["predict", str(COMPARISONS), "--model", "aspect-sentiment-en", "--no-progress"])
    assert result.exit_code != 0 and "--aspect-col" in result.output
