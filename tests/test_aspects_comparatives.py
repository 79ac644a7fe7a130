"""Comparisons between two brands: "X is better than Y" is positive for X and negative for Y.

tests/data/comparatives.csv: 68 sentences written for this (English and Chinese): comparisons, negated
comparisons and distractors (two brands and no comparison; "better than expected" with one brand), each brand
with the sentiment toward it. The rules alone are tested fast; the whole path (rules + shipped models) is
held to pair accuracy >= 0.85, where the sentence's own label for both brands gets 0.47.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from _analytics_fakes import FakeResult, FakeScorer
from megasense.analytics.aspects import AspectScorer, collect_mentions
from megasense.analytics.comparatives import adjective_polarity, compare, english_cue
from megasense.analytics.terms import Term
from megasense.formats.adapter import ADAPTER_WEIGHTS
from megasense.zoo.shipped import ASSETS

DATA = Path(__file__).parent / "data" / "comparatives.csv"


def _rows() -> list[dict]:
    with open(DATA, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _targets(row: dict) -> dict[int, str]:
    return {k: row[f"brand_{s}"] for k, s in enumerate("ab") if row[f"brand_{s}"]}


def _label(verdicts, key):
    verdict = verdicts.get(key)
    return None if verdict is None else verdict.label


def test_the_labelled_set_is_well_formed():
    rows = _rows()
    assert len(rows) >= 60
    assert {r["kind"] for r in rows} == {"comparative", "negated", "distractor"}
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in r["text"]) for r in rows) >= 20  # Chinese too
    for number, row in enumerate(rows, start=2):
        assert row["brand_a"] in row["text"], f"{DATA}: line {number}: brand_a {row['brand_a']!r} not in the text"
        assert not row["brand_b"] or row["brand_b"] in row["text"], f"{DATA}: line {number}: brand_b"
        labels = {row["label_a"], row["label_b"] or "neutral"}
        assert labels <= {"positive", "neutral", "negative"}, f"{DATA}: line {number}: labels {labels}"


def test_rules_decide_the_comparisons_and_leave_the_distractors():
    fired = total = 0
    for row in _rows():
        verdicts = compare(row["text"], _targets(row))
        if row["kind"] == "distractor":
            assert verdicts == {}, row["text"]
            continue
        for key, side in enumerate("ab"):
            total += 1
            label = _label(verdicts, key)
            if label is not None:
                fired += 1
                assert label == row[f"label_{side}"], (row["text"], row[f"brand_{side}"], label)
    assert fired / total >= 0.9, (fired, total)


@pytest.mark.parametrize(
    ("text", "a", "b", "expected"),
    [
        ("X is better than Y.", "X", "Y", ("positive", "negative")),
        ("X is worse than Y.", "X", "Y", ("negative", "positive")),
        ("X isn't better than Y.", "X", "Y", ("negative", "positive")),
        ("X is not as good as Y.", "X", "Y", ("negative", "positive")),
        ("X is as good as Y.", "X", "Y", ("positive", "positive")),
        ("X is less reliable than the Y.", "X", "Y", ("negative", "positive")),
        ("X costs more than Y.", "X", "Y", ("negative", "positive")),
        ("X beats Y on price.", "X", "Y", ("positive", "negative")),
        ("X doesn't beat Y.", "X", "Y", ("negative", "positive")),
        ("X never lets me down and is better than Y.", "X", "Y", ("positive", "negative")),  # negation too far back
        ("I prefer X over Y.", "X", "Y", ("positive", "negative")),
        ("I switched from Y to X last year.", "X", "Y", ("positive", "negative")),
        ("X > Y", "X", "Y", ("positive", "negative")),
        ("Compared to Y, X is cheaper.", "X", "Y", ("positive", "negative")),
        ("X比Y好。", "X", "Y", ("positive", "negative")),
        ("X比Y贵多了。", "X", "Y", ("negative", "positive")),
        ("X不比Y便宜。", "X", "Y", ("negative", "positive")),
        ("X不如Y。", "X", "Y", ("negative", "positive")),
        ("X没有Y那么稳定。", "X", "Y", ("negative", "positive")),
        ("X优于Y。", "X", "Y", ("positive", "negative")),
        ("X输给了Y。", "X", "Y", ("negative", "positive")),
        ("相比Y，X更流畅。", "X", "Y", ("positive", "negative")),
        ("比亚迪的续航优于特斯拉。", "比亚迪", "特斯拉", ("positive", "negative")),  # the 比 inside 比亚迪 is no 比
        ("X and Y both launched phones.", "X", "Y", (None, None)),
        ("X was better than I hoped, and Y was fine.", "X", "Y", (None, None)),
        ("X比较便宜，Y也不错。", "X", "Y", (None, None)),  # 比较: "fairly", no comparison
        ("X has more fans than Y.", "X", "Y", (None, None)),  # a polarity-free "more": left to the model
    ],
)
def test_constructions(text, a, b, expected):
    verdicts = compare(text, {0: a, 1: b})
    assert (_label(verdicts, 0), _label(verdicts, 1)) == expected


def test_lexicons_for_comparatives():
    assert english_cue(" is far more powerful ") == 1 and english_cue(" is less comfortable ") == -1
    assert english_cue(" was kinder ") == 1  # a stem the lexicons know ("kind"), right before "than"
    assert adjective_polarity("expensive") == -1 and adjective_polarity("reliable") == 1
    assert adjective_polarity("blue") == 0


class _FakePair:
    """Positive for every pair; records what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def predict(self, texts, *, aspects):
        self.seen += list(zip(texts, aspects))
        probs = np.tile([0.1, 0.1, 0.8], (len(texts), 1))
        return FakeResult(["positive"] * len(texts), probs.max(axis=1), probs)


def _mentions(texts, scorer, brands=("Apple", "Samsung", "华为", "小米")):
    terms = [Term(name, (name,)) for name in brands]
    return collect_mentions(lambda: [(list(range(len(texts))), list(texts))], {"brand": terms}, scorer)["brand"]


def test_rules_label_mentions_without_the_model_and_say_which_rule():
    pair = _FakePair()
    found = _mentions(["Samsung is worse than Apple.", "Apple is great and Samsung too."], AspectScorer(pair))
    first = found[found["doc_id"] == 0].set_index("term")
    assert first.loc["Samsung", "sentiment"] == "negative" and first.loc["Apple", "sentiment"] == "positive"
    assert set(first["comparison"]) == {"than"} and first["score"].isna().all()  # no model probability
    assert pair.seen == [("Apple is great and Samsung too.", "Apple"), ("Apple is great and Samsung too.", "Samsung")]
    off = _mentions(["Samsung is worse than Apple."], AspectScorer(_FakePair(), comparisons=False))
    assert set(off["sentiment"]) == {"positive"} and set(off["comparison"]) == {""}  # today's path, unchanged


def test_unlike_takes_the_opposite_of_the_models_label():
    found = _mentions(["Unlike Samsung, Apple fixed my phone in a day."], AspectScorer(_FakePair()))
    labels = found.set_index("term")["sentiment"]
    assert labels["Apple"] == "positive" and labels["Samsung"] == "negative"
    assert set(found["comparison"]) == {"unlike"}


def test_chinese_pairs_go_to_the_chinese_pair_model_else_to_the_clause():
    zh_pair, sentence, loads = _FakePair(), FakeScorer(), []
    texts = ["华为的屏幕很差，小米还行", "华为比小米好"]
    found = _mentions(texts, AspectScorer(None, sentence, zh_pair=lambda: loads.append(1) or zh_pair))
    assert zh_pair.seen == [("华为的屏幕很差", "华为"), ("小米还行", "小米")] and sentence.seen == []  # clauses
    assert loads == [1]  # loaded once, when the first Chinese pair came
    english = AspectScorer(_FakePair(), sentence, zh_pair=lambda: loads.append(2))
    _mentions(["Apple is great"], english)
    assert loads == [1]  # an English corpus never loads the Chinese pair model
    assert found[found["doc_id"] == 1].set_index("term")["sentiment"].to_dict() == {
        "华为": "positive",
        "小米": "negative",
    }
    clause = FakeScorer()
    _mentions(texts[:1], AspectScorer(None, clause))
    assert clause.seen == ["华为的屏幕很差", "小米还行"]


@pytest.mark.slow
@pytest.mark.skipif(
    not (ASSETS / "aspect-sentiment-en" / ADAPTER_WEIGHTS).is_file(), reason="aspect-sentiment-en is not shipped"
)
def test_pair_accuracy_with_the_shipped_models():
    """The whole path as ``analyze --brands`` runs it: >= 0.85 of the (sentence, brand) pairs right (the
    benchmark measured 0.925; the sentence's own label for both brands: 0.474)."""
    import torch

    from megasense.predictors.sentiment import load_predictor

    torch.set_num_threads(1)
    rows = _rows()
    texts = [r["text"] for r in rows]
    names = sorted({b for r in rows for b in (r["brand_a"], r["brand_b"]) if b})
    scorer = AspectScorer(load_predictor("aspect-sentiment-en"), load_predictor("default"))
    found = _mentions(texts, scorer, brands=names)
    got = {(int(d), str(t)): str(s) for d, t, s in zip(found["doc_id"], found["term"], found["sentiment"])}
    pairs = [(i, r[f"brand_{s}"], r[f"label_{s}"]) for i, r in enumerate(rows) for s in "ab" if r[f"brand_{s}"]]
    accuracy = sum(got.get((i, b)) == gold for i, b, gold in pairs) / len(pairs)
    assert accuracy >= 0.85, accuracy
