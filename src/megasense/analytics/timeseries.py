"""Time: dates parsed to UTC (bad rows reported, not guessed), periods chosen from the span, counts per period.

Every count comes with its number of documents, and a period with fewer than ``LOW_COUNT`` documents
is flagged ``low_count``, so a day with three posts is not read as a mood swing. Mean polarity comes
with its standard error for the same reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from megasense.errors import MegasenseInputError

FREQS = {"day": "D", "week": "W-SUN", "month": "M"}
LOW_COUNT = 10
_ZONE = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?\s*(?:Z|[+-]\d{2}:?\d{2}|UTC|GMT)", re.IGNORECASE)


@dataclass
class ParsedTimes:
    times: pd.Series
    """datetime64[ns, UTC] per row; NaT where the value is missing or could not be used."""
    bad_rows: list[int] = field(default_factory=list)
    """File row numbers of values that are not dates."""
    ambiguous_rows: list[int] = field(default_factory=list)
    """Rows whose value has a time zone where most have none, or none where most have one."""
    missing: int = 0
    bad_values: list[str] = field(default_factory=list)
    """The first few values that are not dates, for messages."""

    def problems(self, column: str, limit: int = 10) -> list[str]:
        out = []
        if self.bad_rows:
            out.append(
                f"{len(self.bad_rows)} values of column {column!r} are not dates (rows {_rows(self.bad_rows, limit)})"
                + (f", e.g. {', '.join(repr(v) for v in self.bad_values)}" if self.bad_values else "")
            )
        if self.ambiguous_rows:
            out.append(
                f"{len(self.ambiguous_rows)} values of column {column!r} mix dates with and without a time zone; "
                f"the fewer kind cannot be put on the same clock (rows {_rows(self.ambiguous_rows, limit)})"
            )
        return out


def _rows(rows: list[int], limit: int) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f", ... ({len(rows) - limit} more)" if len(rows) > limit else "")


def parse_times(values: pd.Series, rows: np.ndarray) -> ParsedTimes:
    """Parse a column of dates; ``rows`` are the file row numbers used in messages.

    Values with an offset (``+08:00``, ``Z``, ``UTC``) are converted to UTC. Values without one are
    taken as UTC when no value has one. A column that mixes both kinds is ambiguous: the rows of the
    rarer kind are reported rather than guessed.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        times = pd.to_datetime(values, utc=True)
        return ParsedTimes(times.reset_index(drop=True), missing=int(times.isna().sum()))
    text = values.astype("string").str.strip().reset_index(drop=True)
    missing = text.isna() | (text == "")
    text = text.mask(missing)
    zoned = text.str.contains(_ZONE, na=False)
    cleaned = text.str.replace(r"\s*\b(?:GMT|UTC)\b", "+00:00", regex=True)
    times = pd.to_datetime(cleaned, utc=True, errors="coerce", format="mixed")
    bad = times.isna() & ~missing
    # A column mixing values with and without a zone cannot be put on one clock: which zone is a bare
    # "2024-01-03 10:00" in? The minority convention is reported and left out, so the fewest rows go.
    usable = ~missing & ~bad
    with_zone, without = int((zoned & usable).sum()), int((~zoned & usable).sum())
    odd = (zoned if with_zone < without else ~zoned) if with_zone and without else pd.Series(False, index=text.index)
    ambiguous = odd & usable
    times = times.mask(ambiguous)
    rows = np.asarray(rows)
    return ParsedTimes(
        times=times,
        bad_rows=rows[bad.to_numpy()].tolist(),
        ambiguous_rows=rows[ambiguous.to_numpy()].tolist(),
        missing=int(missing.sum()),
        bad_values=[str(v)[:40] for v in text[bad].head(3).tolist()],
    )


def choose_freq(times: pd.Series) -> str:
    """``day`` for up to two months of data, ``week`` for up to two years, ``month`` beyond."""
    valid = times.dropna()
    if valid.empty:
        return "day"
    span = valid.max() - valid.min()
    if span <= pd.Timedelta(days=62):
        return "day"
    return "week" if span <= pd.Timedelta(days=731) else "month"


def period_start(times: pd.Series, freq: str) -> pd.Series:
    """The start of each timestamp's period (naive UTC dates; weeks start on Monday)."""
    if freq not in FREQS:
        raise MegasenseInputError(f"freq {freq!r} (--freq): expected one of {', '.join(FREQS)}")
    naive = times.dt.tz_convert("UTC").dt.tz_localize(None)
    if freq == "day":
        return naive.dt.floor("D")
    return naive.dt.to_period(FREQS[freq]).dt.start_time


SENTIMENTS = ("positive", "neutral", "negative")


def _stats(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Documents, sentiment counts, mean polarity and its standard error per ``keys``."""
    flags = frame[[*keys, "polarity"]].copy()
    for label in SENTIMENTS:
        flags[label] = (frame["sentiment"] == label).fillna(False).astype(np.int64)
    grouped = flags.groupby(keys, dropna=False, sort=True)
    out = grouped[list(SENTIMENTS)].sum()
    out.insert(0, "documents", grouped.size())
    out["mean_polarity"] = grouped["polarity"].mean()
    out["polarity_se"] = grouped["polarity"].std(ddof=1) / np.sqrt(out["documents"])
    out["low_count"] = out["documents"] < LOW_COUNT
    return out.reset_index()


def build_timeseries(docs: pd.DataFrame, freq: str, *, group_col: str | None = None) -> pd.DataFrame:
    """Counts and sentiment per period: overall, per topic, per group and per group and topic.

    ``docs`` needs ``period`` (NaT rows are left out), ``topic``, ``sentiment`` and ``polarity``
    columns (and ``group_col`` if given). One long table: ``level`` says which breakdown a row is.
    """
    dated = docs[docs["period"].notna()]
    columns = ["level", "freq", "period", "topic", "group", "documents", "positive", "neutral", "negative"]
    columns += ["mean_polarity", "polarity_se", "low_count", "share"]
    if dated.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    levels = [("all", []), ("topic", ["topic"])]
    if group_col:
        levels += [("group", ["group"]), ("group_topic", ["group", "topic"])]
    frame = dated.assign(group=dated[group_col].astype("string") if group_col else None)
    parts = []
    totals = frame.groupby("period").size()
    for level, keys in levels:
        part = _stats(frame, ["period", *keys])
        part["level"] = level
        part["share"] = part["documents"] / part["period"].map(totals).to_numpy()
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["freq"] = freq
    for column in ("topic", "group"):
        if column not in out:
            out[column] = None
    out["topic"] = out["topic"].astype("Int64")
    out["group"] = out["group"].astype("string")
    return out[columns]
