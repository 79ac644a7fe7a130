"""Checks every predictor makes on what it is given: a list of strings, and a model that can read text."""

from __future__ import annotations

from collections.abc import Sequence

from megasense.errors import MegasenseInputError
from megasense.formats.release import LoadedModel


def require_text_model(loaded: LoadedModel, *, arch: str, needs: str) -> None:
    """Refuse a model of another architecture than ``arch`` (the message starts with ``needs``, e.g.
    "embeddings need an encoder"), or one without a tokenizer."""
    if loaded.config.arch != arch:
        raise MegasenseInputError(f"{loaded.path}: {needs} (arch {arch}), not arch {loaded.config.arch}")
    require_tokenizer(loaded)


def require_tokenizer(loaded: LoadedModel) -> None:
    if loaded.tokenizer is None:
        raise MegasenseInputError(
            f"{loaded.path}: the model has no tokenizer files (tokenizer.json); it cannot read text"
        )


def check_texts(texts: Sequence[str] | str) -> list[str]:
    """A list of strings, or a TypeError naming the first item that is not one."""
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is a {type(text).__name__}, expected a string")
    return texts
