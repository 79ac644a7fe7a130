"""What every importer returns: a config, a head, weights in megasense's layout, and a tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from megasense.config import HeadConfig, ModelConfig
from megasense.tokenization import Tokenizer


@dataclass
class ImportedModel:
    config: ModelConfig
    head: HeadConfig
    state_dict: dict[str, torch.Tensor]
    """megasense parameter names, vocabulary padded to ``config.padded_vocab_size``, tied aliases omitted."""
    tokenizer: Tokenizer | None = None
    source: str = ""
    """Where the weights came from (a path, a package and file), for the model card."""
    notes: list[str] = field(default_factory=list)
    """Anything a user should know about the conversion (dequantisation, dropped tensors)."""
