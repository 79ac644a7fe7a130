"""The shipped ``aspect-sentiment-multilingual`` on Chinese (sentence, aspect) rows written for it, and its route in
``analyze``: Chinese mentions go to it on their clause (it ships because that beats the sentence model there).

tests/data/aspects/aspects_zh.csv (86 rows) and aspects_zh_confirm.csv (50 rows, written after the first
results) hold review sentences with the sentiment toward one aspect of each.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from _analytics_fakes import FakeScorer
from megasense.formats.adapter import ADAPTER_WEIGHTS
from megasense.zoo.shipped import ASSETS, find_shipped_model

NAME = "aspect-sentiment-multilingual"
CHECKS = Path(__file__).parent / "data" / "aspects"
shipped = pytest.mark.skipif(not (ASSETS / NAME / ADAPTER_WEIGHTS).is_file(), reason=f"{NAME} is not shipped")


def _rows(name: str) -> list[dict]:
    with open(CHECKS / name, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@shipped
def test_registered_small_and_a_pair_model():
    entry = find_shipped_model(NAME)
    assert entry is not None and entry.task == "aspect" and entry.base == "multilingual-e5-small"
    assert (ASSETS / NAME / ADAPTER_WEIGHTS).stat().st_size < 20 * 2**20
    assert "## Data terms" in (ASSETS / NAME / "README.md").read_text(encoding="utf-8")


def test_analyze_routes_chinese_mentions_to_it_lazily():
    from megasense.analytics.analysis import _aspect_scorer

    scorer = _aspect_scorer(None, FakeScorer(), "zh")
    assert scorer.pair is None and callable(scorer.zh_pair) and not hasattr(scorer.zh_pair, "predict")


@pytest.fixture(scope="module")
def models():
    import torch

    from megasense.predictors.sentiment import load_predictor

    torch.set_num_threads(1)
    return load_predictor(NAME), load_predictor("sentiment-multilingual")


@shipped
@pytest.mark.slow
@pytest.mark.parametrize("check", ["aspects_zh.csv", "aspects_zh_confirm.csv"])
def test_on_the_clause_it_beats_the_sentence_model_as_the_card_reports(models, check):
    from megasense.analytics.aspects import clause_of

    pair, sentence = models
    rows = _rows(check)
    clauses = [clause_of(r["text"], r["aspect"]) for r in rows]

    def accuracy(labels) -> float:
        return sum(a == r["label"] for a, r in zip(labels, rows)) / len(rows)

    ours = accuracy(pair.predict(clauses, aspects=[r["aspect"] for r in rows]).labels)
    before = accuracy(sentence.predict(clauses).labels)
    assert ours >= before, (ours, before)
    card = (ASSETS / NAME / "README.md").read_text(encoding="utf-8")
    assert f"**{ours:.4f}**" in card, ours
