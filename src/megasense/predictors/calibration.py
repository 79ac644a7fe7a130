"""Decision thresholds chosen on validation data: per-label thresholds of a multi-label model, and the
in-scope score below which an intent model answers "out of scope".

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


OOS_IN_SCOPE_BUDGET = 0.01
"""Share of in-scope validation texts the out-of-scope threshold may refuse."""


def calibrate_oos_threshold(
    in_scope: np.ndarray,
    probs: np.ndarray,
    gold: Sequence[int],
    oos_index: int,
    *,
    budget: float = OOS_IN_SCOPE_BUDGET,
) -> tuple[float | None, dict[str, float]]:
    """The in-scope score (``SentimentTask.in_scope_scores``) below which a text is answered out-of-scope:
    the ``budget`` quantile of the scores of the validation texts whose gold label is in scope, so about
    that share of in-scope texts is refused. Returns the threshold and, measured on the same texts,
    in-scope accuracy and (when there are out-of-scope texts) out-of-scope recall at it.

    A quantile of the in-scope texts rather than a search over out-of-scope recall: validation sets hold
    few out-of-scope texts (CLINC150's train split, 100 of 15,100), and a search over 30 of them chose a
    threshold that refused 4% of in-scope texts on the holdout and 7% on the validation split."""
    in_scope = np.asarray(in_scope, dtype=np.float64)
    gold = np.asarray(gold)
    is_oos = gold == oos_index
    if (~is_oos).sum() == 0:
        return None, {}
    threshold = float(np.quantile(in_scope[~is_oos], budget))
    best = np.asarray(probs).argmax(axis=1)
    answer_oos = (best == oos_index) | (in_scope < threshold)
    measured = {"in_scope_accuracy": float(((best == gold) & ~answer_oos)[~is_oos].mean()), "budget": budget}
    if is_oos.any():
        measured["oos_recall"] = float(answer_oos[is_oos].mean())
    return threshold, measured


TEMPERATURE_RANGE = (0.05, 20.0)
"""Temperatures searched by ``fit_temperature``."""


def fit_temperature(probs: np.ndarray, gold: Sequence[int], *, mask: np.ndarray | None = None) -> float:
    """Temperature scaling (Guo et al. 2017): the T that minimises the negative log-likelihood of ``gold`` under
    ``softmax(log(probs) / T)`` on held-out predictions made at T = 1. ``log(probs)`` equals the logits up to a
    per-row constant, which the softmax ignores, so the fit needs no logits. ``mask`` (texts, labels), when
    given, limits each row to the labels it may have (a binary source's rows: negative and positive).

    One scalar, so a bounded 1-D search over log T (scipy) is all it takes; scikit-learn's
    ``CalibratedClassifierCV`` wraps its own estimators and cannot take a fixed network's outputs."""
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))
    gold = np.asarray(gold, dtype=int)
    if mask is not None:
        logp = np.where(np.asarray(mask, dtype=bool), logp, -np.inf)
    rows = np.arange(len(gold))

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[rows, gold] - np.log(np.exp(z).sum(axis=1))).mean())

    low, high = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    found = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x)) if nll(found.x) < nll(0.0) else 1.0
