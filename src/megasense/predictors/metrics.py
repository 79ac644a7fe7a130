"""Classification metrics: accuracy, F1, recall, per-class, confusion, calibration; out-of-scope detection;
multi-label F1.

scikit-learn computes the standard metrics; ECE (expected calibration error) is the usual 15-bin
estimate over the top-class probability, which scikit-learn does not provide.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    if len(confidence) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def classification_report(
    gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str], confidence: Sequence[float] | None = None
) -> dict[str, Any]:
    """The report dict ``megasense evaluate`` writes (n, accuracy, macro/weighted F1, macro recall, ...)."""
    labels = list(labels)
    y_true, y_pred = list(gold), list(predicted)
    # imported here: scikit-learn takes about a second to import, and `megasense predict` never needs it
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
        recall_score,
    )

    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    report: dict[str, Any] = {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)) if y_true else 0.0,
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "macro_recall": float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion_matrix": {
            "labels": labels,
            "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist() if y_true else [],
            "rows": "gold",
            "columns": "predicted",
        },
    }
    if confidence is not None:
        correct = np.array([t == p for t, p in zip(y_true, y_pred)], dtype=float)
        report["ece"] = expected_calibration_error(np.asarray(confidence, dtype=float), correct)
    return report


def out_of_scope_report(gold: Sequence[str], predicted: Sequence[str], oos_label: str) -> dict[str, Any]:
    """Intent detection's usual three (Larson et al. 2019): accuracy on the in-scope texts (an in-scope text
    answered out-of-scope is wrong), and the recall and precision of the out-of-scope answer."""
    gold_oos = np.array([g == oos_label for g in gold])
    pred_oos = np.array([p == oos_label for p in predicted])
    correct = np.array([g == p for g, p in zip(gold, predicted)])
    in_scope = ~gold_oos
    return {
        "in_scope_accuracy": float(correct[in_scope].mean()) if in_scope.any() else float("nan"),
        "oos_recall": float(pred_oos[gold_oos].mean()) if gold_oos.any() else float("nan"),
        "oos_precision": float(gold_oos[pred_oos].mean()) if pred_oos.any() else float("nan"),
        "oos_label": oos_label,
        "n_in_scope": int(in_scope.sum()),
        "n_oos": int(gold_oos.sum()),
    }


def multilabel_report(
    gold: Sequence[tuple[str, ...]],
    predicted: Sequence[tuple[str, ...]],
    labels: Sequence[str],
    probs: np.ndarray | None = None,
) -> dict[str, Any]:
    """Multi-label metrics: ``accuracy`` (every label of a text right), micro / macro / weighted F1, macro
    recall, per-label precision, recall, F1 and support; with ``probs``, ``ece`` over every (text, label)
    decision at probability 0.5."""
    labels = list(labels)
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, recall_score
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer(classes=labels)
    y_true = binarizer.fit_transform(gold)
    y_pred = binarizer.transform(predicted)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    report: dict[str, Any] = {
        "n": len(gold),
        "multi_label": True,
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(gold) else 0.0,
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "macro_recall": float(recall_score(y_true, y_pred, average="macro", zero_division=0)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
    }
    if probs is not None and len(gold):
        p = np.asarray(probs, dtype=float).ravel()
        truth = y_true.ravel().astype(bool)
        report["ece"] = expected_calibration_error(np.maximum(p, 1 - p), ((p >= 0.5) == truth).astype(float))
    return report
