"""What the service runs: a backend maps a list of texts to one result per text, synchronously.

The service never looks inside a model; it only batches texts for a backend's ``run``. Building a
backend from a model name is the library's job (``megasense.inference``); this module only adapts the
library's outputs to what the HTTP responses carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from megasense.service.settings import ServiceSettings


@dataclass
class SentimentOutcome:
    label: str
    score: float
    scores: dict[str, float]
    chunks: int = 1
    """Windows the text was split into (more than 1: it was longer than the model's window)."""


@dataclass
class EmbeddingOutcome:
    vector: list[float]
    tokens: int


class Backend(Protocol):
    name: str
    task: str
    """``sentiment`` or ``embedding``: the endpoint that serves it."""
    labels: tuple[str, ...]
    dimensions: int | None

    def run(self, texts: list[str]) -> Sequence[SentimentOutcome | EmbeddingOutcome]: ...


class EmbeddingBackend:
    task = "embedding"
    labels: tuple[str, ...] = ()

    def __init__(self, name: str, embedder) -> None:
        self.name = name
        self.embedder = embedder
        self.dimensions = embedder.dim

    def run(self, texts: list[str]) -> list[EmbeddingOutcome]:
        ids = self.embedder.encode(texts)
        vectors = self.embedder.embed_ids(ids)
        return [EmbeddingOutcome(vector=v.tolist(), tokens=len(i)) for v, i in zip(vectors, ids)]


def load_backends(settings: ServiceSettings) -> list[Backend]:
    """The configured models, loaded (this is what takes the service's start-up time)."""
    from megasense.checkpoints.loading import load_model
    from megasense.inference.pipelines import SentenceEmbedder

    backends: list[Backend] = []
    if settings.model:
        backends.append(sentiment_backend(settings.model, settings))
    if settings.embedding_model:
        embedder = SentenceEmbedder(load_model(settings.embedding_model, device=settings.device))
        backends.append(EmbeddingBackend(settings.embedding_model, embedder))
    return backends


class SentimentBackend:
    task = "sentiment"
    dimensions = None

    def __init__(self, name: str, predictor) -> None:
        self.name = name
        self.predictor = predictor
        self.labels = tuple(predictor.labels)

    def run(self, texts: list[str]) -> list[SentimentOutcome]:
        result = self.predictor.predict(texts)
        names = result.label_names
        return [
            SentimentOutcome(
                label=label,
                score=float(score),
                scores={n: float(p) for n, p in zip(names, row)},
                chunks=int(chunks),
            )
            for label, score, row, chunks in zip(result.labels, result.scores, result.probs, result.windows)
        ]


def sentiment_backend(name: str, settings: ServiceSettings) -> Backend:
    from megasense.inference.sentiment import SentimentRouter, load_predictor

    predictor = load_predictor(name)
    if isinstance(predictor, SentimentRouter):
        predictor.multilingual  # noqa: B018 -- load both models at start-up, not on the first Chinese text
    return SentimentBackend(name, predictor)
