"""``market.duckdb``: the tables a market run leaves behind, for SQL, the report and the dashboard.

Tables: ``daily_index`` (sentiment per ticker and session), ``features`` (what the models saw, with
labels), ``predictions`` (P(up) per model, period, ticker and day), ``backtest`` (daily returns of the
strategies and buy-and-hold over the test period), ``event_study``, ``importance``, ``calibration``
(derived from predictions) and ``metrics`` (one row per period, model and metric).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from megasense.errors import MegasenseInputError

DATABASE = "market.duckdb"
METRICS = "metrics.json"


def calibration(predictions: pd.DataFrame, *, bins: int = 10) -> pd.DataFrame:
    """Per model on the test period: mean predicted P(up) and observed share up in equal-width bins."""
    test = predictions[(predictions["period"] == "test") & predictions["label"].notna()]
    test = test[~test["model"].isin(["always-up", "yesterday"])]  # rules, not probabilities
    edges = np.linspace(0, 1, bins + 1)
    test = test.assign(bin=np.clip(np.digitize(test["prob"], edges[1:-1]), 0, bins - 1))
    grouped = test.groupby(["model", "bin"]).agg(
        predicted=("prob", "mean"), observed=("label", "mean"), count=("label", "size")
    )
    return grouped.reset_index()


def metrics_rows(metrics: dict[str, Any]) -> pd.DataFrame:
    rows = [
        {"period": period, "model": model, "metric": k, "value": float(v)}
        for period in ("validation", "test")
        for model, values in metrics[period].items()
        for k, v in values.items()
    ]
    return pd.DataFrame(rows)


def write(directory: Path, tables: dict[str, pd.DataFrame], metrics: dict[str, Any]) -> None:
    import duckdb

    tables = {**tables, "calibration": calibration(tables["predictions"]), "metrics": metrics_rows(metrics)}
    with duckdb.connect(str(directory / DATABASE)) as con:
        for name, frame in tables.items():
            con.register("frame", frame)
            con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM frame')
            con.unregister("frame")


def is_market_dir(directory: str | Path) -> bool:
    return (Path(directory) / DATABASE).is_file() and (Path(directory) / METRICS).is_file()


class MarketData:
    """Read-only access to a market directory (the dashboard's and the report's source)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not is_market_dir(self.directory):
            raise MegasenseInputError(
                f"{self.directory}: holds no market results (run `megasense market ... --out DIR`)"
            )
        self.metrics = json.loads((self.directory / METRICS).read_text(encoding="utf-8"))

    def table(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        import duckdb

        with duckdb.connect(str(self.directory / DATABASE), read_only=True) as con:
            return con.execute(sql, params or []).df()

    def tickers(self) -> list[str]:
        frame = self.table("SELECT ticker, sum(posts) AS posts FROM daily_index GROUP BY ticker ORDER BY posts DESC")
        return frame["ticker"].tolist()

    def ticker(self, ticker: str) -> pd.DataFrame:
        return self.table(
            "SELECT d.date, d.posts, d.sent_mean, d.sent_decay, f.adj_close, f.ret FROM daily_index d JOIN features f "
            "USING (ticker, date) WHERE d.ticker = ? ORDER BY d.date",
            [ticker],
        )

    def prices(self, ticker: str) -> pd.DataFrame:
        """Cumulative adjusted return of ``ticker`` (a price index starting at 1) with its sentiment."""
        frame = self.ticker(ticker)
        frame["price_index"] = (1 + frame["ret"].fillna(0)).cumprod()
        return frame
