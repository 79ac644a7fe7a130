"""The release format: ``model.safetensors`` + ``config.json`` + tokenizer files + ``README.md``.

This is how finished models travel: no pickle, readable by any safetensors reader, validated on load
with errors that name the file and the tensor. Directories are written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from megasense.config import ConfigError, HeadConfig, ModelConfig
from megasense.errors import CheckpointError
from megasense.files.atomic import atomic_directory
from megasense.models import build_on_meta, materialize
from megasense.tokenization import Tokenizer

FORMAT = "megasense"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"


@dataclass
class LoadedModel:
    """A model loaded from a release directory, with everything needed to use it."""

    model: nn.Module
    config: ModelConfig
    head: HeadConfig
    tokenizer: Tokenizer | None
    path: Path
    metadata: dict[str, Any]


def is_release_dir(path: Path) -> bool:
    config = path / CONFIG
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("format") == FORMAT
    except (ValueError, OSError):
        return False


def save_release(
    directory: str | Path,
    *,
    config: ModelConfig,
    head: HeadConfig,
    state_dict: dict[str, torch.Tensor],
    tokenizer: Tokenizer | None = None,
    card: str | None = None,
    metadata: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a release directory atomically. ``state_dict`` must omit tied aliases (see ``weights_for_saving``)."""
    directory = Path(directory)
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in state_dict.items()
    }
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": FORMAT})
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": config.to_dict(),
            "head": head.to_dict(),
            "metadata": metadata or {},
        }
        (tmp / CONFIG).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save(tmp)
        (tmp / CARD).write_text(card or default_card(config, head), encoding="utf-8")
    return directory


def require_finite(state_dict: dict[str, torch.Tensor], target: Path, hint: str) -> dict[str, torch.Tensor]:
    """``state_dict`` if every floating tensor is finite; else a CheckpointError naming the tensors and ``hint``
    (weights with NaN or infinities answer NaN for every text, so they are never saved)."""
    bad = [name for name, t in state_dict.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(target, f"not saved: the weights hold NaN or infinite values ({shown}); {hint}")
    return state_dict


def read_tagged_json(directory: Path, name: str, fmt: str, holds: str) -> dict[str, Any]:
    """The JSON object in ``directory/name`` whose ``format`` field must be ``fmt``; errors name the file."""
    path = directory / name
    if not path.is_file():
        raise CheckpointError(directory, f"no {name} here; {holds}")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(path, f"is not valid JSON ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(path, f"format is {found!r}, expected {fmt!r}")
    return payload


def read_release_config(directory: Path) -> tuple[ModelConfig, HeadConfig, dict[str, Any]]:
    payload = read_tagged_json(directory, CONFIG, FORMAT, f"a megasense model directory holds {CONFIG} and {WEIGHTS}")
    path = directory / CONFIG
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"format_version {payload['format_version']} is newer than this megasense "
            f"understands ({FORMAT_VERSION}); upgrade megasense",
        )
    try:
        config = ModelConfig.from_dict(payload["model"], source=str(path))
        head = HeadConfig.from_dict(payload.get("head", {}), source=str(path))
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(path, f"invalid model description: {exc}") from None
    return config, head, payload.get("metadata", {})


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; a truncated or corrupt file gets an error that names it."""
    if not path.is_file():
        raise CheckpointError(path, "weight file is missing")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"is not a readable safetensors file (truncated or corrupt?): {exc}") from None


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: Path) -> None:
    """Compare names and shapes with the model before loading, naming the first problems found."""
    expected = {k: v.shape for k, v in model.state_dict().items() if k not in model.tied_parameters()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k])}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (first: {missing[:5]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (first: {unexpected[:5]})")
    if wrong:
        problems.append(f"{len(wrong)} tensors with the wrong shape (first: {wrong[:3]})")
    if problems:
        raise CheckpointError(source, "does not match its config.json: " + "; ".join(problems))


def load_release(
    directory: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    load_tokenizer: bool = True,
) -> LoadedModel:
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(directory, "is not a directory" if directory.exists() else "does not exist")
    config, head, metadata = read_release_config(directory)
    state = read_safetensors(directory / WEIGHTS)
    model = build_on_meta(config, head)
    check_state_dict(model, state, directory / WEIGHTS)
    model = materialize(config, head, state, device=device)
    if dtype is not None:
        model = model.to(dtype)
    tokenizer = Tokenizer.load(directory) if load_tokenizer and (directory / "tokenizer.json").is_file() else None
    return LoadedModel(
        model=model.eval(), config=config, head=head, tokenizer=tokenizer, path=directory, metadata=metadata
    )


def default_card(config: ModelConfig, head: HeadConfig) -> str:
    params = config.num_parameters()
    labels = f"\n- labels: {', '.join(head.labels)}" if head.labels else ""
    return (
        f"# {config.name or config.arch}\n\nA megasense model in the release format "
        f"({WEIGHTS} + {CONFIG} + tokenizer files).\n\n- architecture: {config.arch}, {config.num_layers} layers, "
        f"hidden {config.hidden_size}, {config.num_attention_heads} heads\n- parameters: {params:,}\n"
        f"- head: {head.task}{labels}\n"
    )
