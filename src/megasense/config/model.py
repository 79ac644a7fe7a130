"""Model configuration: one dataclass describes every encoder and decoder megasense builds.

This layer imports nothing but the standard library (no torch), so configs can be read, validated
and printed anywhere, including by tools that never load a model.

The fields follow Megatron-Core's ``TransformerConfig`` vocabulary (``ffn_hidden_size``,
``num_query_groups``, ``make_vocab_size_divisible_by``) so that Megatron-LM arguments map onto them
one to one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from megasense.errors import ConfigError

Arch = Literal["bert", "gpt"]
Norm = Literal["layernorm", "rmsnorm"]
Activation = Literal["gelu", "gelu_tanh", "relu", "swiglu"]
PositionEmbedding = Literal["learned", "rope"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "arch": ("bert", "gpt"),
    "normalization": ("layernorm", "rmsnorm"),
    "activation": ("gelu", "gelu_tanh", "relu", "swiglu"),
    "position_embedding": ("learned", "rope"),
}


@dataclass(kw_only=True, frozen=True)
class ModelConfig:
    """Shape and variant of a BERT-style encoder or a GPT-style decoder in Megatron's layout."""

    arch: Arch
    """``bert``: bidirectional encoder with token types and a pooler. ``gpt``: causal decoder."""

    vocab_size: int
    """Number of real tokens in the tokenizer. The embedding is padded beyond this (see below)."""

    hidden_size: int
    """Width of the residual stream."""

    num_layers: int
    """Number of transformer layers."""

    num_attention_heads: int
    """Number of query heads."""

    num_query_groups: int | None = None
    """Key/value heads for grouped-query attention; ``None`` means one per query head (MHA)."""

    kv_channels: int | None = None
    """Width of one attention head; ``None`` means ``hidden_size // num_attention_heads``."""

    ffn_hidden_size: int | None = None
    """Width of the MLP's inner layer; ``None`` means ``4 * hidden_size``."""

    max_position_embeddings: int = 512
    """Longest sequence the model accepts (the size of the learned position table)."""

    position_embedding: PositionEmbedding = "learned"
    """``learned`` absolute positions (BERT, GPT-2) or rotary embeddings (Llama)."""

    rotary_base: float = 10000.0
    """Base of the rotary frequencies (``rope_theta``)."""

    normalization: Norm = "layernorm"
    """``layernorm`` (with bias) or ``rmsnorm`` (no bias)."""

    norm_eps: float = 1e-5
    """Epsilon added to the variance in every norm."""

    pre_norm: bool = True
    """Norm before each sublayer (GPT, Megatron-BERT) instead of after the residual (BERT)."""

    embedding_norm: bool = False
    """A norm right after the embeddings (the original BERT; Megatron-BERT has none)."""

    final_norm: bool = True
    """A norm after the last layer (every pre-norm model has one)."""

    activation: Activation = "gelu"
    """MLP activation. ``swiglu`` adds a gate projection beside ``dense_h_to_4h``."""

    add_bias_linear: bool = True
    """Biases in the attention output projection and the MLP."""

    add_qkv_bias: bool = True
    """Biases in the fused query/key/value projection."""

    num_tokentypes: int = 0
    """Size of the token-type (segment) embedding; 0 disables it. BERT uses 2."""

    add_pooler: bool = False
    """A ``dense + tanh`` pooler over the first token (BERT)."""

    tie_word_embeddings: bool = True
    """The output layer reuses the word embedding matrix."""

    make_vocab_size_divisible_by: int = 128
    """Pad the embedding to a multiple of this, as Megatron does, so tensor-parallel splits are even."""

    hidden_dropout: float = 0.1
    """Dropout on the residual branches and embeddings during training."""

    attention_dropout: float = 0.1
    """Dropout on attention probabilities during training."""

    init_method_std: float = 0.02
    """Standard deviation of the normal initialisation of weights."""

    binary_head: bool = False
    """BERT only: a two-way sentence-order / next-sentence head on the pooler."""

    name: str = ""
    """Free-form name (the preset or the source model), carried into model cards."""

    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Metadata that travels with the config (for example the original architecture name)."""

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")
        for key in (
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_attention_heads",
            "max_position_embeddings",
            "make_vocab_size_divisible_by",
        ):
            value = getattr(self, key)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{key}={value!r} must be a positive integer")
        if self.kv_channels is None and self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}; set kv_channels explicitly"
            )
        groups = self.query_groups
        if groups <= 0 or self.num_attention_heads % groups:
            raise ConfigError(
                f"num_attention_heads={self.num_attention_heads} is not divisible by num_query_groups={groups}"
            )
        if self.position_embedding == "rope" and self.head_dim % 2:
            raise ConfigError(f"rotary embeddings need an even head size, got kv_channels={self.head_dim}")
        for key in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"{key}={getattr(self, key)} must be in [0, 1)")
        if self.norm_eps <= 0:
            raise ConfigError(f"norm_eps={self.norm_eps} must be positive")
        if self.arch == "gpt" and (self.add_pooler or self.binary_head or self.num_tokentypes):
            raise ConfigError("add_pooler, binary_head and num_tokentypes are for arch='bert' only")
        if self.binary_head and not self.add_pooler:
            raise ConfigError("binary_head=True needs add_pooler=True (the head reads the pooled output)")
        if self.pre_norm and not self.final_norm:
            raise ConfigError("a pre-norm model needs final_norm=True")

    # Derived sizes ---------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    @property
    def query_groups(self) -> int:
        return self.num_query_groups or self.num_attention_heads

    @property
    def ffn_size(self) -> int:
        return self.ffn_hidden_size or 4 * self.hidden_size

    @property
    def padded_vocab_size(self) -> int:
        """Vocabulary rounded up to ``make_vocab_size_divisible_by`` (Megatron's padding)."""
        return padded_vocab_size(self.vocab_size, self.make_vocab_size_divisible_by)

    @property
    def is_decoder(self) -> bool:
        return self.arch == "gpt"

    # Serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> ModelConfig:
        """Build from a dict, refusing unknown keys with a message that lists them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown model config keys {unknown}; known keys are {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as exc:  # a missing required key
            raise ConfigError(f"{source}: {exc}") from None

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def num_parameters(self, *, include_embeddings: bool = True) -> int:
        """Parameter count computed from the shape alone (no model needed)."""
        h, f, layers = self.hidden_size, self.ffn_size, self.num_layers
        q, kv = self.num_attention_heads * self.head_dim, self.query_groups * self.head_dim
        norm = 2 * h if self.normalization == "layernorm" else h
        attn = h * (q + 2 * kv) + q * h + (q + 2 * kv if self.add_qkv_bias else 0) + (h if self.add_bias_linear else 0)
        mlp_in = 2 if self.activation == "swiglu" else 1
        mlp = mlp_in * h * f + f * h + ((mlp_in * f + h) if self.add_bias_linear else 0)
        total = layers * (attn + mlp + 2 * norm)
        total += norm if self.final_norm else 0
        total += norm if self.embedding_norm else 0
        total += (h * h + h) if self.add_pooler else 0
        if include_embeddings:
            total += self.padded_vocab_size * h
            if self.position_embedding == "learned":
                total += self.max_position_embeddings * h
            total += self.num_tokentypes * h
            if self.arch == "gpt" and not self.tie_word_embeddings:
                total += self.padded_vocab_size * h
        return total


def padded_vocab_size(vocab_size: int, multiple: int) -> int:
    return -(-vocab_size // multiple) * multiple
