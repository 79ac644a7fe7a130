"""Gold labels as people write them: sentiment spelled many ways, or any class names (intents, emotions).

Sentiment labels are mapped onto ``negative`` / ``neutral`` / ``positive``:

Datasets spell labels many ways: words, abbreviations, Chinese, or numbers whose meaning depends on
how many classes there are (0/1 is negative/positive; 0/1/2 and -1/0/1 are negative/neutral/positive).
Anything unrecognised is reported with its row numbers instead of being guessed.

Other classifiers' labels are read as written (trimmed); a multi-label column holds comma-separated
labels (``joy,surprise``). ``infer_labels`` decides a new model's label set from its training column,
``read_gold`` reads an evaluation column against a model's labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from megasense.errors import LabelError

SENTIMENT_LABELS = ("negative", "neutral", "positive")

_WORDS = {
    "negative": ("negative", "neg", "n", "bad", "消极", "负面", "负向", "负", "差评", "贬义"),
    "neutral": ("neutral", "neu", "neut", "objective", "中性", "中立", "客观"),
    "positive": ("positive", "pos", "p", "good", "积极", "正面", "正向", "正", "好评", "褒义"),
}
_ALIASES = {alias: label for label, aliases in _WORDS.items() for alias in aliases}


@dataclass
class LabelMapping:
    labels: list[str]
    """The canonical label of every row, in order."""
    scheme: str
    """How the raw values were read: ``words``, ``binary 0/1``, ``0/1/2`` or ``-1/0/1``."""


def _numeric(value: str) -> int | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def normalize_labels(values: Sequence[object], *, column: str = "label", first_row: int = 2) -> LabelMapping:
    """Map raw label values to canonical names. ``first_row`` is the file row of ``values[0]`` (for messages;
    2 for a CSV whose row 1 is the header)."""
    raw = ["" if v is None else str(v).strip() for v in values]
    numbers = [_numeric(v) for v in raw]
    if raw and all(n is not None for n in numbers):
        distinct = set(numbers)
        schemes = [
            ({0, 1}, "binary 0/1", {0: "negative", 1: "positive"}),
            ({0, 1, 2}, "0/1/2", {0: "negative", 1: "neutral", 2: "positive"}),
            ({-1, 0, 1}, "-1/0/1", {-1: "negative", 0: "neutral", 1: "positive"}),
        ]
        for allowed, name, table in schemes:
            if distinct <= allowed:
                return LabelMapping(labels=[table[n] for n in numbers], scheme=name)
    mapped, bad = [], {}
    for row, value in enumerate(raw, start=first_row):
        label = _ALIASES.get(value.lower())
        if label is None:
            bad.setdefault(value, []).append(row)
        mapped.append(label)
    if bad:
        raise LabelError(
            f"column {column!r} has values that are not sentiment labels: {_rows_message(bad)}. "
            f"Expected negative/neutral/positive (or neg/neu/pos, 消极/中性/积极, 0/1, 0/1/2, -1/0/1)"
        )
    return LabelMapping(labels=mapped, scheme="words")


def parse_label_subset(text: str | None) -> tuple[str, ...] | None:
    """``--labels negative,positive`` -> ('negative', 'positive'), validated."""
    if not text:
        return None
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    names = [_ALIASES.get(n, n) for n in names]
    unknown = [n for n in names if n not in SENTIMENT_LABELS]
    if unknown or len(names) < 2:
        raise LabelError(f"--labels {text!r}: give at least two of {', '.join(SENTIMENT_LABELS)} (unknown: {unknown})")
    return tuple(dict.fromkeys(names))


OOS_NAMES = ("oos", "out_of_scope", "out-of-scope", "none_of_the_above")
"""Labels read as "out of scope" when training does not name one (CLINC150 writes ``oos``)."""


def is_sentiment_labels(labels: Sequence[str]) -> bool:
    """Whether a model with these labels is a sentiment model (its gold labels are normalised)."""
    return bool(labels) and set(labels) <= set(SENTIMENT_LABELS)


def _rows_message(bad: dict[str, list[int]]) -> str:
    return "; ".join(
        f"{v!r} (rows {', '.join(map(str, rows[:5]))}{', ...' if len(rows) > 5 else ''}; {len(rows)} in all)"
        for v, rows in list(bad.items())[:8]
    )


def split_multi(value: object) -> tuple[str, ...]:
    """``"joy, surprise"`` -> ``("joy", "surprise")``; empty parts are dropped."""
    text = "" if value is None or value != value else str(value)
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def infer_labels(values: Sequence[object], *, multi_label: bool = False, column: str = "label") -> tuple[str, ...]:
    """A new model's labels from its training column: the three sentiment labels when the column reads as
    sentiment (any spelling ``normalize_labels`` knows), else every distinct value, sorted (for a multi-label
    column, every label any row has)."""
    if multi_label:
        labels = sorted({label for v in values for label in split_multi(v)})
    else:
        try:
            normalize_labels(values, column=column)
            return SENTIMENT_LABELS
        except LabelError:
            labels = sorted({str(v).strip() for v in values if v is not None and v == v and str(v).strip()})
    if len(labels) < 2:
        raise LabelError(
            f"column {column!r} has {len(labels)} distinct label(s) {labels}; a classifier needs 2 or more"
        )
    return tuple(labels)


def read_gold(
    values: Sequence[object],
    model_labels: Sequence[str],
    *,
    multi_label: bool = False,
    column: str = "label",
    first_row: int = 2,
) -> list[str] | list[tuple[str, ...]]:
    """Gold labels for a model with ``model_labels``: normalised sentiment labels for a sentiment model,
    else the values as written (tuples of labels for a multi-label model). Values the model does not know
    are refused with their row numbers."""
    if not multi_label and is_sentiment_labels(model_labels):
        return normalize_labels(values, column=column, first_row=first_row).labels
    known = set(model_labels)
    bad: dict[str, list[int]] = {}
    gold: list = []
    for row, value in enumerate(values, start=first_row):
        if multi_label:
            labels = split_multi(value)
            for label in labels if labels else ("",):
                if label not in known:
                    bad.setdefault(label, []).append(row)
            gold.append(labels)
        else:
            label = "" if value is None or value != value else str(value).strip()
            if label not in known:
                bad.setdefault(label, []).append(row)
            gold.append(label)
    if bad:
        shown = list(model_labels)[:20]
        more = f" (and {len(model_labels) - 20} more)" if len(model_labels) > 20 else ""
        raise LabelError(
            f"column {column!r} has values that are not the model's labels: {_rows_message(bad)}. "
            f"The model's labels are {shown}{more}"
        )
    return gold
