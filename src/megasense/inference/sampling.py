"""Choosing the next token from logits, with the processors of Hugging Face ``generate`` in its order.

Pure functions over (B, V) logits; the generation engine calls them once per step. ``process`` applies the
penalties that hold for every decoding method (repetition penalty, no-repeat n-grams, min_new_tokens), in
transformers' order; ``warp`` the sampling filters (temperature, top-k, top-p, min-p), also in its order, so
a seeded draw picks what transformers' draw picks from the same logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from megasense.config import GenerationConfig


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty: logits of tokens in ``seen`` (B, S) are divided (if > 0) or multiplied (if < 0)."""
    if penalty == 1.0:
        return logits
    picked = logits.gather(1, seen)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits.scatter(1, seen, picked)


def banned_ngram_tokens(row: Sequence[int], n: int) -> list[int]:
    """Tokens that would complete an ``n``-gram already present in ``row`` (the tokens so far, prompt included).

    Written by hand over Python lists (as transformers' ``NoRepeatNGramLogitsProcessor`` is): the lists are a
    few hundred tokens, and a tensor version would cost more in launches than it saves."""
    if n <= 0 or len(row) + 1 < n:
        return []
    prefix = list(row[len(row) - n + 1 :]) if n > 1 else []
    return [row[i + n - 1] for i in range(len(row) - n + 1) if list(row[i : i + n - 1]) == prefix]


def ban_repeated_ngrams(logits: torch.Tensor, rows: Sequence[Sequence[int]], n: int) -> torch.Tensor:
    """Set to -inf, per row, every token that would repeat an ``n``-gram of that row."""
    if n <= 0:
        return logits
    banned = [(r, t) for r, row in enumerate(rows) for t in banned_ngram_tokens(row, n)]
    if not banned:
        return logits
    index = torch.tensor(banned, dtype=torch.long, device=logits.device)  # (N, 2): row, token
    logits = logits.clone()
    logits[index[:, 0], index[:, 1]] = float("-inf")
    return logits


def suppress_tokens(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Set the given tokens' logits to -inf in every row (min_new_tokens keeps end tokens away)."""
    if token_ids.numel() == 0:
        return logits
    logits = logits.clone()
    logits[:, token_ids] = float("-inf")
    return logits


def top_k_filter(logits: torch.Tensor, k: int, min_keep: int = 1) -> torch.Tensor:
    if k <= 0:
        return logits
    k = max(k, min_keep)
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probabilities sum to at least ``p``.

    As transformers: sorted ascending, a token goes when the mass up to and including it is at most 1 - p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= (1 - p)
    drop[:, -min_keep:] = False
    return logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))


def min_p_filter(logits: torch.Tensor, min_p: float, min_keep: int = 1) -> torch.Tensor:
    """Keep the tokens whose probability is at least ``min_p`` times the most likely token's (min-p sampling)."""
    if min_p <= 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    drop = probs < min_p * probs.amax(dim=-1, keepdim=True)
    drop.scatter_(-1, torch.topk(probs, min(min_keep, probs.shape[-1]), dim=-1).indices, False)
    return logits.masked_fill(drop, float("-inf"))


def process(
    logits: torch.Tensor,
    config: GenerationConfig,
    *,
    seen: torch.Tensor | None = None,
    rows: Sequence[Sequence[int]] | None = None,
    generated: int = 0,
    stop_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The penalties every method shares, in transformers' order: repetition penalty over ``seen`` (B, S),
    no-repeat n-grams over ``rows`` (each row's tokens so far), then end tokens ``stop_ids`` suppressed while
    fewer than ``min_new_tokens`` have been ``generated``."""
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, config.repetition_penalty)
    if rows is not None:
        logits = ban_repeated_ngrams(logits, rows, config.no_repeat_ngram_size)
    if stop_ids is not None and generated < config.min_new_tokens:
        logits = suppress_tokens(logits, stop_ids)
    return logits


def warp(logits: torch.Tensor, config: GenerationConfig) -> torch.Tensor:
    """The sampling filters, in transformers' order: temperature, top-k, top-p, min-p."""
    if config.temperature != 1.0:
        logits = logits / config.temperature
    return min_p_filter(top_p_filter(top_k_filter(logits, config.top_k), config.top_p), config.min_p)


def next_token(
    logits: torch.Tensor,
    config: GenerationConfig,
    *,
    seen: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    rows: Sequence[Sequence[int]] | None = None,
    generated: int = 0,
    stop_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, V) logits -> (B,) token ids under ``config`` (greedy unless ``do_sample``)."""
    logits = process(logits.float(), config, seen=seen, rows=rows, generated=generated, stop_ids=stop_ids)
    if not config.do_sample:
        return logits.argmax(dim=-1)
    probs = warp(logits, config).softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
