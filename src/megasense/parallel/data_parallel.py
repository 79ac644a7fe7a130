"""Data parallelism over ``dp`` (FSDP2 or DDP), full state dicts for export, and DTensor-aware clipping.

FSDP2 (``fully_shard``) shards each transformer layer's parameters over ``dp`` and gathers them
just in time; applied after tensor parallelism it composes into 2-D ``(dp, tp)`` DTensors. DDP
keeps full replicas and all-reduces gradients. Either way each rank feeds its own slice of the
global batch and gradients are averaged, so ``dp`` ranks at batch ``B / dp`` train like one rank
at batch ``B``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Replicate
from torch.nn.parallel import DistributedDataParallel

from megasense.errors import ConfigError
from megasense.parallel.plan import blocks


def apply_fsdp(
    model: nn.Module,
    dp_mesh: DeviceMesh,
    *,
    container: str | None,
    reshard_after_forward: bool = True,
    mp_policy: MixedPrecisionPolicy | None = None,
) -> nn.Module:
    """``fully_shard`` each layer of ``container`` (``"layers"``), then the root (embeddings, norms, heads).

    One sharding unit per layer lets FSDP2 gather layer ``i + 1`` while layer ``i`` computes.
    The root keeps its parameters gathered after the forward: the backward needs them at once.
    """
    kwargs: dict[str, Any] = {"mesh": dp_mesh}
    if mp_policy is not None:
        kwargs["mp_policy"] = mp_policy
    if container is not None:
        for _, block in blocks(model, container):
            fully_shard(block, reshard_after_forward=reshard_after_forward, **kwargs)
    fully_shard(model, reshard_after_forward=False, **kwargs)
    return model


def apply_ddp(model: nn.Module, dp_mesh: DeviceMesh) -> DistributedDataParallel:
    """Wrap ``model`` in DDP over the ``dp`` process group (full replica per rank)."""
    if any(isinstance(p, DTensor) for p in model.parameters()):
        raise ConfigError(
            "data_parallel='ddp' cannot wrap a tensor-parallel model (DTensor parameters); use 'fsdp' for dp x tp"
        )
    return DistributedDataParallel(model, process_group=dp_mesh.get_group())


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (FSDP2 modifies the module in place and needs no unwrapping)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def full_state_dict(model: nn.Module, *, rank0_only: bool = True) -> dict[str, torch.Tensor]:
    """The unsharded state dict, on CPU, keyed like the single-device model (for export).

    A collective: every rank must call it. With ``rank0_only`` the other ranks get ``{}`` and only
    rank 0 holds full tensors in memory, as an exporter wants.
    """
    if not rank0_only:
        options = StateDictOptions(full_state_dict=True, cpu_offload=False)
        state = get_model_state_dict(model, options=options)
        return {k: v.detach().cpu() for k, v in state.items()}
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def load_full_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load unsharded tensors (as :func:`full_state_dict` returns) into a sharded model on every rank.

    Every rank passes the same full ``state_dict``; each keeps the shards its placements call for.
    """
    set_model_state_dict(model, state_dict, options=StateDictOptions(full_state_dict=True))


def clip_grad_norm_(
    parameters: Iterable[torch.Tensor], max_norm: float, *, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> torch.Tensor:
    """Scale gradients so their global norm is at most ``max_norm``; returns the norm before clipping.

    Correct when parameters mix plain tensors (replicated: counted once), tensor-parallel DTensors
    and FSDP2 DTensors, on one or several meshes: each rank sums ``|g|^p`` over its local shards,
    the sums are reduced over exactly the mesh axes that shard each gradient, and replicated
    copies are never counted twice. (``torch.nn.utils.clip_grad_norm_`` refuses such a mix.)
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return torch.tensor(0.0)
    device = _local(grads[0]).device
    total = _global_norm(grads, norm_type, device)
    if error_if_nonfinite and not torch.isfinite(total):
        raise RuntimeError(f"the total gradient norm (order {norm_type}) is {total.item()}; refusing to clip")
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    with torch.no_grad():
        for g in grads:
            _local(g).mul_(coef.to(_local(g).device))
    return total


def _local(g: torch.Tensor) -> torch.Tensor:
    return g.to_local() if isinstance(g, DTensor) else g


def _global_norm(grads: list[torch.Tensor], norm_type: float, device: torch.device) -> torch.Tensor:
    is_inf = math.isinf(norm_type)
    # (mesh, mesh dims to reduce over) -> local partial: sum of |g|^p, or max |g| for p = inf.
    partials: dict[tuple[Any, tuple[int, ...]], torch.Tensor] = {}
    for g in grads:
        if isinstance(g, DTensor) and any(p.is_partial() for p in g.placements):
            g = g.redistribute(g.device_mesh, [Replicate() if p.is_partial() else p for p in g.placements])
        local = _local(g).detach().float()
        value = local.abs().max() if is_inf else local.abs().pow(norm_type).sum()
        if isinstance(g, DTensor):
            key = (g.device_mesh, tuple(i for i, p in enumerate(g.placements) if not p.is_replicate()))
        else:
            key = (None, ())
        prev = partials.get(key)
        value = value.to(device)
        partials[key] = value if prev is None else (torch.maximum(prev, value) if is_inf else prev + value)
    total = torch.zeros((), device=device)
    for (mesh, dims), value in partials.items():
        for dim in dims:
            op = dist.ReduceOp.MAX if is_inf else dist.ReduceOp.SUM
            dist.all_reduce(value, op=op, group=mesh.get_group(dim))
        total = torch.maximum(total, value) if is_inf else total + value
    return total if is_inf else total.pow(1.0 / norm_type)
