"""Decision thresholds chosen on validation data: per-label thresholds of a multi-label model, and the
confidence below which an intent model answers "out of scope".

Both are a search over a grid of probabilities, maximising a metric computed on held-out predictions
(scikit-learn has no threshold tuner for either: ``TunedThresholdClassifierCV`` is for binary
classifiers it fits itself). Training stores the result in the model's head config, so every surface
(``predict``, ``evaluate``, HTTP) answers with the same thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)
"""Thresholds tried, 0.05 to 0.95."""


def tune_label_thresholds(probs: np.ndarray, gold: np.ndarray, *, default: float = 0.5) -> tuple[float, ...]:
    """Per label, the threshold on its probability with the best F1 on (``probs``, 0/1 ``gold``), both
    (texts, labels); a label with no positive example keeps ``default``. Ties go to the threshold nearest
    ``default``, so a flat stretch does not drift to an extreme."""
    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold, dtype=bool)
    chosen = []
    for j in range(probs.shape[1]):
        positives = gold[:, j].sum()
        if positives == 0:
            chosen.append(default)
            continue
        predicted = probs[:, j][None, :] >= GRID[:, None]  # (grid, texts)
        tp = (predicted & gold[:, j][None, :]).sum(axis=1)
        f1 = 2 * tp / np.maximum(predicted.sum(axis=1) + positives, 1)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        chosen.append(float(GRID[best[np.argmin(np.abs(GRID[best] - default))]]))
    return tuple(chosen)


def calibrate_oos_threshold(probs: np.ndarray, gold: Sequence[int], oos_index: int) -> tuple[float, dict[str, float]]:
    """The confidence threshold for the out-of-scope answer: a text whose best in-scope probability is below
    it is answered out-of-scope. Chosen to maximise in-scope accuracy + out-of-scope recall (each counts
    equally, whatever their shares of the data; Larson et al. 2019 report both). Returns the threshold and
    the two measures at it; with no out-of-scope example, 0.0 (never override the model's argmax)."""
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(gold)
    is_oos = gold == oos_index
    if not is_oos.any() or is_oos.all():
        return 0.0, {}
    best_label = probs.argmax(axis=1)
    in_scope_prob = np.delete(probs, oos_index, axis=1).max(axis=1)
    best = (-1.0, 0.0, {})
    for threshold in np.concatenate([[0.0], GRID]):
        answer_oos = (best_label == oos_index) | (in_scope_prob < threshold)
        in_scope_acc = float(((best_label == gold) & ~answer_oos)[~is_oos].mean())
        oos_recall = float(answer_oos[is_oos].mean())
        if in_scope_acc + oos_recall > best[0] + 1e-12:
            best = (
                in_scope_acc + oos_recall,
                float(threshold),
                {"in_scope_accuracy": in_scope_acc, "oos_recall": oos_recall},
            )
    return best[1], best[2]
