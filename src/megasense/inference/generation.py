"""The generation engine works on token ids; it knows nothing about text.

Prompts are left-padded into one batch, prefilled once into a preallocated KV cache, then decoded
one token per step for every unfinished sequence. Greedy, sampling (temperature / top-k / top-p)
and beam search share the same model calls; streaming yields each step's tokens as they come.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from megasense.config import GenerationConfig
from megasense.errors import ConfigError, MegasenseInputError
from megasense.inference.sampling import next_token
from megasense.models import GPTModel


@dataclass
class Generation:
    tokens: list[int]
    """Generated ids, without the prompt and without the stop token."""
    finish_reason: str
    """``stop`` (an end token was produced) or ``length`` (max_new_tokens reached)."""
    prompt_tokens: int = 0
    score: float | None = None
    """Beam search: the length-normalised log-probability of the returned beam."""


@dataclass
class _Batch:
    ids: torch.Tensor  # (B, P) left-padded prompts
    mask: torch.Tensor | None  # (B, P + max_new) attention mask over all positions, or None without padding
    next_pos: torch.Tensor  # (B,) position id of the next token
    lengths: list[int] = field(default_factory=list)


class GenerationEngine:
    def __init__(self, model: GPTModel, *, eos_token_ids: Sequence[int] = (), pad_token_id: int = 0) -> None:
        self.model = model.eval()
        self.vocab_size = model.config.vocab_size
        self.max_positions = model.config.max_position_embeddings
        self.eos_token_ids = tuple(eos_token_ids)
        self.pad_token_id = pad_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------------------------
    def _prepare(self, prompts: Sequence[Sequence[int]], max_new: int) -> _Batch:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        lengths = [len(p) for p in prompts]
        P = max(lengths)
        if P + max_new > self.max_positions:
            raise MegasenseInputError(
                f"prompt ({P} tokens) + max_new_tokens ({max_new}) exceeds the model's {self.max_positions} positions; "
                "shorten the prompt or ask for fewer new tokens"
            )
        ids = torch.full((len(prompts), P), self.pad_token_id, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, P - len(prompt) :] = torch.as_tensor(list(prompt), dtype=torch.long)
        mask = None
        if min(lengths) != P:
            mask = torch.ones(len(prompts), P + max_new, dtype=torch.long)
            for row, n in enumerate(lengths):
                mask[row, : P - n] = 0
            mask = mask.to(self.device)
        next_pos = torch.tensor(lengths, dtype=torch.long, device=self.device)
        return _Batch(ids=ids.to(self.device), mask=mask, next_pos=next_pos, lengths=lengths)

    def _logits(self, ids, batch: _Batch, cache, step_pos: torch.Tensor | None, width: int) -> torch.Tensor:
        mask = batch.mask[:, :width] if batch.mask is not None else None
        out = self.model(ids, attention_mask=mask, position_ids=step_pos, kv_cache=cache)
        return out.logits[:, -1, : self.vocab_size]  # (B, V) -- drop Megatron's vocabulary padding

    def _stop_ids(self, config: GenerationConfig) -> torch.Tensor:
        return torch.tensor(
            sorted(set(self.eos_token_ids) | set(config.stop_token_ids)), dtype=torch.long, device=self.device
        )

    @torch.inference_mode()
    def stream(self, prompts: Sequence[Sequence[int]], config: GenerationConfig) -> Iterator[list[int | None]]:
        """Yield, per step, each sequence's new token (None once it has finished)."""
        if config.num_beams > 1:
            raise ConfigError(
                f"num_beams={config.num_beams}: beam search cannot stream, the best beam is only known at the end"
            )
        batch = self._prepare(prompts, config.max_new_tokens)
        B, P = batch.ids.shape
        cache = self.model.new_kv_cache(B, P + config.max_new_tokens)
        generator = torch.Generator(device=self.device).manual_seed(config.seed) if config.seed is not None else None
        stop = self._stop_ids(config)
        prefill_pos = None
        if batch.mask is not None:
            prefill_pos = (batch.mask[:, :P].cumsum(1) - 1).clamp(min=0)  # (B, P)
        logits = self._logits(batch.ids, batch, cache, prefill_pos, P)
        seen = batch.ids if config.repetition_penalty != 1.0 else None
        finished = torch.zeros(B, dtype=torch.bool, device=self.device)
        for step in range(config.max_new_tokens):
            token = next_token(logits, config, seen=seen, generator=generator)  # (B,)
            token = torch.where(finished, torch.full_like(token, self.pad_token_id), token)
            is_stop = torch.isin(token, stop) & ~finished
            yield [None if f else int(t) for t, f in zip(token.tolist(), (finished | is_stop).tolist())]
            finished |= is_stop
            if bool(finished.all()) or step == config.max_new_tokens - 1:
                return
            if seen is not None:
                seen = torch.cat([seen, token[:, None]], dim=1)
            step_pos = (batch.next_pos + step)[:, None]  # (B, 1)
            logits = self._logits(token[:, None], batch, cache, step_pos, P + step + 1)

    def generate(self, prompts: Sequence[Sequence[int]], config: GenerationConfig) -> list[Generation]:
        if config.num_beams > 1:
            return [self.beam_search(p, config) for p in prompts]
        outputs: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        for step_tokens in self.stream(prompts, config):
            for row, token in enumerate(step_tokens):
                if token is None:
                    done[row] = True
                elif not done[row]:
                    outputs[row].append(token)
        return [
            Generation(tokens=out, finish_reason="stop" if d else "length", prompt_tokens=len(p))
            for out, d, p in zip(outputs, done, prompts)
        ]

    # ------------------------------------------------------------------------------------------
    def beam_bytes(self, beams: int, prompt_tokens: int, max_new: int) -> int:
        """About the memory a beam search of ``beams`` takes at its peak: the KV cache (twice: reordering the
        beams copies it) and the prefill's logits over every prompt position, per beam."""
        cfg = self.model.config
        dtype_bytes = next(self.model.parameters()).element_size()
        cache = 2 * cfg.num_layers * cfg.query_groups * (prompt_tokens + max_new) * cfg.head_dim * dtype_bytes
        logits = (prompt_tokens + 3) * cfg.padded_vocab_size * 4
        return beams * (2 * cache + logits)

    def check_beam_memory(self, beams: int, prompt_tokens: int, max_new: int) -> None:
        """Refuse a beam search that would not fit in the memory free on the model's device, naming the widest
        that would (``--beams 100000`` asks for tens of GB)."""
        free = _free_bytes(self.device)
        if free is None:
            return
        need = self.beam_bytes(beams, prompt_tokens, max_new)
        budget = int(0.8 * free)
        if need > budget:
            fits = max(1, budget // max(1, self.beam_bytes(1, prompt_tokens, max_new)))
            raise ConfigError(
                f"num_beams={beams} needs about {need / 2**30:.1f} GiB for the search ({prompt_tokens} prompt + "
                f"{max_new} new tokens) but {free / 2**30:.1f} GiB are free on {self.device}; use at most "
                f"{fits} beams, or fewer new tokens"
            )

    @torch.inference_mode()
    def beam_search(self, prompt: Sequence[int], config: GenerationConfig) -> Generation:
        """Standard beam search with length normalisation (as transformers' ``num_beams``)."""
        K = config.num_beams
        self.check_beam_memory(K, len(prompt), config.max_new_tokens)  # before anything is allocated
        batch = self._prepare([prompt] * K, config.max_new_tokens)
        P = batch.ids.shape[1]
        cache = self.model.new_kv_cache(K, P + config.max_new_tokens)
        stop = set(self._stop_ids(config).tolist())
        logprobs = self._logits(batch.ids, batch, cache, None, P).float().log_softmax(-1)  # (K, V)
        beam_scores = torch.full((K,), float("-inf"), device=self.device)
        beam_scores[0] = 0.0  # all beams start identical: expand from one
        beams: list[list[int]] = [[] for _ in range(K)]
        done: list[tuple[float, list[int], str]] = []  # (normalised score, tokens, finish reason)
        for step in range(config.max_new_tokens):
            norm = (step + 1) ** config.length_penalty
            V = logprobs.shape[-1]
            totals = (beam_scores[:, None] + logprobs).flatten()  # (K*V,)
            top_scores, top_index = torch.topk(totals, 2 * K)
            next_beams, next_scores, origins = [], [], []
            for score, index in zip(top_scores.tolist(), top_index.tolist()):
                origin, token = divmod(index, V)
                if token in stop:
                    done.append((score / norm, beams[origin], "stop"))
                elif len(next_beams) < K:
                    next_beams.append(beams[origin] + [token])
                    next_scores.append(score)
                    origins.append(origin)
            best_open = max(next_scores, default=float("-inf")) / norm
            finished_enough = len(done) >= K and max(d[0] for d in done) >= best_open
            if finished_enough or not next_beams or step == config.max_new_tokens - 1:
                done.extend((s / norm, b, "length") for s, b in zip(next_scores, next_beams))
                break
            cache.reorder(torch.tensor(origins, device=self.device))
            beams, beam_scores = next_beams, torch.tensor(next_scores, device=self.device)
            tokens = torch.tensor([b[-1] for b in beams], device=self.device)[:, None]
            logprobs = self._logits(tokens, batch, cache, None, P + step + 1).float().log_softmax(-1)
        score, best, reason = max(done, key=lambda d: d[0])
        return Generation(tokens=list(best), finish_reason=reason, prompt_tokens=len(prompt), score=score)


def _free_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on ``device`` (None where it cannot be told)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:  # Linux: MemAvailable counts the page cache the kernel would give back
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system that tells
        return None
