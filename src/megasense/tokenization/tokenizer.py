"""One tokenizer type for every model: a Hugging Face ``tokenizers.Tokenizer`` plus the facts the
models need (special tokens, maximum length, chat template). Text in, token ids out; nothing here
knows about models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import tokenizers
import torch

Kind = Literal["wordpiece", "unigram", "bpe"]


class TokenizerError(ValueError):
    """Tokenizer files are missing or malformed; the message names the file."""


@dataclass(frozen=True)
class SpecialTokens:
    pad: str | None = None
    unk: str | None = None
    bos: str | None = None
    eos: str | None = None
    cls: str | None = None
    sep: str | None = None
    mask: str | None = None


@dataclass
class Batch:
    input_ids: torch.Tensor
    """(B, T) int64 token ids, padded with the pad id."""
    attention_mask: torch.Tensor
    """(B, T) int64, 1 for real tokens and 0 for padding."""
    token_type_ids: torch.Tensor | None = None
    """(B, T) int64 segment ids for encoders; None for decoders."""
    lengths: list[int] = field(default_factory=list)
    """Real (unpadded) length of each row."""
    truncated: list[bool] = field(default_factory=list)
    """Whether each row lost tokens to truncation."""


class Tokenizer:
    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        kind: Kind,
        special: SpecialTokens,
        model_max_length: int = 512,
        chat_template: str | None = None,
    ) -> None:
        self.backend = backend
        self.kind = kind
        self.special = special
        self.model_max_length = model_max_length
        self.chat_template = chat_template
