"""Prices from Yahoo Finance for users with internet: ``--prices yfinance:AAPL,MSFT[@2014-01-01..2016-01-01]``.

The download goes through the optional ``yfinance`` package (``pip install 'megasense[yfinance]'``), the
library most analysts already use for Yahoo's daily bars; nothing here talks to Yahoo directly. The result is
the same long table ``read_prices`` builds from files (ticker, date, open, high, low, close, adj_close,
volume), with Yahoo's adjusted close asked for explicitly (``auto_adjust=False``) so labels follow the
adjusted close as they do for files. The run keeps a copy (``prices.csv`` in its output folder), so a
result can be reproduced offline with ``--prices DIR/prices.csv``.
"""

from __future__ import annotations

import re
from datetime import date

import pandas as pd

from megasense.errors import MegasenseInputError

PREFIX = "yfinance:"
_SPEC = re.compile(r"^yfinance:(?P<tickers>[^@]+?)(?:@(?P<start>\d{4}-\d{2}-\d{2})?\.\.(?P<end>\d{4}-\d{2}-\d{2})?)?$")
_TICKER = re.compile(r"^[A-Za-z0-9.^=\-]{1,15}$")
_FIELDS = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Adj Close": "adj_close", "Volume": "volume"}


def is_yfinance(prices: object) -> bool:
    """Whether a ``--prices`` value asks for a download rather than naming a file or folder."""
    return str(prices).lower().startswith(PREFIX)


def parse_spec(spec: str) -> tuple[list[str], str | None, str | None]:
    """``yfinance:AAPL,MSFT@2014-01-01..2016-01-01`` -> (tickers, start, end); the dates are optional."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise MegasenseInputError(
            f"--prices {spec!r}: expected yfinance:TICKER[,TICKER...][@START..END] "
            "(for example yfinance:AAPL,MSFT@2014-01-01..2016-01-01)"
        )
    tickers = [t.strip().upper() for t in match["tickers"].split(",") if t.strip()]
    bad = [t for t in tickers if not _TICKER.match(t)]
    if not tickers or bad:
        raise MegasenseInputError(f"--prices {spec!r}: {bad or 'no tickers'} are not Yahoo ticker symbols")
    start, end = match["start"], match["end"]
    for value in (start, end):
        if value:
            try:
                date.fromisoformat(value)
            except ValueError as exc:
                raise MegasenseInputError(f"--prices {spec!r}: {value!r} is not a date (YYYY-MM-DD)") from exc
    if start and end and start >= end:
        raise MegasenseInputError(f"--prices {spec!r}: the start {start} is not before the end {end}")
    return list(dict.fromkeys(tickers)), start, end


def download_prices(spec: str) -> pd.DataFrame:
    """Daily bars for the spec's tickers as one long table with ``read_prices``' column names."""
    tickers, start, end = parse_spec(spec)
    try:
        import yfinance
    except ImportError as exc:
        raise MegasenseInputError(
            f"--prices {spec!r} needs the yfinance package: pip install 'megasense[yfinance]' "
            "(or download the prices yourself and pass a CSV)"
        ) from exc
    frame = yfinance.download(
        tickers,
        start=start,
        end=end,
        period=None if start or end else "max",
        interval="1d",
        auto_adjust=False,
        actions=False,
        group_by="ticker",
        multi_level_index=True,
        progress=False,
        threads=True,
    )
    if frame is None or frame.empty:
        raise MegasenseInputError(f"--prices {spec!r}: Yahoo Finance returned no prices (offline, or unknown tickers?)")
    return _long_table(frame, tickers, spec)


def _long_table(frame: pd.DataFrame, tickers: list[str], spec: str) -> pd.DataFrame:
    """yfinance's wide frame (columns: ticker x field) -> one row per ticker and day."""
    if not isinstance(frame.columns, pd.MultiIndex):  # one ticker without the ticker level
        frame = pd.concat({tickers[0]: frame}, axis=1)
    level = 0 if set(frame.columns.get_level_values(0)) & set(tickers) else 1
    parts, empty = [], []
    for ticker in tickers:
        if ticker not in frame.columns.get_level_values(level):
            empty.append(ticker)
            continue
        part = frame.xs(ticker, axis=1, level=level)
        part = part.rename(columns={c: _FIELDS.get(str(c), str(c)) for c in part.columns}).dropna(how="all")
        if part.empty or "close" not in part.columns:
            empty.append(ticker)
            continue
        dates = pd.to_datetime(part.index)
        if dates.tz is not None:
            dates = dates.tz_localize(None)
        part = part.reset_index(drop=True)
        part.insert(0, "date", dates.strftime("%Y-%m-%d"))
        part.insert(1, "ticker", ticker)
        parts.append(part[[c for c in ("date", "ticker", *_FIELDS.values()) if c in part.columns]])
    if empty:
        raise MegasenseInputError(f"--prices {spec!r}: Yahoo Finance returned no prices for {', '.join(empty)}")
    return pd.concat(parts, ignore_index=True)
