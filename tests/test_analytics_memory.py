"""``analyze`` keeps nothing per row in Python, and only a few numbers per distinct text.

Per-row state lives in the work database (DuckDB, whose own memory is capped by ``store.WORK_MEMORY``); what
Python holds is per chunk, per block or per distinct text. ``tracemalloc`` sees every Python and NumPy
allocation, so a per-row array, list or DataFrame anywhere in the pipeline (ingest, dates, topics, tables,
writing) shows up as growth when the rows grow fourfold over the same distinct texts: the pipeline before
these tests held about 400 bytes a row (0.2 now). When the distinct texts grow fourfold, what may grow is
a few arrays of one number each, never one embedding each (a (texts, dim) array of centroids cost 1.5 GB
at a million texts).
"""

from __future__ import annotations

import csv
import random
import tracemalloc

import pytest

from _analytics_fakes import TOPICS, FakeEmbedder, FakeScorer, english_rows
from megasense.analytics import TopicModel, analyze, counts, vectors

DISTINCT = 240
SMALL = 4_000
ALLOWED_PER_ROW = 16
"""Bytes of peak Python memory each extra row may add (a per-row int64 column alone would add 8)."""


def _corpus(path, rows: int):
    texts = english_rows(DISTINCT)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "date", "product", "note"])
        writer.writeheader()
        for i in range(rows):
            row = texts[i % DISTINCT]
            writer.writerow(
                {"text": row["text"], "date": f"2024-{1 + i % 3:02d}-{1 + i % 28:02d}", "product": row["product"]}
                | {"note": f"row {i}"}
            )
    return path


def _peak(tmp_path, rows: int) -> int:
    source = _corpus(tmp_path / f"in-{rows}.csv", rows)
    options = {"time_col": "date", "group_col": "product", "reducer": "pca", "min_topic_size": 10}
    tracemalloc.start()
    try:
        result = analyze(
            source,
            tmp_path / f"out-{rows}",
            embedder=FakeEmbedder(),
            scorer=FakeScorer(),
            chunk_size=500,
            report=False,
            forecast=False,
            explain=False,
            **options,
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.summary["documents"] == rows and result.summary["distinct_texts_added"] <= DISTINCT
    return peak


def test_peak_python_memory_does_not_grow_with_the_rows(tmp_path):
    _peak(tmp_path, DISTINCT)  # the first run imports what the pipeline imports lazily: not the rows' memory
    small, large = _peak(tmp_path, SMALL), _peak(tmp_path, 4 * SMALL)
    per_row = (large - small) / (3 * SMALL)
    assert per_row < ALLOWED_PER_ROW, (
        f"peak traced memory {small / 1e6:.1f} MB for {SMALL} rows, {large / 1e6:.1f} MB for {4 * SMALL}: "
        f"{per_row:.0f} bytes per extra row; something holds the rows in memory"
    )


class _Embedder(FakeEmbedder):
    """The fake embedder without its record of every text seen (which grows per text by design)."""

    def embed(self, texts):
        out = super().embed(texts)
        self.seen.clear()
        return out


WORDS = [w for words in TOPICS.values() for w in words] + ["great", "bad", "fine", "today", "again", "phone", "order"]
ALLOWED_PER_TEXT = 400
"""Bytes of peak Python memory each extra distinct text may add; a (texts, dim=256) float32 array adds 1,024."""


def _distinct_corpus(path, texts: int):
    """``texts`` distinct texts over a fixed vocabulary (so the vocabulary does not grow with them)."""
    rng, seen = random.Random(0), set()
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "date", "product"])
        while len(seen) < texts:
            topic = list(TOPICS)[len(seen) % 3]
            text = " ".join(rng.sample(TOPICS[topic], 3) + rng.sample(WORDS, 4))
            if text not in seen:
                seen.add(text)
                writer.writerow([text, f"2024-01-{1 + len(seen) % 28:02d}", "AB"[len(seen) % 2]])
    return path


def _peak_distinct(tmp_path, texts: int) -> int:
    source = _distinct_corpus(tmp_path / f"distinct-{texts}.csv", texts)
    model = TopicModel(reducer_kind="pca", min_topic_size=10, cluster_sample=300)  # the same sample at both sizes
    tracemalloc.start()
    try:
        result = analyze(
            source,
            tmp_path / f"distinct-out-{texts}",
            embedder=_Embedder(dim=256),
            scorer=FakeScorer(),
            topic_model=model,
            chunk_size=500,
            report=False,
            forecast=False,
            explain=False,
            time_col="date",
            group_col="product",
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.summary["distinct_texts_added"] == texts and result.summary["topics"] >= 2
    return peak


@pytest.mark.slow  # about 30 s: 7,800 distinct texts analysed under tracemalloc
def test_peak_python_memory_per_distinct_text_is_a_few_numbers(tmp_path, monkeypatch):
    # blocks far smaller than the corpus, so what is per block stays the same at both sizes
    monkeypatch.setattr(vectors, "BLOCK", 256)
    monkeypatch.setattr(counts, "BLOCK", 512)
    _peak_distinct(tmp_path, 300)  # the first run imports what the pipeline imports lazily
    small, large = _peak_distinct(tmp_path, 1_500), _peak_distinct(tmp_path, 6_000)
    per_text = (large - small) / 4_500
    assert per_text < ALLOWED_PER_TEXT, (
        f"peak traced memory {small / 1e6:.1f} MB for 1,500 distinct texts, {large / 1e6:.1f} MB for 6,000: "
        f"{per_text:.0f} bytes per extra text; something holds an embedding (or more) per text"
    )
