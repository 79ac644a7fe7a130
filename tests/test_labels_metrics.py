"""Sentiment label normalisation and the evaluation report's numbers."""

from __future__ import annotations

import numpy as np
import pytest

from megasense.predictors.labels import LabelError, normalize_labels, parse_label_subset
from megasense.predictors.metrics import classification_report, expected_calibration_error


@pytest.mark.parametrize(
    ("raw", "expected", "scheme"),
    [
        (["0", "1", "1"], ["negative", "positive", "positive"], "binary 0/1"),
        ([0, 1, 2], ["negative", "neutral", "positive"], "0/1/2"),
        (["-1", "0", "1"], ["negative", "neutral", "positive"], "-1/0/1"),
        (["Pos", "neg", "NEUTRAL"], ["positive", "negative", "neutral"], "words"),
        (["积极", "中性", "消极"], ["positive", "neutral", "negative"], "words"),
    ],
)
def test_label_spellings(raw, expected, scheme):
    mapping = normalize_labels(raw)
    assert mapping.labels == expected and mapping.scheme == scheme


def test_unknown_labels_are_reported_with_rows():
    with pytest.raises(LabelError, match=r"'mixed' \(rows 3, 5; 2 in all\)"):
        normalize_labels(["positive", "mixed", "negative", "mixed"], column="gold")


def test_label_subset_option():
    assert parse_label_subset("negative,positive") == ("negative", "positive")
    assert parse_label_subset("neg, pos") == ("negative", "positive")
    with pytest.raises(LabelError):
        parse_label_subset("negative,great")


def test_report_numbers_match_a_hand_computation():
    gold = ["positive", "positive", "negative", "neutral", "neutral", "negative"]
    pred = ["positive", "negative", "negative", "neutral", "positive", "negative"]
    report = classification_report(gold, pred, ["negative", "neutral", "positive"], confidence=[0.9] * 6)
    assert report["n"] == 6
    assert report["accuracy"] == pytest.approx(4 / 6)
    # recalls: negative 2/2, neutral 1/2, positive 1/2
    assert report["macro_recall"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert report["per_class"]["negative"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    assert report["confusion_matrix"]["matrix"] == [[2, 0, 0], [0, 1, 1], [1, 0, 1]]
    assert report["ece"] == pytest.approx(abs(4 / 6 - 0.9))


def test_ece_is_zero_for_perfect_calibration():
    conf = np.array([0.25, 0.25, 0.25, 0.25, 1.0])
    correct = np.array([1, 0, 0, 0, 1], dtype=float)
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0)
