"""Typed outputs: every model and head returns exactly one of these dataclasses, never a tuple."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor
    """(B, T, H) hidden states after the last layer (and the final norm, where there is one)."""
    pooled_output: torch.Tensor | None = None
    """(B, H) ``tanh(dense(first token))`` for models with a pooler."""


@dataclass
class ClassifierOutput:
    logits: torch.Tensor
    """(B, num_labels) unnormalised scores."""
    loss: torch.Tensor | None = None
    """Mean cross-entropy, when labels were given."""


@dataclass
class EmbeddingOutput:
    embeddings: torch.Tensor
    """(B, H) mean-pooled, L2-normalised sentence embeddings."""


@dataclass
class MaskedLMOutput:
    logits: torch.Tensor
    """(B, T, padded_vocab) token scores."""
    binary_logits: torch.Tensor | None = None
    """(B, 2) sentence-order scores, for models with a binary head."""
    loss: torch.Tensor | None = None
    """Masked-LM loss (plus the binary loss, when binary labels were given)."""


@dataclass
class CausalLMOutput:
    logits: torch.Tensor
    """(B, T, padded_vocab) next-token scores; columns past ``vocab_size`` are Megatron's padding."""
    loss: torch.Tensor | None = None
    """Mean cross-entropy over labels that are not -100."""
