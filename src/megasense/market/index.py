"""The daily sentiment index per ticker, built from partial sums so a million posts never sit in memory.

Each chunk of scored posts adds, per (ticker, session): posts, sum and sum of squares of polarity,
positive and negative counts (``DailyAccumulator.add``). ``finish`` lays them on every session of the
ticker's price calendar (days without posts get zeros) and derives: mean polarity, bullish share
(positive / (positive + negative)), dispersion (standard deviation of polarity), post volume, and a
decayed mean that carries sentiment over days without posts: sums and counts decay by half every
``half_life`` sessions, so yesterday's posts still count, less.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import lfilter

SUMS = ["posts", "pol_sum", "pol_sq", "positive", "negative"]


class DailyAccumulator:
    def __init__(self) -> None:
        self._parts: list[pd.DataFrame] = []

    def add(self, tickers: np.ndarray, sessions: np.ndarray, polarity: np.ndarray, labels: list[str]) -> None:
        lab = pd.Series(labels).str.lower()
        frame = pd.DataFrame(
            {
                "ticker": tickers,
                "date": sessions,
                "posts": 1,
                "pol_sum": polarity,
                "pol_sq": polarity**2,
                "positive": lab.isin(["positive", "bullish"]).to_numpy().astype(int),
                "negative": lab.isin(["negative", "bearish"]).to_numpy().astype(int),
            }
        )
        self._parts.append(frame.groupby(["ticker", "date"], as_index=False)[SUMS].sum())
        if len(self._parts) > 64:  # fold the partial sums together: memory stays O(tickers x days)
            self._parts = [self.sums()]

    def sums(self) -> pd.DataFrame:
        if not self._parts:
            return pd.DataFrame(columns=["ticker", "date", *SUMS])
        return pd.concat(self._parts, ignore_index=True).groupby(["ticker", "date"], as_index=False)[SUMS].sum()

    def finish(self, prices: pd.DataFrame, *, half_life: float = 2.0) -> pd.DataFrame:
        """One row per (ticker, price date): the index columns; tickers without posts get zeros and NaNs."""
        grid = prices[["ticker", "date"]].merge(self.sums(), on=["ticker", "date"], how="left")
        grid[SUMS] = grid[SUMS].astype(float).fillna(0.0)
        n = grid["posts"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = grid["pol_sum"] / n
            grid["sent_mean"] = np.where(n > 0, mean, np.nan)
            var = np.maximum(grid["pol_sq"] / n - mean**2, 0.0) * n / np.maximum(n - 1, 1)
            grid["dispersion"] = np.where(n > 1, np.sqrt(var), np.nan)
            polar = grid["positive"] + grid["negative"]
            grid["bullish_share"] = np.where(polar > 0, grid["positive"] / polar, np.nan)
        keep = 0.5 ** (1.0 / half_life)
        decayed_sum = np.empty(len(grid))
        decayed_n = np.empty(len(grid))
        for _, idx in grid.groupby("ticker", sort=False).indices.items():
            # y[t] = x[t] + keep * y[t-1]: an exponential decay over sessions, days without posts included
            decayed_sum[idx] = lfilter([1.0], [1.0, -keep], grid["pol_sum"].to_numpy()[idx])
            decayed_n[idx] = lfilter([1.0], [1.0, -keep], n[idx])
        with np.errstate(invalid="ignore", divide="ignore"):
            grid["sent_decay"] = np.where(decayed_n > 1e-9, decayed_sum / decayed_n, np.nan)
        grid["decayed_posts"] = decayed_n
        return grid.drop(columns=["pol_sum", "pol_sq"])
