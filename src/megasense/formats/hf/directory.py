"""Read and write Hugging Face model directories (config.json + safetensors or .bin + tokenizer).

Conversion of names and layouts lives in ``hf.py``; this module only deals with files.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from megasense.config import ConfigError, HeadConfig, ModelConfig
from megasense.errors import CheckpointError
from megasense.files.atomic import atomic_directory
from megasense.formats.hf import keys as hf
from megasense.formats.release import read_safetensors
from megasense.formats.types import ImportedModel
from megasense.tokenization import Tokenizer, TokenizerError

_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")


def read_hf_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.is_file():
        raise CheckpointError(
            directory,
            "no config.json here; a Hugging Face model directory holds config.json "
            "and model.safetensors (or pytorch_model.bin)",
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(path, f"is not valid JSON ({exc})") from None


def read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    """Tensors from model.safetensors, a sharded safetensors index, or (safely) pytorch_model.bin."""
    single = directory / "model.safetensors"
    if single.is_file():
        return read_safetensors(single)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError) as exc:
            raise CheckpointError(index, f"is not a valid safetensors index ({exc})") from None
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            tensors.update(read_safetensors(directory / shard))
        return tensors
    legacy = directory / "pytorch_model.bin"
    if legacy.is_file():
        from megasense.formats.torch_load import safe_torch_load

        state = safe_torch_load(legacy)
        if not isinstance(state, dict):
            raise CheckpointError(legacy, f"holds a {type(state).__name__}, expected a dict of tensors")
        return state
    raise CheckpointError(
        directory, "no weights found: expected model.safetensors, model.safetensors.index.json or pytorch_model.bin"
    )


def _sentence_transformers_head(directory: Path) -> HeadConfig | None:
    """A sentence-transformers directory (modules.json with mean Pooling) is an embedding model."""
    pooling = directory / "1_Pooling" / "config.json"
    if not (directory / "modules.json").is_file() or not pooling.is_file():
        return None
    try:
        settings = json.loads(pooling.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return HeadConfig(task="embedding") if settings.get("pooling_mode_mean_tokens") else None


def read_hf_dir(path: str | Path, *, name: str = "") -> ImportedModel:
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(directory, "is not a directory" if directory.exists() else "does not exist")
    hf_config = read_hf_config(directory)
    try:
        hf.hf_model_type(hf_config)  # an unknown architecture is reported before any weights are read
    except ConfigError as exc:
        raise CheckpointError(directory / "config.json", str(exc)) from None
    raw = read_hf_weights(directory)
    try:
        config = hf.model_config_from_hf(hf_config, raw, name=name or directory.name)
        head = _sentence_transformers_head(directory) or hf.head_config_from_hf(hf_config, raw)
        state = hf.state_dict_from_hf(hf_config, raw, config)
    except ConfigError as exc:
        raise CheckpointError(directory / "config.json", str(exc)) from None
    except CheckpointError as exc:
        raise CheckpointError(directory, exc.problem) from None
    notes = []
    tokenizer = None
    if any((directory / f).is_file() for f in _TOKENIZER_FILES):
        try:
            tokenizer = Tokenizer.load(directory)
        except TokenizerError as exc:
            raise CheckpointError(directory, f"tokenizer files are unusable: {exc}") from None
    else:
        notes.append(f"no tokenizer files in {directory}; pass a tokenizer separately")
    return ImportedModel(
        config=config, head=head, state_dict=state, tokenizer=tokenizer, source=str(directory), notes=notes
    )


def write_hf_dir(
    directory: str | Path,
    *,
    config: ModelConfig,
    head: HeadConfig,
    state_dict: dict[str, torch.Tensor],
    tokenizer: Tokenizer | None = None,
    overwrite: bool = False,
) -> Path:
    """Export to a Hugging Face directory that transformers loads with ``from_pretrained``."""
    try:
        hf_config = hf.model_config_to_hf(config, head)
        tensors = hf.state_dict_to_hf(state_dict, config, head)
    except ConfigError as exc:
        raise CheckpointError(directory, f"cannot export to Hugging Face format: {exc}") from None
    # transformers ties lm_head/decoder to the embedding itself; safetensors refuses shared storage.
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save(tmp)  # tokenizer.json + tokenizer_config.json: what AutoTokenizer reads
    return Path(directory)
