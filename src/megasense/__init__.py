"""megasense: Megatron-style language models for the text people write.

The public Python API is imported lazily so ``import megasense`` stays fast and never loads a model:

>>> import megasense
>>> loaded = megasense.load_model("all-minilm-l6-v2")      # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from megasense import _moved

__version__ = "0.2.0"

_moved.install()  # old module paths keep working, with a DeprecationWarning

# public name -> "module:attribute"
_API = {
    "load_model": "megasense.api:load_model",
    "embed": "megasense.api:embed",
    "generate": "megasense.api:generate",
    "sentiment": "megasense.api:sentiment",
    "classify": "megasense.api:classify",
    "predict": "megasense.api:predict",
    "evaluate": "megasense.api:evaluate",
    "explain": "megasense.api:explain",
    "train": "megasense.api:train",
    "analyze": "megasense.api:analyze",
    "load_assistant": "megasense.api:load_assistant",
    "assist": "megasense.api:assist",
    "summarize": "megasense.api:summarize",
    "load_summarizer": "megasense.api:load_summarizer",
    "TopicModel": "megasense.analytics.topics:TopicModel",
    "ModelConfig": "megasense.config:ModelConfig",
    "HeadConfig": "megasense.config:HeadConfig",
    "GenerationConfig": "megasense.config:GenerationConfig",
    "preset": "megasense.config:preset",
}


def __getattr__(name: str) -> Any:
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'megasense' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = sorted(_API)
