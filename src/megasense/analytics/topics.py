"""``TopicModel``: documents -> embeddings -> reduced -> clusters -> topics with keywords, as pluggable steps.

The pipeline is BERTopic's: an embedder (any object with ``embed(texts)``), a reducer and a clusterer
(any scikit-learn-style object with ``fit``), and a vectoriser (scikit-learn's ``CountVectorizer``
over ``Segmenter`` terms) whose counts give class-based TF-IDF keywords. Topic ``-1`` holds the
outliers: documents no dense group claims, and documents with no words at all (only URLs or emoji).

What the fitted model keeps (attributes ending in ``_``) is small and plain: a centroid per topic in
embedding space, a similarity threshold per topic, the keywords and the vocabulary. That is what
``save`` writes (safetensors + JSON, never pickle) and what ``transform`` needs: a new document goes
to the topic whose centroid is most similar, or to ``-1`` when it is less similar than nearly all of
that topic's own members. UMAP and HDBSCAN themselves are not kept, so new documents never need
them, and assigning topics to new documents leaves the old ones as they were.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.feature_extraction.text import CountVectorizer

from megasense.analytics import vectors as _vectors
from megasense.analytics.counts import has_terms
from megasense.analytics.guided import SEED_THRESHOLD, drop_small, seed_assignments
from megasense.analytics.hierarchy import cut, leaf_labels, topic_linkage, tree_from_records, tree_records, tree_table
from megasense.analytics.protocols import Embedder, Progress, no_progress
from megasense.analytics.represent import class_tfidf, readable_label, top_terms
from megasense.analytics.steps import auto_min_topic_size, default_clusterer, default_reducer
from megasense.analytics.text import Segmenter, TermCounter
from megasense.analytics.vectors import blocks, gather, group_means, nearest, normalize, similarity_to
from megasense.errors import CheckpointError, MegasenseInputError
from megasense.files.atomic import atomic_directory

FORMAT = "megasense-topic-model"
WEIGHTS, CONFIG = "topics.safetensors", "topics.json"


@dataclass
class Topic:
    id: int
    label: str
    size: int
    """Documents in the topic when it was fitted (duplicates included)."""
    terms: list[tuple[str, float]]
    """(term, c-TF-IDF weight), heaviest first."""
    representative: list[str] = field(default_factory=list)
    """The member texts nearest the topic's centre."""
    seed: list[str] = field(default_factory=list)
    """The seed words that formed this topic (``seed_topics``); empty for a topic the clusterer found."""


class TopicModel:
    """Topics of a corpus: ``fit`` / ``transform`` / ``fit_transform`` over texts (and optional embeddings)."""

    def __init__(
        self,
        embedder: Embedder | None = None,
        reducer: Any = None,
        clusterer: Any = None,
        vectorizer: CountVectorizer | None = None,
        *,
        reducer_kind: str = "auto",
        clusterer_kind: str = "hdbscan",
        min_topic_size: int | None = None,
        n_terms: int = 10,
        n_representative: int = 3,
        reduce_outliers: bool = True,
        outlier_quantile: float = 0.05,
        reduce_sample: int = 25_000,
        cluster_sample: int = 20_000,
        seed: int = 0,
        n_topics: int | None = None,
        seed_topics: Sequence[Sequence[str]] | None = None,
        seed_threshold: float = SEED_THRESHOLD,
    ) -> None:
        self.embedder = embedder
        self.reducer = reducer
        self.clusterer = clusterer
        self.vectorizer = vectorizer
        self.reducer_kind = reducer_kind
        self.clusterer_kind = clusterer_kind
        self.min_topic_size = min_topic_size
        self.n_terms = n_terms
        self.n_representative = n_representative
        self.reduce_outliers = reduce_outliers
        self.outlier_quantile = outlier_quantile
        self.reduce_sample = reduce_sample
        """Above this many distinct documents the reducer is fitted on a sample of them and applied in blocks."""
        self.cluster_sample = cluster_sample
        """Above this many distinct documents with words, topics are found in a sample of them; the rest are assigned
        to the nearest topic centre (or -1), so a corpus of millions fits in memory and time (HDBSCAN's time grows
        about quadratically: on 50,000 it ran over 25 minutes on a loaded 2-core machine)."""
        self.seed = seed
        self.n_topics = n_topics
        """Merge the topics found down to this many along the topic hierarchy (None: keep them all)."""
        self.seed_topics = [list(words) for words in seed_topics] if seed_topics else None
        """Seed words per topic; documents near a seed's embedding form its topic (needs ``embedder``)."""
        self.seed_threshold = seed_threshold

    # ----- fitting -------------------------------------------------------------------------------

    def fit(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> TopicModel:
        self.fit_transform(texts, embeddings)
        return self

    def fit_transform(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """Topic of every text (``-1``: outlier); duplicates are clustered once and share a topic."""
        texts = _check_texts(texts)
        if not texts:
            raise MegasenseInputError("no documents to find topics in")
        self._start()
        unique, first, inverse, counts = _unique(texts)
        vectors = self._embeddings(unique, texts, first, embeddings)
        X, vocabulary = self._count(unique)
        labels = self._fit_distinct(vectors, counts, X, vocabulary, lambda rows: [unique[i] for i in rows], no_progress)
        self.labels_ = labels[inverse]
        # The fit's (distinct texts, terms) counts and each text's row in them: later representations
        # (key phrases per sentiment) reuse them instead of segmenting the corpus again. Not saved.
        self.document_terms_, self.document_index_ = X, inverse
        return self.labels_

    def fit_distinct(
        self,
        vectors: np.ndarray,
        counts: np.ndarray,
        X: Any,
        vocabulary: list[str],
        texts_of: Callable[[np.ndarray], list[str]],
        progress: Progress = no_progress,
    ) -> np.ndarray:
        """Topics of distinct texts given by their rows, for corpora read in chunks; returns a topic per row.

        ``vectors``: (U, dim) embeddings, raw or unit length, possibly a VectorFile or memmap (read in blocks);
        ``counts``: how many documents each stands for; ``X``: (U, terms) counts over ``vocabulary``
        (``TermCounter``; in memory or a ``counts.TermFile``); ``texts_of(rows)``: the texts of a few rows (the
        representative posts).
        """
        self._start()
        self.vectorizer_ = self.vectorizer or _default_vectorizer()
        self.vectorizer_.vocabulary_ = {t: i for i, t in enumerate(vocabulary)}
        if not vocabulary:
            self.warnings_.append("no document holds any words (only URLs, emoji or numbers); no keywords")
        return self._fit_distinct(vectors, np.asarray(counts), X, vocabulary, texts_of, progress)

    def term_counter(self, directory: Path | None = None) -> TermCounter:
        """A ``TermCounter`` with this model's analyzer (and, once fitted, its vocabulary); with a ``directory``
        it writes the counts there (a ``counts.TermFile``) instead of holding them."""
        vectorizer = getattr(self, "vectorizer_", None) or self.vectorizer or _default_vectorizer()
        vocabulary = getattr(self, "vocabulary_", None)
        fixed = {t: i for i, t in enumerate(vocabulary)} if vocabulary is not None else None
        return TermCounter(vectorizer.build_analyzer(), fixed, directory)

    def _start(self) -> None:
        self.timings_: dict[str, float] = {}
        self.warnings_: list[str] = []

    def _fit_distinct(self, vectors, counts, X, vocabulary, texts_of, progress) -> np.ndarray:
        wordy = has_terms(X)
        labels = self._cluster(vectors, wordy, counts, progress)
        seeded = self._seed(vectors, labels, wordy, counts) if self.seed_topics else None
        if seeded is not None:
            labels = np.where(seeded >= 0, labels.max() + 1 + seeded, labels)
            labels = drop_small(labels, counts, self.min_topic_size_, keep=labels[seeded >= 0])
        labels = _renumber(labels, counts)
        centroids, thresholds = self._centres(vectors, labels)
        candidates = wordy if self.reduce_outliers else self.unsampled_  # rows left out of the clustering sample
        if len(centroids) and candidates.any():
            labels = self._absorb(vectors, labels, candidates, centroids, thresholds)
        labels = self._merge(vectors, labels, counts, X, vocabulary, seeded)
        started = time.perf_counter()
        with progress("keywords", 1) as advance:
            self._describe(texts_of, vectors, labels, counts, X, vocabulary)
            advance(1)
        self.timings_["represent"] = time.perf_counter() - started
        return labels

    def _seed(self, vectors, labels: np.ndarray, wordy: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """The seed (or -1) each distinct document joins: its nearest seed, when close enough (``guided``)."""
        if self.embedder is None:
            raise ValueError("seed_topics need the embedder: pass TopicModel(embedder=..., seed_topics=...)")
        seed_vectors = np.asarray(self.embedder.embed([" ".join(words) for words in self.seed_topics]), np.float32)
        chosen, _ = seed_assignments(vectors, counts * wordy, seed_vectors, self.seed_threshold)
        for i, words in enumerate(self.seed_topics):
            if not (chosen == i).any():
                self.warnings_.append(
                    f"seed topic {i + 1} ({' '.join(words)}) drew no document at centred similarity >= "
                    f"{self.seed_threshold}; try other seed words"
                )
        return chosen

    def _merge(self, vectors, labels, counts, X, vocabulary, seeded) -> np.ndarray:
        """The topic hierarchy over the topics found (``hierarchy_``); with ``n_topics``, merged down to that many."""
        ids, k, before = self.topic_ids_, len(self.topic_ids_), labels
        Z = topic_linkage(self.centroids_)
        sizes = np.array([counts[labels == t].sum() for t in ids.tolist()], dtype=np.int64)
        final = ids.copy()
        if self.n_topics is not None and k > self.n_topics:
            group = cut(Z, k, self.n_topics)
            index = np.searchsorted(ids, labels.clip(min=0))
            labels = _renumber(np.where(labels >= 0, group[index], -1), counts)
            final = np.array([labels[np.flatnonzero(before == t)[0]] for t in ids.tolist()], dtype=np.int64)
            self._centres(vectors, labels)
        elif self.n_topics is not None and k < self.n_topics:
            self.warnings_.append(f"found {k} topics, fewer than the {self.n_topics} asked for (--topics); none merged")
        self.hierarchy_ = tree_table(Z, leaf_labels(before, ids, X, vocabulary, counts), sizes, final)
        self.seeded_ = {}
        if seeded is not None:
            for i, words in enumerate(self.seed_topics):
                for topic in np.unique(labels[(seeded == i) & (labels >= 0)]).tolist():
                    self.seeded_.setdefault(int(topic), []).extend(words)
        return labels

    def _embeddings(self, unique, texts, first, embeddings) -> np.ndarray:
        started = time.perf_counter()
        if embeddings is None:
            if self.embedder is None:
                raise ValueError("TopicModel needs embeddings: pass embedder=... or fit(texts, embeddings)")
            vectors = np.asarray(self.embedder.embed(unique), dtype=np.float32)
        else:
            embeddings = np.asarray(embeddings, dtype=np.float32)
            if embeddings.ndim != 2 or len(embeddings) != len(texts):
                raise ValueError(f"embeddings of shape {embeddings.shape} for {len(texts)} texts; expected (N, dim)")
            vectors = embeddings[first]
        self.timings_["embed"] = time.perf_counter() - started
        return vectors

    def _count(self, unique: list[str]):
        started = time.perf_counter()
        self.vectorizer_ = self.vectorizer or _default_vectorizer()
        try:
            X = self.vectorizer_.fit_transform(unique).tocsr()
            vocabulary = list(self.vectorizer_.get_feature_names_out())
        except ValueError:  # "empty vocabulary": no document has a single word
            from scipy import sparse

            X, vocabulary = sparse.csr_matrix((len(unique), 0), dtype=np.int32), []
            self.warnings_.append("no document holds any words (only URLs, emoji or numbers); no keywords")
        self.timings_["vectorize"] = time.perf_counter() - started
        return X, vocabulary

    def _cluster(self, vectors, wordy: np.ndarray, counts: np.ndarray, progress: Progress) -> np.ndarray:
        labels = np.full(len(wordy), -1, dtype=np.int64)
        self.unsampled_ = np.zeros(len(wordy), dtype=bool)
        rows = np.flatnonzero(wordy)
        size = self.min_topic_size or auto_min_topic_size(int(counts[rows].sum()))
        self.min_topic_size_ = size
        if len(rows) < 2 * size:
            if len(rows):
                self.warnings_.append(
                    f"{len(rows)} distinct documents with words are too few to split into topics of at least "
                    f"{size}; they form one topic"
                )
            labels[rows] = 0
            self.timings_["reduce"] = self.timings_["cluster"] = 0.0
            return labels
        if len(rows) > self.cluster_sample:
            # Time and memory bounded by the sample, not the corpus: UMAP and HDBSCAN see cluster_sample distinct
            # documents; the others join their nearest topic's centre block by block in _absorb, as outliers do.
            sample = np.sort(np.random.default_rng(self.seed).choice(rows, self.cluster_sample, replace=False))
            self.unsampled_[rows] = True
            self.unsampled_[sample] = False
            rows, self.clustered_on_ = sample, len(sample)
        started = time.perf_counter()
        fitted_on = min(len(rows), self.reduce_sample)
        self.reducer_ = self.reducer or default_reducer(self.reducer_kind, fitted_on, vectors.shape[1], seed=self.seed)
        reduced = self._reduce(vectors, rows, progress)
        self.timings_["reduce"] = time.perf_counter() - started
        started = time.perf_counter()
        self.clusterer_ = self.clusterer or default_clusterer(self.clusterer_kind, size, seed=self.seed)
        with progress("cluster", 1) as advance:
            found = getattr(self.clusterer_.fit(reduced), "labels_", None)
            advance(1)
        if found is None:
            raise TypeError(f"the clusterer {type(self.clusterer_).__name__} has no labels_ after fit")
        labels[rows] = np.asarray(found, dtype=np.int64)
        self.timings_["cluster"] = time.perf_counter() - started
        if not (labels >= 0).any():
            self.warnings_.append("the clusterer found no dense group: every document is an outlier (topic -1)")
        return labels

    def _reduce(self, vectors, rows: np.ndarray, progress: Progress) -> np.ndarray:
        """Reduced vectors of ``rows``: fitted on all of them, or on ``reduce_sample`` of them and applied in blocks."""
        if len(rows) <= self.reduce_sample or not hasattr(self.reducer_, "transform"):
            with progress("reduce", 1) as advance:
                reduced = _fit_transform(self.reducer_, gather(vectors, rows))
                advance(1)
            return reduced
        sample = np.sort(np.random.default_rng(self.seed).choice(rows, self.reduce_sample, replace=False))
        self.reduced_on_ = len(sample)
        with progress("reduce", len(sample) + len(rows)) as advance:
            self.reducer_.fit(gather(vectors, sample))
            advance(len(sample))
            parts = []
            # Blocks above 10,000 rows: UMAP's transform runs 30 epochs on them (100 on smaller ones).
            for _, block in blocks(vectors, rows, size=3 * _vectors.BLOCK):
                parts.append(np.asarray(self.reducer_.transform(block), dtype=np.float32))
                advance(len(block))
        return np.concatenate(parts)

    def _centres(self, vectors, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.unique(labels[labels >= 0]).astype(np.int64)
        members = np.flatnonzero(labels >= 0)
        index = np.searchsorted(ids, labels[members])
        centroids = group_means(vectors, members, index, len(ids)) if len(ids) else np.zeros((0, vectors.shape[1]))
        centroids = centroids.astype(np.float32)
        sims = similarity_to(vectors, members, centroids, index) if len(ids) else np.zeros(0, np.float32)
        thresholds = np.zeros(len(ids), dtype=np.float32)
        for i in range(len(ids)):
            thresholds[i] = np.quantile(sims[index == i], self.outlier_quantile)
        self.topic_ids_, self.centroids_, self.thresholds_ = ids, centroids, thresholds
        return centroids, thresholds

    def _absorb(self, vectors, labels, wordy, centroids, thresholds) -> np.ndarray:
        """Outliers as close to a topic's centre as nearly all its members join it (the rest stay -1)."""
        outliers = np.flatnonzero((labels < 0) & wordy)
        if len(outliers) == 0:
            return labels
        best, sims = nearest(vectors, outliers, centroids)
        close = sims >= thresholds[best]
        labels = labels.copy()
        labels[outliers[close]] = self.topic_ids_[best[close]]
        return labels

    def _describe(self, texts_of, vectors, labels, counts, X, vocabulary) -> None:
        self.vocabulary_ = vocabulary
        topics: list[Topic] = []
        if X.shape[1]:
            ids, weights = class_tfidf(X, labels, counts)
        else:
            ids, weights = np.unique(labels), None
        for row, topic in enumerate(ids.tolist()):
            terms = top_terms(weights, row, vocabulary, self.n_terms) if weights is not None else []
            label = "outliers" if topic < 0 else f"{topic}: {readable_label([t for t, _ in terms])}"
            seed = list(getattr(self, "seeded_", {}).get(int(topic), []))
            topics.append(Topic(int(topic), label, int(counts[labels == topic].sum()), terms, [], seed))
        members = np.flatnonzero(labels >= 0)
        index = np.searchsorted(self.topic_ids_, labels[members])
        sims = similarity_to(vectors, members, self.centroids_, index) if len(members) else np.zeros(0)
        chosen = {}
        for i, topic in enumerate(self.topic_ids_.tolist()):
            mine = np.flatnonzero(index == i)
            chosen[topic] = members[mine[np.argsort(-sims[mine], kind="stable")[: self.n_representative]]]
        rows = np.concatenate(list(chosen.values())) if chosen else np.zeros(0, np.int64)
        texts = dict(zip(rows.tolist(), texts_of(rows), strict=True)) if len(rows) else {}
        for topic in topics:
            if topic.id in chosen:
                topic.representative = [texts[i] for i in chosen[topic.id].tolist()]
        self.topics_ = sorted(topics, key=lambda t: t.id)

    # ----- using a fitted model ------------------------------------------------------------------

    def transform(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> np.ndarray:
        """Topics of new texts by the nearest topic centre; ``-1`` when not close enough or without words."""
        return self.assign(texts, embeddings)[0]

    def assign(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(topics, cosine similarity to the chosen topic's centre) of each text."""
        self._require_fitted()
        texts = _check_texts(texts)
        if embeddings is None:
            if self.embedder is None:
                raise ValueError("transform needs embeddings: pass embedder=... to TopicModel or the embeddings")
            embeddings = self.embedder.embed(texts)
        vectors = normalize(np.asarray(embeddings, dtype=np.float32))
        segmenter = _segmenter(self.vectorizer_)
        wordy = np.array([bool(segmenter.words(t)) for t in texts]) if segmenter else np.ones(len(texts), bool)
        return self.assign_vectors(vectors, wordy)

    def assign_vectors(self, vectors: np.ndarray, wordy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``assign`` for unit-length embeddings and, per document, whether it holds any words."""
        self._require_fitted()
        if vectors.shape[1:] != self.centroids_.shape[1:]:
            raise MegasenseInputError(
                f"embeddings of dimension {vectors.shape[1]} for a model fitted on dimension "
                f"{self.centroids_.shape[1]}; use the same embedding model as the fit"
            )
        topics = np.full(len(vectors), -1, dtype=np.int64)
        similarity = np.zeros(len(vectors), dtype=np.float32)
        if len(self.topic_ids_) == 0 or not len(vectors):
            return topics, similarity
        sims = vectors @ self.centroids_.T
        best = sims.argmax(axis=1)
        similarity = sims[np.arange(len(vectors)), best]
        ok = (similarity >= self.thresholds_[best]) & np.asarray(wordy, dtype=bool)
        topics[ok] = self.topic_ids_[best[ok]]
        return topics, similarity

    def topic_info(self):
        """A DataFrame: topic, label, size, terms (top terms joined), representative (texts)."""
        import pandas as pd

        self._require_fitted()
        return pd.DataFrame(
            {
                "topic": [t.id for t in self.topics_],
                "label": [t.label for t in self.topics_],
                "size": [t.size for t in self.topics_],
                "terms": [", ".join(term for term, _ in t.terms) for t in self.topics_],
                "representative": [list(t.representative) for t in self.topics_],
            }
        )

    def _require_fitted(self) -> None:
        if not hasattr(self, "centroids_"):
            raise ValueError("this TopicModel is not fitted yet: call fit(texts) first (or TopicModel.load(path))")

    # ----- saving --------------------------------------------------------------------------------

    def save(self, path: str | Path, *, overwrite: bool = False, metadata: dict[str, Any] | None = None) -> Path:
        """``topics.safetensors`` (centroids, thresholds, topic ids) and ``topics.json`` (everything else)."""
        self._require_fitted()
        config = {
            "format": FORMAT,
            "version": 1,
            "settings": {
                "min_topic_size": self.min_topic_size_,
                "n_terms": self.n_terms,
                "n_representative": self.n_representative,
                "outlier_quantile": self.outlier_quantile,
                "reducer": type(getattr(self, "reducer_", None)).__name__,
                "clusterer": type(getattr(self, "clusterer_", None)).__name__,
                "n_topics": self.n_topics,
                "seed_topics": self.seed_topics,
            },
            "dimension": int(self.centroids_.shape[1]),
            "topics": [asdict(t) for t in self.topics_],
            "vocabulary": list(self.vocabulary_),
            "hierarchy": tree_records(getattr(self, "hierarchy_", None)),
            "metadata": metadata or {},
        }
        tensors = {"centroids": self.centroids_, "thresholds": self.thresholds_, "topic_ids": self.topic_ids_}
        with atomic_directory(path, overwrite=overwrite) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / WEIGHTS))
            (tmp / CONFIG).write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, *, embedder: Embedder | None = None) -> TopicModel:
        path = Path(path)
        try:
            config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
            tensors = load_file(str(path / WEIGHTS))
        except (OSError, ValueError) as exc:
            raise CheckpointError(path, f"not a readable megasense topic model ({exc})") from None
        if config.get("format") != FORMAT:
            raise CheckpointError(path / CONFIG, f"format {config.get('format')!r}, expected {FORMAT!r}")
        settings = config["settings"]
        model = cls(
            embedder,
            n_terms=settings["n_terms"],
            n_representative=settings["n_representative"],
            outlier_quantile=settings["outlier_quantile"],
            min_topic_size=settings["min_topic_size"],
        )
        model.min_topic_size_ = settings["min_topic_size"]
        model.centroids_, model.thresholds_ = tensors["centroids"], tensors["thresholds"]
        model.topic_ids_ = tensors["topic_ids"].astype(np.int64)
        model.topics_ = [Topic(**{**t, "terms": [tuple(x) for x in t["terms"]]}) for t in config["topics"]]
        model.vocabulary_ = config["vocabulary"]
        vocabulary = {term: i for i, term in enumerate(model.vocabulary_)}
        model.vectorizer_ = CountVectorizer(analyzer=Segmenter(), vocabulary=vocabulary or None, dtype=np.int32)
        model.metadata_ = config.get("metadata", {})
        if config.get("hierarchy") is not None:
            model.hierarchy_ = tree_from_records(config["hierarchy"])
        return model


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is a {type(text).__name__}, expected a string")
    return out


def _unique(texts: list[str]):
    """Distinct texts, the first index of each, each text's index among them, and how often each occurs."""
    index: dict[str, int] = {}
    first: list[int] = []
    inverse = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        j = index.setdefault(text, len(index))
        if j == len(first):
            first.append(i)
        inverse[i] = j
    counts = np.bincount(inverse, minlength=len(first))
    return list(index), np.array(first, dtype=np.int64), inverse, counts


def _renumber(labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Topics numbered by size, largest first (0, 1, ...; ties by the old number); -1 stays -1."""
    member = labels >= 0
    ids, index = np.unique(labels[member], return_inverse=True)
    sizes = np.bincount(index, weights=counts[member], minlength=len(ids))  # whole numbers: exact in float64
    new = np.empty(len(ids), dtype=np.int64)
    new[np.lexsort((ids, -sizes))] = np.arange(len(ids))
    out = np.full(len(labels), -1, dtype=np.int64)
    out[member] = new[index]
    return out


def _default_vectorizer() -> CountVectorizer:
    return CountVectorizer(analyzer=Segmenter(), min_df=1, dtype=np.int32)


def _fit_transform(step: Any, X: np.ndarray) -> np.ndarray:
    if hasattr(step, "fit_transform"):
        return np.asarray(step.fit_transform(X))
    return np.asarray(step.fit(X).transform(X))


def _segmenter(vectorizer: CountVectorizer) -> Segmenter | None:
    analyzer = getattr(vectorizer, "analyzer", None)
    return analyzer if isinstance(analyzer, Segmenter) else None
