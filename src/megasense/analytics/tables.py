"""The analysis as tidy tables: documents, topics, topic_terms, timeseries (and groups, with a group column).

Everything here is counting over columns already computed (sentiment, topics, dates); no model runs.
The input's own columns are kept in ``documents`` as they were; one whose name clashes with a column
the analysis adds is kept as ``input_<name>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from megasense.analytics.represent import key_phrases
from megasense.analytics.timeseries import ParsedTimes, build_timeseries, choose_freq, period_start
from megasense.data.tables import TableError, read_chunks, require_column

ADDED = ("doc_id", "batch", "row", "time_utc", "period", "sentiment", "score", "polarity", "topic", "topic_label")
ADDED += ("has_words",)


def read_input(source: Path, text_col: str, time_col: str | None, group_col: str | None):
    """(frame, file row numbers) of the whole input; the named columns must exist."""
    frames, rows = [], []
    for chunk in read_chunks(source):
        require_column(chunk.frame, text_col, source)
        if time_col:
            require_column(chunk.frame, time_col, source, option="--time-col")
        if group_col:
            require_column(chunk.frame, group_col, source, option="--group-col")
        frames.append(chunk.frame)
        rows.append(np.arange(chunk.first_row, chunk.first_row + len(chunk.frame)))
    if not frames:
        raise TableError(f"{source}: the file has a header but no rows")
    frame = pd.concat(frames, ignore_index=True)
    return frame, np.concatenate(rows)


def _input_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={c: f"input_{c}" for c in frame.columns if c in ADDED})


def build_tables(frame, rows, texts, times: ParsedTimes | None, sentiment, topics, model, opts, *, old=None):
    """(tables by name, facts for the summary) over the old documents (when appending) and the new ones."""
    labels, scores, polarity = sentiment
    warnings: list[str] = []
    first_id = 0 if old is None else int(old["doc_id"].max()) + 1
    batch = 0 if old is None else int(old["batch"].max()) + 1
    new = _input_columns(frame.reset_index(drop=True))
    text_col = opts.text_col if opts.text_col in new else f"input_{opts.text_col}"
    new.insert(0, "doc_id", np.arange(first_id, first_id + len(new), dtype=np.int64))
    new.insert(1, "batch", batch)
    new.insert(2, "row", rows.astype(np.int64))
    new["time_utc"] = times.times.dt.tz_convert("UTC").dt.tz_localize(None) if times is not None else pd.NaT
    new["sentiment"] = pd.Series(labels, dtype="string")
    new["score"], new["polarity"], new["topic"] = scores, polarity, topics.astype(np.int64)
    X_new = _terms(model, texts, fitted=old is None)
    new["has_words"] = np.asarray(X_new.sum(axis=1)).ravel() > 0
    docs = new if old is None else pd.concat([old.drop(columns=["period", "topic_label"]), new], ignore_index=True)
    docs["time_utc"] = pd.to_datetime(docs["time_utc"])
    freq = opts.freq or (choose_freq(docs["time_utc"].dt.tz_localize("UTC")) if times is not None else None)
    docs["period"] = period_start(docs["time_utc"].dt.tz_localize("UTC"), freq) if freq else pd.NaT
    names = {t.id: t.label for t in model.topics_}
    docs["topic_label"] = docs["topic"].map(names).fillna("outliers").astype("string")
    if old is not None:
        old_texts = [("" if v is None or v != v else str(v)) for v in old[text_col].tolist()]
        X_all = _vstack(model.vectorizer_.transform(old_texts), X_new)
    else:
        X_all = X_new
    sentiments = docs["sentiment"].fillna("").astype(str).tolist()
    phrases = key_phrases(X_all, docs["topic"].to_numpy(), sentiments, model.vocabulary_) if X_all.shape[1] else {}
    tables = {
        "documents": docs[[*ADDED[:3], *[c for c in docs.columns if c not in ADDED], *ADDED[3:]]],
        "topics": _topics(docs, model, phrases),
        "topic_terms": _topic_terms(model),
        "timeseries": build_timeseries(docs, freq, group_col=opts.group_col) if freq else _empty_series(),
    }
    if opts.group_col:
        tables["groups"] = _groups(docs, opts.group_col)
    wordless = int((~new["has_words"]).sum())
    if wordless:
        warnings.append(f"{wordless} documents hold no words (only URLs, emoji, numbers or nothing); topic -1")
    facts = _facts(docs, new, texts, times, freq, wordless)
    facts["warnings"] = warnings
    return tables, facts


def _terms(model, texts: list[str], *, fitted: bool):
    if fitted and hasattr(model, "document_terms_"):
        return model.document_terms_[model.document_index_]
    if not model.vocabulary_:
        from scipy import sparse

        return sparse.csr_matrix((len(texts), 0), dtype=np.int32)
    return model.vectorizer_.transform(texts).tocsr()


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


def _facts(docs, new, texts, times, freq, wordless) -> dict[str, Any]:
    counts = docs["sentiment"].value_counts()
    facts: dict[str, Any] = {
        "documents": len(docs),
        "documents_added": len(new),
        "topics": int(docs.loc[docs["topic"] >= 0, "topic"].nunique()),
        "outliers": int((docs["topic"] < 0).sum()),
        "duplicates_added": len(texts) - len(set(texts)),
        "empty_texts_added": sum(not t.strip() for t in texts),
        "wordless_added": wordless,
        "sentiment": {label: int(counts.get(label, 0)) for label in ("positive", "neutral", "negative")},
        "freq": freq,
    }
    if times is not None:
        valid = docs["time_utc"].dropna()
        facts["dates"] = {
            "parsed": int(times.times.notna().sum()),
            "not_dates": len(times.bad_rows),
            "ambiguous_time_zone": len(times.ambiguous_rows),
            "missing": times.missing,
            "first": str(valid.min()) if len(valid) else None,
            "last": str(valid.max()) if len(valid) else None,
        }
    return facts
