"""The encoder's part of a summary: which sentences are central, which key phrases matter, and whether a generated
sentence is supported by the source.

Everything here takes an ``Embedder`` (anything with ``embed(texts) -> (N, D)`` L2-normalised rows, such as
``predictors.embedding.SentenceEmbedder``), so it runs with a fake in tests and with all-MiniLM-L6-v2 (English) or
multilingual-e5-small (Chinese) in the product.

Centrality is LexRank's (Erkan and Radev, 2004) on sentence embeddings instead of TF-IDF vectors: the stationary
distribution of a random walk over the cosine-similarity graph, written out here because it is ten lines of numpy
(sumy has it for TF-IDF vectors only, and networkx's pagerank would add a dependency for one power iteration).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from megasense.summaries.text import count_words

SUPPORT_THRESHOLD = {"en": 0.60, "zh": 0.88}
"""Cosine similarity a generated sentence needs with its closest source unit to count as supported: all-MiniLM-L6-v2
for English, multilingual-e5-small for Chinese (e5's cosines sit higher). Calibrated on reference summaries
(``benchmarks/summaries.py --calibrate``, 40-60 rows): English 0.60 keeps 85% of DialogSum's human summary sentences
against their own dialogue and admits 12% against another dialogue; e5 at 0.88 keeps 100% of CSL titles against their
own abstract and 0% against another's."""


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) L2-normalised vectors."""
        ...


def centrality(vectors: np.ndarray, *, damping: float = 0.85, iterations: int = 100) -> np.ndarray:
    """(N,) LexRank scores of the rows of ``vectors`` (L2-normalised): PageRank over positive cosine similarities."""
    n = len(vectors)
    if n == 0:
        return np.zeros(0)
    if n == 1:
        return np.ones(1)
    sim = np.clip(vectors @ vectors.T, 0.0, None)  # (N, N)
    np.fill_diagonal(sim, 0.0)
    rows = sim.sum(axis=1, keepdims=True)
    walk = np.where(rows > 0, sim / np.where(rows > 0, rows, 1.0), 1.0 / n)  # (N, N) row-stochastic
    score = np.full(n, 1.0 / n)
    for _ in range(iterations):
        updated = (1 - damping) / n + damping * (score @ walk)
        if np.abs(updated - score).sum() < 1e-9:
            return updated
        score = updated
    return score


def select_central(
    units: Sequence[str],
    vectors: np.ndarray,
    *,
    max_words: int,
    redundancy: float = 0.9,
    lead_bias: float = 0.0,
) -> list[int]:
    """Indices (in source order) of the most central units within ``max_words`` words (at least one), skipping a unit
    whose cosine with one already picked exceeds ``redundancy`` (a near repeat). ``lead_bias`` adds to each score a
    share that decays with position (earlier units first when centrality ties)."""
    scores = centrality(vectors)
    if lead_bias:
        scores = scores * (1 + lead_bias / (1 + np.arange(len(units))))
    picked: list[int] = []
    used = 0
    for i in np.argsort(-scores, kind="stable"):
        words = count_words(units[i])
        if picked and used + words > max_words:
            continue
        if any(float(vectors[i] @ vectors[j]) > redundancy for j in picked):
            continue
        picked.append(int(i))
        used += words
        if used >= max_words:
            break
    return sorted(picked)


@dataclass(frozen=True)
class Support:
    sentence: str
    similarity: float
    """Cosine with the closest source unit."""
    source: int
    """Index of that unit."""
    supported: bool


def check_support(
    sentences: Sequence[str], source_units: Sequence[str], embedder: Embedder, *, threshold: float
) -> list[Support]:
    """For each sentence, its closest source unit by embedding cosine and whether it reaches ``threshold``."""
    if not sentences:
        return []
    vectors = embedder.embed(list(sentences) + list(source_units))
    sim = vectors[: len(sentences)] @ vectors[len(sentences) :].T  # (S, U)
    best = sim.argmax(axis=1)
    return [
        Support(s, float(sim[i, best[i]]), int(best[i]), bool(sim[i, best[i]] >= threshold))
        for i, s in enumerate(sentences)
    ]


# ----------------------------------------------------------------------------------------------
# Key phrases
# ----------------------------------------------------------------------------------------------
def candidate_phrases(text: str, lang: str, *, limit: int = 60) -> list[str]:
    """Candidate key phrases by frequency: English n-grams of 1-3 words without stop words at their ends (scikit-
    learn's English stop list), Chinese words of two or more characters by jieba's TF-IDF keywords."""
    if lang == "zh":
        import jieba.analyse

        return [w for w in jieba.analyse.extract_tags(text, topK=limit) if len(w) >= 2 and not w.isdigit()]
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    stop = set(ENGLISH_STOP_WORDS) | {"person1", "person2", "person3", "ll", "ve", "don", "didn", "isn", "ok"}
    vectorizer = CountVectorizer(
        ngram_range=(1, 3), lowercase=True, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z-]{2,}\b", stop_words=None
    )
    try:
        counts = vectorizer.fit_transform([text])
    except ValueError:  # no word of three letters at all
        return []
    vocab = vectorizer.get_feature_names_out()
    freq = counts.toarray()[0]
    keep = []
    for phrase, n in zip(vocab, freq):
        words = phrase.split()
        if words[0] in stop or words[-1] in stop or (len(words) > 1 and n < 2):
            continue
        keep.append((n * len(words), phrase))
    keep.sort(key=lambda t: (-t[0], t[1]))
    return [p for _, p in keep[:limit]]


def key_phrases(text: str, lang: str, embedder: Embedder, *, k: int = 5, diversity: float = 0.5) -> list[str]:
    """The ``k`` candidate phrases closest to the whole text's embedding, diversified by maximal marginal relevance
    (KeyBERT's recipe); a phrase inside one already chosen (or containing it) is skipped."""
    candidates = candidate_phrases(text, lang)
    if not candidates:
        return []
    vectors = embedder.embed([text, *candidates])
    doc, cands = vectors[0], vectors[1:]
    relevance = cands @ doc  # (C,)
    chosen: list[int] = []
    while len(chosen) < min(k, len(candidates)):
        best, best_score = None, -np.inf
        for i in range(len(candidates)):
            if i in chosen or any(_overlaps(candidates[i], candidates[j]) for j in chosen):
                continue
            penalty = max((float(cands[i] @ cands[j]) for j in chosen), default=0.0)
            score = (1 - diversity) * float(relevance[i]) - diversity * penalty
            if score > best_score:
                best, best_score = i, score
        if best is None:
            break
        chosen.append(best)
    return [candidates[i] for i in chosen]


def _overlaps(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    if re.search(r"[\u4e00-\u9fff]", a + b):
        return a in b or b in a
    wa, wb = set(a.split()), set(b.split())
    return wa <= wb or wb <= wa


def defining_unit(term: str, units: Sequence[str]) -> int | None:
    """The unit that best defines ``term``: one where it appears followed by a definition verb (``X is``, ``X
    refers to``, ``X是``, ``X指``), else the first one that mentions it; None when none does."""
    pattern = re.compile(
        re.escape(term)
        + r"(?:\s*\([^)]*\))?\s*(?:,[^,]{0,40},\s*)?(?:is|are|means|refers to|describes|was|were|是|指|即|为)",
        re.IGNORECASE,
    )
    mentions = [i for i, u in enumerate(units) if term.lower() in u.lower()]
    for i in mentions:
        if pattern.search(units[i]):
            return i
    return mentions[0] if mentions else None


def headline(text: str, lang: str, *, max_words: int, min_phrases: int = 3) -> str:
    """A title-length summary: the text's key words (jieba's TF-IDF keywords for Chinese), in the order they first
    appear, added while they fit ``max_words`` (at least ``min_phrases``). On CSL abstracts -> titles this scores
    above the lead sentence (``benchmarks/summaries.py``): a title is mostly its paper's key terms in order."""
    phrases = candidate_phrases(text, lang, limit=12)
    picked: list[str] = []
    for phrase in phrases:
        if any(_overlaps(phrase, p) for p in picked):
            continue
        if len(picked) >= min_phrases and count_words("".join(picked) + phrase) > max_words:
            break
        picked.append(phrase)
    picked.sort(key=lambda p: text.lower().find(p.lower()))
    return ("" if lang == "zh" else " ").join(picked)


LEXICAL_SUPPORT = 0.6
"""Share of an English sentence's content words (4+ letters, not stop words, compared by their first five letters so
"pigments" meets "pigment") that must occur in the source. Embedding cosine alone lets through a sentence on the right
topic with facts the source lacks ("photosystem II catalyses the reduction of NADP+" beside a lecture on
photosynthesis); the words check catches those."""


def lexical_support(sentence: str, source: str) -> float:
    """The share of ``sentence``'s content words found in ``source`` (1.0 for a sentence without any)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    def stems(text: str) -> set[str]:
        return {w[:5] for w in re.findall(r"[a-z]{4,}", text.lower()) if w not in ENGLISH_STOP_WORDS}

    words = stems(sentence)
    return len(words & stems(source)) / len(words) if words else 1.0
