"""Faithfulness by deletion of megasense's word attributions (occlusion and integrated gradients) on tweets.

For each text the predicted label's probability is measured on the whole text, on the text without its
top-k words (by attribution) and on the text without k random words (5 draws, averaged: the baseline any
explanation must beat). A faithful method's top words are the ones the model leaned on, so deleting them
drops the probability far more than deleting random words. Printed per method and k: the mean drops, their
ratio and the share of texts where the top words beat the random ones; the last line is the summary.

    python benchmarks/explain_faithfulness.py                     # 300 tweets of tweets-sentiment-en/val.csv
    python benchmarks/explain_faithfulness.py --rows 100 --model sentiment-en

Runs on one CPU thread (``torch.set_num_threads(1)``) so it can share a machine.
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import read_texts
from megasense.predictors.explain import METHODS, Explainer, faithfulness
from megasense.predictors.sentiment import load_predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--model", default="sentiment-en")
    parser.add_argument("--ks", default="1,2,3")
    parser.add_argument("--steps", type=int, default=32, help="integrated gradients' interpolation steps")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = [t for t in read_texts("tweets-sentiment-en/val.csv", limit=args.rows) if t.strip()]
    predictor = load_predictor(args.model, precision="fp32")
    ks = [int(k) for k in args.ks.split(",")]
    print(f"{len(texts)} tweets of tweets-sentiment-en/val.csv, model {args.model} (fp32, {args.threads} thread)")
    print(f"{'method':10} {'k':>2} {'top-k drop':>11} {'random drop':>12} {'ratio':>6} {'top wins':>9} {'s/text':>7}")
    summary = {}
    for method in METHODS:
        explainer = Explainer(predictor, method=method, steps=args.steps)
        started = time.perf_counter()
        explanations = explainer.explain(texts)
        per_text = (time.perf_counter() - started) / len(texts)
        for k in ks:
            f = faithfulness(explainer, explanations, k=k)
            print(
                f"{method:10} {k:2d} {f.top_drop:11.4f} {f.random_drop:12.4f} {f.ratio:6.2f} "
                f"{f.wins / f.texts:9.1%} {per_text:7.3f}"
            )
            summary[(method, k)] = f
    k = 2 if 2 in ks else ks[0]
    parts = [
        f"{m} top-{k} drop {summary[(m, k)].top_drop:.3f} vs random {summary[(m, k)].random_drop:.3f} "
        f"({summary[(m, k)].ratio:.1f}x)"
        for m in METHODS
    ]
    print("summary: " + "; ".join(parts))


if __name__ == "__main__":
    main()
