"""The analysis as tidy tables: documents, topics, topic_terms, timeseries (and groups, with a group column).

Everything here is counting over columns already computed (sentiment, topics, dates), in DuckDB SQL over
the work database's rows, so no table needs the documents in memory; no model runs.
The input's own columns are kept in ``documents`` as they were; one whose name clashes with a column
the analysis adds is kept as ``input_<name>``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from megasense.analytics.store import insert_frame
from megasense.analytics.timeseries import SENTIMENTS, empty_series, freq_of_span, period_sql, series_table, stats_sql

ADDED = ("doc_id", "batch", "row", "time_utc", "period", "sentiment", "score", "polarity", "topic", "topic_label")
ADDED += ("has_words",)


def input_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The input's own columns, one whose name clashes with an added column kept as ``input_<name>``."""
    return frame.rename(columns={c: f"input_{c}" for c in frame.columns if c in ADDED})


RESULTS = "_results"
"""The view of every document's computed columns that ``documents`` and the tables are made from."""


def results_view(con, rows: str, model, opts) -> str | None:
    """Create ``_results`` over ``rows`` (``ingest.ROWS_SCHEMA``): each document's period and topic label added.

    Returns the period (``day``, ``week``, ``month``; chosen from the span of the dates unless given),
    or None without a time column."""
    timed = opts.time_col is not None
    freq = opts.freq
    if timed and freq is None:
        first, last = con.execute(f"SELECT min(time_utc), max(time_utc) FROM {rows}").fetchone()
        freq = freq_of_span(first, last)
    labels = pd.DataFrame({"topic": [t.id for t in model.topics_], "label": [t.label for t in model.topics_]}).astype(
        {"topic": np.int64, "label": object}
    )
    con.execute("CREATE OR REPLACE TABLE _labels (topic BIGINT, label VARCHAR)")
    insert_frame(con, "_labels", labels)
    # untimed, the columns are TIMESTAMP_NS, as a column of pandas' NaT gave them before
    time = "r.time_utc" if timed else "CAST(r.time_utc AS TIMESTAMP_NS)"
    period = period_sql("r.time_utc", freq) if freq else "CAST(NULL AS TIMESTAMP_NS)"
    con.execute(
        f"CREATE OR REPLACE VIEW {RESULTS} AS SELECT r.doc_id, r.batch, r.row, {time} AS time_utc, {period} AS period, "
        "r.sentiment, r.score, r.polarity, r.topic, coalesce(l.label, 'outliers') AS topic_label, r.has_words, r.grp "
        f"FROM {rows} r LEFT JOIN _labels l USING (topic)"
    )
    return freq


def build_tables(con, model, opts, *, freq: str | None, phrases: dict[int, dict[str, list[str]]], added: int):
    """(tables by name, facts for the summary), counted in DuckDB over the documents of ``_results``.

    ``phrases``: each topic's key phrases (``represent.PhraseCounts``); ``added``: the new documents.
    """
    tables = {
        "topics": _topics(con, model, phrases),
        "topic_terms": _topic_terms(model),
        "timeseries": series_table(con, RESULTS, freq, group=bool(opts.group_col)) if freq else empty_series(),
    }
    if opts.group_col:
        tables["groups"] = _groups(con)
    return tables, _facts(con, added, freq)


def _with_sentiment(stats: pd.DataFrame, key: str) -> pd.DataFrame:
    """documents and positive/neutral/negative counts per ``key``; keys whose documents hold no sentiment at all
    get 0.0 (floats, as pandas' join and fillna would give them)."""
    out = stats.set_index(key)[["documents"]]
    counts = stats.loc[stats["scored"] > 0].set_index(key)[list(SENTIMENTS)].astype(np.int64)
    return out.join(counts).fillna(0)


def _topics(con, model, phrases: dict[int, dict[str, list[str]]]) -> pd.DataFrame:
    stats = con.execute(stats_sql(["topic"], RESULTS)).df()
    out = _with_sentiment(stats, "topic")
    out["share"] = out["documents"] / out["documents"].sum()
    out["mean_polarity"] = stats.set_index("topic")["mean_polarity"]
    fitted = {t.id: t for t in model.topics_}
    out = out.reset_index()
    out["label"] = [fitted[t].label if t in fitted else "outliers" for t in out["topic"]]
    out["terms"] = [", ".join(w for w, _ in fitted[t].terms) if t in fitted else "" for t in out["topic"]]
    out["representative"] = [list(fitted[t].representative) if t in fitted else [] for t in out["topic"]]
    out["positive_phrases"] = [phrases.get(int(t), {}).get("positive", []) for t in out["topic"]]
    out["negative_phrases"] = [phrases.get(int(t), {}).get("negative", []) for t in out["topic"]]
    out["fitted_size"] = [fitted[t].size if t in fitted else 0 for t in out["topic"]]
    columns = ["topic", "label", "documents", "share", "positive", "neutral", "negative", "mean_polarity", "terms"]
    return out[[*columns, "positive_phrases", "negative_phrases", "representative", "fitted_size"]]


def _topic_terms(model) -> pd.DataFrame:
    rows = [(t.id, rank, term, weight) for t in model.topics_ for rank, (term, weight) in enumerate(t.terms, 1)]
    return pd.DataFrame(rows, columns=["topic", "rank", "term", "weight"]).astype({"topic": np.int64})


def _groups(con) -> pd.DataFrame:
    stats = con.execute(stats_sql(["grp"], RESULTS)).df().rename(columns={"grp": "group"})
    stats["group"] = stats["group"].astype("string")
    out = _with_sentiment(stats, "group")
    out["mean_polarity"] = stats.set_index("group")["mean_polarity"]
    # the most frequent topic of each group; a tie goes to the topic that came first
    top = con.execute(
        f"SELECT grp, topic FROM (SELECT grp, topic, count(*) AS n, min(doc_id) AS first FROM {RESULTS} "
        "WHERE topic >= 0 AND grp IS NOT NULL GROUP BY grp, topic) "
        "QUALIFY row_number() OVER (PARTITION BY grp ORDER BY n DESC, first) = 1"
    ).df()
    top = top.set_index(top["grp"].astype("string"))["topic"]
    out["top_topic"] = top.reindex(out.index).astype("Int64")
    return out.reset_index()


def _facts(con, added: int, freq: str | None) -> dict[str, Any]:
    counts = ", ".join(f"count(*) FILTER (WHERE sentiment = '{label}')" for label in SENTIMENTS)
    documents, topics, outliers, *sentiment = con.execute(
        f"SELECT count(*), count(DISTINCT topic) FILTER (WHERE topic >= 0), count(*) FILTER (WHERE topic < 0), "
        f"{counts} "
        f"FROM {RESULTS}"
    ).fetchone()
    return {
        "documents": documents,
        "documents_added": added,
        "topics": topics,
        "outliers": outliers,
        "sentiment": dict(zip(SENTIMENTS, sentiment, strict=True)),
        "freq": freq,
    }
