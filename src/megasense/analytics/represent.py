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
from scipy import sparse

SENTIMENTS = ("negative", "neutral", "positive")


def class_tfidf(X: sparse.csr_matrix, classes: np.ndarray, weights: np.ndarray | None = None):
    """(class ids, (classes, terms) CSR weights) for documents ``X`` (docs, terms) labelled ``classes``.

    ``weights`` counts each row that many times (rows of unique texts standing for their duplicates).
    """
    ids, index = np.unique(classes, return_inverse=True)
    weights = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    onehot = sparse.csr_matrix((weights, (index, np.arange(X.shape[0]))), shape=(len(ids), X.shape[0]))
    tf = (onehot @ X).tocsr().astype(np.float64)  # (classes, terms) term counts per class
    frequency = np.asarray(tf.sum(axis=0)).ravel()
    average = tf.sum() / max(1, len(ids))
    idf = np.log1p(average / np.maximum(frequency, 1e-12))
    words = np.asarray(tf.sum(axis=1)).ravel()
    tf = sparse.diags(1.0 / np.maximum(words, 1e-12)) @ tf
    return ids, (tf @ sparse.diags(idf)).tocsr()


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
    """
    labels = np.asarray(sentiments, dtype=object)
    out: dict[int, dict[str, list[str]]] = {}
    for topic in np.unique(topics):
        rows = np.flatnonzero(topics == topic)
        cls, sub = labels[rows], X[rows]
        phrases: dict[str, list[str]] = {"positive": [], "negative": []}
        if sub.nnz:
            ids, weights = class_tfidf(sub, cls)
            dense = weights.toarray()  # (classes in this topic, terms)
            present = (sub > 0).astype(np.int32)
            for name in phrases:
                if name not in ids:
                    continue
                i = int(np.flatnonzero(ids == name)[0])
                others = np.delete(dense, i, axis=0)
                lead = dense[i] - (others.max(axis=0) if len(others) else 0.0)
                docs = np.asarray(present[cls == name].sum(axis=0)).ravel()
                lead[(docs < min_docs) | (lead <= 0)] = 0.0
                phrases[name] = [t for t, _ in top_terms(sparse.csr_matrix(lead), 0, vocabulary, n)]
        out[int(topic)] = phrases
    return out
