"""Fuse separate query/key/value weights into Megatron's per-group layout, and split them back.

Layout of the fused rows: ``[groups, q_per_group + 2, head_dim]`` -- for every key/value group its
query heads, then its key head, then its value head. With one group per head (MHA) this is
Megatron's ``[heads, 3, head_dim]``. Works for weights (rows, in) and biases (rows,).
"""

from __future__ import annotations

import torch


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_heads: int, num_groups: int) -> torch.Tensor:
    head_dim = q.shape[0] // num_heads
    rest = q.shape[1:]
    qpg = num_heads // num_groups
    q = q.reshape(num_groups, qpg, head_dim, *rest)
    k = k.reshape(num_groups, 1, head_dim, *rest)
    v = v.reshape(num_groups, 1, head_dim, *rest)
    return torch.cat([q, k, v], dim=1).reshape(num_groups * (qpg + 2) * head_dim, *rest)


def split_qkv(
    fused: torch.Tensor, *, num_heads: int, num_groups: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    qpg = num_heads // num_groups
    head_dim = fused.shape[0] // (num_groups * (qpg + 2))
    rest = fused.shape[1:]
    x = fused.reshape(num_groups, qpg + 2, head_dim, *rest)
    q = x[:, :qpg].reshape(num_heads * head_dim, *rest)
    k = x[:, qpg].reshape(num_groups * head_dim, *rest)
    v = x[:, qpg + 1].reshape(num_groups * head_dim, *rest)
    return q.contiguous(), k.contiguous(), v.contiguous()


def pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """Pad a vocabulary-indexed tensor with zero rows up to ``rows`` (Megatron's vocab padding)."""
    if t.shape[0] == rows:
        return t
    if t.shape[0] > rows:
        raise ValueError(f"tensor has {t.shape[0]} rows, more than the padded size {rows}")
    return torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])], dim=0)
