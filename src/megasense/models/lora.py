"""Low-rank adapters (LoRA), applied to a model from outside, like parallelism.

``apply_lora`` swaps chosen ``nn.Linear`` modules for ``LoRALinear``, which keeps the very same
weight and bias parameters (so checkpoint keys do not change) and adds ``lora_a`` (rank, in) and
``lora_b`` (out, rank): ``y = x W^T + b + (x A^T B^T) * alpha / rank``. ``merge_lora`` folds the
update back into ``W`` and restores plain ``nn.Linear`` modules.

Written here rather than taken from PEFT because PEFT needs transformers at run time and rewrites
parameter names (``base_model.model...``); megasense's own models need neither.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from megasense.errors import ConfigError

DEFAULT_TARGETS = (
    "layers.*.self_attention.linear_qkv",
    "layers.*.self_attention.dense",
    "layers.*.mlp.dense_h_to_4h",
    "layers.*.mlp.dense_h_to_4h_gate",
    "layers.*.mlp.dense_4h_to_h",
)


@dataclass(frozen=True)
class LoRASettings:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = DEFAULT_TARGETS
    """Module path patterns (``fnmatch`` style, as in tensor-parallel plans)."""

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"LoRA rank={self.rank} must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"LoRA dropout={self.dropout} must be in [0, 1)")


class LoRALinear(nn.Linear):
    def __init__(self, base: nn.Linear, settings: LoRASettings) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias  # the same Parameters: keys and sharing unchanged
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_a = nn.Parameter(torch.empty(settings.rank, self.in_features, **factory))
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, settings.rank, **factory))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear; B = 0 so training starts at W
        self.scaling = settings.alpha / settings.rank
        self.lora_dropout = nn.Dropout(settings.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_a), self.lora_b)  # (..., out)
        return F.linear(x, self.weight, self.bias) + update * self.scaling

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_b @ self.lora_a) * self.scaling  # (out, in)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def apply_lora(model: nn.Module, settings: LoRASettings, *, train_also: tuple[str, ...] = ()) -> list[str]:
    """Freeze ``model``, add adapters to the target linears; parameters matching ``train_also`` stay trainable.

    Returns the names of the adapted modules; raises if no module matched (a typo in the targets).
    """
    for param in model.parameters():
        param.requires_grad_(False)
    adapted = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and not isinstance(module, LoRALinear) and _matches(name, settings.targets):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, LoRALinear(module, settings))
            adapted.append(name)
    if not adapted:
        raise ConfigError(
            f"no linear layer matches the LoRA targets {list(settings.targets)} in {type(model).__name__}"
        )
    for name, param in model.named_parameters():
        if _matches(name, train_also):
            param.requires_grad_(True)
    return adapted


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight and turn ``LoRALinear`` modules back into ``nn.Linear``."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            module.weight.add_(module.delta_weight().to(module.weight.dtype))
            plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
            plain.weight, plain.bias = module.weight, module.bias
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, plain)
    return model


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that training changes (adapters and unfrozen heads): what an adapter file holds."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
