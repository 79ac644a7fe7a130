"""The one-call Python API for embeddings and generation: ``megasense.embed`` and ``megasense.generate``.

Each call accepts a model name, a path, or an already loaded model (``megasense.load_model``); pass
a loaded model when calling many times, so the weights are read once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from megasense.checkpoints.loading import load_model
from megasense.checkpoints.release import LoadedModel
from megasense.config import GenerationConfig
from megasense.inference.pipelines import SentenceEmbedder, TextGenerator


def _loaded(model: str | LoadedModel) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def embed(texts: Sequence[str] | str, *, model: str | LoadedModel = "all-minilm-l6-v2") -> np.ndarray:
    """(N, hidden) L2-normalised sentence embeddings.

    >>> vectors = megasense.embed(["good service", "服务很好"], model="multilingual-e5-small")  # doctest: +SKIP
    """
    return SentenceEmbedder(_loaded(model)).embed(texts)


def generate(
    prompt: str,
    *,
    model: str | LoadedModel = "smollm2-135m-instruct",
    chat: bool | None = None,
    stream: bool = False,
    **options,
) -> str | Iterator[str]:
    """Generated text for ``prompt``; ``options`` are GenerationConfig fields (max_new_tokens, do_sample,
    temperature, top_k, top_p, num_beams, seed, ...). With ``stream=True``, an iterator of text pieces.

    >>> megasense.generate("What is a transformer?", max_new_tokens=40)  # doctest: +SKIP
    """
    generator = TextGenerator(_loaded(model))
    config = GenerationConfig(**options)
    if stream:
        return generator.stream(prompt, config, chat=chat)
    return generator.generate([prompt], config, chat=chat)[0][0]
