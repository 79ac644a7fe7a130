"""A preallocated key/value cache for incremental decoding.

One tensor per layer for keys and one for values, sized for the longest sequence up front, so a
decoding step writes in place and never reallocates. Shapes hold the *local* number of key/value
groups, so the same cache serves a tensor-parallel shard of a model.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(
        self,
        *,
        num_layers: int,
        batch_size: int,
        max_length: int,
        num_groups: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (num_layers, batch_size, num_groups, max_length, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.max_length = max_length
        self.length = 0  # positions filled so far

    @property
    def batch_size(self) -> int:
        return self.keys.shape[1]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's keys/values (B, groups, T, D) for ``layer``; return all so far (B, groups, S, D)."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_length:
            raise ValueError(f"KV cache holds {self.max_length} positions; this step needs {end}")
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, n: int) -> None:
        """Mark ``n`` more positions as filled (the model calls this after all layers have written)."""
        self.length += n

    def reorder(self, index: torch.Tensor) -> None:
        """Reorder the batch (beam search keeps the beams that survive)."""
        self.keys = self.keys.index_select(1, index)
        self.values = self.values.index_select(1, index)

    def reset(self) -> None:
        self.length = 0
