"""Words for topic keywords: English and Chinese text to terms, with stop words and Chinese word segmentation.

Keywords are what an analyst reads, so the analyzer keeps only words: URLs, e-mail addresses,
@mentions, numbers, emoji and punctuation are dropped, English is lower-cased, Chinese runs of Han
characters are segmented by ``megasense.segmentation`` (its default engine, loaded once per process),
and stop words of both languages are removed before word pairs (bigrams) are formed. A bigram of two
Chinese words is written without a space (``配送速度``), any other with one (``battery life``).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from megasense.analytics.counts import TermFile
from megasense.predictors.language import dominant_script
from megasense.segmentation import Segmenter as WordSegmenter

_NOISE = re.compile(
    r"https?://\S+|www\.\S+|\S+@\S+\.\w+|@\w+|\bURL\b|\bAT_USER\b|&(?:amp|lt|gt|quot);",
    re.IGNORECASE,
)
# Literal "\u002c" / "\u2019" escapes, left in some exported corpora (tweets-sentiment-en has them):
# read as the characters they stand for, so "day\u002c with" splits at the comma and is no keyword "u002c".
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_CLAUSE = re.compile(r"[.,;:!?()\[\]{}\"“”«»/|\n\r\t。，、；：！？（）【】《》「」『』…～~]+")
_LATIN_WORD = re.compile(r"[a-z][a-z0-9]*(?:['’][a-z]+)?")
_POSSESSIVE = re.compile(r"['’]s$")
_HAN_CHAR = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")

# Forum and social-media filler that English lists lack.
_EXTRA_EN = {"im", "ive", "dont", "didnt", "doesnt", "cant", "wont", "isnt", "youre", "thats", "rt", "lol", "amp"}
_EXTRA_EN |= {"just", "like", "really", "got", "get", "would", "could", "also", "one", "us", "ll", "don", "it's"}
_EXTRA_EN |= {"i'm", "i've", "don't", "didn't", "doesn't", "can't", "won't", "isn't", "you're", "that's", "let's"}

STOP_WORDS_EN: frozenset[str] = frozenset(ENGLISH_STOP_WORDS | _EXTRA_EN)
STOP_WORDS_ZH: frozenset[str] = frozenset(
    line.strip()
    for line in (Path(__file__).with_name("stopwords_zh.txt")).read_text(encoding="utf-8").splitlines()
    if line.strip()
)


class Segmenter:
    """Text -> terms (words and word pairs) for a vectoriser; call it as ``analyzer=segmenter``."""

    def __init__(
        self,
        *,
        stop_words: Iterable[str] | None = None,
        bigrams: bool = True,
        min_latin_length: int = 2,
        engine: str = "auto",
    ) -> None:
        self.stop_words = frozenset(stop_words) if stop_words is not None else STOP_WORDS_EN | STOP_WORDS_ZH
        self.bigrams = bigrams
        self.min_latin_length = min_latin_length
        self._words = WordSegmenter(engine)  # loads its engine on the first Chinese text

    def _han_words(self, run: str) -> list[str]:
        return self._words.cut(run)

    def words(self, text: str) -> list[str]:
        """The words of ``text`` in order, stop words and non-words removed."""
        return [w for clause in self.clauses(text) for w in clause]

    def clauses(self, text: str) -> list[list[str]]:
        """The words of each clause (text between punctuation marks); word pairs never cross a clause."""
        if not text:
            return []
        text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
        text = _NOISE.sub(" ", text).lower()
        return [words for piece in _CLAUSE.split(text) if (words := self._clause_words(piece))]

    def _clause_words(self, text: str) -> list[str]:
        out: list[str] = []
        position = 0
        for match in _HAN.finditer(text):
            out.extend(self._latin_words(text[position : match.start()]))
            out.extend(w for w in self._han_words(match.group()) if w.strip() and w not in self.stop_words)
            position = match.end()
        out.extend(self._latin_words(text[position:]))
        return out

    def _latin_words(self, text: str) -> list[str]:
        words = (_POSSESSIVE.sub("", w) for w in _LATIN_WORD.findall(text))
        return [w for w in words if len(w) >= self.min_latin_length and w not in self.stop_words and not w.isdigit()]

    def __call__(self, text: str) -> list[str]:
        clauses = self.clauses(text)
        words = [w for clause in clauses for w in clause]
        if not self.bigrams:
            return words
        return words + [_join(a, b) for clause in clauses for a, b in itertools.pairwise(clause) if a != b]


def _join(a: str, b: str) -> str:
    return a + b if _HAN_CHAR.match(a[-1]) and _HAN_CHAR.match(b[0]) else f"{a} {b}"


def has_words(text: str, segmenter: Segmenter) -> bool:
    """False for texts with nothing to read: only URLs, emoji, numbers, punctuation or stop words."""
    return bool(segmenter.words(text))


def detect_language(texts: Sequence[str], *, sample: int = 2000) -> str:
    """``en`` (Latin script), ``zh`` (mostly Chinese) or ``mixed``, from up to ``sample`` evenly spread texts.

    Decides which embedding model reads the corpus: English-only models cannot read Chinese.
    """
    if not texts:
        return "en"
    step = max(1, len(texts) // sample)
    scripts = [dominant_script(t) for t in texts[::step]]
    lettered = [s for s in scripts if s != "none"]
    if not lettered:
        return "en"
    other = sum(s != "latin" for s in lettered) / len(lettered)
    if other >= 0.8:
        return "zh"
    return "mixed" if other >= 0.02 else "en"


def normalize_text(text: str) -> str:
    """The form duplicates are recognised by: NFKC, stripped, whitespace runs as one space, case-folded."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold()


class TermCounter:
    """Term counts of texts added chunk by chunk, as one (texts, terms) matrix like ``CountVectorizer``'s.

    With a ``vocabulary`` (term -> column) only its terms count, as ``CountVectorizer.transform``;
    without one the vocabulary grows as terms come and ``matrix()`` orders it alphabetically, as
    ``CountVectorizer.fit_transform`` does, so one chunk or many give the same matrix. ``any_terms``
    says, per text, whether the analyzer found any term at all (in the vocabulary or not). With a
    ``directory`` the counts go to a ``counts.TermFile`` there as they come, and ``matrix()`` returns
    that file (read back a block at a time) instead of a matrix in memory.
    """

    def __init__(
        self,
        analyzer: Callable[[str], list[str]],
        vocabulary: dict[str, int] | None = None,
        directory: Path | None = None,
    ) -> None:
        self.analyzer = analyzer
        self.fixed = vocabulary is not None
        self.vocabulary: dict[str, int] = dict(vocabulary or {})
        self.file = TermFile(directory) if directory is not None else None
        self._indices: list[np.ndarray] = []
        self._data: list[np.ndarray] = []
        self._lengths: list[np.ndarray] = []
        self._any: list[np.ndarray] = []

    def add(self, texts: Sequence[str]) -> np.ndarray:
        """Count the terms of ``texts``; returns how many distinct terms of the vocabulary each holds."""
        indices: list[int] = []
        data: list[int] = []
        lengths = np.zeros(len(texts), dtype=np.int64)
        found = np.zeros(len(texts), dtype=bool)
        for i, text in enumerate(texts):
            counts: dict[int, int] = {}
            terms = self.analyzer(text)
            found[i] = bool(terms)
            for term in terms:
                j = self.vocabulary.get(term)
                if j is None:
                    if self.fixed:
                        continue
                    j = self.vocabulary[term] = len(self.vocabulary)
                counts[j] = counts.get(j, 0) + 1
            indices.extend(counts)
            data.extend(counts.values())
            lengths[i] = len(counts)
        if self.file is not None:
            self.file.append(np.asarray(indices, dtype=np.int32), np.asarray(data, dtype=np.int32), lengths)
        else:
            self._indices.append(np.asarray(indices, dtype=np.int64))
            self._data.append(np.asarray(data, dtype=np.int32))
            self._lengths.append(lengths)
        self._any.append(found)
        return lengths

    @property
    def any_terms(self) -> np.ndarray:
        return np.concatenate(self._any) if self._any else np.zeros(0, dtype=bool)

    def _order(self) -> tuple[list[str], np.ndarray | None]:
        """The vocabulary in column order, and the column of each term as numbered when counted (None: same)."""
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        if self.fixed:
            return terms, None
        # alphabetical columns, as CountVectorizer's
        order = np.argsort(np.array(terms, dtype=object), kind="stable") if terms else np.zeros(0, np.int64)
        remap = np.empty(len(terms), dtype=np.int64)
        remap[order] = np.arange(len(terms))
        return [terms[i] for i in order], remap

    def matrix(self) -> tuple[sparse.csr_matrix | TermFile, list[str]]:
        """(texts, terms) int32 counts and the vocabulary in column order."""
        terms, remap = self._order()
        if self.file is not None:
            return self.file.close(len(terms), remap), terms
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)
        indices = np.concatenate(self._indices) if self._indices else np.zeros(0, dtype=np.int64)
        data = np.concatenate(self._data) if self._data else np.zeros(0, dtype=np.int32)
        if remap is not None and len(indices):
            indices = remap[indices]
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        X = sparse.csr_matrix((data, indices, indptr), shape=(len(lengths), len(terms)), dtype=np.int32)
        X.sort_indices()
        return X, terms
