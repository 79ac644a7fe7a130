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
"""Period names and their pandas frequencies (weeks end on Sunday, so they start on Monday, as ISO weeks)."""
LOW_COUNT = 10
_ZONE = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?\s*(?:Z|[+-]\d{2}:?\d{2}|UTC|GMT)", re.IGNORECASE)


MAX_ROWS = 10
"""Row numbers kept of each kind of bad date, for messages (the counts are kept in full)."""


@dataclass
class ParsedTimes:
    times: pd.Series | None = None
    """datetime64[ns, UTC] per row; NaT where the value is missing or could not be used (``parse_times`` only:
    a ``TimeParser`` hands each chunk's times back as it goes)."""
    not_dates: int = 0
    bad_rows: list[int] = field(default_factory=list)
    """File row numbers of the first ``MAX_ROWS`` values that are not dates."""
    ambiguous: int = 0
    ambiguous_rows: list[int] = field(default_factory=list)
    """The first ``MAX_ROWS`` rows whose value has a time zone where most have none, or none where most have one."""
    missing: int = 0
    bad_values: list[str] = field(default_factory=list)
    """The first few values that are not dates, for messages."""
    parsed: int = 0
    """Values parsed and kept."""
    first: pd.Timestamp | None = None
    """The earliest and latest time kept (naive UTC)."""
    last: pd.Timestamp | None = None

    def problems(self, column: str, limit: int = 10) -> list[str]:
        out = []
        if self.not_dates:
            out.append(
                f"{self.not_dates} values of column {column!r} are not dates "
                f"(rows {_rows(self.bad_rows, self.not_dates, limit)})"
                + (f", e.g. {', '.join(repr(v) for v in self.bad_values)}" if self.bad_values else "")
            )
        if self.ambiguous:
            out.append(
                f"{self.ambiguous} values of column {column!r} mix dates with and without a time zone; "
                "the fewer kind cannot be put on the same clock "
                f"(rows {_rows(self.ambiguous_rows, self.ambiguous, limit)})"
            )
        return out


def _rows(rows: list[int], total: int, limit: int) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f", ... ({total - limit} more)" if total > limit else "")


class TimeParser:
    """``parse_times`` a chunk at a time: ``add`` parses a chunk to naive UTC times and says which carry a zone;
    once every chunk is in, ``left_out`` says which kind (zoned or not) a mixed column leaves out.

    Values with an offset (``+08:00``, ``Z``, ``UTC``) are converted to UTC. Values without one are
    taken as UTC when no value has one. A column that mixes both kinds is ambiguous: the rows of the
    rarer kind are reported rather than guessed.
    """

    def __init__(self) -> None:
        self.facts = ParsedTimes()
        self.zoned = self.unzoned = 0

    def add(self, values: pd.Series, rows: np.ndarray) -> tuple[pd.Series, np.ndarray]:
        """(datetime64[ns, UTC] per value, NaT where missing or not a date; whether each value names a zone)."""
        facts, rows = self.facts, np.asarray(rows)
        if pd.api.types.is_datetime64_any_dtype(values):
            times = pd.to_datetime(values, utc=True).reset_index(drop=True)
            facts.missing += int(times.isna().sum())
            self.unzoned += int(times.notna().sum())
            return times, np.zeros(len(times), dtype=bool)
        text = values.astype("string").str.strip().reset_index(drop=True)
        missing = text.isna() | (text == "")
        text = text.mask(missing)
        zoned = text.str.contains(_ZONE, na=False).to_numpy(dtype=bool)
        cleaned = text.str.replace(r"\s*\b(?:GMT|UTC)\b", "+00:00", regex=True)
        times = pd.to_datetime(cleaned, utc=True, errors="coerce", format="mixed")
        bad = (times.isna() & ~missing).to_numpy(dtype=bool)
        usable = ~missing.to_numpy(dtype=bool) & ~bad
        facts.missing += int(missing.sum())
        facts.not_dates += int(bad.sum())
        facts.bad_rows += rows[bad][: MAX_ROWS - len(facts.bad_rows)].tolist()
        facts.bad_values += [str(v)[:40] for v in text[bad].head(3 - len(facts.bad_values)).tolist()]
        self.zoned += int((zoned & usable).sum())
        self.unzoned += int((~zoned & usable).sum())
        return times, zoned

    def left_out(self) -> bool | None:
        """Which values a column mixing both kinds leaves out: True the zoned ones, False the others; None: none.

        A column mixing values with and without a zone cannot be put on one clock: which zone is a bare
        "2024-01-03 10:00" in? The minority convention is reported and left out, so the fewest rows go.
        """
        if not (self.zoned and self.unzoned):
            return None
        return self.zoned < self.unzoned


def parse_times(values: pd.Series, rows: np.ndarray) -> ParsedTimes:
    """Parse a column of dates in memory (``TimeParser`` for one chunk); ``rows``: file row numbers for messages."""
    parser = TimeParser()
    times, zoned = parser.add(values, rows)
    facts, odd = parser.facts, parser.left_out()
    if odd is not None:
        ambiguous = (zoned == odd) & times.notna().to_numpy()
        facts.ambiguous = int(ambiguous.sum())
        facts.ambiguous_rows = np.asarray(rows)[ambiguous][:MAX_ROWS].tolist()
        times = times.mask(ambiguous)
    facts.times, facts.parsed = times, int(times.notna().sum())
    if facts.parsed:
        facts.first, facts.last = (t.tz_convert("UTC").tz_localize(None) for t in (times.min(), times.max()))
    return facts


def freq_of_span(first: pd.Timestamp | None, last: pd.Timestamp | None) -> str:
    """``day`` for up to two months of data, ``week`` for up to two years, ``month`` beyond."""
    if first is None or last is None or pd.isna(first) or pd.isna(last):
        return "day"
    span = pd.Timestamp(last) - pd.Timestamp(first)
    if span <= pd.Timedelta(days=62):
        return "day"
    return "week" if span <= pd.Timedelta(days=731) else "month"


def choose_freq(times: pd.Series) -> str:
    """``freq_of_span`` of a column of times."""
    valid = times.dropna()
    return freq_of_span(valid.min(), valid.max()) if len(valid) else "day"


def period_start(times: pd.Series, freq: str) -> pd.Series:
    """The start of each timestamp's period (naive UTC dates; weeks start on Monday)."""
    if freq not in FREQS:
        raise MegasenseInputError(f"freq {freq!r} (--freq): expected one of {', '.join(FREQS)}")
    naive = times.dt.tz_convert("UTC").dt.tz_localize(None)
    if freq == "day":
        return naive.dt.floor("D")
    return naive.dt.to_period(FREQS[freq]).dt.start_time


def period_sql(column: str, freq: str) -> str:
    """SQL for the start of each timestamp's period, as ``period_start`` (ISO weeks start on Monday, too)."""
    if freq not in FREQS:
        raise MegasenseInputError(f"freq {freq!r} (--freq): expected one of {', '.join(FREQS)}")
    return f"CAST(date_trunc('{freq}', {column}) AS TIMESTAMP)"


SENTIMENTS = ("positive", "neutral", "negative")
COLUMNS = ["level", "freq", "period", "topic", "group", "documents", "positive", "neutral", "negative"]
COLUMNS += ["mean_polarity", "polarity_se", "low_count", "share"]


def stats_sql(keys: list[str], relation: str, where: str = "TRUE") -> str:
    """Documents, sentiment counts, mean polarity and its standard error per ``keys`` (NULL keys sort last).

    ``relation`` needs a ``doc_id`` column: sums run in its order, so the results do not depend on how
    DuckDB's threads split the rows (the mean is a compensated sum, the standard error Welford's, as
    pandas' groupby computes them; the mean may differ from pandas' in the last bit).
    """
    by = ", ".join(keys)
    order = ", ".join(f"{k} ASC NULLS LAST" for k in keys)
    counts = ", ".join(f"count(*) FILTER (WHERE sentiment = '{label}') AS {label}" for label in SENTIMENTS)
    return (
        f"SELECT {by}, count(*) AS documents, count(sentiment) AS scored, {counts}, "
        "fsum(polarity ORDER BY doc_id) / count(polarity) AS mean_polarity, "
        f"stddev_samp(polarity ORDER BY doc_id) / sqrt(count(*)) AS polarity_se FROM {relation} WHERE {where} "
        f"GROUP BY {by} ORDER BY {order}"
    )


def empty_series() -> pd.DataFrame:
    """The ``timeseries`` table of an analysis without dates."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})


def series_table(con, relation: str, freq: str, *, group: bool) -> pd.DataFrame:
    """Counts and sentiment per period: overall, per topic, per group and per group and topic, in DuckDB.

    ``relation`` (a table or view of ``con``) has one row per document with ``doc_id``, ``period`` (NULL rows
    are left out), ``topic``, ``sentiment`` and ``polarity`` columns, and ``grp`` (the group, as text) with
    ``group``.
    One long table: ``level`` says which breakdown a row is.
    """
    levels = [("all", []), ("topic", ["topic"])]
    if group:
        levels += [("group", ["grp"]), ("group_topic", ["grp", "topic"])]
    parts = []
    for level, keys in levels:
        part = con.execute(stats_sql(["period", *keys], relation, "period IS NOT NULL")).df()
        if part.empty:
            return empty_series()
        part = part.drop(columns="scored").rename(columns={"grp": "group"})
        part["low_count"] = part["documents"] < LOW_COUNT
        part["level"] = level
        if level == "all":
            totals = part.set_index("period")["documents"]
        part["share"] = part["documents"] / part["period"].map(totals).to_numpy()
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["freq"] = freq
    for column in ("topic", "group"):
        if column not in out:
            out[column] = None
    out["topic"] = out["topic"].astype("Int64")
    out["group"] = out["group"].astype("string")
    return out[COLUMNS]


def build_timeseries(docs: pd.DataFrame, freq: str, *, group_col: str | None = None) -> pd.DataFrame:
    """``series_table`` of a DataFrame with ``period``, ``topic``, ``sentiment`` and ``polarity`` columns (and
    ``group_col`` if given)."""
    from megasense.analytics.store import connect_memory

    frame = pd.DataFrame(
        {
            "doc_id": np.arange(len(docs)),
            "period": pd.to_datetime(docs["period"]).to_numpy(),
            "topic": docs["topic"].to_numpy(dtype=np.int64),
            "sentiment": docs["sentiment"].astype("string").to_numpy(),
            "polarity": docs["polarity"].to_numpy(dtype=float),
        }
    )
    if group_col:
        frame["grp"] = docs[group_col].astype("string").to_numpy()
    with connect_memory() as con:
        con.register("docs_view", frame)
        return series_table(con, "docs_view", freq, group=bool(group_col))
