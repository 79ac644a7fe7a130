"""What the predictions would have earned, and how prices moved around strong sentiment days.

Backtest: each day every ticker is held long (P(up) > 0.5) or flat (``long-flat``), or long or short
(``long-short``), for the next session's move; positions cost ``cost_bps`` per unit of change. The
portfolio is the equal-weighted mean over the tickers that day; buy-and-hold holds them all. The
statistics are empyrical's (cumulative and annual return, annual volatility, Sharpe, maximum drawdown);
hit rate is the share of days with a position whose return was positive (per day, not per trade).

Event study: abnormal return = a ticker's return minus the equal-weighted mean of all tickers that day;
around each of the most positive and most negative sentiment days (by the day's mean polarity, with at
least ``min_posts`` posts), the cumulative abnormal return from ``-window`` to ``+window`` sessions,
averaged, with a 95% t-interval. Overlapping events are not independent: the bands are optimistic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from megasense.errors import MissingExtraError

PERIODS_PER_YEAR = 252


def _empyrical():
    try:
        import empyrical
    except ImportError:
        raise MissingExtraError(
            "the backtest needs empyrical-reloaded (the 'market' extra): pip install 'megasense[market]'"
        ) from None
    return empyrical


def strategy_returns(pred: pd.DataFrame, *, cost_bps: float = 10.0) -> pd.DataFrame:
    """Daily returns by ``target_date``: columns long-flat, long-short, buy-and-hold (and turnover per strategy)."""
    pred = pred.dropna(subset=["prob", "next_ret"]).sort_values(["ticker", "target_date"])
    cost = cost_bps / 1e4
    out = {}
    for name, position in (
        ("long-flat", (pred["prob"] > 0.5).astype(float)),
        ("long-short", np.where(pred["prob"] > 0.5, 1.0, -1.0)),
    ):
        pos = pd.Series(np.asarray(position, dtype=float), index=pred.index)
        change = pos.groupby(pred["ticker"]).diff().abs().fillna(pos.abs())
        daily = pd.DataFrame(
            {
                "date": pred["target_date"],
                "ret": pos * pred["next_ret"] - cost * change,
                "turnover": change,
                "held": pos != 0,
                "win": (pos * pred["next_ret"]) > 0,
            }
        )
        out[name] = daily.groupby("date").mean()
    hold = pred.groupby("target_date")["next_ret"].mean()
    frame = pd.DataFrame({name: part["ret"] for name, part in out.items()})
    frame["buy-and-hold"] = hold
    frame.attrs["turnover"] = {name: float(part["turnover"].mean()) for name, part in out.items()}
    frame.attrs["turnover"]["buy-and-hold"] = 0.0
    frame.attrs["hit"] = {name: float(part["win"].sum() / max(part["held"].sum(), 1e-9)) for name, part in out.items()}
    frame.attrs["hit"]["buy-and-hold"] = float((hold > 0).mean())
    return frame.sort_index()


def summarize(returns: pd.DataFrame) -> dict[str, dict[str, float]]:
    ep = _empyrical()
    summary = {}
    for name in returns.columns:
        r = returns[name].dropna()
        summary[name] = {
            "cumulative_return": float(ep.cum_returns_final(r)),
            "annual_return": float(ep.annual_return(r, annualization=PERIODS_PER_YEAR)),
            "annual_volatility": float(ep.annual_volatility(r, annualization=PERIODS_PER_YEAR)),
            "sharpe": float(ep.sharpe_ratio(r, annualization=PERIODS_PER_YEAR)),
            "max_drawdown": float(ep.max_drawdown(r)),
            "hit_rate": returns.attrs["hit"][name],
            "turnover": returns.attrs["turnover"][name],
            "days": len(r),
        }
    return summary


def event_study(features: pd.DataFrame, *, window: int = 5, top: float = 0.05, min_posts: int = 3) -> pd.DataFrame:
    """Mean CAR with 95% bands per relative day, for the ``top`` share of most positive and most negative days."""
    frame = features[["ticker", "date", "ret", "sent_mean", "posts"]].sort_values(["ticker", "date"]).copy()
    frame["abnormal"] = frame["ret"] - frame.groupby("date")["ret"].transform("mean")
    frame["pos"] = frame.groupby("ticker").cumcount()
    eligible = frame[frame["posts"] >= min_posts]
    if len(eligible) < 10:
        return pd.DataFrame(columns=["kind", "day", "car", "low", "high", "events"])
    k = max(1, int(len(eligible) * top))
    events = {"positive": eligible.nlargest(k, "sent_mean"), "negative": eligible.nsmallest(k, "sent_mean")}
    abnormal = {t: g["abnormal"].to_numpy() for t, g in frame.groupby("ticker")}
    rows = []
    days = np.arange(-window, window + 1)
    for kind, chosen in events.items():
        paths = []
        for ticker, pos in zip(chosen["ticker"], chosen["pos"]):
            series = abnormal[ticker]
            if pos - window < 1 or pos + window >= len(series):
                continue  # the window must fit inside the ticker's history
            paths.append(np.nancumsum(series[pos - window : pos + window + 1]))
        if len(paths) < 2:
            continue
        paths = np.vstack(paths)
        mean, sem = paths.mean(axis=0), stats.sem(paths, axis=0)
        half = sem * stats.t.ppf(0.975, len(paths) - 1)
        for d, m, h in zip(days, mean, half):
            rows.append(
                {
                    "kind": kind,
                    "day": int(d),
                    "car": float(m),
                    "low": float(m - h),
                    "high": float(m + h),
                    "events": len(paths),
                }
            )
    return pd.DataFrame(rows)
