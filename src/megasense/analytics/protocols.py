"""What analytics needs from the layers below, as Protocols: any object with these methods will do.

Analytics never loads a model. The caller hands in an embedder (``SentenceEmbedder`` fits) and a
sentiment scorer (``megasense.predictors.sentiment``'s predictors fit), so tests run on fakes and
``import megasense.analytics`` reads no weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

POLARITY = {"positive": 1.0, "neutral": 0.0, "negative": -1.0}

Progress = Callable[[str, int | None], contextlib.AbstractContextManager[Callable[[int], None]]]
"""``progress(description, total)``: a context manager yielding ``advance(n)``; total None when unknown."""


@contextlib.contextmanager
def no_progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


@runtime_checkable
class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, dim) float array, one row per text, in order."""
        ...


class Scored(Protocol):
    labels: Sequence[str]
    scores: np.ndarray
    """(N,) confidence of each label."""


@runtime_checkable
class SentimentScorer(Protocol):
    def predict(self, texts: Sequence[str]) -> Scored:
        """Labels (``negative``/``neutral``/``positive``) and scores; may also carry ``probs`` and ``label_names``."""
        ...


@runtime_checkable
class Step(Protocol):
    """A reducer or clusterer: scikit-learn's estimator interface."""

    def fit(self, X: Any, y: Any = None) -> Any: ...


@dataclass
class Sentiment:
    """Sentiment of a batch of texts in the columns the analysis stores."""

    labels: list[str]
    scores: np.ndarray
    """(N,) confidence of the label, as the scorer gives it."""
    polarity: np.ndarray
    """(N,) in [-1, 1]: P(positive) - P(negative) where the scorer gives probabilities, else +-score."""


def score_texts(scorer: SentimentScorer, texts: Sequence[str]) -> Sentiment:
    """Run ``scorer`` and bring its result to ``Sentiment``; a malformed result names what is wrong."""
    result = scorer.predict(list(texts))
    labels = [str(x) for x in getattr(result, "labels", ())]
    scores = np.asarray(getattr(result, "scores", ()), dtype=np.float64)
    if len(labels) != len(texts) or len(scores) != len(texts):
        raise ValueError(
            f"the sentiment scorer {type(scorer).__name__} returned {len(labels)} labels and {len(scores)} "
            f"scores for {len(texts)} texts; expected one of each per text"
        )
    probs, names = getattr(result, "probs", None), getattr(result, "label_names", None)
    if probs is not None and names is not None and "positive" in names and "negative" in names:
        probs = np.asarray(probs, dtype=np.float64)
        polarity = probs[:, list(names).index("positive")] - probs[:, list(names).index("negative")]
    else:
        polarity = np.array([POLARITY.get(label, 0.0) for label in labels]) * scores
    return Sentiment(labels=labels, scores=scores, polarity=polarity)
