"""Transformer building blocks in Megatron's parameter layout, written for one device.

Parallelism is applied from outside (``megasense.parallel``) by replacing these modules'
parameters with sharded ones; the code below never asks how many devices there are. Reshapes use
``-1`` for the head dimension so a column-parallel ``linear_qkv`` infers its local head count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from megasense.config import ModelConfig
from megasense.models.kv_cache import KVCache


def make_norm(cfg: ModelConfig, size: int | None = None) -> nn.Module:
    size = size or cfg.hidden_size
    if cfg.normalization == "rmsnorm":
        return nn.RMSNorm(size, eps=cfg.norm_eps)
    return nn.LayerNorm(size, eps=cfg.norm_eps)


def activation_fn(name: str):
    if name == "gelu":
        return F.gelu
    if name == "gelu_tanh":
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "relu":
        return F.relu
    raise ValueError(f"activation {name!r} has no plain function (swiglu is built into MLP)")


class Embedding(nn.Module):
    """Word (+ learned position) (+ token type) embeddings, an optional norm, then dropout.

    The word table has ``padded_vocab_size`` rows (Megatron's padding); rows past ``vocab_size``
    are never produced by a tokenizer.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.padded_vocab_size, cfg.hidden_size)
        self.position_embeddings = (
            nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size) if cfg.position_embedding == "learned" else None
        )
        self.tokentype_embeddings = nn.Embedding(cfg.num_tokentypes, cfg.hidden_size) if cfg.num_tokentypes else None
        self.layernorm = make_norm(cfg) if cfg.embedding_norm else None
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.word_embeddings(input_ids)  # (B, T, H)
        if self.position_embeddings is not None:
            if position_ids is None:
                position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)
            x = x + self.position_embeddings(position_ids)
        if self.tokentype_embeddings is not None:
            if token_type_ids is None:
                x = x + self.tokentype_embeddings.weight[0]
            else:
                x = x + self.tokentype_embeddings(token_type_ids)
        if self.layernorm is not None:
            x = self.layernorm(x)
        return self.dropout(x)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Llama's "rotate half" convention), as cos/sin tables."""

    def __init__(self, head_dim: int, max_positions: int, base: float) -> None:
        super().__init__()
        self.head_dim, self.max_positions, self.base = head_dim, max_positions, base
        cos, sin = self._tables(max_positions, torch.device("cpu"))
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _tables(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = 1.0 / (
            self.base ** (torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).float() / self.head_dim)
        )
        freqs = torch.outer(torch.arange(n, device=device, dtype=torch.float32), inv_freq)  # (n, head_dim/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (n, head_dim)
        return emb.cos(), emb.sin()

    def reset_parameters(self) -> None:
        """Recompute the tables (needed after a model is materialised from the meta device)."""
        cos, sin = self._tables(self.max_positions, self.cos.device)
        self.cos, self.sin = cos, sin

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for ``position_ids`` of shape (B, T) or (T,), shaped to broadcast over heads."""
        cos, sin = self.cos[position_ids], self.sin[position_ids]  # (B, T, D) or (T, D)
        if cos.dim() == 3:
            return cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, D)
        return cos, sin  # (T, D) broadcasts over (B, heads)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head (or grouped-query) self-attention with a fused, per-group-ordered QKV projection.

    ``linear_qkv`` rows are laid out ``[groups, q_per_group + 2, head_dim]``: for each key/value
    group, its query heads, then its key head, then its value head (Megatron's layout; with MHA
    that is ``[heads, 3, head_dim]``). A contiguous split of the rows therefore hands each
    tensor-parallel rank whole groups.
    """

    def __init__(self, cfg: ModelConfig, *, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.head_dim = cfg.head_dim
        self.q_per_group = cfg.num_attention_heads // cfg.query_groups
        self.dropout_p = cfg.attention_dropout
        qkv_out = cfg.query_groups * (self.q_per_group + 2) * cfg.head_dim
        self.linear_qkv = nn.Linear(cfg.hidden_size, qkv_out, bias=cfg.add_qkv_bias)
        self.dense = nn.Linear(cfg.num_attention_heads * cfg.head_dim, cfg.hidden_size, bias=cfg.add_bias_linear)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        kv_cache: KVCache | None = None,
        layer_index: int = 0,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        qkv = self.linear_qkv(x).view(B, T, -1, self.q_per_group + 2, self.head_dim)  # (B, T, groups, q+2, D)
        q = qkv[:, :, :, : self.q_per_group].reshape(B, T, -1, self.head_dim).transpose(1, 2)  # (B, heads, T, D)
        k = qkv[:, :, :, self.q_per_group].transpose(1, 2)  # (B, groups, T, D)
        v = qkv[:, :, :, self.q_per_group + 1].transpose(1, 2)  # (B, groups, T, D)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if kv_cache is not None:
            k, v = kv_cache.update(layer_index, k, v)  # (B, groups, S, D) with S = past + T
        if self.q_per_group > 1:
            # Repeat key/value heads so each query head sees its group's; SDPA's fast CPU kernels
            # need equal head counts.
            k = k.repeat_interleave(self.q_per_group, dim=1)
            v = v.repeat_interleave(self.q_per_group, dim=1)
        # Without an explicit mask the keys are exactly this step's T positions (no cache yet) or
        # T == 1; only the former needs causal masking.
        is_causal = self.causal and mask is None and T > 1
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0, is_causal=is_causal
        )  # (B, heads, T, D)
        return self.dense(out.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    """``dense_h_to_4h`` -> activation -> ``dense_4h_to_h``; SwiGLU adds ``dense_h_to_4h_gate``.

    The gate is a separate projection (Megatron fuses it into ``linear_fc1`` as ``[gate; up]``,
    which the Megatron exporter reproduces) so that a plain column-parallel split stays correct.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.swiglu = cfg.activation == "swiglu"
        self.dense_h_to_4h = nn.Linear(cfg.hidden_size, cfg.ffn_size, bias=cfg.add_bias_linear)
        self.dense_h_to_4h_gate = (
            nn.Linear(cfg.hidden_size, cfg.ffn_size, bias=cfg.add_bias_linear) if self.swiglu else None
        )
        self.act = None if self.swiglu else activation_fn(cfg.activation)
        self.dense_4h_to_h = nn.Linear(cfg.ffn_size, cfg.hidden_size, bias=cfg.add_bias_linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            h = F.silu(self.dense_h_to_4h_gate(x)) * self.dense_h_to_4h(x)
        else:
            h = self.act(self.dense_h_to_4h(x))
        return self.dense_4h_to_h(h)


class TransformerLayer(nn.Module):
    """One layer; pre-norm (GPT, Megatron-BERT) or post-norm (BERT) as the config says.

    Pre-norm:  ``x + attn(input_layernorm(x))``, then ``x + mlp(post_attention_layernorm(x))``.
    Post-norm: ``post_attention_layernorm(x + attn(x))``, then ``post_mlp_layernorm(x + mlp(x))``.
    """

    def __init__(self, cfg: ModelConfig, *, causal: bool) -> None:
        super().__init__()
        self.pre_norm = cfg.pre_norm
        self.input_layernorm = make_norm(cfg) if cfg.pre_norm else None
        self.self_attention = SelfAttention(cfg, causal=causal)
        self.post_attention_layernorm = make_norm(cfg)
        self.mlp = MLP(cfg)
        self.post_mlp_layernorm = None if cfg.pre_norm else make_norm(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        kv_cache: KVCache | None = None,
        layer_index: int = 0,
    ) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.dropout(self.self_attention(self.input_layernorm(x), mask, rotary, kv_cache, layer_index))
            return x + self.dropout(self.mlp(self.post_attention_layernorm(x)))
        x = self.post_attention_layernorm(x + self.dropout(self.self_attention(x, mask, rotary, kv_cache, layer_index)))
        return self.post_mlp_layernorm(x + self.dropout(self.mlp(x)))


def init_weights(module: nn.Module, cfg: ModelConfig) -> None:
    """Megatron's initialisation: N(0, std) weights, std/sqrt(2L) on the residual output projections."""
    output_std = cfg.init_method_std / math.sqrt(2.0 * cfg.num_layers)
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Linear):
            std = output_std if name.endswith(("self_attention.dense", "mlp.dense_4h_to_h")) else cfg.init_method_std
            nn.init.normal_(sub.weight, mean=0.0, std=std)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, mean=0.0, std=cfg.init_method_std)
        elif isinstance(sub, (nn.LayerNorm, nn.RMSNorm)):
            if sub.weight is not None:
                nn.init.ones_(sub.weight)
            if getattr(sub, "bias", None) is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, RotaryEmbedding):
            sub.reset_parameters()
