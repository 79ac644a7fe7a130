"""Named model shapes: tiny ones that run in seconds on a CPU (the tests use them) and real ones.

A preset is a plain function returning a :class:`ModelConfig`; ``preset(name)`` looks one up.
Real shapes carry no weights: weights come from an import (see ``megasense.formats`` and ``megasense.zoo``).
"""

from __future__ import annotations

from collections.abc import Callable

from megasense.config.model import ConfigError, ModelConfig


def _bert(**kw) -> ModelConfig:
    """The original BERT: post-norm, embedding LayerNorm, token types, pooler."""
    base = dict(
        arch="bert",
        pre_norm=False,
        embedding_norm=True,
        final_norm=False,
        num_tokentypes=2,
        add_pooler=True,
        norm_eps=1e-12,
        activation="gelu",
    )
    return ModelConfig(**{**base, **kw})


def _megatron_bert(**kw) -> ModelConfig:
    """Megatron-BERT: pre-norm, no embedding norm, a final norm, binary (sentence-order) head."""
    base = dict(
        arch="bert",
        pre_norm=True,
        embedding_norm=False,
        final_norm=True,
        num_tokentypes=2,
        add_pooler=True,
        binary_head=True,
        norm_eps=1e-12,
        activation="gelu",
    )
    return ModelConfig(**{**base, **kw})


def _gpt2(**kw) -> ModelConfig:
    base = dict(arch="gpt", activation="gelu_tanh", norm_eps=1e-5, tie_word_embeddings=True)
    return ModelConfig(**{**base, **kw})


def _llama(**kw) -> ModelConfig:
    base = dict(
        arch="gpt",
        position_embedding="rope",
        normalization="rmsnorm",
        activation="swiglu",
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    return ModelConfig(**{**base, **kw})


# Tiny shapes: vocab 99 and hidden 32 as in transformers' model tests; the vocabulary is padded to
# a multiple of 8 so tensor-parallel tests at tp=2 and tp=4 split it evenly.
_TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_layers=2,
    num_attention_heads=4,
    ffn_hidden_size=64,
    max_position_embeddings=64,
    make_vocab_size_divisible_by=8,
)


def bert_tiny() -> ModelConfig:
    return _bert(name="bert-tiny", **_TINY)


def megatron_bert_tiny() -> ModelConfig:
    return _megatron_bert(name="megatron-bert-tiny", **_TINY)


def gpt_tiny() -> ModelConfig:
    return _gpt2(name="gpt-tiny", **_TINY)


def llama_tiny() -> ModelConfig:
    return _llama(name="llama-tiny", **{**_TINY, "num_query_groups": 2, "tie_word_embeddings": False, "norm_eps": 1e-6})


def minilm_l6() -> ModelConfig:
    """all-MiniLM-L6-v2 / MiniLM-L6-H384: 6 layers, hidden 384, 22.7M parameters."""
    return _bert(
        name="minilm-l6",
        vocab_size=30522,
        hidden_size=384,
        num_layers=6,
        num_attention_heads=12,
        ffn_hidden_size=1536,
        max_position_embeddings=512,
    )


def e5_small() -> ModelConfig:
    """multilingual-e5-small: 12 layers, hidden 384, a 250,037-token SentencePiece vocabulary."""
    return _bert(
        name="e5-small",
        vocab_size=250037,
        hidden_size=384,
        num_layers=12,
        num_attention_heads=12,
        ffn_hidden_size=1536,
        max_position_embeddings=512,
    )


def megatron_bert_345m() -> ModelConfig:
    """NVIDIA's Megatron-BERT 345M (uncased vocabulary)."""
    return _megatron_bert(
        name="megatron-bert-345m",
        vocab_size=30522,
        hidden_size=1024,
        num_layers=24,
        num_attention_heads=16,
        ffn_hidden_size=4096,
        max_position_embeddings=512,
    )


def gpt2_124m() -> ModelConfig:
    return _gpt2(
        name="gpt2-124m",
        vocab_size=50257,
        hidden_size=768,
        num_layers=12,
        num_attention_heads=12,
        max_position_embeddings=1024,
    )


def megatron_gpt2_345m() -> ModelConfig:
    """NVIDIA's Megatron-GPT2 345M: GPT-2 medium's shape with exact (erf) GELU."""
    return _gpt2(
        name="megatron-gpt2-345m",
        vocab_size=50257,
        hidden_size=1024,
        num_layers=24,
        num_attention_heads=16,
        max_position_embeddings=1024,
        activation="gelu",
    )


def smollm2_135m() -> ModelConfig:
    """SmolLM2-135M: Llama architecture, 30 layers, 9 query heads over 3 key/value groups."""
    return _llama(
        name="smollm2-135m",
        vocab_size=49152,
        hidden_size=576,
        num_layers=30,
        num_attention_heads=9,
        num_query_groups=3,
        ffn_hidden_size=1536,
        max_position_embeddings=8192,
        rotary_base=100000.0,
        norm_eps=1e-5,
        tie_word_embeddings=True,
    )


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "bert-tiny": bert_tiny,
    "megatron-bert-tiny": megatron_bert_tiny,
    "gpt-tiny": gpt_tiny,
    "llama-tiny": llama_tiny,
    "minilm-l6": minilm_l6,
    "e5-small": e5_small,
    "megatron-bert-345m": megatron_bert_345m,
    "gpt2-124m": gpt2_124m,
    "megatron-gpt2-345m": megatron_gpt2_345m,
    "smollm2-135m": smollm2_135m,
}


def preset(name: str) -> ModelConfig:
    """The preset called ``name``; an unknown name gets the list of known ones."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
