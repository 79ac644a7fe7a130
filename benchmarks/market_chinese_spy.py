"""Chinese headlines -> the S&P 500 ETF's next move: does headline sentiment beat the majority class?

Data: ``../shared/data/chinese-news-spy/data/CH.csv`` (MIT): 20,582 Chinese news headlines, about 20 per
day, each row carrying the day's SPY close, its return and ``Label`` (1 up, 0 down; the dataset's label of
the move that follows the headlines). There are no dates: a day is a run of rows with the same close and
return, in file order, which is time order. Each day's headlines are scored with ``sentiment-multilingual``
(``--limit`` caps the headlines scored, spread evenly over the days, so it runs in minutes on a CPU) and
become day features: mean polarity, bullish share, posts. The first 70% of days train a logistic
regression; the last 30% test it, beside the majority class of the training days, yesterday's direction
and the rule "mean polarity > 0 means up". Expect little: world headlines in Chinese say little about
tomorrow's S&P 500, and the printed binomial p-value says whether the best model beats the majority class.

    python benchmarks/market_chinese_spy.py --limit 2500 --json /tmp/market/spy.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from _common import SHARED_DATA

DEFAULT = SHARED_DATA / "chinese-news-spy" / "data" / "CH.csv"
FEATURES = ["mean_polarity", "bullish_share", "posts"]


def days_of(frame: pd.DataFrame) -> pd.Series:
    """Day number per row: a new day wherever the close or the return changes."""
    changed = frame[["Close", "Return"]].ne(frame[["Close", "Return"]].shift()).any(axis=1)
    return changed.cumsum() - 1


def sample(frame: pd.DataFrame, limit: int | None) -> pd.DataFrame:
    if not limit or limit >= len(frame):
        return frame
    per_day = max(1, limit // frame["day"].nunique())
    return frame.groupby("day", group_keys=False).head(per_day)


def score(texts: list[str], model: str, batch: int = 256) -> tuple[np.ndarray, list[str]]:
    import torch

    from megasense.files.progress import progress_bar
    from megasense.market.scoring import polarity_of
    from megasense.predictors.sentiment import load_predictor

    torch.set_num_threads(1)  # one thread: the machine is shared
    predictor = load_predictor(model)
    polarity, labels = [], []
    with progress_bar(f"scoring with {model}", len(texts)) as bar:
        for start in range(0, len(texts), batch):
            part = texts[start : start + batch]
            p, lab = polarity_of(predictor.predict(part), len(part), model)
            polarity.append(p)
            labels += lab
            bar(len(part))
    return np.concatenate(polarity), labels


def day_table(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.assign(pos=rows["label"].eq("positive"), neg=rows["label"].eq("negative"))
    days = rows.groupby("day").agg(
        mean_polarity=("polarity", "mean"),
        pos=("pos", "sum"),
        neg=("neg", "sum"),
        posts=("polarity", "size"),
        label=("Label", "first"),
        ret=("Return", "first"),
    )
    days["bullish_share"] = (days["pos"] / (days["pos"] + days["neg"])).fillna(0.5)
    days["yesterday_up"] = (days["ret"].shift(1) > 0).astype(float)
    return days


def evaluate(days: pd.DataFrame, train_share: float = 0.7) -> dict:
    from megasense.market.predict import metrics

    cut = int(len(days) * train_share)
    train, test = days.iloc[1:cut], days.iloc[cut:]  # day 0 has no yesterday
    y = test["label"].to_numpy(dtype=float)
    majority = float(train["label"].mean() > 0.5)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0)).fit(train[FEATURES], train["label"])
    results = {
        "majority class": metrics(y, np.full(len(test), majority)),
        "yesterday's direction": metrics(y, test["yesterday_up"].to_numpy()),
        "mean polarity > 0": metrics(y, (test["mean_polarity"] > 0).astype(float).to_numpy()),
        "logreg on sentiment": metrics(y, model.predict_proba(test[FEATURES])[:, 1]),
    }
    base = results["majority class"]["accuracy"]
    for r in results.values():
        hits = round(r["accuracy"] * r["n"])
        r["p_vs_majority"] = float(binomtest(hits, r["n"], base, alternative="greater").pvalue)
    return {"train_days": len(train), "test_days": len(test), "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--model", default="sentiment-multilingual")
    parser.add_argument("--limit", type=int, default=2500, help="headlines scored, spread over the days")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"needs {args.data} (the shared chinese-news-spy data set)", file=sys.stderr)
        return 2
    frame = pd.read_csv(args.data)
    frame["day"] = days_of(frame)
    rows = sample(frame, args.limit).reset_index(drop=True)
    t0 = time.perf_counter()
    rows["polarity"], rows["label"] = score(rows["Text"].astype(str).tolist(), args.model)
    seconds = time.perf_counter() - t0
    out = evaluate(day_table(rows))
    out.update(
        {
            "model": args.model,
            "headlines_scored": len(rows),
            "days": int(frame["day"].nunique()),
            "scoring_seconds": round(seconds, 1),
        }
    )
    print(
        f"{len(rows):,} headlines over {out['days']} days scored in {seconds:.0f} s (loaded shared CPU); "
        f"train {out['train_days']} days, test {out['test_days']} days"
    )
    print(f"{'model':<24}{'accuracy':>10}{'MCC':>8}{'AUC':>8}{'p vs majority':>15}")
    for name, r in out["results"].items():
        print(f"{name:<24}{r['accuracy']:>10.3f}{r['mcc']:>8.3f}{r['auc']:>8.3f}{r['p_vs_majority']:>15.3f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
