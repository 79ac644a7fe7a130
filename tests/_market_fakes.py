"""A market where sentiment leads prices by construction; analytics' keyword ``FakeScorer`` reads its posts.

Each session every ticker gets a hidden mood s ~ N(0, 1); its posts that day (during trading hours)
say "great" when s > 0.3, "bad" when s < -0.3, else "meh"; the next session's return is 1% * s plus
noise. So sentiment predicts tomorrow, prices alone do not, and tests can check that the models find
the one and not the other, without weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TICKERS = ("AAA", "BBB", "CCC", "DDD")


def synthetic_market(root: Path, *, seed: int = 0, days: int = 260, signal: float = 0.01) -> tuple[Path, Path]:
    """(texts.csv, prices.csv) under ``root``: 2015 business days from Jan 2, four tickers."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-02", periods=days)
    prices, posts = [], []
    for ticker in TICKERS:
        mood = rng.standard_normal(days)
        ret = np.concatenate([[0.0], signal * mood[:-1]]) + rng.normal(0, 0.004, days)
        close = 100 * np.cumprod(1 + ret)
        for i, day in enumerate(dates):
            prices.append(
                {
                    "Date": day.date().isoformat(),
                    "Ticker": ticker,
                    "Open": close[i],
                    "High": close[i] * 1.01,
                    "Low": close[i] * 0.99,
                    "Close": close[i],
                    "Adj Close": close[i],
                    "Volume": 1e6,
                }
            )
            word = "great" if mood[i] > 0.3 else "bad" if mood[i] < -0.3 else "meh"
            for k in range(3):  # 14:00-14:20 UTC: inside New York's session
                stamp = (day + pd.Timedelta(hours=14, minutes=10 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")
                posts.append({"time": stamp, "ticker": f"${ticker.lower()}", "text": f"{ticker} {word} day {i} {k}"})
    root.mkdir(parents=True, exist_ok=True)
    texts, price_file = root / "texts.csv", root / "prices.csv"
    pd.DataFrame(posts).to_csv(texts, index=False)
    pd.DataFrame(prices).to_csv(price_file, index=False)
    return texts, price_file
