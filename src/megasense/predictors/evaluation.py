"""Predictions against gold labels: the one evaluation behind ``megasense evaluate``, ``megasense.evaluate``
and the validation numbers that fine-tuning writes into a model card.

``evaluate_texts`` restricts predictions to the labels the data has (a binary set for a three-class
model: the softmax is taken over those labels only), scores them (accuracy, macro and weighted F1,
macro recall, per class, confusion matrix, calibration) and puts VADER beside the model for English
data. Because training evaluates through this same function with the same predictor, a card's
numbers are what ``megasense evaluate`` prints on the same file at the same precision.

Any classifier evaluates here. A model with an out-of-scope label (intents) also gets
``in_scope_accuracy`` (in-scope texts given their own label), ``oos_recall`` and ``oos_precision``; a
multi-label model (emotions) gets micro and macro F1 over labels, subset accuracy and a per-label report.
Only a sentiment model's predictions are restricted to the labels the data has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from megasense.errors import LabelError
from megasense.files.progress import Progress
from megasense.predictors.baselines import BaselineUnavailable, vader_labels
from megasense.predictors.labels import is_sentiment_labels
from megasense.predictors.language import needs_multilingual
from megasense.predictors.metrics import classification_report, multilabel_report, out_of_scope_report

REPORT_KEYS = ("accuracy", "macro_f1", "weighted_f1", "macro_recall")
"""The headline metrics of a report (``ece`` besides, for the model itself)."""


def evaluation_labels(
    model_labels: Sequence[str], gold: Sequence[str], labels: Sequence[str] | None = None, *, source: str = ""
) -> tuple[str, ...] | None:
    """The labels to restrict predictions to: ``labels`` when given, else those the data has when it has
    fewer than the model (at least two); ``None`` means no restriction. Gold labels the model does not
    know are refused."""
    model_labels = tuple(model_labels)
    outside = sorted(set(gold) - set(model_labels))
    if outside:
        where = f"{source}: " if source else ""
        raise LabelError(f"{where}labels {outside} are not among the model's labels {list(model_labels)}")
    present = tuple(label for label in model_labels if label in set(gold))
    if labels:
        return tuple(labels)
    if not is_sentiment_labels(model_labels):
        return None  # intents and the like: a split without some classes still has all of them to choose from
    return present if 2 <= len(present) < len(model_labels) else None


def evaluate_texts(
    predictor,
    texts: Sequence[str],
    gold: Sequence[str],
    *,
    labels: Sequence[str] | None = None,
    baseline: bool = True,
    source: str = "",
    progress: Progress | None = None,
    aspects: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The report of ``predictor`` (a classifier) on ``texts`` with canonical ``gold`` labels (tuples of
    labels for a multi-label model; see ``labels.read_gold``); with ``aspects``, of a pair model on
    (text, aspect) pairs (no VADER beside it: it cannot tell one aspect of a text from another)."""
    if len(texts) != len(gold):
        raise ValueError(f"{len(texts)} texts but {len(gold)} gold labels")
    pair = {} if aspects is None else {"aspects": list(aspects)}
    baseline = baseline and aspects is None
    model_labels = tuple(predictor.labels)
    if getattr(predictor, "multi_label", False):
        if labels:
            raise LabelError("--labels does not apply to a multi-label model")
        batch = predictor.predict(list(texts), progress=progress, **pair)
        report = multilabel_report([tuple(g) for g in gold], batch.label_sets, model_labels, probs=batch.probs)
        return {**report, "model": predictor.name, "data": source, "labels": list(model_labels), "restricted": False}
    allowed = evaluation_labels(model_labels, gold, labels, source=source)
    restricted = predictor.restricted(allowed) if allowed else predictor
    batch = restricted.predict(list(texts), progress=progress, **pair)
    used = tuple(restricted.labels)
    report = classification_report(list(gold), batch.labels, used, confidence=batch.scores.tolist())
    report["model"] = predictor.name
    report["data"] = source
    report["labels"] = list(used)
    report["restricted"] = used != model_labels
    if report["restricted"]:
        report["note"] = f"predictions restricted to {', '.join(used)} (the model also knows {', '.join(model_labels)})"
    oos = getattr(predictor, "oos_label", "")
    if oos and oos in used:
        report.update(out_of_scope_report(list(gold), batch.labels, oos))
    if baseline and is_sentiment_labels(used):
        report["baseline"] = vader_report(texts, gold, used)
    return report


def vader_report(texts: Sequence[str], gold: Sequence[str], labels: tuple[str, ...]) -> dict[str, Any] | None:
    """VADER's scores beside the model's, for data that is mostly English (VADER reads no other language)."""
    if not texts or sum(needs_multilingual(t) for t in texts) > 0.2 * len(texts):
        return None
    try:
        predicted = vader_labels(list(texts), allowed=labels)
    except BaselineUnavailable as exc:
        return {"name": "vader", "unavailable": str(exc)}
    full = classification_report(list(gold), predicted, labels)
    return {"name": "vader", **{k: full[k] for k in REPORT_KEYS}}
