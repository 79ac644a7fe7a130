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


def stocknet_layout(root: Path, *, tickers=("GE", "DIS"), days: int = 30, seed: int = 0) -> Path:
    """A made-up corpus in StockNet's own layout under ``root``: ``tweet/<TICKER>/<YYYY-MM-DD>`` files of JSON lines
    (pre-tokenised word lists, Twitter's ``created_at``) and ``price/<TICKER>.csv`` in Yahoo's columns."""
    import json

    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-06-01", periods=days)
    (root / "price").mkdir(parents=True, exist_ok=True)
    for ticker in tickers:
        close = 30 * np.cumprod(1 + rng.normal(0, 0.01, days))
        pd.DataFrame(
            {
                "Date": [d.date().isoformat() for d in dates],
                "Open": close,
                "High": close * 1.01,
                "Low": close * 0.99,
                "Close": close,
                "Adj Close": close * 0.93,
                "Volume": rng.integers(1_000_000, 9_000_000, days),
            }
        ).to_csv(root / "price" / f"{ticker}.csv", index=False)
        folder = root / "tweet" / ticker
        folder.mkdir(parents=True, exist_ok=True)
        for day in dates:
            lines = [
                {
                    "text": ["$", ticker.lower(), word, "today", "URL"],
                    "created_at": (day + pd.Timedelta(hours=14, minutes=k)).strftime("%a %b %d %H:%M:%S +0000 %Y"),
                    "user_id_str": str(k),
                }
                for k, word in enumerate(rng.choice(["great", "bad", "meh"], size=2))
            ]
            (folder / day.date().isoformat()).write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root


def stocknet_extract(root: Path, source: Path, *, tickers=("GE", "DIS"), per_day: int = 3) -> tuple[Path, int]:
    """StockNet's real tweets of ``tickers`` from 2015-06-01 to 2015-10-31 (the first ``per_day`` per ticker and
    day of ``source``, the shared data set's folder) written in StockNet's folder layout under ``root``, with
    their prices from 2015-05-01 to 2015-11-06; returns (root, tweets written). Built at test time: the data
    stays in ../shared/data, never in the repository."""
    import gzip
    import json

    kept: dict[tuple[str, str], list[str]] = {}
    with gzip.open(source / "tweets_preprocessed.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["ticker"] in tickers and "2015-06-01" <= row["date"] <= "2015-10-31":
                day = kept.setdefault((row["ticker"], row["date"]), [])
                if len(day) < per_day:
                    day.append(json.dumps({k: row[k] for k in ("text", "created_at", "user_id_str")}))
    for (ticker, day), lines in kept.items():
        folder = root / "tweet" / ticker
        folder.mkdir(parents=True, exist_ok=True)
        (folder / day).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "price").mkdir(parents=True, exist_ok=True)
    for ticker in tickers:
        prices = pd.read_csv(source / "price-raw" / f"{ticker}.csv")
        prices = prices[(prices["Date"] >= "2015-05-01") & (prices["Date"] <= "2015-11-06")]
        prices.to_csv(root / "price" / f"{ticker}.csv", index=False)
    return root, sum(len(v) for v in kept.values())
