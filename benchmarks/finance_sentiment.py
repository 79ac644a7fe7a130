"""sentiment-finance-en beside the simple baselines, on the same splits: the held-out fifth of
financial-tweets-en (rows 0, 5, 10, ...; never trained on) and all of Financial PhraseBank (evaluation only).

    .venv/bin/python benchmarks/finance_sentiment.py [--model sentiment-finance-en]

Baselines: the majority class, VADER (compound >= 0.05 positive, <= -0.05 negative) and TF-IDF (word 1-2-grams
+ character 2-5-grams) with logistic regression trained on the same four fifths the model was trained on. The
last line: the model's accuracy on each set over the TF-IDF baseline's.
"""

from __future__ import annotations

import argparse

import torch

from _common import SHARED_DATA, read_texts
from megasense.predictors.baselines import vader_labels
from megasense.predictors.sentiment import load_predictor


def _accuracy(predicted, gold) -> float:
    return sum(p == g for p, g in zip(predicted, gold)) / len(gold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sentiment-finance-en")
    args = parser.parse_args()
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    torch.set_num_threads(1)
    texts = read_texts("financial-tweets-en/train.csv")
    labels = read_texts("financial-tweets-en/train.csv", column="label")
    train = [(t, y) for i, (t, y) in enumerate(zip(texts, labels)) if i % 5]
    sets = {
        "financial-tweets-en fifth": (texts[::5], labels[::5]),
        "financial-phrasebank": (
            read_texts("financial-phrasebank/train.csv"),
            read_texts("financial-phrasebank/train.csv", column="label"),
        ),
    }
    tfidf = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True),
        ),
        LogisticRegression(C=10, max_iter=2000, class_weight="balanced"),
    )
    tfidf.fit([t for t, _ in train], [y for _, y in train])
    majority = max(set(y for _, y in train), key=[y for _, y in train].count)
    predictor = load_predictor(args.model)
    print(f"data: {SHARED_DATA}\n{'set':28} {'n':>5} {'majority':>9} {'VADER':>7} {'TF-IDF':>7} {'model':>7}")
    ratios = []
    for name, (x, gold) in sets.items():
        row = {
            "majority": _accuracy([majority] * len(gold), gold),
            "vader": _accuracy(vader_labels(x), gold),
            "tfidf": _accuracy(tfidf.predict(x), gold),
            "model": _accuracy(predictor.predict(x).labels, gold),
        }
        ratios.append(row["model"] / row["tfidf"])
        print(f"{name:28} {len(gold):5d} " + " ".join(f"{row[k]:>{w}.4f}" for k, w in zip(row, (9, 7, 7, 7))))
    print(f"{args.model} / TF-IDF accuracy: fifth {ratios[0]:.3f}x phrasebank {ratios[1]:.3f}x")


if __name__ == "__main__":
    main()
