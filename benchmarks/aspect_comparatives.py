"""Sentiment toward each brand in comparison sentences: the comparison rules against today's path and a baseline.

    .venv/bin/python benchmarks/aspect_comparatives.py
    .venv/bin/python benchmarks/aspect_comparatives.py --zh-pair aspect-sentiment-multilingual

Data (written for this, English and Chinese): tests/data/comparatives.csv (68 sentences: comparisons,
negated comparisons and distractors: two brands without a comparison, "better than expected" with one
brand), tests/data/comparatives_holdout.csv (24 sentences written after the rules were frozen, never tuned
on), and the 20 sentences of tests/data/aspects/brand_comparisons.csv that aspect-sentiment-en's card
measures (0.450 of the pairs right for the model alone). Each row names one or two brands with the
sentiment toward each. Measured per (sentence, brand) pair, as ``megasense analyze --brands`` scores them
(``aspects.collect_mentions``):

- baseline: the sentence's own label (the ``default`` sentiment model) for every brand it names;
- before: today's path without the comparison rules (aspect-sentiment-en on English sentences, the sentence
  model on the brand's clause for Chinese ones, or ``--zh-pair`` on Chinese pairs);
- after: the same with the rules (``analytics.comparatives``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SETS = {
    "comparatives": ROOT / "tests" / "data" / "comparatives.csv",
    "holdout": ROOT / "tests" / "data" / "comparatives_holdout.csv",
    "brand_comparisons (the card's 20)": ROOT / "tests" / "data" / "aspects" / "brand_comparisons.csv",
}


def read_set(path: Path) -> list[dict]:
    """Rows of (text, brand_a, label_a, brand_b, label_b, kind); the older (text, aspect, label) file, one row per
    brand, is grouped by text (all its sentences compare two brands)."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "aspect" not in rows[0]:
        return rows
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["text"], []).append(row)
    return [
        {"text": text, "kind": "comparative", "brand_b": "", "label_b": ""}
        | {f"brand_{s}": r["aspect"] for s, r in zip("ab", group)}
        | {f"label_{s}": r["label"] for s, r in zip("ab", group)}
        for text, group in grouped.items()
    ]


def gold_pairs(rows: list[dict]) -> list[tuple[int, str, str, str]]:
    """(row, brand, gold label, kind) for every brand a row names."""
    out = []
    for i, row in enumerate(rows):
        for side in ("a", "b"):
            if row[f"brand_{side}"]:
                out.append((i, row[f"brand_{side}"], row[f"label_{side}"], row["kind"]))
    return out


def brand_labels(rows: list[dict], scorer) -> dict[tuple[int, str], str]:
    """(row, brand) -> the label ``collect_mentions`` gives that brand in that row ('' where it is not found)."""
    from megasense.analytics.aspects import collect_mentions
    from megasense.analytics.terms import Term

    names = sorted({b for r in rows for b in (r["brand_a"], r["brand_b"]) if b})
    brands = [Term(name, (name,)) for name in names]
    texts = [r["text"] for r in rows]
    found = collect_mentions(lambda: [(list(range(len(texts))), texts)], {"brand": brands}, scorer)["brand"]
    return {(int(d), str(t)): str(s) for d, t, s in zip(found["doc_id"], found["term"], found["sentiment"])}


def accuracy(rows: list[dict], labels: dict[tuple[int, str], str]) -> dict[str, float]:
    pairs = gold_pairs(rows)
    right = [labels.get((i, brand), "") == gold for i, brand, gold, _ in pairs]
    out = {"pairs": len(pairs), "pair_accuracy": round(sum(right) / len(pairs), 4)}
    for kind in sorted({p[3] for p in pairs}):
        picked = [r for r, p in zip(right, pairs) if p[3] == kind]
        out[kind] = round(sum(picked) / len(picked), 4)
    by_row: dict[int, list[bool]] = {}
    for r, p in zip(right, pairs):
        by_row.setdefault(p[0], []).append(r)
    out["all_right_per_sentence"] = round(sum(all(v) for v in by_row.values()) / len(by_row), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", default="aspect-sentiment-en", help="pair model for English sentences")
    parser.add_argument("--zh-pair", default=None, help="pair model for Chinese sentences (default: none, clause)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    from megasense.analytics.aspects import AspectScorer
    from megasense.predictors.sentiment import load_predictor

    torch.set_num_threads(args.threads)
    sentence = load_predictor("default")
    pair = load_predictor(args.pair)
    zh_pair = load_predictor(args.zh_pair) if args.zh_pair else None
    scorers = {
        "before": AspectScorer(pair, sentence, zh_pair=zh_pair, comparisons=False),
        "after": AspectScorer(pair, sentence, zh_pair=zh_pair),
    }
    table = []
    for name, path in SETS.items():
        rows = read_set(path)
        started = time.perf_counter()
        result = sentence.predict([r["text"] for r in rows])
        baseline = {(i, b): result.labels[i] for i, b, _, _ in gold_pairs(rows)}
        line = {"set": name, "sentences": len(rows), "baseline (sentence label)": accuracy(rows, baseline)}
        for label, scorer in scorers.items():
            line[label] = accuracy(rows, brand_labels(rows, scorer))
        line["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(line, ensure_ascii=False), flush=True)
        table.append(line)
    print("\n| set | pairs | baseline (sentence label) | before (no rules) | after (rules) |")
    print("| --- | --- | --- | --- | --- |")
    for line in table:
        cells = [line[k]["pair_accuracy"] for k in ("baseline (sentence label)", "before", "after")]
        print(f"| {line['set']} | {line['after']['pairs']} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
