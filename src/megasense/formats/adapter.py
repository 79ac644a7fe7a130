"""megasense's adapter format: a classification head (sequence or token) and LoRA matrices on a named base encoder,
or LoRA matrices alone on a named base decoder (head ``causal_lm``: a chat model fine-tuned from it).

An adapter directory holds ``adapter.safetensors`` (LoRA matrices, the classification head, and any
other tensors training changed, in fp16) plus ``adapter.json`` (which base model, which labels, the
LoRA settings) and a model card. Loading one puts a classification head on the base model (a decoder
keeps its own output layer), applies the adapter and folds LoRA into the weights, so inference runs a
plain model at full speed. Which base a name means is the zoo's business (``megasense.zoo``); this
module takes a loaded base.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from megasense.config import HeadConfig
from megasense.errors import CheckpointError, MegasenseInputError
from megasense.files.atomic import atomic_directory
from megasense.formats.release import LoadedModel, read_safetensors, read_tagged_json
from megasense.models import build_model, load_weights, materialize, weights_for_saving
from megasense.models.lora import LoRASettings, apply_lora, merge_lora

ADAPTER_WEIGHTS = "adapter.safetensors"


ADAPTER_CONFIG = "adapter.json"


ADAPTER_FORMAT = "megasense-adapter"


def classifier_on(
    base: LoadedModel, labels: tuple[str, ...], *, pooling: str = "mean", dropout: float = 0.1
) -> tuple[torch.nn.Module, HeadConfig]:
    """A fresh classification head on ``base``'s backbone weights (the head starts at small random values)."""
    head = HeadConfig(
        task="classification", labels=labels, pooling=pooling, dropout=dropout, text_prefix=base.head.text_prefix
    )
    return head_on(base, head), head


HEAD_TASKS = ("classification", "token_classification")
"""The heads an adapter can carry: a ``classifier`` on pooled states or on every token's state."""


def head_on(base: LoadedModel, head: HeadConfig) -> torch.nn.Module:
    """The model ``head`` describes (a sequence or a token classifier) on ``base``'s backbone weights; the
    head starts at small random values."""
    if base.config.arch != "bert":
        raise MegasenseInputError(
            f"{base.path}: a classifier needs an encoder (arch bert), not arch {base.config.arch}"
        )
    if head.task not in HEAD_TASKS:
        raise MegasenseInputError(f"{base.path}: an adapter head is one of {', '.join(HEAD_TASKS)}, not {head.task!r}")
    model = build_model(base.config, head)
    model.init_weights()
    backbone = {k: v for k, v in base.model.state_dict().items() if not k.startswith(("classifier.", "lm_head."))}
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if unexpected or any(not k.startswith("classifier.") for k in missing):
        raise CheckpointError(base.path, f"backbone does not fit a classifier: missing {missing}, extra {unexpected}")
    return model


def decoder_on(base: LoadedModel) -> torch.nn.Module:
    """A copy of ``base``'s decoder (arch gpt) with its own output layer: what a ``causal_lm`` adapter applies to
    (a copy, so the caller's base is left as it was)."""
    if base.config.arch != "gpt":
        raise MegasenseInputError(
            f"{base.path}: a causal_lm adapter needs a decoder (arch gpt), not arch {base.config.arch}"
        )
    return materialize(base.config, HeadConfig(task="causal_lm"), weights_for_saving(base.model))


def save_adapter(
    directory: str | Path,
    *,
    tensors: dict[str, torch.Tensor],
    base: str,
    head: HeadConfig,
    lora: LoRASettings | None,
    card: str,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``adapter.safetensors`` + ``adapter.json`` + ``README.md`` atomically."""
    directory = Path(directory)
    payload = {
        "format": ADAPTER_FORMAT,
        "format_version": 1,
        "base": base,
        "head": head.to_dict(),
        "lora": None if lora is None else {"rank": lora.rank, "alpha": lora.alpha, "targets": list(lora.targets)},
        "metadata": metadata or {},
    }
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        # fp16 on disk halves the shipped size; the weights are loaded into (and merged in) fp32.
        stored = {k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(stored, str(tmp / ADAPTER_WEIGHTS))
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return directory


def read_adapter_config(directory: Path) -> dict[str, Any]:
    holds = f"an adapter holds {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}"
    return read_tagged_json(directory, ADAPTER_CONFIG, ADAPTER_FORMAT, holds)


def is_adapter_dir(path: Path) -> bool:
    return (path / ADAPTER_CONFIG).is_file()


def load_adapter(directory: str | Path, base: LoadedModel) -> LoadedModel:
    """``base`` with the adapter in ``directory`` applied and merged: a ready (sequence or token) classifier, or a
    decoder for a ``causal_lm`` adapter."""
    directory = Path(directory)
    payload = read_adapter_config(directory)
    try:
        head = HeadConfig.from_dict(payload["head"], source=str(directory / ADAPTER_CONFIG))
    except (KeyError, ValueError) as exc:
        raise CheckpointError(directory / ADAPTER_CONFIG, f"invalid head: {exc}") from None
    tensors = read_safetensors(directory / ADAPTER_WEIGHTS)
    model = decoder_on(base) if head.task == "causal_lm" else head_on(base, head)
    if payload.get("lora"):
        lora = payload["lora"]
        apply_lora(model, LoRASettings(rank=lora["rank"], alpha=lora["alpha"], targets=tuple(lora["targets"])))
    expected = dict(model.state_dict())
    unknown = sorted(set(tensors) - set(expected))
    wrong = [k for k in tensors if k in expected and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if unknown or wrong:
        raise CheckpointError(
            directory / ADAPTER_WEIGHTS,
            f"does not fit the base {payload.get('base')!r}: unknown tensors {unknown[:5]}, wrong shapes {wrong[:5]}",
        )
    load_weights(model, {**expected, **tensors})
    merge_lora(model)
    for param in model.parameters():
        param.requires_grad_(False)
    return LoadedModel(
        model=model.eval(),
        config=base.config,
        head=head,
        tokenizer=base.tokenizer,
        path=directory,
        metadata={**payload.get("metadata", {}), "base": payload.get("base")},
    )
