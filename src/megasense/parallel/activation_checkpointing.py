"""Activation checkpointing applied from outside the model: recompute parts of each layer in backward.

Memory for time: a checkpointed forward keeps only its inputs and runs again during backward
(``torch.utils.checkpoint.checkpoint(use_reentrant=False)``, dropout replayed with the saved RNG
state, so gradients are the same as without). Two granularities, as in Megatron-LM:

- ``"full"``: every transformer layer (each child of the model's layer container) is recomputed;
  a layer keeps only its input (``B x T x H``) between forward and backward.
- ``"selective"``: only the attention of each layer is recomputed. Megatron's selective
  recomputation (Korthikanti et al., 2022) recomputes the *core attention*, softmax(QK^T/sqrt(d))V,
  whose activations grow with T^2 and cost few FLOPs to redo. In megasense's layers the core is one
  ``scaled_dot_product_attention`` call inside the ``self_attention`` module, so the smallest module
  around it is recomputed: the QKV projection, the core and the output projection. The MLP's
  activations (the largest part at short sequences) are kept, so this saves less than ``"full"``
  and costs about a third of ``"full"``'s extra forward work.

Nothing here knows a model class: the layers are found through the model's tensor-parallel plan
(``block_container``), and the forward of each chosen module is replaced on the instance, so module
paths, parameter names and checkpoints are unchanged. Apply after tensor parallelism and before
FSDP2/DDP (as torchtitan does); :func:`megasense.parallel.parallelize` does it in that order.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from megasense.errors import ConfigError
from megasense.parallel.plan import PlanError, block_container, blocks

CheckpointMode = Literal["none", "full", "selective"]
MODES: tuple[str, ...] = ("none", "full", "selective")
_MARK = "_megasense_checkpointing"


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"activation_checkpointing={mode!r} is not one of {', '.join(MODES)}")
    return mode


def apply_activation_checkpointing(
    model: nn.Module,
    mode: str,
    *,
    plan: dict[str, str] | None = None,
    attention: str = "self_attention",
) -> list[str]:
    """Recompute ``mode``'s modules of ``model`` in backward; returns their paths.

    ``plan`` locates the layer container (default: the model's ``tp_plan``); ``attention`` is the
    name of the attention module inside each layer (for ``"selective"``). ``"none"`` and applying
    the same mode twice are no-ops; another mode on an already checkpointed model is an error.
    """
    check_mode(mode)
    current = getattr(model, _MARK, "none")
    if mode in ("none", current):
        return []
    if current != "none":
        raise ValueError(f"the model already has activation_checkpointing={current!r}; cannot switch to {mode!r}")
    targets = checkpoint_targets(model, mode, plan=plan, attention=attention)
    for _, module in targets:
        wrap_forward(module)
    setattr(model, _MARK, mode)
    return [path for path, _ in targets]


def checkpoint_targets(
    model: nn.Module, mode: str, *, plan: dict[str, str] | None = None, attention: str = "self_attention"
) -> list[tuple[str, nn.Module]]:
    """(path, module) of the modules ``mode`` recomputes."""
    plan = plan if plan is not None else getattr(model, "tp_plan", None)
    container = block_container(model, plan) if plan else None
    if container is None:
        raise PlanError(
            f"{type(model).__name__} declares no layer container (a tp_plan with 'layers.*' entries); "
            "activation checkpointing needs one to find the transformer layers"
        )
    layers = blocks(model, container)
    if mode == "full":
        return layers
    found = [(f"{path}.{attention}", getattr(layer, attention, None)) for path, layer in layers]
    missing = [path for path, module in found if not isinstance(module, nn.Module)]
    if missing:
        raise PlanError(
            f"selective activation checkpointing: no attention module at {missing[0]!r} (attention={attention!r})"
        )
    return found


def wrap_forward(module: nn.Module) -> None:
    """Make ``module``'s forward a checkpointed call of its own forward (hooks such as FSDP2's stay outside).

    The module's class is swapped for a subclass whose ``forward`` checkpoints the original one (as
    FSDP2's ``fully_shard`` swaps classes), so copies of the module stay checkpointed copies of
    themselves and the module tree, parameter names and hooks are untouched.
    """
    module.__class__ = _checkpointed_class(type(module))


@functools.cache
def _checkpointed_class(cls: type[nn.Module]) -> type[nn.Module]:
    def forward(self, *args, **kwargs):
        inner = functools.partial(cls.forward, self)
        if not torch.is_grad_enabled():  # inference: nothing to save, nothing to recompute
            return inner(*args, **kwargs)
        return checkpoint(inner, *args, use_reentrant=False, **kwargs)

    return type(f"Checkpointed{cls.__name__}", (cls,), {"forward": forward, "__module__": cls.__module__})
