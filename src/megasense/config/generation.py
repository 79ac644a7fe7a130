"""How to decode: greedy, sampling (temperature, top-k, top-p, min-p) or beam search, and when to stop.

Field names and meanings follow Hugging Face ``generate`` so that a setting carries over unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from megasense.config.model import ConfigError


@dataclass(kw_only=True, frozen=True)
class GenerationConfig:
    max_new_tokens: int = 128
    """Upper bound on generated tokens per prompt (the prompt does not count)."""

    do_sample: bool = False
    """Sample from the distribution; False means greedy (or beam search with ``num_beams > 1``)."""

    temperature: float = 1.0
    """Divide logits by this before sampling; lower is more conservative."""

    top_k: int = 0
    """Sample only among the k most likely tokens; 0 disables."""

    top_p: float = 1.0
    """Sample only among the smallest set of tokens whose probability reaches p (nucleus); 1.0 disables."""

    min_p: float = 0.0
    """Sample only among tokens at least ``min_p`` times as likely as the most likely one; 0.0 disables."""

    repetition_penalty: float = 1.0
    """Divide positive (multiply negative) logits of tokens already present; 1.0 disables (CTRL's rule)."""

    num_beams: int = 1
    """Beam search width; 1 disables. Beam search is deterministic and cannot be combined with sampling."""

    length_penalty: float = 1.0
    """Beam scores are divided by length**length_penalty; >1 favours longer outputs."""

    early_stopping: bool | Literal["never"] = False
    """Beam search: True stops once ``num_beams`` beams have finished; False stops when the best open beam,
    at its current length, can no longer beat the worst finished one; "never" only when it cannot at any
    length up to ``max_new_tokens`` (the canonical beam search). As transformers' ``early_stopping``."""

    num_return_sequences: int = 1
    """Outputs per prompt: the best ``n`` beams (at most ``num_beams``), or ``n`` independent samples."""

    no_repeat_ngram_size: int = 0
    """Never produce an n-gram of this size that already occurs in the prompt or the output; 0 disables."""

    min_new_tokens: int = 0
    """End tokens are suppressed until this many tokens have been generated."""

    stop_token_ids: tuple[int, ...] = ()
    """Extra tokens that end a sequence (the tokenizer's end-of-sequence token always does)."""

    seed: int | None = None
    """Seed for sampling; None draws from torch's global generator."""

    def __post_init__(self) -> None:
        for key in ("temperature", "top_p", "min_p", "repetition_penalty", "length_penalty"):
            if not math.isfinite(getattr(self, key)):  # NaN passes every comparison below
                raise ConfigError(f"{key}={getattr(self, key)} must be a finite number")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens} must be at least 1")
        if self.temperature <= 0:
            raise ConfigError(f"temperature={self.temperature} must be positive (use do_sample=False for greedy)")
        if self.top_k < 0:
            raise ConfigError(f"top_k={self.top_k} must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p={self.top_p} must be in (0, 1]")
        if not 0.0 <= self.min_p <= 1.0:
            raise ConfigError(f"min_p={self.min_p} must be in [0, 1]")
        if self.repetition_penalty <= 0:
            raise ConfigError(f"repetition_penalty={self.repetition_penalty} must be positive")
        if self.num_beams < 1:
            raise ConfigError(f"num_beams={self.num_beams} must be at least 1")
        if self.num_beams > 1 and self.do_sample:
            raise ConfigError("beam search (num_beams > 1) cannot be combined with do_sample=True")
        if self.early_stopping not in (True, False, "never"):
            raise ConfigError(f"early_stopping={self.early_stopping!r} must be True, False or 'never'")
        if self.no_repeat_ngram_size < 0:
            raise ConfigError(f"no_repeat_ngram_size={self.no_repeat_ngram_size} must be >= 0 (0 disables)")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ConfigError(
                f"min_new_tokens={self.min_new_tokens} must be between 0 and max_new_tokens={self.max_new_tokens}"
            )
        if self.num_return_sequences < 1:
            raise ConfigError(f"num_return_sequences={self.num_return_sequences} must be at least 1")
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ConfigError(
                f"num_return_sequences={self.num_return_sequences} cannot exceed num_beams={self.num_beams}: "
                "beam search returns its best beams"
            )
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences > 1:
            raise ConfigError(
                f"num_return_sequences={self.num_return_sequences} with greedy decoding would repeat one output; "
                "use do_sample=True or num_beams >= num_return_sequences"
            )
        object.__setattr__(self, "stop_token_ids", tuple(self.stop_token_ids))
