"""How often the shipped default sentiment router is right on plain everyday sentences (tests/data/plain_sentiment.csv).

``megasense.sentiment(texts)`` with the default model routes English to sentiment-en and Chinese to
sentiment-multilingual. Prints the share right per language and overall, and the sentences it got wrong,
beside two baselines on the same sentences: the majority class, and VADER on the English ones.

    .venv/bin/python benchmarks/plain_sentiment.py
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import torch

import megasense
from megasense.predictors.baselines import BaselineUnavailable, vader_labels

PLAIN = Path(__file__).resolve().parents[1] / "tests" / "data" / "plain_sentiment.csv"


def main() -> None:
    torch.set_num_threads(1)  # a handful of sentences; the build machine is shared
    with open(PLAIN, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    predicted = [r["label"] for r in megasense.sentiment([row["text"] for row in rows])]
    right: dict[str, list[bool]] = defaultdict(list)
    for row, label in zip(rows, predicted):
        right[row["lang"]].append(label == row["label"])
        if label != row["label"]:
            print(f"  wrong: {row['text']!r} is {row['label']}, predicted {label}")
    for lang, hits in sorted(right.items()):
        print(f"{lang}: {sum(hits)}/{len(hits)} = {sum(hits) / len(hits):.3f}")
    gold = [row["label"] for row in rows]
    majority = max(set(gold), key=gold.count)
    share = gold.count(majority) / len(gold)
    print(f"baseline majority class ({majority}): {gold.count(majority)}/{len(gold)} = {share:.3f}")
    english = [row for row in rows if row["lang"] == "en"]
    try:
        vader = vader_labels([row["text"] for row in english])
        hits = sum(v == row["label"] for v, row in zip(vader, english))
        print(f"baseline VADER (en): {hits}/{len(english)} = {hits / len(english):.3f}")
    except BaselineUnavailable as exc:
        print(f"baseline VADER unavailable: {exc}")
    total = [hit for hits in right.values() for hit in hits]
    print(f"overall: {sum(total)}/{len(total)} = {sum(total) / len(total):.3f}")


if __name__ == "__main__":
    main()
