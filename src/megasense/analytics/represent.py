"""Words that describe a group of documents: class-based TF-IDF, readable labels, key phrases.

Class-based TF-IDF (BERTopic's c-TF-IDF) treats all documents of one class (a topic, or a topic's
positive posts) as one long document: a term weighs ``tf(term, class) / words(class) * log(1 + A /
f(term))``, where ``A`` is the average number of words per class and ``f(term)`` the term's count
over all classes. Terms common to every class (the corpus's own jargon) sink; terms that one class
uses often rise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse

from megasense.analytics.counts import row_blocks

SENTIMENTS = ("negative", "neutral", "positive")


def class_counts(X, index: np.ndarray, n_classes: int, weights: np.ndarray | None = None) -> sparse.csr_matrix:
    """(n_classes, terms) float64 sums of the rows of ``X`` in each class (``index``: each row's class, 0-based),
    each row counted ``weights`` times; ``X`` in memory or a ``counts.TermFile`` (summed a block at a time)."""
    weights = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    tf = sparse.csr_matrix((n_classes, X.shape[1]), dtype=np.float64)
    for start, block in row_blocks(X):
        rows = slice(start, start + block.shape[0])
        onehot = sparse.csr_matrix(
            (weights[rows], (index[rows], np.arange(block.shape[0]))), shape=(n_classes, block.shape[0])
        )
        tf = tf + (onehot @ block).astype(np.float64)  # sums of whole numbers: exact, whatever the blocks
    return tf.tocsr()


def tfidf(tf: sparse.csr_matrix) -> sparse.csr_matrix:
    """c-TF-IDF weights of (classes, terms) term counts (see the module docstring)."""
    frequency = np.asarray(tf.sum(axis=0)).ravel()
    average = tf.sum() / max(1, tf.shape[0])
    idf = np.log1p(average / np.maximum(frequency, 1e-12))
    words = np.asarray(tf.sum(axis=1)).ravel()
    tf = sparse.diags(1.0 / np.maximum(words, 1e-12)) @ tf
    return (tf @ sparse.diags(idf)).tocsr()


def class_tfidf(X, classes: np.ndarray, weights: np.ndarray | None = None):
    """(class ids, (classes, terms) CSR weights) for documents ``X`` (docs, terms) labelled ``classes``.

    ``weights`` counts each row that many times (rows of unique texts standing for their duplicates).
    ``X`` may be a ``counts.TermFile`` on disk.
    """
    ids, index = np.unique(classes, return_inverse=True)
    return ids, tfidf(class_counts(X, index, len(ids), weights))


def top_terms(weights: sparse.csr_matrix, row: int, vocabulary: Sequence[str], n: int) -> list[tuple[str, float]]:
    """The ``n`` heaviest (term, weight) pairs of one row, heaviest first; zero weights never count."""
    start, end = weights.indptr[row], weights.indptr[row + 1]
    data, cols = weights.data[start:end], weights.indices[start:end]
    keep = data > 0
    data, cols = data[keep], cols[keep]
    if len(data) > n:
        part = np.argpartition(-data, n - 1)[:n]
        data, cols = data[part], cols[part]
    order = np.lexsort((cols, -data))  # ties broken by vocabulary order, so results are reproducible
    return [(vocabulary[cols[i]], float(data[i])) for i in order]


def readable_label(terms: Sequence[str], n: int = 3) -> str:
    """``battery life · charger · screen`` from the top terms: a word pair replaces the single words it holds."""
    chosen: list[str] = []
    for term in terms:
        parts = set(term.split())
        if any(term in c or parts <= set(c.split()) for c in chosen):
            continue
        chosen = [c for c in chosen if not (c in term or set(c.split()) <= parts)]
        chosen.append(term)
        if len(chosen) >= n:
            break
    return " · ".join(chosen) if chosen else "(no words)"


def key_phrases(
    X: sparse.csr_matrix,
    topics: np.ndarray,
    sentiments: Sequence[str],
    vocabulary: Sequence[str],
    *,
    n: int = 5,
    min_docs: int = 2,
) -> dict[int, dict[str, list[str]]]:
    """Per topic, the phrases that set its positive posts apart from its negative ones (and back).

    Within one topic, c-TF-IDF over its sentiment classes; a phrase ranks for ``positive`` by how much
    more weight it has there than in the topic's most similar other class, so words that every post
    of the topic uses (its subject) do not crowd out what people praise or blame. Phrases must occur
    in ``min_docs`` documents of the class, so one odd post does not speak for the class.
    ``PhraseCounts`` gives the same from counts added block by block.
    """
    counts = PhraseCounts(X.shape[1])
    counts.add(X, np.asarray(topics), np.asarray(sentiments, dtype=object))
    return counts.phrases(vocabulary, n=n, min_docs=min_docs)


class PhraseCounts:
    """What ``key_phrases`` needs, summed over row blocks: per (topic, sentiment) class its documents, its term
    counts and in how many documents each term occurs. A row may stand for several documents (``weights``)."""

    def __init__(self, n_terms: int) -> None:
        self.n_terms = n_terms
        self.keys: dict[tuple[int, str], int] = {}
        self.documents = np.zeros(0, dtype=np.int64)
        self.tf = sparse.csr_matrix((0, n_terms), dtype=np.float64)
        self.present = sparse.csr_matrix((0, n_terms), dtype=np.float64)

    def add(self, X, topics: np.ndarray, sentiments: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Rows ``X`` (in memory) of documents with these ``topics`` and ``sentiments`` (strings; None or NaN: "")."""
        sentiments = np.asarray(sentiments, dtype=object)
        sentiments = np.where(pd.isna(sentiments), "", sentiments).astype(str)
        names, labels = np.unique(sentiments, return_inverse=True)
        ids, topic_index = np.unique(np.asarray(topics, dtype=np.int64), return_inverse=True)
        pairs, pair_index = np.unique(topic_index * len(names) + labels, return_inverse=True)  # a few classes
        classes = [
            self.keys.setdefault((int(ids[p // len(names)]), str(names[p % len(names)])), len(self.keys)) for p in pairs
        ]
        index = np.asarray(classes, dtype=np.int64)[pair_index]
        k = len(self.keys)
        weights = np.ones(len(index)) if weights is None else np.asarray(weights, dtype=np.float64)
        X = sparse.csr_matrix(X)
        self.documents = np.concatenate([self.documents, np.zeros(k - len(self.documents), np.int64)])
        np.add.at(self.documents, index, weights.astype(np.int64))
        self.tf = _grown(self.tf, k) + class_counts(X, index, k, weights)
        self.present = _grown(self.present, k) + class_counts((X > 0).astype(np.int32), index, k, weights)

    def phrases(self, vocabulary: Sequence[str], *, n: int = 5, min_docs: int = 2) -> dict[int, dict[str, list[str]]]:
        out: dict[int, dict[str, list[str]]] = {}
        present = [(topic, label, row) for (topic, label), row in self.keys.items() if self.documents[row] > 0]
        for topic in sorted({t for t, _, _ in present}):
            mine = sorted((label, row) for t, label, row in present if t == topic)
            ids = np.array([label for label, _ in mine], dtype=object)
            rows = [row for _, row in mine]
            tf = self.tf[rows]
            phrases: dict[str, list[str]] = {"positive": [], "negative": []}
            if tf.nnz:
                dense = tfidf(tf).toarray()  # (classes in this topic, terms)
                for name in phrases:
                    if name not in ids:
                        continue
                    i = int(np.flatnonzero(ids == name)[0])
                    others = np.delete(dense, i, axis=0)
                    lead = dense[i] - (others.max(axis=0) if len(others) else 0.0)
                    docs = self.present[rows[i]].toarray().ravel()
                    lead[(docs < min_docs) | (lead <= 0)] = 0.0
                    phrases[name] = [t for t, _ in top_terms(sparse.csr_matrix(lead), 0, vocabulary, n)]
            out[int(topic)] = phrases
        return out


def _grown(matrix: sparse.csr_matrix, rows: int) -> sparse.csr_matrix:
    """``matrix`` with empty rows added at the bottom up to ``rows``."""
    if matrix.shape[0] == rows:
        return matrix
    return sparse.vstack([matrix, sparse.csr_matrix((rows - matrix.shape[0], matrix.shape[1]))]).tocsr()
