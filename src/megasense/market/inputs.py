"""Reading what the market journey starts from: prices (small, read whole) and texts (streamed in chunks).

Prices: one CSV per ticker in a folder (``AAPL.csv``; the ticker is the file name) or one long table
with a ticker column. Columns are matched without regard to case, spaces or underscores
(``Adj Close`` = ``adj_close``). Texts: a CSV/TSV/JSONL/Parquet file (gzip too) with a text, a time
and a ticker column, or StockNet's layout (a folder of ``<TICKER>/<YYYY-MM-DD>`` JSON-lines files).
A text that is a list of words (StockNet's pre-tokenised tweets) is joined with spaces. Times are
turned into UTC here; ``sessions`` decides which trading day each one belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from megasense.errors import MegasenseInputError, TableError
from megasense.files.tables import read_chunks, read_table, table_format
from megasense.market.yahoo import download_prices, is_yfinance

PRICE_COLUMNS = ("date", "open", "high", "low", "close", "adj_close", "volume")
MISSING = {"", "null", "nan", "na", "n/a", "none", "-"}
"""How price files write a missing value (Yahoo's CSVs say ``null``): read as missing, not refused."""
TWITTER_TIME = "%a %b %d %H:%M:%S %z %Y"
"""Twitter's ``created_at`` (``Wed Jan 01 03:59:03 +0000 2014``), as StockNet stores it."""
TEXT_COLUMNS = ("text", "headline", "title", "body", "content", "tweet")
TIME_COLUMNS = ("created_at", "timestamp", "time", "datetime", "published", "date")
TICKER_COLUMNS = ("ticker", "symbol", "stock")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HAS_ZONE = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", str(name).strip().lower())


def normalize_ticker(value: object) -> str:
    """``$aapl`` -> ``AAPL``: the form tickers are compared in."""
    return str(value).strip().lstrip("$").upper()


def _price_frame(frame: pd.DataFrame, source: str, ticker: str | None) -> pd.DataFrame:
    frame = frame.rename(columns={c: _norm(c) for c in frame.columns})
    if "adj_close" not in frame.columns and "adjclose" in frame.columns:
        frame = frame.rename(columns={"adjclose": "adj_close"})
    if "adj_close" not in frame.columns and "close" in frame.columns:
        frame["adj_close"] = frame["close"]  # no adjusted close given: the close is the best there is
    needed = ["date", "close", "adj_close"] + ([] if ticker else ["ticker"])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise TableError(
            f"{source}: missing price column(s) {missing}; found {list(frame.columns)}; expected "
            "date, open, high, low, close, adj close, volume" + ("" if ticker else " and ticker (one long table)")
        )
    out = pd.DataFrame({"ticker": ticker if ticker else frame["ticker"].map(normalize_ticker)}, index=frame.index)
    dates = pd.to_datetime(frame["date"], errors="coerce", format="mixed")
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise TableError(
            f"{source}: row {row + 2}, column 'date': {frame['date'].iloc[row]!r} is not a date (expected YYYY-MM-DD)"
        )
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    out["date"] = dates.dt.normalize().astype("datetime64[ns]")
    for column in PRICE_COLUMNS[1:]:
        if column not in frame.columns:
            out[column] = np.nan
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        marked = frame[column].astype(str).str.strip().str.lower().isin(MISSING)
        bad = values.isna() & frame[column].notna() & ~marked
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise TableError(f"{source}: row {row + 2}, column {column!r}: {frame[column].iloc[row]!r} is not a number")
        out[column] = values.astype("float64")
    return out


def read_prices(path: str | Path) -> pd.DataFrame:
    """Prices as one frame (ticker, date, open, high, low, close, adj_close, volume), sorted, one row per day.

    ``path`` may also be ``yfinance:TICKER[,...][@START..END]``: a download through the optional yfinance package."""
    if is_yfinance(path):
        prices = _price_frame(download_prices(str(path)), str(path), None)
        return _checked(prices, str(path))
    path = Path(path)
    if not path.exists():
        raise TableError(f"{path}: no such file or folder of prices")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".csv", ".parquet") and p.is_file())
        if not files:
            raise TableError(f"{path}: holds no .csv or .parquet price files (one per ticker, e.g. AAPL.csv)")
        frames = [_price_frame(read_table(f), str(f), normalize_ticker(f.stem)) for f in files]
        prices = pd.concat(frames, ignore_index=True)
    else:
        prices = _price_frame(read_table(path), str(path), None)
    return _checked(prices, str(path))


def _checked(prices: pd.DataFrame, source: str) -> pd.DataFrame:
    """Rows without an adjusted close dropped, sorted by ticker and date; a repeated day is an error."""
    prices = prices.dropna(subset=["adj_close"]).sort_values(["ticker", "date"])
    dupes = prices.duplicated(["ticker", "date"])
    if dupes.any():
        first = prices[dupes].iloc[0]
        raise TableError(f"{source}: {first['ticker']} has more than one price row for {first['date'].date()}")
    return prices.reset_index(drop=True)


@dataclass
class TextColumns:
    text: str | None = None
    time: str | None = None
    ticker: str | None = None
    time_format: str | None = None
    """A ``strftime`` pattern for the time column; None: ISO 8601, else Twitter's ``created_at``."""
    text_tz: str | None = None
    """Zone of times written without one; None refuses such times (they would be guessed)."""


def _pick(frame: pd.DataFrame, given: str | None, candidates: tuple[str, ...], what: str, option: str, src) -> str:
    if given is not None:
        if given not in frame.columns:
            raise TableError(f"{src}: no {what} column {given!r} ({option}); found {list(frame.columns)}")
        return given
    for name in candidates:
        if name in frame.columns:
            return name
    raise TableError(
        f"{src}: no {what} column: found {list(frame.columns)}, expected one of {list(candidates)} or name it "
        f"with {option}"
    )


def _as_text(value: object) -> str:
    if isinstance(value, list | tuple | np.ndarray):
        return " ".join(str(v) for v in value)  # StockNet: a tweet as its list of tokens
    return "" if value is None or value != value else str(value)


def parse_times(
    values: pd.Series, *, column: str, source: str, first_row: int, cols: TextColumns, market_tz: str
) -> pd.Series:
    """UTC timestamps. A date without a time counts as the end of that day in the market's zone (so it
    reaches the next session: its hour is unknown, and the close may already be past)."""
    raw = values.astype(str).str.strip()
    date_only = raw.str.match(_DATE_ONLY)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    zoneless = np.zeros(len(values), dtype=bool)  # read fine, but the zone is unknown
    if date_only.any():
        days = pd.to_datetime(raw[date_only], format="%Y-%m-%d", errors="coerce")
        local = (days + pd.Timedelta(hours=23, minutes=59, seconds=59)).dt.tz_localize(market_tz)
        out[date_only] = local.dt.tz_convert("UTC")
    rest = ~date_only
    if rest.any():
        fmt = cols.time_format or ("ISO8601" if raw[rest].iloc[0][:4].isdigit() else TWITTER_TIME)
        naive = rest & ~raw.str.contains(_HAS_ZONE) & (fmt != TWITTER_TIME)
        aware = rest & ~naive
        if aware.any():
            out[aware] = pd.to_datetime(raw[aware], format=fmt, errors="coerce", utc=True)
        if naive.any():
            local = pd.to_datetime(raw[naive], format=fmt, errors="coerce")
            if cols.text_tz is None:
                zoneless[naive] = local.notna().to_numpy()
            else:
                out[naive] = local.dt.tz_localize(cols.text_tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    problem = out.isna().to_numpy()
    if problem.any():
        i = int(np.flatnonzero(problem)[0])
        where = f"{source}: row {first_row + i}, column {column!r}: {raw.iloc[i]!r}"
        if zoneless[i]:
            raise TableError(
                f"{where} has a time but no time zone; pass --text-tz (e.g. --text-tz UTC or America/New_York) "
                "to say which zone such times are in"
            )
        expected = cols.time_format or "ISO 8601 (2015-10-01T14:30:00Z), YYYY-MM-DD or Twitter's created_at"
        raise TableError(f"{where}: cannot read it as a time; expected {expected} (or give --time-format)")
    return out


@dataclass
class TextChunk:
    frame: pd.DataFrame
    """Columns ``text`` (str), ``time`` (UTC), ``ticker`` (normalised), ``row`` (file row, for errors)."""
    source: str
    done: float | None


def _chunk_frame(frame, source, first_row, cols: TextColumns, market_tz: str) -> pd.DataFrame:
    text = _pick(frame, cols.text, TEXT_COLUMNS, "text", "--text-col", source)
    time = _pick(frame, cols.time, TIME_COLUMNS, "time", "--time-col", source)
    ticker = _pick(frame, cols.ticker, TICKER_COLUMNS, "ticker", "--ticker-col", source)
    times = parse_times(frame[time], column=time, source=source, first_row=first_row, cols=cols, market_tz=market_tz)
    return pd.DataFrame(
        {
            "text": [_as_text(v) for v in frame[text].tolist()],
            "time": times.to_numpy(),
            "ticker": frame[ticker].map(normalize_ticker).to_numpy(),
            "row": np.arange(first_row, first_row + len(frame)),
        }
    )


def _stocknet_folder(path: Path, cols: TextColumns, market_tz: str, chunk_rows: int) -> Iterator[TextChunk]:
    """StockNet's ``tweet/preprocessed/<TICKER>/<YYYY-MM-DD>``: JSON lines; the ticker is the folder's name. Each
    file is read (and its errors named) on its own; small files are gathered into chunks of ``chunk_rows``."""
    files = sorted(f for f in path.glob("*/*") if f.is_file() and f.stat().st_size > 0)
    if not files:
        raise TableError(f"{path}: a folder of texts must hold <TICKER>/<file> JSON-lines files (StockNet's layout)")
    parts: list[pd.DataFrame] = []
    for n, file in enumerate(files, start=1):
        for chunk in read_chunks(file, fmt="jsonl", chunk_rows=chunk_rows):
            frame = chunk.frame
            if "ticker" not in frame.columns:
                frame["ticker"] = file.parent.name
            parts.append(_chunk_frame(frame, str(file), chunk.first_row, cols, market_tz))
        if sum(len(p) for p in parts) >= chunk_rows or n == len(files):
            yield TextChunk(pd.concat(parts, ignore_index=True), str(path), n / len(files))
            parts = []


def read_texts(
    path: str | Path, cols: TextColumns, *, market_tz: str, chunk_rows: int = 8192, encoding: str | None = None
) -> Iterator[TextChunk]:
    """Texts in chunks of at most ``chunk_rows``: memory stays bounded however many there are."""
    path = Path(path)
    if path.is_dir():
        yield from _stocknet_folder(path, cols, market_tz, chunk_rows)
        return
    table_format(path)  # an unknown suffix fails here with the list of formats
    for chunk in read_chunks(path, chunk_rows=chunk_rows, encoding=encoding):
        frame = _chunk_frame(chunk.frame, str(path), chunk.first_row, cols, market_tz)
        yield TextChunk(frame, str(path), chunk.done)


def check_tickers(frame: pd.DataFrame, known: set[str], source: str, *, skip: bool) -> pd.DataFrame:
    """Drop (``skip``) or refuse texts whose ticker has no prices; the error names the row and the ticker."""
    unknown = ~frame["ticker"].isin(known)
    if unknown.any() and not skip:
        first = frame[unknown].iloc[0]
        sample = ", ".join(sorted(known)[:10]) + (", ..." if len(known) > 10 else "")
        raise MegasenseInputError(
            f"{source}: row {int(first['row'])}: ticker {first['ticker']!r} has no prices (known: {sample}); "
            "add its prices or pass --skip-unknown-tickers"
        )
    return frame[~unknown]
