"""Seeded (guided) topics: lists of seed words, each pulling the documents near it into one topic.

A seed's words, joined into one text, are embedded by the analysis's own embedder. Embeddings of a
corpus share a common direction (every review is "a review"), which makes every document look
somewhat like every seed, so both documents and seeds are compared after removing the corpus's
mean unit vector; a document joins the seed it is nearest to when that centred cosine similarity
is at least ``threshold``. Seeded documents keep their seed's topic whatever the clusterer said.

Seed files: TOML whose keys name topics (``battery = ["battery", "charger", "电池"]``), or a text
file with one topic's seed words per line (split on whitespace or commas; ``#`` starts a comment).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np

from megasense.analytics.vectors import blocks, normalize
from megasense.errors import MegasenseInputError

SEED_THRESHOLD = 0.3


def read_seed_topics(path: str | Path) -> list[list[str]]:
    """Seed words per topic from a ``.toml`` file or a text file of one topic per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MegasenseInputError(f"{path}: cannot read the seed topics ({exc})") from None
    seeds = _toml(path, text) if path.suffix.lower() == ".toml" else _lines(text)
    if not seeds:
        raise MegasenseInputError(f"{path}: holds no seed words; expected one topic's words per line (or TOML lists)")
    return seeds


def _toml(path: Path, text: str) -> list[list[str]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MegasenseInputError(f"{path}: not valid TOML ({exc})") from None
    seeds = []
    for name, words in data.items():
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise MegasenseInputError(
                f"{path}: key {name!r} holds {words!r}; expected a list of seed words, e.g. "
                f'{name} = ["battery", "charger"]'
            )
        seeds.append([w.strip() for w in words])
    return seeds


def _lines(text: str) -> list[list[str]]:
    seeds = []
    for line in text.splitlines():
        words = [w for w in re.split(r"[\s,，、]+", line.split("#", 1)[0]) if w]
        if words:
            seeds.append(words)
    return seeds


def seed_assignments(
    vectors: np.ndarray, weights: np.ndarray, seed_vectors: np.ndarray, threshold: float = SEED_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """(seed index or -1, centred cosine similarity to it) for each row of ``vectors`` (read in blocks).

    ``weights``: how many documents each row stands for (the corpus mean counts duplicates); a
    row of weight 0 (no words) never joins a seed.
    """
    weights = np.asarray(weights, dtype=np.float64)
    rows = np.arange(len(weights))
    mean = np.zeros(vectors.shape[1], dtype=np.float64)
    for start, block in blocks(vectors, rows):
        mean += weights[start : start + len(block)] @ block
    mean = (mean / max(weights.sum(), 1e-12)).astype(np.float32)
    seeds = normalize(normalize(np.asarray(seed_vectors, dtype=np.float32)) - mean)
    best = np.zeros(len(rows), dtype=np.int64)
    similarity = np.zeros(len(rows), dtype=np.float32)
    for start, block in blocks(vectors, rows):
        sims = normalize(block - mean) @ seeds.T  # (block, seeds)
        best[start : start + len(block)] = sims.argmax(axis=1)
        similarity[start : start + len(block)] = sims.max(axis=1)
    chosen = np.where((similarity >= threshold) & (weights > 0), best, -1)
    return chosen.astype(np.int64), similarity


def drop_small(labels: np.ndarray, counts: np.ndarray, size: int, keep: np.ndarray) -> np.ndarray:
    """Clusters left with fewer than ``size`` documents once seeds took theirs become outliers (seeded ones stay)."""
    kept = set(keep.tolist())
    out = labels.copy()
    for topic in set(labels.tolist()) - kept - {-1}:
        if counts[labels == topic].sum() < size:
            out[labels == topic] = -1
    return out
