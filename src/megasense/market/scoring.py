"""Sentiment of texts, cached on disk by (model, text hash): a rerun with new prices scores nothing again.

The room never loads a model: the caller hands in any object with ``predict(texts)`` returning labels,
scores and, where it can, ``probs`` over ``label_names`` (megasense's predictors do). Polarity is
P(positive) - P(negative) where probabilities are given, else +-score by label. The cache is one
DuckDB file (default ``$MEGASENSE_HOME/market/scores.duckdb``); texts are hashed with BLAKE2b, so
the cache holds no text. Texts are scored a chunk at a time, each distinct text once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from megasense.errors import MegasenseInputError

SIGN = {"positive": 1.0, "bullish": 1.0, "neutral": 0.0, "negative": -1.0, "bearish": -1.0}


@runtime_checkable
class SentimentScorer(Protocol):
    def predict(self, texts: Sequence[str]): ...


def polarity_of(result, n: int, scorer_name: str) -> tuple[np.ndarray, list[str]]:
    """(polarity in [-1, 1], labels) from a scorer's result; a malformed result names what is wrong."""
    labels = [str(x) for x in getattr(result, "labels", ())]
    scores = np.asarray(getattr(result, "scores", ()), dtype=np.float64)
    if len(labels) != n or len(scores) != n:
        raise ValueError(
            f"the scorer {scorer_name} returned {len(labels)} labels and {len(scores)} scores for {n} texts"
        )
    probs, names = getattr(result, "probs", None), [str(x) for x in getattr(result, "label_names", None) or ()]
    pos = next((names.index(k) for k in ("positive", "bullish") if k in names), None)
    neg = next((names.index(k) for k in ("negative", "bearish") if k in names), None)
    if probs is not None and pos is not None and neg is not None:
        probs = np.asarray(probs, dtype=np.float64)
        return probs[:, pos] - probs[:, neg], labels
    return np.array([SIGN.get(label.lower(), 0.0) for label in labels]) * scores, labels


def text_hashes(texts: Sequence[str]) -> list[str]:
    return [hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest() for t in texts]


class ScoreCache:
    """Polarity and label per (model key, text hash) in a DuckDB file; ``path=None`` keeps it in memory."""

    def __init__(self, path: str | Path | None, model_key: str) -> None:
        import duckdb

        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.model_key = model_key
        try:
            self.con = duckdb.connect(":memory:" if path is None else str(path))
        except duckdb.IOException as exc:  # DuckDB lets one process write a file at a time
            raise MegasenseInputError(
                f"{path}: the score cache is in use by another process ({str(exc).splitlines()[0][:200]}); wait "
                "for it to finish, or pass --cache OTHER.duckdb or --no-cache"
            ) from None
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS scores (model VARCHAR, hash VARCHAR, polarity DOUBLE, label VARCHAR, "
            "PRIMARY KEY (model, hash))"
        )
        self.hits = 0
        self.scored = 0

    def lookup(self, hashes: list[str]) -> pd.DataFrame:
        wanted = pd.DataFrame({"hash": hashes})
        self.con.register("wanted", wanted)
        try:
            return self.con.execute(
                "SELECT s.hash, s.polarity, s.label FROM scores s JOIN wanted w USING (hash) WHERE s.model = ?",
                [self.model_key],
            ).df()
        finally:
            self.con.unregister("wanted")

    def add(self, frame: pd.DataFrame) -> None:
        frame = frame.assign(model=self.model_key)[["model", "hash", "polarity", "label"]]
        self.con.register("fresh", frame)
        try:
            self.con.execute("INSERT OR IGNORE INTO scores SELECT * FROM fresh")
        finally:
            self.con.unregister("fresh")

    def score(self, texts: Sequence[str], scorer: SentimentScorer) -> pd.DataFrame:
        """``polarity`` and ``label`` per text, in order: cached ones read, the rest scored once each and stored."""
        hashes = text_hashes(texts)
        known = self.lookup(sorted(set(hashes)))
        missing = sorted(set(hashes) - set(known["hash"]))
        new = set(missing)
        self.hits += sum(1 for h in hashes if h not in new)
        if missing:
            first = {h: t for h, t in zip(reversed(hashes), reversed(list(texts)))}
            batch = [first[h] for h in missing]
            polarity, labels = polarity_of(scorer.predict(batch), len(batch), type(scorer).__name__)
            fresh = pd.DataFrame({"hash": missing, "polarity": polarity, "label": labels})
            self.add(fresh)
            self.scored += len(batch)
            known = pd.concat([known, fresh], ignore_index=True)
        table = known.set_index("hash")
        return table.loc[hashes, ["polarity", "label"]].reset_index(drop=True)

    def close(self) -> None:
        self.con.close()
