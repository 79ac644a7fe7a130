"""Which trading session a text can first affect: the first close after it, in the exchange's zone.

The exchange calendar is the one the price data shows: a ticker's sessions are the dates of its price
rows, so weekends, holidays and gaps follow the data, not a hard-coded list. Each session closes at
``close`` (default 16:00) in ``market_tz`` (default America/New_York); half-day closes are not modelled
(a text between 13:00 and 16:00 on such a day counts for that day, not the next). A text at or after a
session's close belongs to the next session; one after the last session is dropped and counted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from megasense.errors import MegasenseInputError


def parse_close(value: str) -> dt.time:
    try:
        return dt.datetime.strptime(value.strip(), "%H:%M").time()
    except ValueError:
        raise MegasenseInputError(f"--close {value!r} is not a time of day; expected HH:MM such as 16:00") from None


def check_zone(name: str, option: str = "--market-tz") -> str:
    try:
        pd.Timestamp("2015-01-01").tz_localize(name)
    except Exception:
        raise MegasenseInputError(
            f"{option} {name!r} is not a time zone; expected an IANA name such as America/New_York, UTC or "
            "Asia/Shanghai"
        ) from None
    return name


@dataclass
class Sessions:
    """Per ticker: session dates and their closes as UTC nanoseconds, both sorted."""

    dates: dict[str, np.ndarray]
    closes: dict[str, np.ndarray]

    @classmethod
    def from_prices(cls, prices: pd.DataFrame, *, market_tz: str = "America/New_York", close: str = "16:00"):
        at = parse_close(close)
        offset = pd.Timedelta(hours=at.hour, minutes=at.minute)
        dates, closes = {}, {}
        for ticker, group in prices.groupby("ticker", sort=False):
            days = pd.DatetimeIndex(group["date"].to_numpy())
            local = (days + offset).tz_localize(check_zone(market_tz), ambiguous="NaT", nonexistent="NaT")
            dates[ticker] = days.to_numpy()
            closes[ticker] = local.tz_convert("UTC").as_unit("ns").asi8
        return cls(dates, closes)

    def assign(self, tickers: np.ndarray, times: pd.Series) -> np.ndarray:
        """The session date (datetime64) of each text; NaT for texts after the ticker's last session."""
        stamps = pd.DatetimeIndex(times).as_unit("ns").asi8
        out = np.full(len(tickers), np.datetime64("NaT"), dtype="datetime64[ns]")
        for ticker in np.unique(tickers):
            mask = tickers == ticker
            closes = self.closes[ticker]
            # side="right": a text stamped exactly at the close is after it, so it counts for the next session
            where = np.searchsorted(closes, stamps[mask], side="right")
            ok = where < len(closes)
            picked = np.full(mask.sum(), np.datetime64("NaT"), dtype="datetime64[ns]")
            picked[ok] = self.dates[ticker][where[ok]]
            out[mask] = picked
        return out
