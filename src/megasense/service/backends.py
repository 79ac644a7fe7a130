"""What the service runs: a backend maps a list of texts to one result per text, synchronously.

The service never looks inside a model; it only batches texts for a backend's ``run``. Building a
backend from a model name is the library's job (``megasense.predictors``); a sentiment backend returns
the library's own ``SentimentResult`` per text, so the HTTP JSON carries the same fields as the Python
API and the CLI's columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from megasense.predictors.results import SentimentResult
from megasense.service.settings import ServiceSettings


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

    def run(self, texts: list[str]) -> Sequence[SentimentResult | EmbeddingOutcome]: ...


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
    from megasense.predictors.embedding import SentenceEmbedder
    from megasense.zoo.load import load_model

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

    def run(self, texts: list[str]) -> list[SentimentResult]:
        return list(self.predictor.predict(texts))


def sentiment_backend(name: str, settings: ServiceSettings) -> Backend:
    from megasense.predictors.sentiment import SentimentRouter, load_predictor

    predictor = load_predictor(name, device=settings.device, precision=settings.precision)
    if isinstance(predictor, SentimentRouter):
        predictor.multilingual  # noqa: B018 -- load both models at start-up, not on the first Chinese text
    return SentimentBackend(name, predictor)
