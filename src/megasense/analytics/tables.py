"""The analysis as tidy tables: documents, topics, topic_terms, timeseries (and groups, with a group column).

Everything here is counting over columns already computed (sentiment, topics, dates); no model runs.
The input's own columns are kept in ``documents`` as they were; one whose name clashes with a column
the analysis adds is kept as ``input_<name>``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from megasense.analytics.represent import key_phrases
from megasense.analytics.timeseries import build_timeseries, choose_freq, period_start

ADDED = ("doc_id", "batch", "row", "time_utc", "period", "sentiment", "score", "polarity", "topic", "topic_label")
ADDED += ("has_words",)


def input_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The input's own columns, one whose name clashes with an added column kept as ``input_<name>``."""
    return frame.rename(columns={c: f"input_{c}" for c in frame.columns if c in ADDED})


def build_tables(new: pd.DataFrame, X_new, model, opts, *, old: pd.DataFrame | None = None, X_old=None):
    """(tables by name, per-document results, facts for the summary) over the old documents and the new ones.

    ``new`` and ``old`` hold the small columns of each document (doc_id, batch, row, time_utc,
    sentiment, score, polarity, topic, has_words and the group column), never the texts; ``X_new``
    and ``X_old`` their (documents, terms) counts, for key phrases.
    """
    docs = new if old is None else pd.concat([old, new], ignore_index=True)
    docs["time_utc"] = pd.to_datetime(docs["time_utc"])
    timed = opts.time_col is not None
    freq = opts.freq or (choose_freq(docs["time_utc"].dt.tz_localize("UTC")) if timed else None)
    docs["period"] = period_start(docs["time_utc"].dt.tz_localize("UTC"), freq) if freq else pd.NaT
    names = {t.id: t.label for t in model.topics_}
    docs["topic_label"] = docs["topic"].map(names).fillna("outliers").astype("string")
    X_all = X_new if old is None else _vstack(X_old, X_new)
    sentiments = docs["sentiment"].fillna("").astype(str).tolist()
    phrases = key_phrases(X_all, docs["topic"].to_numpy(), sentiments, model.vocabulary_) if X_all.shape[1] else {}
    tables = {
        "topics": _topics(docs, model, phrases),
        "topic_terms": _topic_terms(model),
        "timeseries": build_timeseries(docs, freq, group_col=opts.group_col) if freq else _empty_series(),
    }
    if opts.group_col:
        tables["groups"] = _groups(docs, opts.group_col)
    results = docs[["doc_id", "time_utc", "period", "topic", "topic_label", "has_words"]]
    facts = _facts(docs, new, freq)
    return tables, results, facts


def _vstack(a, b):
    from scipy import sparse

    return sparse.vstack([a, b]).tocsr()


def _sentiment_counts(grouped) -> pd.DataFrame:
    counts = grouped["sentiment"].value_counts().unstack(fill_value=0)
    for label in ("positive", "neutral", "negative"):
        if label not in counts:
            counts[label] = 0
    return counts[["positive", "neutral", "negative"]].astype(np.int64)


def _topics(docs: pd.DataFrame, model, phrases: dict[int, dict[str, list[str]]]) -> pd.DataFrame:
    grouped = docs.groupby("topic")
    out = grouped.size().rename("documents").to_frame()
    out = out.join(_sentiment_counts(grouped)).fillna(0)
    out["share"] = out["documents"] / len(docs)
    out["mean_polarity"] = grouped["polarity"].mean()
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


def _groups(docs: pd.DataFrame, group_col: str) -> pd.DataFrame:
    frame = docs.assign(group=docs[group_col].astype("string"))
    grouped = frame.groupby("group", dropna=False)
    out = grouped.size().rename("documents").to_frame().join(_sentiment_counts(grouped)).fillna(0)
    out["mean_polarity"] = grouped["polarity"].mean()
    top = frame[frame["topic"] >= 0].groupby("group")["topic"].agg(lambda s: int(s.value_counts().index[0]))
    out["top_topic"] = top.reindex(out.index).astype("Int64")
    return out.reset_index()


def _empty_series() -> pd.DataFrame:
    return build_timeseries(pd.DataFrame({"period": pd.Series([], dtype="datetime64[ns]")}), "day")


def _facts(docs, new, freq) -> dict[str, Any]:
    counts = docs["sentiment"].value_counts()
    return {
        "documents": len(docs),
        "documents_added": len(new),
        "topics": int(docs.loc[docs["topic"] >= 0, "topic"].nunique()),
        "outliers": int((docs["topic"] < 0).sum()),
        "sentiment": {label: int(counts.get(label, 0)) for label in ("positive", "neutral", "negative")},
        "freq": freq,
    }
