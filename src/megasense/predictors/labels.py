"""Sentiment labels as people write them, mapped onto ``negative`` / ``neutral`` / ``positive``.

Datasets spell labels many ways: words, abbreviations, Chinese, or numbers whose meaning depends on
how many classes there are (0/1 is negative/positive; 0/1/2 and -1/0/1 are negative/neutral/positive).
Anything unrecognised is reported with its row numbers instead of being guessed.
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
        parts = [
            f"{v!r} (rows {', '.join(map(str, rows[:5]))}{', ...' if len(rows) > 5 else ''}; {len(rows)} in all)"
            for v, rows in list(bad.items())[:8]
        ]
        raise LabelError(
            f"column {column!r} has values that are not sentiment labels: {'; '.join(parts)}. "
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
