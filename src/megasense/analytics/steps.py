"""The default reducer and clusterer of a topic model, and k-means that picks its own number of topics.

Any object with scikit-learn's ``fit`` works in their place (``TopicModel(reducer=..., clusterer=...)``);
these are what ``TopicModel`` builds when it is given none. UMAP (``umap-learn``, optional) keeps the
neighbourhoods HDBSCAN needs to find dense groups; without it, PCA. Tiny corpora (under
``UMAP_MIN_DOCS`` documents) always use PCA, where UMAP's neighbour graph is too sparse to help.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_score

from megasense.errors import MegasenseInputError, MissingExtraError

UMAP_MIN_DOCS = 100
REDUCERS = ("auto", "umap", "pca")
CLUSTERERS = ("hdbscan", "kmeans")


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def default_reducer(kind: str, n_docs: int, dim: int, *, seed: int = 0) -> Any:
    """UMAP to 5 dimensions (cosine neighbourhoods of 15) where installed and asked for, PCA otherwise."""
    if kind not in REDUCERS:
        raise MegasenseInputError(f"reducer {kind!r} (--reducer): expected one of {', '.join(REDUCERS)}")
    if kind == "umap" and not umap_available():
        raise MissingExtraError(
            "reducer 'umap' needs umap-learn: pip install 'megasense[analytics]' (or use --reducer pca)"
        )
    if kind != "pca" and umap_available() and n_docs >= UMAP_MIN_DOCS:
        from umap import UMAP

        return UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed, n_jobs=1)
    # Without UMAP's neighbour graph, density clustering needs a few more dimensions to separate topics.
    return PCA(n_components=max(1, min(50, n_docs - 1, dim)), random_state=seed)


def default_clusterer(kind: str, min_topic_size: int, *, seed: int = 0) -> Any:
    if kind not in CLUSTERERS:
        raise MegasenseInputError(f"clusterer {kind!r} (--clusterer): expected one of {', '.join(CLUSTERERS)}")
    if kind == "kmeans":
        return AutoKMeans(min_topic_size=min_topic_size, seed=seed)
    return HDBSCAN(min_cluster_size=min_topic_size, min_samples=min(min_topic_size, 5), copy=True)


def auto_min_topic_size(n_docs: int) -> int:
    """10 documents a topic, growing by one per 300 documents past 3,000, at most 50; small corpora less.

    Under 10, HDBSCAN's topics come and go with UMAP's seed (measured on benchmarks/topics.py's
    Chinese corpus: 6 gave 7 to 33 topics over three seeds, 10 gave 6 every time).
    """
    if n_docs < 500:
        return max(5, min(10, n_docs // 50))
    return int(np.clip(n_docs // 300, 10, 50))


class AutoKMeans:
    """k-means whose k is the best silhouette over a range of candidates, when ``n_clusters`` is None.

    Every document gets a topic (k-means has no outliers); candidates run from 2 to the number of
    topics of ``min_topic_size`` documents the corpus could hold (at most ``max_clusters``): every k
    up to 12, then ``candidates`` geometric steps; silhouettes are measured on a sample of at most
    ``sample`` points.
    """

    def __init__(
        self,
        n_clusters: int | None = None,
        *,
        min_topic_size: int = 10,
        max_clusters: int = 200,
        candidates: int = 8,
        sample: int = 3000,
        seed: int = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.min_topic_size = min_topic_size
        self.max_clusters = max_clusters
        self.candidates = candidates
        self.sample = sample
        self.seed = seed

    def fit(self, X: np.ndarray, y: Any = None) -> AutoKMeans:
        X = np.asarray(X, dtype=np.float64)
        if self.n_clusters is not None:
            k = min(self.n_clusters, len(X))
            self.silhouettes_: dict[int, float] = {}
        else:
            k, self.silhouettes_ = self._choose(X)
        model = KMeans(n_clusters=k, n_init=3, random_state=self.seed).fit(X)
        self.n_clusters_ = k
        self.labels_ = model.labels_
        self.cluster_centers_ = model.cluster_centers_
        return self

    def _choose(self, X: np.ndarray) -> tuple[int, dict[int, float]]:
        top = int(min(self.max_clusters, len(X) // max(1, self.min_topic_size)))
        if top < 2:
            return 1, {}
        small = range(2, min(top, 12) + 1)  # every k up to 12, then geometric steps
        large = np.geomspace(12, top, num=self.candidates) if top > 12 else []
        ks = sorted({*small, *(round(k) for k in large)})
        rng = np.random.default_rng(self.seed)
        pick = rng.choice(len(X), size=min(self.sample, len(X)), replace=False)
        scores: dict[int, float] = {}
        for k in ks:
            labels = KMeans(n_clusters=k, n_init=1, random_state=self.seed).fit_predict(X)
            if len(set(labels[pick])) < 2:
                continue
            scores[k] = float(silhouette_score(X[pick], labels[pick]))
        best = max(scores, key=scores.get) if scores else 1
        return best, scores
