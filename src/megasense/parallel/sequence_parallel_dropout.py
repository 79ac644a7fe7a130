"""Dropout under sequence parallelism: each tensor-parallel rank drops its own positions' units.

Inside the layers, sequence parallelism leaves each of the ``t`` ranks ``T / t`` positions of the
residual stream. A plain ``nn.Dropout`` there would draw the same mask on every rank (they share
one seed), so position ``i`` of every rank's chunk would lose the same units: the masks repeat
``t`` times along the sequence. Megatron-LM avoids that by drawing dropout in sequence-parallel
regions from a per-rank generator (outside them, where activations are replicated, the masks must
be the same on every rank, and are).

Here each rank draws the mask for the *whole* sequence from the shared generator, as one device
would, and keeps its own slice: the masks differ per rank, the generators stay in step (so
activation checkpointing replays them), and on the CPU a sequence-parallel run drops exactly the
units a one-device run drops (CUDA's fused dropout draws differently, but the masks still differ
per rank and match across recomputation). Drawing ``t`` times the mask costs little next to the
matrix multiplications.

Not covered: attention dropout (inside ``scaled_dot_product_attention``, on each rank's own heads)
draws from the shared generator, so head ``h`` of every rank gets the same mask; Megatron draws it
from the per-rank generator. Every rank draws the same amount, so the generators stay in step.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from megasense.parallel.plan import blocks


def shard_dropout_over_sequence(
    model: nn.Module, container: str, skip: list[str], tp_mesh: DeviceMesh, *, sequence_dim: int = 1
) -> list[str]:
    """Give every ``nn.Dropout`` in ``container``'s layers, except those under ``skip`` (sub-layers
    that see whole sequences), a mask drawn for the whole sequence and sliced; returns their paths."""
    rank, size = tp_mesh.get_local_rank(), tp_mesh.size()
    changed = []
    for block_name, block in blocks(model, container):
        for name, module in block.named_modules():
            path = f"{block_name}.{name}"
            if type(module) is not nn.Dropout or any(path.startswith(f"{s}.") for s in skip):
                continue
            module.__class__ = _sequence_sharded_class()
            module.tp_rank, module.tp_size, module.sequence_dim = rank, size, sequence_dim
            changed.append(path)
    return changed


@functools.cache
def _sequence_sharded_class() -> type[nn.Dropout]:
    class SequenceShardedDropout(nn.Dropout):
        """Dropout of this rank's ``T / t`` positions with its slice of a whole-sequence mask."""

        tp_rank: int
        tp_size: int
        sequence_dim: int

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.p == 0.0:
                return x
            if self.p == 1.0:
                return x * 0.0
            shape = list(x.shape)
            local = shape[self.sequence_dim]
            shape[self.sequence_dim] = local * self.tp_size
            # What one device's dropout does with the whole (B, T, H) tensor: Bernoulli keep-mask, scaled.
            noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p).div_(1.0 - self.p)
            return x * noise.narrow(self.sequence_dim, self.tp_rank * local, local)

    return SequenceShardedDropout
