"""Topic quality and speed: megasense's TopicModel vs BERTopic on the same embeddings, in one run.

Quality: NMI and ARI of the topics against known labels (outliers count as one more cluster, as a
user would see them), mean and spread over ``--seeds``:
  - clinc150/val.csv (3,100 requests; 150 intents in 10 domains, plus out-of-scope), all-MiniLM-L6-v2;
  - a Chinese corpus of five sources from ../shared/data (food delivery, hotel and product reviews,
    stock forum, Weibo, news headlines; --zh-per-source each), multilingual-e5-small, against the source.
Both models get the same embeddings and the same UMAP settings (15 neighbours, 5 dimensions, cosine,
min_dist 0, the seed); they differ in clustering and outlier handling. BERTopic is skipped, with a note,
where it is not installed (pip install bertopic --no-deps; it imports hdbscan and umap-learn).

Speed (``--throughput N``): documents/s of each stage of ``megasense.analytics.analyze`` on N distinct
English posts (tweets, then SST-2 sentences), and the peak memory of the process that runs it.
Embedding and scoring N posts on a small CPU takes long, so the encoder's rate is measured on
``--embed-sample`` posts and the sentiment model's on ``--sentiment-sample``; the analysis itself
runs without sentiment, and its embedder gives, per post, a real embedding picked by the post's hash
plus noise (the clustering sees N distinct points of realistic structure).

    python benchmarks/topics.py                       # both corpora, 3 seeds
    python benchmarks/topics.py --corpus clinc --seeds 0
    python benchmarks/topics.py --merge-to 5 10     # also merged to 5 and 10 topics (--topics N)
    python benchmarks/topics.py --corpus none --throughput 100000
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from _common import SHARED_DATA, peak_rss_mb, read_texts

ZH_SOURCES = {
    "food-delivery": ("waimai-zh/all.csv", "text"),
    "reviews": ("chnsenticorp/train.csv", "text"),
    "stock-forum": ("finfe-zh/train.csv", "text"),
    "weibo": ("weibo-zh-subset/all.csv", "text"),
    "news": ("chinese-news-spy/data/CH.csv", "Text"),
}


def clinc() -> tuple[list[str], dict[str, list[str]]]:
    with open(SHARED_DATA / "clinc150/val.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], {"intent": [r["intent"] for r in rows], "domain": [r["domain"] for r in rows]}


def chinese(per_source: int, seed: int = 0) -> tuple[list[str], dict[str, list[str]]]:
    texts, labels = [], []
    for name, (path, column) in ZH_SOURCES.items():
        pool = list(dict.fromkeys(t.strip()[:300] for t in read_texts(path, column) if t.strip()))
        random.Random(seed).shuffle(pool)
        texts += pool[:per_source]
        labels += [name] * min(per_source, len(pool))
    return texts, {"source": labels}


def embeddings(model: str, texts: list[str], cache: Path, key: str) -> tuple[np.ndarray, float]:
    """(embeddings, documents/s); cached by corpus so repeated runs measure the topic models only."""
    path = cache / f"{key}-{model}-{len(texts)}.npy"
    if path.exists():
        return np.load(path), float("nan")
    import megasense
    from megasense.predictors.embedding import SentenceEmbedder

    embedder = SentenceEmbedder(megasense.load_model(model))
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    rate = len(texts) / (time.perf_counter() - started)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors, rate


def _umap(seed: int):
    from umap import UMAP

    return UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed, n_jobs=1)


def run_megasense(texts, vectors, seed, n_topics=None):
    from megasense.analytics.topics import TopicModel

    model = TopicModel(reducer=_umap(seed), seed=seed, n_topics=n_topics)
    started = time.perf_counter()
    topics = model.fit_transform(texts, vectors)
    return topics, time.perf_counter() - started


def run_bertopic(texts, vectors, seed, chinese_text: bool, n_topics=None):
    from bertopic import BERTopic

    options = {}
    if chinese_text:  # keywords only; clustering does not read words
        from sklearn.feature_extraction.text import CountVectorizer

        from megasense.analytics.text import Segmenter

        options["vectorizer_model"] = CountVectorizer(analyzer=Segmenter())
    if n_topics:
        options["nr_topics"] = n_topics  # BERTopic's own merging: agglomerative on c-TF-IDF topic vectors
    model = BERTopic(umap_model=_umap(seed), **options)
    started = time.perf_counter()
    topics, _ = model.fit_transform(texts, embeddings=vectors)
    return np.asarray(topics), time.perf_counter() - started


def bertopic_available() -> bool:
    try:
        import bertopic  # noqa: F401
    except ImportError as exc:
        print(f"  BERTopic unavailable ({exc}); pip install bertopic --no-deps hdbscan umap-learn")
        return False
    return True


def score(topics, truth: dict[str, list[str]]) -> dict[str, float]:
    out = {"topics": len(set(topics.tolist()) - {-1}), "outliers": float(np.mean(topics < 0))}
    for name, labels in truth.items():
        out[f"nmi_{name}"] = normalized_mutual_info_score(labels, topics)
        out[f"ari_{name}"] = adjusted_rand_score(labels, topics)
    return out


def quality(name: str, texts, truth, model: str, seeds, cache: Path, chinese_text: bool, merge_to=()) -> dict:
    vectors, rate = embeddings(model, texts, cache, name)
    print(f"\n{name}: {len(texts):,} documents, {model} embeddings ({rate:.0f} docs/s; nan = cached)")
    systems = {"megasense": lambda s: run_megasense(texts, vectors, s)}
    for n in merge_to:  # --topics N: the same fit, merged along the topic hierarchy
        systems[f"megasense --topics {n}"] = lambda s, n=n: run_megasense(texts, vectors, s, n)
    if bertopic_available():
        systems["bertopic"] = lambda s: run_bertopic(texts, vectors, s, chinese_text)
        for n in merge_to:
            systems[f"bertopic nr_topics={n}"] = lambda s, n=n: run_bertopic(texts, vectors, s, chinese_text, n)
    results: dict[str, list[dict]] = {k: [] for k in systems}
    for seed in seeds:
        for system, fit in systems.items():
            topics, seconds = fit(seed)
            results[system].append({**score(topics, truth), "seconds": seconds})
    table = {}
    metrics = list(results["megasense"][0])
    print(f"  {'metric':<14}" + "".join(f"{s:>22}" for s in systems))
    for metric in metrics:
        cells = []
        for system in systems:
            values = [r[metric] for r in results[system]]
            mean = statistics.fmean(values)
            spread = statistics.pstdev(values) if len(values) > 1 else 0.0
            table.setdefault(system, {})[metric] = {"mean": mean, "std": spread}
            cells.append(f"{mean:>14.3f} ± {spread:<5.3f}")
        print(f"  {metric:<14}" + "".join(cells))
    if "bertopic" in table:
        for metric in (m for m in metrics if m.startswith(("nmi", "ari"))):
            ratio = table["megasense"][metric]["mean"] / max(1e-9, table["bertopic"][metric]["mean"])
            print(f"  megasense/bertopic {metric}: {ratio:.3f}x")
    return {"documents": len(texts), "embedding_model": model, "embed_docs_per_s": rate, "results": table}


class _Synthetic:
    """The throughput run's stand-in for the encoder: per text, a real embedding picked by its hash, plus noise.

    Computed on the fly, so the benchmark holds no (N, dim) array: the peak memory measured is the
    pipeline's own.
    """

    name = "all-minilm-l6-v2"

    def __init__(self, real: np.ndarray) -> None:
        self.real = real.astype(np.float32)

    def embed(self, texts):
        out = np.empty((len(texts), self.real.shape[1]), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = zlib.crc32(text.encode("utf-8", "surrogatepass"))
            out[i] = self.real[seed % len(self.real)] + np.random.default_rng(seed).normal(0, 0.02, out.shape[1])
        return out


def _analyze_child(source: str, out: str, real: np.ndarray, queue) -> None:
    """``analyze`` in its own process, so its peak memory is not the encoder's."""
    from megasense.analytics import analyze

    result = analyze(source, out, embedder=_Synthetic(real), scorer=False, time_col="date", group_col="board")
    queue.put({"summary": result.summary, "peak_rss_mb": _high_water_mb()})


def _high_water_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it starts afresh at exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


def _sentiment_rate(texts: list[str]) -> float:
    from megasense.predictors.sentiment import load_predictor

    predictor = load_predictor("default")
    predictor.predict(texts[:8])
    started = time.perf_counter()
    for start in range(0, len(texts), 256):
        predictor.predict(texts[start : start + 256])
    return len(texts) / (time.perf_counter() - started)


def throughput(n: int, sample: int, cache: Path, sentiment_sample: int) -> dict:
    import multiprocessing

    texts = list(dict.fromkeys(read_texts("tweets-sentiment-en/train.csv") + read_texts("sst2/train.csv")))[:n]
    picked = texts[:sample]
    real, rate = embeddings("all-minilm-l6-v2", picked, cache, "throughput")
    sentiment = _sentiment_rate(texts[:sentiment_sample]) if sentiment_sample else None
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "posts.csv"
        with open(source, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "date", "board"])
            writer.writerows(
                (t, f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}", f"board-{i % 7}") for i, t in enumerate(texts)
            )
        documents = len(texts)
        del texts
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ.setdefault(name, "1")  # the analysis runs on one core, as a shared machine allows
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        child = context.Process(target=_analyze_child, args=(str(source), str(Path(tmp) / "out"), real, queue))
        child.start()
        got = queue.get()
        child.join()
    summary = got["summary"]
    stages = {
        k: {"seconds": v, "docs_per_s": round(documents / v, 1) if v else None} for k, v in summary["timings"].items()
    }
    stages["embed (encoder, measured on sample)"] = {"docs_per_s": rate, "documents": len(picked)}
    if sentiment is not None:
        stages["sentiment (model, measured on sample)"] = {
            "docs_per_s": round(sentiment, 1),
            "documents": sentiment_sample,
        }
    print(
        f"\nthroughput on {documents:,} documents ({summary['topics']} topics); analyze's peak RSS "
        f"{got['peak_rss_mb']:.0f} MB (this process, with the encoders: {peak_rss_mb():.0f} MB)"
    )
    for stage, row in stages.items():
        print(f"  {stage:<38} {row}")
    return {
        "documents": documents,
        "stages": stages,
        "topic_model": summary["topic_model"],
        "analyze_peak_rss_mb": got["peak_rss_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=["both", "clinc", "zh", "none"], default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--zh-per-source", type=int, default=400)
    parser.add_argument("--throughput", type=int, default=0, help="documents for the stage throughput run (0: off)")
    parser.add_argument("--embed-sample", type=int, default=2000)
    parser.add_argument(
        "--sentiment-sample", type=int, default=1000, help="posts to time the sentiment model on (0: off)"
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "megasense-bench")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--merge-to", type=int, nargs="*", default=[], help="also fit with --topics N (BERTopic: nr_topics N)"
    )
    args = parser.parse_args()
    report = {}
    if args.corpus in ("both", "clinc"):
        texts, truth = clinc()
        report["clinc150"] = quality(
            "clinc150", texts, truth, "all-minilm-l6-v2", args.seeds, args.cache, False, args.merge_to
        )
    if args.corpus in ("both", "zh"):
        texts, truth = chinese(args.zh_per_source)
        report["chinese"] = quality(
            "chinese", texts, truth, "multilingual-e5-small", args.seeds, args.cache, True, args.merge_to
        )
    if args.throughput:
        report["throughput"] = throughput(args.throughput, args.embed_sample, args.cache, args.sentiment_sample)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
