"""Features known at a session's close, and the label of the move that follows it.

Row (ticker, t) holds only what is known at t's close: returns up to t, volatility and volume over
windows ending at t, and the sentiment index of session t (texts posted before t's close). Its label
is the move from t's close to the next session's adjusted close, dated ``target_date``: up when the
return exceeds ``up`` (0.55% in StockNet's protocol), down when below ``-down``; moves in between
have no label (they are dropped from training and scoring, yet kept for the backtest).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PRICE_FEATURES = ["ret_1", "ret_2", "ret_3", "ret_4", "ret_5", "ret_5d", "vol_5", "vol_20", "volume_change", "range"]
SENTIMENT_FEATURES = [
    "sent_mean",
    "sent_decay",
    "bullish_share",
    "dispersion",
    "log_posts",
    "posts_change",
    "has_posts",
]
FEATURES = PRICE_FEATURES + SENTIMENT_FEATURES


def _per_ticker(frame: pd.DataFrame) -> pd.DataFrame:
    close = frame["adj_close"]
    ret = close.pct_change()
    out = pd.DataFrame(index=frame.index)
    for lag in range(1, 6):
        out[f"ret_{lag}"] = ret.shift(lag - 1)
    out["ret_5d"] = close / close.shift(5) - 1.0
    out["vol_5"] = ret.rolling(5, min_periods=3).std()
    out["vol_20"] = ret.rolling(20, min_periods=10).std()
    volume = frame["volume"].where(frame["volume"] > 0)
    out["volume_change"] = np.log(volume / volume.shift(1).rolling(20, min_periods=5).mean())
    out["range"] = (frame["high"] - frame["low"]) / frame["close"]
    log_posts = np.log1p(frame["posts"])
    out["log_posts"] = log_posts
    out["posts_change"] = log_posts - log_posts.shift(1).rolling(20, min_periods=1).mean()
    out["ret"] = ret
    out["next_ret"] = close.shift(-1) / close - 1.0
    out["target_date"] = frame["date"].shift(-1)
    return out


def build_features(prices: pd.DataFrame, daily: pd.DataFrame, *, up: float = 0.0, down: float = 0.0) -> pd.DataFrame:
    """One row per (ticker, session) with FEATURES, ``ret`` (the session's own return), ``next_ret``,
    ``target_date`` and ``label`` (1 up, 0 down, NaN in between or at the end of the data)."""
    frame = prices.merge(daily, on=["ticker", "date"], how="left").sort_values(["ticker", "date"])
    frame["posts"] = frame["posts"].fillna(0.0)
    derived = frame.groupby("ticker", sort=False, group_keys=False)[frame.columns.tolist()].apply(_per_ticker)
    frame = frame.join(derived)
    frame["has_posts"] = (frame["posts"] > 0).astype(float)
    frame["sent_mean"] = frame["sent_mean"].fillna(0.0)
    frame["sent_decay"] = frame["sent_decay"].fillna(0.0)
    frame["bullish_share"] = frame["bullish_share"].fillna(0.5)
    frame["dispersion"] = frame["dispersion"].fillna(0.0)
    frame["label"] = np.where(frame["next_ret"] > up, 1.0, np.where(frame["next_ret"] < -down, 0.0, np.nan))
    frame.loc[frame["next_ret"].isna(), "label"] = np.nan
    frame[FEATURES] = frame[FEATURES].replace([np.inf, -np.inf], np.nan)
    return frame.reset_index(drop=True)
