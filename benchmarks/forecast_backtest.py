"""Forecast accuracy on real dated posts: the model megasense chooses per series against naive and seasonal naive.

Data: StockNet's tweets (../shared/data/stocknet/tweets_preprocessed.jsonl.gz, 106,338 dated tweets on
87 tickers, 2014-2015, MIT), as the daily number of tweets per ticker: the volume series an analysis
forecasts per topic, by day (the last ``--history`` days before each origin, as an analysis of a
few months counts by day) or by week (``--freq week``: all 104 weeks, as ``analyze`` counts two
years). For the ``--tickers`` busiest tickers, each of ``--origins`` held-out windows of
``--horizon`` periods at the end of the series is forecast from the periods before it: megasense's
``forecast_series`` picks its model by a rolling-origin backtest on those days only (the held-out
window is never seen), and the naive and seasonal-naive (a week of days, a year of weeks) baselines
forecast the same window.
Printed per method: mean and median MASE (scaled by the training days' one-step naive error), mean
sMAPE, and how often the held-out days fell inside the 90% interval; then the ratio of megasense's
mean MASE to each baseline's and how often each model was chosen.

    python benchmarks/forecast_backtest.py                 # 20 tickers, 3 windows of 14 days
    python benchmarks/forecast_backtest.py --freq week --horizon 8
    python benchmarks/forecast_backtest.py --tickers 87 --origins 4 --json /tmp/forecast.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import SHARED_DATA

TWEETS = "stocknet/tweets_preprocessed.jsonl.gz"


def volume_per(path: Path, freq: str) -> pd.DataFrame:
    """(periods, tickers) tweet counts, every day (or Monday-started week) from the first to the last (0 where none)."""
    if not path.is_file():
        raise SystemExit(f"{path} is missing: set MEGASENSE_TEST_DATA to the folder that holds the shared data sets")
    frame = pd.read_json(path, lines=True, compression="gzip")[["ticker", "date"]]
    frame["date"] = pd.to_datetime(frame["date"])
    counts = frame.groupby(["date", "ticker"]).size().unstack(fill_value=0)
    days = pd.date_range(counts.index.min(), counts.index.max(), freq="D")
    counts = counts.reindex(days, fill_value=0)
    return counts if freq == "day" else counts.resample("W-MON", label="left", closed="left").sum()


def evaluate(y: np.ndarray, horizon: int, origins: int, level: float, season: int, history: int) -> list[dict]:
    from megasense.analytics.forecast import forecast_series, mase, predict, smape

    rows = []
    for i in range(origins, 0, -1):
        cut = len(y) - i * horizon
        train, test = y[max(0, cut - history) : cut], y[cut : cut + horizon]
        chosen = forecast_series(train, horizon, season=season, level=level, folds=3)
        methods = {
            "megasense (chosen)": chosen.prediction,
            "naive": predict("naive", train, horizon, level, None),
            "seasonal naive": predict("seasonal_naive", train, horizon, level, season),
        }
        for method, got in methods.items():
            rows.append(
                {
                    "method": method,
                    "model": chosen.model if method.startswith("megasense") else method,
                    "mase": mase(test, np.maximum(got.mean, 0), train),
                    "smape": smape(test, np.maximum(got.mean, 0)),
                    "covered": float(np.mean((got.lower <= test) & (test <= got.upper))),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=20, help="the busiest this many tickers")
    parser.add_argument("--freq", choices=["day", "week"], default="day")
    parser.add_argument("--history", type=int, default=91, help="periods of history before each origin (day)")
    parser.add_argument("--horizon", type=int, default=14, help="periods forecast from each origin")
    parser.add_argument("--origins", type=int, default=3, help="held-out windows per ticker, back to back")
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    volume = volume_per(SHARED_DATA / TWEETS, args.freq)
    season, history = (7, args.history) if args.freq == "day" else (52, len(volume))
    busiest = volume.sum().sort_values(ascending=False).index[: args.tickers]
    print(
        f"StockNet tweets per {args.freq}: {len(volume)} periods x {volume.shape[1]} tickers; the busiest "
        f"{len(busiest)}, {args.origins} held-out windows of {args.horizon} periods each, {history} periods of history"
    )
    started, rows = time.perf_counter(), []
    for ticker in busiest:
        y = volume[ticker].to_numpy(dtype=float)
        for row in evaluate(y, args.horizon, args.origins, args.level, season, history):
            rows.append({"ticker": ticker, **row})
    seconds = time.perf_counter() - started
    table = pd.DataFrame(rows)
    summary = table.groupby("method", sort=False).agg(
        mase_mean=("mase", "mean"),
        mase_median=("mase", "median"),
        smape=("smape", "mean"),
        coverage=("covered", "mean"),
    )
    print(summary.round(3).to_string())
    ours = summary.loc["megasense (chosen)", "mase_mean"]
    for baseline in ("naive", "seasonal naive"):
        print(f"megasense / {baseline} mean MASE: {ours / summary.loc[baseline, 'mase_mean']:.3f}x")
    chosen = collections.Counter(table.loc[table["method"] == "megasense (chosen)", "model"])
    print(f"models chosen: {dict(chosen)}; {len(busiest) * args.origins} forecasts in {seconds:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary.to_dict("index"), "chosen": dict(chosen)}, indent=2))


if __name__ == "__main__":
    main()
