"""Sentiment as a task: texts -> token-id windows -> (model logits) -> labels, scores and probabilities.

This module never runs a model. ``SentimentTask.encode`` turns texts into token sequences, cutting a
text longer than the model's window into overlapping windows instead of silently truncating it;
``SentimentTask.aggregate`` turns the logits of those windows back into one probability row per
text (the windows' probabilities averaged, weighted by their number of real tokens), restricted to
a subset of labels when the data has only some of them (a binary set for a three-class model: the
softmax is taken over the allowed labels only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from megasense.errors import ConfigError, LabelError
from megasense.predictors.labels import SENTIMENT_LABELS
from megasense.predictors.results import SentimentBatch
from megasense.tokenization import Tokenizer


@dataclass
class WindowPlan:
    """Token windows for a list of texts, and which text each window belongs to."""

    sequences: list[list[int]]
    """Token ids of each window, special tokens included."""
    owner: list[int]
    """Index of the text each window belongs to."""
    weight: list[int]
    """Real (non-special) tokens in each window; the weight of its vote."""
    windows: list[int]
    """Number of windows of each text (1 for a text that fits)."""


class SentimentTask:
    """Text <-> ids <-> labels for a classifier whose logits are ordered as ``labels``."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        labels: Sequence[str] = SENTIMENT_LABELS,
        *,
        prefix: str = "",
        max_length: int = 256,
        overlap: int = 64,
        allowed: Sequence[str] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.labels = tuple(labels)
        self.prefix = prefix
        self.max_length = max_length
        self.overlap = overlap
        # A text "" encodes to the framing special tokens alone ([CLS] [SEP], <s> </s>, or nothing).
        frame = tokenizer.encode("")
        self._start, self._end = frame[:1], frame[1:]
        self._prefix_ids = tokenizer.encode(prefix, add_special_tokens=False) if prefix else []
        room = max_length - len(frame) - len(self._prefix_ids)
        if room < 8:
            raise ConfigError(f"max_length={max_length} leaves {room} tokens per window; use at least 16")
        if not 0 <= overlap < room:
            raise ConfigError(f"overlap={overlap} must be in [0, {room}) for max_length={max_length}")
        self._room = room
        self.allowed = self._check_allowed(allowed)
        self._columns = [self.labels.index(label) for label in self.allowed]

    def _check_allowed(self, allowed: Sequence[str] | None) -> tuple[str, ...]:
        if allowed is None:
            return self.labels
        allowed = tuple(dict.fromkeys(allowed))
        unknown = [a for a in allowed if a not in self.labels]
        if unknown or len(allowed) < 2:
            raise LabelError(
                f"labels {list(allowed)}: choose at least two of the model's labels {list(self.labels)}"
                + (f" (unknown: {unknown})" if unknown else "")
            )
        return allowed

    def restricted(self, allowed: Sequence[str] | None) -> SentimentTask:
        """The same task with predictions restricted to ``allowed`` labels."""
        return SentimentTask(
            self.tokenizer,
            self.labels,
            prefix=self.prefix,
            max_length=self.max_length,
            overlap=self.overlap,
            allowed=allowed,
        )

    def encode(self, texts: Sequence[str]) -> WindowPlan:
        """Token windows of every text; texts longer than ``max_length`` get overlapping windows."""
        full = self.tokenizer.encode_batch([self.prefix + t for t in texts])
        plan = WindowPlan(sequences=[], owner=[], weight=[], windows=[])
        framing = len(self._start) + len(self._end) + len(self._prefix_ids)
        for index, ids in enumerate(full):
            if len(ids) <= self.max_length:
                windows = [ids]
                weights = [max(1, len(ids) - framing)]
            else:
                body = self.tokenizer.encode(texts[index], add_special_tokens=False)
                windows, weights = [], []
                step = self._room - self.overlap
                for begin in range(0, max(1, len(body) - self.overlap), step):
                    piece = body[begin : begin + self._room]
                    windows.append([*self._start, *self._prefix_ids, *piece, *self._end])
                    weights.append(len(piece))
                    if begin + self._room >= len(body):
                        break
            plan.sequences.extend(windows)
            plan.weight.extend(weights)
            plan.owner.extend([index] * len(windows))
            plan.windows.append(len(windows))
        return plan

    def probabilities(self, logits: torch.Tensor, plan: WindowPlan) -> np.ndarray:
        """(windows, model labels) logits -> (texts, allowed labels) probabilities."""
        logits = logits.float()[:, self._columns]  # restricted labels: softmax over the allowed ones only
        probs = torch.softmax(logits, dim=-1)
        owner = torch.as_tensor(plan.owner, dtype=torch.long)
        weight = torch.as_tensor(plan.weight, dtype=torch.float32).unsqueeze(-1)  # (windows, 1)
        total = torch.zeros((len(plan.windows), probs.shape[1])).index_add_(0, owner, probs * weight)
        norm = torch.zeros((len(plan.windows), 1)).index_add_(0, owner, weight)
        return (total / norm).numpy()

    def decode(self, probs: np.ndarray, windows: Sequence[int]) -> SentimentBatch:
        best = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=int)
        return SentimentBatch(
            labels=[self.allowed[i] for i in best],
            scores=probs[np.arange(len(probs)), best] if len(probs) else np.zeros(0),
            probs=probs,
            label_names=self.allowed,
            chunks=list(windows),
        )

    def aggregate(self, logits: torch.Tensor, plan: WindowPlan) -> SentimentBatch:
        return self.decode(self.probabilities(logits, plan), plan.windows)
