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
    """(B, T, padded_vocab) token scores; with ``labels``, (N, padded_vocab) for the N labelled
    positions only (in order, i.e. ``logits_all[labels != -100]``)."""
    binary_logits: torch.Tensor | None = None
    """(B, 2) sentence-order scores, for models with a binary head."""
    loss: torch.Tensor | None = None
    """Masked-LM loss (plus the binary loss, when binary labels were given)."""


@dataclass
class CausalLMOutput:
    logits: torch.Tensor | None
    """(B, T, padded_vocab) next-token scores; columns past ``vocab_size`` are Megatron's padding.
    ``None`` only from a pipeline stage that does not hold the output layer (see ``hidden_states``)."""
    loss: torch.Tensor | None = None
    """Mean cross-entropy over labels that are not -100."""
    hidden_states: torch.Tensor | None = None
    """(B, T, H) residual stream after this model's last layer, set only by a pipeline stage without
    the output layer: it is what the next stage takes instead of token ids."""
