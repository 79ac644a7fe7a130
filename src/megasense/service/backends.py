"""What the service runs: a backend maps a list of texts to one result per text, synchronously.

The service never looks inside a model; it only batches texts for a backend's ``run``. Building a
backend from a model name is the library's job (``megasense.predictors``); a classifier backend
(sentiment, intent, emotion) returns the library's own ``SentimentResult`` per text, and the slots backend
its ``SlotResult``, so the HTTP JSON carries the same fields as the Python API and the CLI's columns. Here
the service only checks that a model fits the endpoint it is named for, at start-up, naming the setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from megasense.errors import ConfigError, MegasenseInputError
from megasense.predictors.results import SentimentResult
from megasense.service.settings import TASK_SETTINGS, ServiceSettings

if TYPE_CHECKING:
    from megasense.predictors.slots import SlotResult  # torch and the tagging code load with the model


@dataclass
class EmbeddingOutcome:
    vector: list[float]
    tokens: int
    truncated: bool = False
    """The text was longer than the model's window; only its first ``tokens`` were embedded."""


class Backend(Protocol):
    name: str
    task: str
    """``sentiment``, ``intent``, ``emotion``, ``slots`` or ``embedding``: the endpoint that serves it
    (``/v1/<task>``, ``/v1/embeddings``)."""
    labels: tuple[str, ...]
    dimensions: int | None

    def run(self, texts: list[str]) -> Sequence[SentimentResult | SlotResult | EmbeddingOutcome]: ...


class EmbeddingBackend:
    task = "embedding"
    labels: tuple[str, ...] = ()

    def __init__(self, name: str, embedder) -> None:
        self.name = name
        self.embedder = embedder
        self.dimensions = embedder.dim
        self.max_tokens: int = embedder.max_length

    def run(self, texts: list[str]) -> list[EmbeddingOutcome]:
        ids, truncated = self.embedder.encode_flagged(texts)
        vectors = self.embedder.embed_ids(ids)
        return [
            EmbeddingOutcome(vector=v.tolist(), tokens=len(i), truncated=t) for v, i, t in zip(vectors, ids, truncated)
        ]


def check_model_names(settings: ServiceSettings) -> None:
    """Each configured model is a known name or an existing path; else a ConfigError naming the setting
    (before any weights are read)."""
    from megasense.zoo.embedded import EMBEDDED, find_embedded
    from megasense.zoo.shipped import ROUTER, SHIPPED_MODELS, find_shipped_model

    names = {**settings.classifier_models(), "slots": settings.slots_model, "embedding": settings.embedding_model}
    for task, name in names.items():
        if not name or name == ROUTER or find_shipped_model(name) or find_embedded(name):
            continue
        if not Path(name).expanduser().exists():
            known = ", ".join([ROUTER, *(m.name for m in SHIPPED_MODELS), *(e.name for e in EMBEDDED)])
            raise ConfigError(
                f"{TASK_SETTINGS[task]}={name!r}: no such model directory, and not a model name megasense knows "
                f"({known})"
            )


def load_backends(settings: ServiceSettings) -> list[Backend]:
    """The configured models, loaded (this is what takes the service's start-up time)."""
    from megasense.predictors.embedding import SentenceEmbedder
    from megasense.zoo.load import load_model

    backends: list[Backend] = [
        classifier_backend(task, name, settings) for task, name in settings.classifier_models().items()
    ]
    if settings.slots_model:
        backends.append(slots_backend(settings.slots_model, settings))
    if settings.embedding_model:
        embedder = SentenceEmbedder(load_model(settings.embedding_model, device=settings.device))
        backends.append(EmbeddingBackend(settings.embedding_model, embedder))
    return backends


class ClassifierBackend:
    """A text classifier behind ``/v1/<task>``: sentiment, intent or emotion."""

    dimensions = None

    def __init__(self, name: str, predictor, task: str = "sentiment") -> None:
        self.name = name
        self.task = task
        self.predictor = predictor
        self.labels = tuple(predictor.labels)
        self.multi_label: bool = predictor.multi_label
        self.oos_label: str = predictor.oos_label
        """The label that means out-of-scope ('' when the model has none)."""

    def run(self, texts: list[str]) -> list[SentimentResult]:
        return list(self.predictor.predict(texts))

    def routes(self) -> list[ClassifierBackend]:
        """A routing rule's models, each as a backend of its own (``default``: sentiment-en and
        sentiment-multilingual), so a request may name the one it wants; none for a plain model."""
        from megasense.predictors.sentiment import SentimentRouter

        if not isinstance(self.predictor, SentimentRouter):
            return []
        models = (self.predictor.english, self.predictor.multilingual)
        return [ClassifierBackend(model.name, model, self.task) for model in models]


SentimentBackend = ClassifierBackend
"""The name from when sentiment was the only classifier."""

MULTI_LABEL = {"intent": False, "emotion": True}
"""What each endpoint needs: one intent per text, every emotion of a text (sentiment takes either)."""


def classifier_backend(task: str, name: str, settings: ServiceSettings) -> Backend:
    """The model ``name`` loaded for ``/v1/<task>``; a ``ConfigError`` naming the setting if it cannot serve it."""
    from megasense.predictors.sentiment import SentimentRouter, load_predictor

    setting = TASK_SETTINGS[task]
    try:
        predictor = load_predictor(name, device=settings.device, precision=settings.precision)
    except MegasenseInputError as exc:
        raise ConfigError(f"{setting}={name!r}: {exc}") from exc
    if task in MULTI_LABEL and predictor.multi_label != MULTI_LABEL[task]:
        raise ConfigError(_wrong_kind(task, setting, name, predictor))
    if isinstance(predictor, SentimentRouter):
        predictor.multilingual  # noqa: B018 -- load both models at start-up, not on the first Chinese text
    return ClassifierBackend(name, predictor, task)


def sentiment_backend(name: str, settings: ServiceSettings) -> Backend:
    return classifier_backend("sentiment", name, settings)


class SlotsBackend:
    """A slot filler behind ``/v1/slots`` (and beside an intent model, in ``/v1/intent``'s answers)."""

    task = "slots"
    dimensions = None

    def __init__(self, name: str, filler) -> None:
        self.name = name
        self.filler = filler
        self.labels: tuple[str, ...] = tuple(filler.tags)
        """The model's tags (``O``, ``B-time``, ``I-time``, ...)."""

    def run(self, texts: list[str]) -> list[SlotResult]:
        return self.filler.predict(texts)


def slots_backend(name: str, settings: ServiceSettings) -> SlotsBackend:
    """The slot filler ``name`` (a token-classification model); a ``ConfigError`` naming ``slots_model`` if it
    is another kind of model or cannot be loaded."""
    from megasense.predictors.slots import SlotFiller
    from megasense.zoo.load import load_model

    setting = TASK_SETTINGS["slots"]
    try:
        loaded = load_model(name, device=settings.device)
    except MegasenseInputError as exc:
        raise ConfigError(f"{setting}={name!r}: {exc}") from exc
    if loaded.head.task != "token_classification":
        labels = list(loaded.head.labels or ())
        shown = f" (labels {', '.join(labels[:6])}{', ...' if len(labels) > 6 else ''})" if labels else ""
        kind = loaded.head.task.replace("_", "-")
        a = "an" if kind[0] in "aeiou" else "a"
        raise ConfigError(
            f"{setting}={name!r} is {a} {kind} model{shown}; /v1/slots needs a token-classification model "
            "(a slot filler, made by megasense.training.slots.train_slots)"
        )
    try:
        filler = SlotFiller(loaded, precision=settings.precision, name=name)
    except MegasenseInputError as exc:
        raise ConfigError(f"{setting}={name!r}: {exc}") from exc
    return SlotsBackend(name, filler)


def _wrong_kind(task: str, setting: str, name: str, predictor) -> str:
    labels = list(predictor.labels)
    shown = ", ".join(labels[:6]) + (f", ... ({len(labels)} labels)" if len(labels) > 6 else "")
    if predictor.multi_label:
        return (
            f"{setting}={name!r} is a multi-label classifier (labels {shown}); /v1/{task} answers one label per "
            "text and needs a single-label classifier such as intent-en (a multi-label model belongs in emotion_model)"
        )
    return (
        f"{setting}={name!r} is a single-label classifier (labels {shown}); /v1/{task} answers every label a "
        "text shows and needs a multi-label classifier such as emotion-en (trained with `megasense train "
        "--multi-label`)"
    )
