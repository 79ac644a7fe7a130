"""The topic hierarchy: topics merged agglomeratively on their centres, the merge tree kept for the report.

``topic_linkage`` runs scipy's average-linkage clustering on the topics' unit-length centroids
(cosine distance: the embedding space the topics were found in, where BERTopic uses c-TF-IDF; the
centroids are what the model keeps and they ignore shared function words). ``cut`` applies the
first merges of that tree until ``n`` groups are left, so ``--topics N`` gives exactly N topics
(scipy's ``fcluster(..., "maxclust")`` may give fewer when distances tie). ``tree_table`` lays
the tree out as rows (node, parent, children, merge distance, documents) for the dendrogram.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from megasense.analytics.represent import class_tfidf, readable_label, top_terms

TREE_COLUMNS = ["node", "parent", "left", "right", "distance", "documents", "leaves", "topic", "label", "leaf"]


def leaf_labels(labels: np.ndarray, ids: np.ndarray, X, vocabulary: list[str], counts: np.ndarray) -> list[str]:
    """``3: battery · charger`` for each topic in ``ids``: its three heaviest c-TF-IDF terms."""
    if not X.shape[1]:
        return [str(t) for t in ids.tolist()]
    classes, weights = class_tfidf(X, labels, counts)
    rows = {int(c): i for i, c in enumerate(classes.tolist())}
    return [f"{t}: {readable_label([w for w, _ in top_terms(weights, rows[t], vocabulary, 3)])}" for t in ids.tolist()]


def topic_linkage(centroids: np.ndarray) -> np.ndarray:
    """scipy's (k - 1, 4) linkage matrix over ``k`` topic centroids (average linkage, cosine distance)."""
    from scipy.cluster.hierarchy import linkage

    centroids = np.asarray(centroids, dtype=np.float64)
    if len(centroids) < 2:
        return np.zeros((0, 4))
    unit = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return linkage(unit, method="average", metric="cosine")


def cut(Z: np.ndarray, k: int, n: int) -> np.ndarray:
    """Group (0 .. n-1) of each of the ``k`` leaves after the first ``k - n`` merges of ``Z``.

    Groups are numbered by their smallest leaf, so the largest topic (leaf 0) stays in group 0.
    """
    if n < 1:
        raise ValueError(f"n={n}: merge to at least one topic")
    parent = list(range(2 * k - 1))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for step in range(max(0, k - n)):
        a, b = int(Z[step, 0]), int(Z[step, 1])
        parent[root(a)] = parent[root(b)] = k + step
    roots = [root(i) for i in range(k)]
    order = {r: g for g, r in enumerate(dict.fromkeys(roots))}
    return np.array([order[r] for r in roots], dtype=np.int64)


def tree_table(Z: np.ndarray, leaf_labels: list[str], leaf_sizes: np.ndarray, leaf_topics: np.ndarray) -> pd.DataFrame:
    """The merge tree as rows: leaves ``0 .. k-1`` (the topics before merging), then one row per merge.

    ``topic`` is the final topic a leaf went to (merges: the final topic when both sides share one,
    else -1); ``distance`` is the cosine distance at which a merge happened (0 for leaves).
    """
    k = len(leaf_labels)
    rows = [
        {
            "node": i,
            "parent": None,
            "left": None,
            "right": None,
            "distance": 0.0,
            "documents": int(leaf_sizes[i]),
            "leaves": 1,
        }
        | {"topic": int(leaf_topics[i]), "label": leaf_labels[i], "leaf": True}
        for i in range(k)
    ]
    for step, (a, b, distance, _) in enumerate(np.asarray(Z)):
        node, a, b = k + step, int(a), int(b)
        rows[a]["parent"] = rows[b]["parent"] = node
        same = rows[a]["topic"] if rows[a]["topic"] == rows[b]["topic"] else -1
        rows.append(
            {"node": node, "parent": None, "left": a, "right": b, "distance": float(distance)}
            | {
                "documents": rows[a]["documents"] + rows[b]["documents"],
                "leaves": rows[a]["leaves"] + rows[b]["leaves"],
            }
            | {"topic": same, "label": "", "leaf": False}
        )
    out = pd.DataFrame(rows, columns=TREE_COLUMNS)
    for column in ("parent", "left", "right"):
        out[column] = out[column].astype("Int64")
    return out


def linkage_of(tree: pd.DataFrame) -> np.ndarray:
    """scipy's linkage matrix back from a ``tree_table`` (for ``scipy.cluster.hierarchy.dendrogram``)."""
    merges = tree[~tree["leaf"].astype(bool)].sort_values("node")
    return merges[["left", "right", "distance", "leaves"]].to_numpy(dtype=np.float64)


MAP_COLUMNS = ["topic", "x", "y", "documents", "label"]


def topic_map(centroids: np.ndarray, topics: np.ndarray, sizes: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """The intertopic distance map: each topic's unit centroid projected to 2-D by PCA, with its size.

    PCA of unit vectors is classical multidimensional scaling of their (chordal) distances, so topics
    close in embedding space sit close on the map; deterministic, unlike UMAP or metric MDS.
    """
    from sklearn.decomposition import PCA

    k = len(topics)
    xy = np.zeros((k, 2))
    if k >= 2:
        unit = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        n = min(2, k - 1, unit.shape[1])
        xy[:, :n] = PCA(n_components=n, random_state=0).fit_transform(unit.astype(np.float64))
    return pd.DataFrame(
        {
            "topic": np.asarray(topics, dtype=np.int64),
            "x": xy[:, 0],
            "y": xy[:, 1],
            "documents": sizes,
            "label": labels,
        },
        columns=MAP_COLUMNS,
    )


def tree_records(tree: pd.DataFrame | None) -> list[dict] | None:
    """The tree's rows as JSON-ready dicts (pandas' missing integers as None, numpy scalars as Python's)."""
    if tree is None:
        return None
    return [
        {k: None if pd.isna(v) else v.item() if hasattr(v, "item") else v for k, v in row.items()}
        for row in tree.to_dict("records")
    ]


def tree_from_records(records: list[dict]) -> pd.DataFrame:
    tree = pd.DataFrame(records, columns=TREE_COLUMNS)
    for column in ("parent", "left", "right"):
        tree[column] = tree[column].astype("Int64")
    return tree
