"""GPT-family decoders (GPT-2, Megatron-GPT, Llama/SmolLM2) for one device, with a KV cache.

One class covers both styles, as Megatron-Core's ``GPTModel`` does: the config chooses learned
positions or rotary embeddings, LayerNorm or RMSNorm, GELU or SwiGLU, grouped-query attention,
and a tied or separate output layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from megasense.config import ModelConfig
from megasense.models.kv_cache import KVCache
from megasense.models.layers import Embedding, RotaryEmbedding, TransformerLayer, init_weights, make_norm
from megasense.models.outputs import CausalLMOutput

GPT_TP_PLAN: dict[str, str] = {
    "embedding.word_embeddings": "vocab_embedding",
    "layers.*.self_attention.linear_qkv": "colwise",
    "layers.*.self_attention.dense": "rowwise",
    "layers.*.mlp.dense_h_to_4h": "colwise",
    "layers.*.mlp.dense_h_to_4h_gate": "colwise",
    "layers.*.mlp.dense_4h_to_h": "rowwise",
    "output_layer": "vocab_output",
}

# Where a pipeline split cuts this model (plain data, read by megasense.parallel.pipeline_parallel): the layer
# container, the modules only the first stage keeps and the ones only the last stage keeps. Every other
# module (the rotary tables) is on every stage.
GPT_PP_PLAN: dict[str, str | tuple[str, ...]] = {
    "layers": "layers",
    "first": ("embedding",),
    "last": ("final_layernorm", "output_layer"),
}


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy over ``labels`` (B, T) that are not -100; logits (B, T, V)."""
    return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)


def decoder_mask(
    attention_mask: torch.Tensor | None, query_length: int, past_length: int, device: torch.device | None = None
) -> torch.Tensor | None:
    """Causal mask (B or 1, 1, T, S) for T new queries after ``past_length`` cached positions.

    ``attention_mask`` (B, S) marks real tokens (1) and padding (0) over past and new positions.
    A query always sees itself, so a row of left padding never becomes all-masked (SDPA would
    return NaN for it); those rows' outputs are discarded by the caller anyway.
    """
    if attention_mask is None and (past_length == 0 or query_length == 1):
        return None  # SDPA's is_causal path, or one new query that may see every cached key
    total = past_length + query_length
    q_pos = torch.arange(past_length, total, device=device)[:, None]  # (T, 1)
    k_pos = torch.arange(total, device=device)[None, :]  # (1, S)
    mask = (k_pos <= q_pos)[None, None]  # (1, 1, T, S)
    if attention_mask is not None:
        if attention_mask.shape[1] != total:
            raise ValueError(f"attention_mask covers {attention_mask.shape[1]} positions; expected {total}")
        mask = (mask & attention_mask.bool()[:, None, None, :]) | (k_pos == q_pos)[None, None]
    return mask


class GPTModel(nn.Module):
    """Decoder-only language model; ``forward`` returns next-token logits and, with labels, the loss.

    ``labels[b, t]`` is the token that should follow ``input_ids[b, t]`` (already shifted, as in
    Megatron); -100 marks positions without a target.

    A pipeline stage is this model with some parts set to ``None`` (parameter names stay those of the
    whole model): without ``embedding`` it takes hidden states (B, T, H) in place of ``input_ids``;
    without ``output_layer`` it returns them in ``hidden_states``; layers held elsewhere are ``None``.
    """

    tp_plan = GPT_TP_PLAN
    pp_plan = GPT_PP_PLAN

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "gpt":
            raise ValueError(f"GPTModel needs arch='gpt', got {cfg.arch!r}")
        self.config = cfg
        self.embedding = Embedding(cfg)
        self.rotary = (
            RotaryEmbedding(cfg.head_dim, cfg.max_position_embeddings, cfg.rotary_base)
            if cfg.position_embedding == "rope"
            else None
        )
        self.layers = nn.ModuleList(TransformerLayer(cfg, causal=True) for _ in range(cfg.num_layers))
        self.final_layernorm = make_norm(cfg)
        self.output_layer = nn.Linear(cfg.hidden_size, cfg.padded_vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings and self.embedding is not None and self.output_layer is not None:
            self.output_layer.weight = self.embedding.word_embeddings.weight

    def tied_parameters(self) -> dict[str, str]:
        if self.config.tie_word_embeddings and self.embedding is not None and self.output_layer is not None:
            return {"output_layer.weight": "embedding.word_embeddings.weight"}
        return {}

    def init_weights(self) -> None:
        init_weights(self, self.config)
        self.tie_weights()

    def new_kv_cache(self, batch_size: int, max_length: int, dtype: torch.dtype | None = None) -> KVCache:
        """A cache shaped for this model's (possibly tensor-parallel, hence local) key/value groups."""
        attn = self.layers[0].self_attention
        weight = attn.linear_qkv.weight
        local = getattr(weight, "to_local", lambda: weight)()
        groups = local.shape[0] // ((attn.q_per_group + 2) * attn.head_dim)
        if max_length > self.config.max_position_embeddings and self.rotary is None:
            raise ValueError(
                f"max_length={max_length} exceeds max_position_embeddings={self.config.max_position_embeddings}"
            )
        return KVCache(
            num_layers=len(self.layers),
            batch_size=batch_size,
            max_length=max_length,
            num_groups=groups,
            head_dim=attn.head_dim,
            dtype=dtype or local.dtype,
            device=local.device,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        labels: torch.Tensor | None = None,
    ) -> CausalLMOutput:
        T = input_ids.shape[1]
        past = kv_cache.length if kv_cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=input_ids.device)
        mask = decoder_mask(attention_mask, T, past, input_ids.device)
        if self.embedding is not None:
            x = self.embedding(input_ids, position_ids=position_ids if self.rotary is None else None)  # (B, T, H)
        else:
            x = input_ids  # (B, T, H): a later pipeline stage takes the previous stage's hidden states
        rotary = self.rotary(position_ids) if self.rotary is not None else None
        for i, layer in enumerate(self.layers):
            if layer is not None:  # None: the layer lives on another pipeline stage
                x = layer(x, mask, rotary, kv_cache, i)
        if kv_cache is not None:
            kv_cache.advance(T)
        if self.output_layer is None:
            return CausalLMOutput(logits=None, hidden_states=x)
        logits = self.output_layer(self.final_layernorm(x))  # (B, T, V_padded)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return CausalLMOutput(logits=logits, loss=loss)
