"""Peak memory of ``megasense analyze`` as the corpus grows: 100k and 1M rows of real tweets.

The corpus repeats tweets-sentiment-en train.csv (48,675 tweets, ../shared/data) and perturbs each repeat
(a word appended, so nearly every row is a distinct text and is embedded, counted and clustered as one),
with a date and a group column. Each size runs ``analytics.analysis.analyze`` in a fresh subprocess and
reports that process's peak RSS (``ru_maxrss``), the wall time and the stage timings.

Embeddings: the real encoder (all-minilm-l6-v2) runs ~300 texts/s on this 2-core machine, so 1M rows would
take about an hour for the encoder alone; ``--embedder hashing`` (the default here) gives 384-dim hashed
bag-of-words-and-bigrams vectors instead (scikit-learn's ``HashingVectorizer``), which exercises every
other stage (dedup, storage, term counts, topic fitting, assignment, tables) at full size and puts the
same bytes per row on disk. Sentiment: a word-list scorer for the same reason (``--scorer lexicon``), or
``--scorer none``. ``--embedder real`` measures the real encoder (use it with a small ``--sizes``).

Topics are found in a sample (``TopicModel.cluster_sample``, 20,000 distinct documents) and the rest assigned
block by block, so the reducer and clusterer cost the same at 100k and 1M rows; ``--reducer pca`` skips UMAP's
transform of that sample (minutes on this machine), which changes the constant, not the growth. HDBSCAN finds
no dense group in hashed vectors (0 topics: every document an outlier); ``--clusterer kmeans`` gives topics,
so assignment, per-topic similarities and the per-topic tables run at full size too.

    .venv/bin/python benchmarks/analyze_memory.py --sizes 100000,1000000 --reducer pca [--clusterer kmeans]

Measured 2026-12-07 (``--reducer pca``, hashing embedder, lexicon scorer; 2 cores, load average 1-3):

    rows        before (per-row state in memory)   now (per-row state in DuckDB)   now, --clusterer kmeans
    100,000     844 MB in 76 s                      659 MB in 38 s                  717 MB in 23 s, 3 topics
    1,000,000   2,162 MB in 136 s                   751 MB in 153 s                 780 MB in 121 s, 6 topics

1M rows now peak at 1.14x (kmeans 1.09x) of 100k rows' peak, where they were 2.56x. Nothing is held in
memory per row: rows, hashes, dates and groups go to a DuckDB work database (``store.WORK_MEMORY``, 128 MB,
caps DuckDB's own share), distinct texts are found there in SQL, embeddings and term counts go to files
read back a block at a time, and every table is counted in SQL. What grows is DuckDB filling its 128 MB,
a few numbers per distinct text (~150 bytes: counts, topics, offsets; ``tests/test_analytics_memory.py``)
and the vocabulary, which grows with new words and word pairs, not with rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, peak_rss_mb

SUFFIXES = ["today", "again", "lol", "wow", "now", "honestly", "indeed", "tbh", "btw", "seriously", "anyway", "ok"]
POSITIVE = {"love", "great", "good", "happy", "best", "awesome", "thanks", "win", "nice", "excited"}
NEGATIVE = {"hate", "bad", "worst", "sad", "awful", "angry", "fail", "sucks", "terrible", "sorry"}


class HashingEmbedder:
    """384-dim hashed word and bigram counts: an embedder for memory measurements at sizes the encoder
    cannot reach here (not a semantic model)."""

    name = "hashing-384"

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.vectorizer = HashingVectorizer(n_features=384, ngram_range=(1, 2), alternate_sign=True, norm="l2")

    def embed(self, texts):
        return self.vectorizer.transform(texts).toarray().astype(np.float32)


class LexiconScorer:
    """Positive/negative word counts as a sentiment label: a scorer that costs nothing."""

    name = "lexicon"

    def predict(self, texts):
        from types import SimpleNamespace

        labels, scores = [], []
        for text in texts:
            words = set(text.lower().split())
            balance = len(words & POSITIVE) - len(words & NEGATIVE)
            labels.append("positive" if balance > 0 else "negative" if balance < 0 else "neutral")
            scores.append(0.5 + min(abs(balance), 4) / 8)
        return SimpleNamespace(labels=labels, scores=np.asarray(scores))


def build_corpus(path: Path, rows: int) -> None:
    """``rows`` perturbed repeats of the real tweets, with a date (over 2026) and a group (10 values)."""
    import pandas as pd

    tweets = pd.read_csv(SHARED_DATA / "tweets-sentiment-en" / "train.csv", usecols=["text"], dtype=str)
    base = tweets["text"].fillna("").tolist()
    rng = np.random.default_rng(0)
    days = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 365, rows), unit="D")
    block = 100_000
    for start in range(0, rows, block):
        index = np.arange(start, min(rows, start + block))
        texts = [
            base[i % len(base)] if i < len(base) else f"{base[i % len(base)]} {SUFFIXES[(i // len(base)) % 12]} {i}"
            for i in index.tolist()
        ]
        frame = pd.DataFrame(
            {"text": texts, "date": days[index].strftime("%Y-%m-%d"), "group": [f"g{i % 10}" for i in index]}
        )
        frame.to_csv(path, mode="a", header=start == 0, index=False)


def run_one(source: Path, out: Path, embedder: str, scorer: str, reducer: str, clusterer: str) -> None:
    """The child process: one analysis, then its peak RSS and timings as JSON on the last line."""
    import torch

    from megasense.analytics.analysis import analyze

    torch.set_num_threads(1)
    started = time.perf_counter()
    result = analyze(
        source,
        out,
        embedder=HashingEmbedder() if embedder == "hashing" else None,
        embedding_model="all-minilm-l6-v2" if embedder == "real" else None,
        scorer={"lexicon": LexiconScorer(), "none": False, "model": None}[scorer],
        reducer=reducer,
        clusterer=clusterer,
        time_col="date",
        group_col="group",
        lang="en",
        report=False,
    )
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rss_mb": peak_rss_mb(),
                "seconds": seconds,
                "documents": result.summary["documents"],
                "topics": result.summary["topics"],
                "timings": result.summary["timings"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="corpus sizes, comma-separated")
    parser.add_argument("--embedder", choices=["hashing", "real"], default="hashing")
    parser.add_argument("--scorer", choices=["lexicon", "none", "model"], default="lexicon")
    parser.add_argument("--reducer", choices=["auto", "umap", "pca"], default="auto")
    parser.add_argument("--clusterer", choices=["hdbscan", "kmeans"], default="hdbscan")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_one(Path(args.child[0]), Path(args.child[1]), args.embedder, args.scorer, args.reducer, args.clusterer)
        return
    work = Path(tempfile.mkdtemp(prefix="megasense-analyze-memory-"))
    settings = f"embedder {args.embedder}, scorer {args.scorer}, reducer {args.reducer}, clusterer {args.clusterer}"
    print(f"{settings}; work in {work}")
    for size in [int(s) for s in args.sizes.split(",")]:
        source = work / f"tweets-{size}.csv"
        build_corpus(source, size)
        child = [
            sys.executable,
            __file__,
            "--embedder",
            args.embedder,
            "--scorer",
            args.scorer,
            "--reducer",
            args.reducer,
            "--clusterer",
            args.clusterer,
        ]
        done = subprocess.run(
            [*child, "--child", str(source), str(work / f"analysis-{size}")], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"analyze of {size:,} rows failed:\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        stages = ", ".join(f"{k} {v:.0f}s" for k, v in report["timings"].items() if v >= 1)
        print(
            f"{size:>9,} rows: peak RSS {report['rss_mb']:7.0f} MB, {report['seconds']:7.0f} s, "
            f"{report['topics']} topics ({stages})",
            flush=True,
        )


if __name__ == "__main__":
    main()
