"""What a sentiment prediction is, in one place: the fields, their names, and how each surface shows them.

A predictor returns a :class:`SentimentBatch` (columns over many texts, cheap to build from logits);
``batch[i]`` is one text's :class:`SentimentResult`. Every surface uses these names:

==============  ================================  ====================================================
field           Python (``SentimentResult``)      table column (``predict``)  /  HTTP JSON
==============  ================================  ====================================================
label           ``label``: the chosen label        ``label``                   /  ``label``
score           ``score``: its probability         ``score``                   /  ``score``
probs           ``probs``: ``{label: probability}``  ``prob_<label>`` per label  /  ``probs``
chunks          ``chunks``: model windows used      ``chunks``                  /  ``chunks``
==============  ================================  ====================================================

``probs`` is flattened to one ``prob_<label>`` column per label in tables (so CSV readers see plain
numbers); the HTTP response also repeats ``probs`` as ``scores``, its name before version 0.2.
``chunks`` is more than 1 when a text was longer than the model's window and was read in overlapping
windows whose probabilities were averaged.

The same result serves every text classifier (sentiment, intents, emotions). A multi-label model's
``label`` is every predicted label, comma-separated, most probable first (``labels`` in Python and
HTTP holds them as a list), its ``score`` the top probability, and ``probs`` independent per-label
probabilities. A model with many labels (more than ``MAX_PROB_COLUMNS``) writes a ``top`` column
(``label=prob; ...`` for the five most probable) in tables instead of one column per label.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

PROB_PREFIX = "prob_"
"""Table columns of ``probs``: ``prob_negative``, ``prob_neutral``, ``prob_positive``."""

MAX_PROB_COLUMNS = 12
"""Models with more labels than this write the ``top`` column instead of one ``prob_<label>`` per label."""

TOP_K = 5
"""Labels in the ``top`` column."""


@dataclass(frozen=True)
class SentimentResult:
    """One text's answer."""

    label: str
    """The most probable of the allowed labels ('' for an empty text)."""
    score: float
    """The probability of ``label``."""
    probs: dict[str, float]
    """Probability of every allowed label, in the model's label order."""
    chunks: int = 1
    """Model windows the text was read in (more than 1: longer than the model's window)."""
    labels: tuple[str, ...] | None = None
    """A multi-label model's predicted labels, most probable first (None for single-label models)."""

    def to_dict(self) -> dict[str, Any]:
        """``{"label", "score", "probs", "chunks"}`` (and ``labels`` for a multi-label model): what
        ``megasense.sentiment`` returns."""
        out = {"label": self.label, "score": self.score, "probs": dict(self.probs), "chunks": self.chunks}
        if self.labels is not None:
            out["labels"] = list(self.labels)
        return out


@dataclass
class SentimentBatch:
    """The answers for many texts, as columns."""

    labels: list[str]
    scores: np.ndarray
    """(N,) probability of each chosen label."""
    probs: np.ndarray
    """(N, len(label_names)) probabilities over ``label_names``."""
    label_names: tuple[str, ...]
    chunks: list[int]
    """Windows per text: more than 1 means the text was longer than the model's window."""
    label_sets: list[tuple[str, ...]] | None = None
    """A multi-label model's predicted labels per text (``labels`` holds them comma-joined)."""
    in_scope_scores: np.ndarray | None = None
    """A model with an out-of-scope label: (N,) how well any in-scope label fits (log-sum-exp of their
    logits; the model answers out-of-scope below its calibrated threshold)."""

    def __len__(self) -> int:
        return len(self.labels)

    @overload
    def __getitem__(self, i: int) -> SentimentResult: ...

    @overload
    def __getitem__(self, i: slice) -> SentimentBatch: ...

    def __getitem__(self, i: int | slice) -> SentimentResult | SentimentBatch:
        if isinstance(i, slice):  # batch[:10]: the same columns, cut
            return dataclasses.replace(
                self,
                labels=self.labels[i],
                scores=self.scores[i],
                probs=self.probs[i],
                chunks=list(self.chunks[i]),
                label_sets=None if self.label_sets is None else self.label_sets[i],
                in_scope_scores=None if self.in_scope_scores is None else self.in_scope_scores[i],
            )
        return SentimentResult(
            label=self.labels[i],
            score=float(self.scores[i]),
            probs={name: float(self.probs[i, j]) for j, name in enumerate(self.label_names)},
            chunks=int(self.chunks[i]),
            labels=None if self.label_sets is None else self.label_sets[i],
        )

    def __iter__(self) -> Iterator[SentimentResult]:
        return (self[i] for i in range(len(self)))

    @property
    def windows(self) -> list[int]:
        """Deprecated name of ``chunks``."""
        return self.chunks

    def columns(self, *, decimals: int = 6) -> dict[str, Any]:
        """The table columns ``megasense predict`` adds: label, score, prob_<label>... (or ``top`` for a model
        with many labels), chunks."""
        columns: dict[str, Any] = {"label": self.labels, "score": np.round(self.scores, decimals)}
        if len(self.label_names) > MAX_PROB_COLUMNS:
            columns["top"] = [self.top(i) for i in range(len(self))]
        else:
            for j, name in enumerate(self.label_names):
                columns[f"{PROB_PREFIX}{name}"] = np.round(self.probs[:, j], decimals)
        columns["chunks"] = self.chunks
        return columns

    def top(self, i: int, k: int = TOP_K) -> str:
        """``label=prob; ...`` for the ``k`` most probable labels of text ``i`` (those that round to 0.000
        left out, the first always kept)."""
        order = np.argsort(-self.probs[i], kind="stable")[:k]
        shown = [j for n, j in enumerate(order) if n == 0 or self.probs[i, j] >= 0.0005]
        return "; ".join(f"{self.label_names[j]}={self.probs[i, j]:.3f}" for j in shown)

    @classmethod
    def empty(cls, label_names: tuple[str, ...]) -> SentimentBatch:
        return cls(
            labels=[], scores=np.zeros(0), probs=np.zeros((0, len(label_names))), label_names=label_names, chunks=[]
        )
