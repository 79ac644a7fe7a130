"""The generation engine works on token ids; it knows nothing about text.

Prompts are left-padded into one batch, prefilled once into a preallocated KV cache, then decoded
one token per step for every unfinished sequence. Greedy, sampling (temperature / top-k / top-p /
min-p) and beam search (batched: several prompts' beams in one batch) share the same model calls and
follow Hugging Face ``generate``'s semantics token for token; streaming yields each step's tokens as
they come.

Two ways to run the model: ``precision="fp32"`` calls the model's own ``forward`` (the exact
reference), any other precision a ``PackedDecoder`` (``megasense.inference.decoder``: fused
weights in bf16, int8 or int4, a static cache, few operations per token); ``"auto"`` picks the
fastest one measured to keep greedy outputs (see ``AUTO_PRECISION``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from megasense.config import GenerationConfig
from megasense.errors import ConfigError, MegasenseInputError
from megasense.inference.sampling import next_token, process
from megasense.models import GPTModel

GENERATION_PRECISIONS = ("auto", "fp32", "fp32-packed", "bf16", "int8", "int4")
"""``fp32``: the model's own forward, exact. ``fp32-packed``: the same weights, fused (sums may round in
another order). ``bf16`` / ``int8`` / ``int4``: weight formats of the packed decoder (bf16 activations)."""

AUTO_PRECISION = {"cpu": "int4", "cuda": "bf16"}
"""What ``auto`` means per device type: the fastest path whose quality delta ``benchmarks/generation.py``
measures and reports (int8/int4 are CPU kernels; on a GPU bf16 is the fast, near-exact choice)."""

AUTO_MIN_PARAMETERS = 20_000_000
"""Below this many parameters ``auto`` keeps the exact fp32 path: a model that small is bound by per-step
overhead, not by reading its weights, so quantising buys nothing and would only move its outputs."""


def resolve_generation_precision(
    precision: str, device: torch.device | str = "cpu", model: torch.nn.Module | None = None
) -> str:
    """The concrete precision ``precision`` means on ``device`` (for ``model``, whose size ``auto`` weighs), or a
    ``MegasenseInputError`` listing the choices."""
    if precision not in GENERATION_PRECISIONS:
        raise MegasenseInputError(
            f"unknown generation precision {precision!r}; choose one of {', '.join(GENERATION_PRECISIONS)}"
        )
    kind = torch.device(device).type
    if precision == "auto":
        if model is not None and sum(p.numel() for p in model.parameters()) < AUTO_MIN_PARAMETERS:
            return "fp32"
        return AUTO_PRECISION.get(kind, "fp32")
    if precision in ("int8", "int4") and kind != "cpu":
        raise MegasenseInputError(f"precision {precision!r} uses CPU kernels; on {device} use bf16 or fp32")
    return precision


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
    lengths: list[int]

    @property
    def prefill_positions(self) -> torch.Tensor:
        B, P = self.ids.shape
        if self.mask is None:
            return torch.arange(P, device=self.ids.device).expand(B, P)
        return (self.mask[:, :P].cumsum(1) - 1).clamp(min=0)  # (B, P): left padding does not count


class _ModelSession:
    """The model's own forward over a ``KVCache``: the exact reference path."""

    def __init__(self, engine: GenerationEngine, batch: _Batch, max_length: int) -> None:
        self.model, self.vocab_size, self.mask = engine.model, engine.vocab_size, batch.mask
        self.cache = engine.model.new_kv_cache(batch.ids.shape[0], max_length)

    def _logits(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        mask = self.mask[:, : self.cache.length + ids.shape[1]] if self.mask is not None else None
        out = self.model(ids, attention_mask=mask, position_ids=positions, kv_cache=self.cache)
        return out.logits[:, -1, : self.vocab_size].float()  # (B, V) -- drop Megatron's vocabulary padding

    prefill = step = _logits

    def reorder(self, index: torch.Tensor) -> None:
        self.cache.reorder(index)


class GenerationEngine:
    def __init__(
        self,
        model: GPTModel,
        *,
        eos_token_ids: Sequence[int] = (),
        pad_token_id: int = 0,
        precision: str = "fp32",
    ) -> None:
        """``precision``: one of ``GENERATION_PRECISIONS`` (default ``fp32``, the model's own forward)."""
        self.model = model.eval()
        self.vocab_size = model.config.vocab_size
        self.max_positions = model.config.max_position_embeddings
        self.eos_token_ids = tuple(eos_token_ids)
        self.pad_token_id = pad_token_id
        self.precision = resolve_generation_precision(precision, self.device, model)
        self._decoder = None  # the packed copy, built on first use

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def decoder(self):
        """The ``PackedDecoder`` for this precision (None for ``fp32``, which runs the model itself)."""
        if self.precision == "fp32":
            return None
        if self._decoder is None:
            from megasense.inference.decoder import PackedDecoder

            with torch.inference_mode():
                self._decoder = PackedDecoder(self.model, self.precision.removesuffix("-packed"))
        return self._decoder

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

    def _session(self, batch: _Batch, max_length: int):
        decoder = self.decoder
        if decoder is None:
            return _ModelSession(self, batch, max_length)
        return decoder.new_session(batch.ids.shape[0], max_length, batch.mask)

    def _stop_ids(self, config: GenerationConfig) -> torch.Tensor:
        return torch.tensor(
            sorted(set(self.eos_token_ids) | set(config.stop_token_ids)), dtype=torch.long, device=self.device
        )

    @torch.inference_mode()
    def stream(self, prompts: Sequence[Sequence[int]], config: GenerationConfig) -> Iterator[list[int | None]]:
        """Yield, per step, each sequence's new token (None once it has finished).

        With ``num_return_sequences=n`` (sampling) each prompt is repeated n times, in order: rows
        ``i*n .. i*n + n-1`` are prompt i's samples."""
        if config.num_beams > 1:
            raise ConfigError(
                f"num_beams={config.num_beams}: beam search cannot stream, the best beam is only known at the end"
            )
        n = config.num_return_sequences
        prompts = [p for p in prompts for _ in range(n)]
        batch = self._prepare(prompts, config.max_new_tokens)
        B, P = batch.ids.shape
        session = self._session(batch, P + config.max_new_tokens)
        generator = torch.Generator(device=self.device).manual_seed(config.seed) if config.seed is not None else None
        stop = self._stop_ids(config)
        history = None  # (B, P + max_new): prompt and tokens so far, for the repetition penalty
        if config.repetition_penalty != 1.0:
            history = torch.full((B, P + config.max_new_tokens), self.pad_token_id, device=self.device)
            history[:, :P] = batch.ids
        rows = [list(p) for p in prompts] if config.no_repeat_ngram_size else None
        logits = session.prefill(batch.ids, batch.prefill_positions)
        finished = torch.zeros(B, dtype=torch.bool, device=self.device)
        for step in range(config.max_new_tokens):
            seen = history[:, : P + step] if history is not None else None
            token = next_token(
                logits, config, seen=seen, generator=generator, rows=rows, generated=step, stop_ids=stop
            )  # (B,)
            token = torch.where(finished, self.pad_token_id, token)
            is_stop = torch.isin(token, stop) & ~finished
            values, ended = token.tolist(), (finished | is_stop).tolist()
            yield [None if e else t for t, e in zip(values, ended)]
            finished |= is_stop
            if all(ended) or step == config.max_new_tokens - 1:
                return
            if history is not None:
                history[:, P + step] = token
            if rows is not None:
                for row, value in zip(rows, values):
                    row.append(value)
            logits = session.step(token[:, None], (batch.next_pos + step)[:, None])

    def generate(self, prompts: Sequence[Sequence[int]], config: GenerationConfig) -> list[Generation]:
        """One ``Generation`` per prompt and returned sequence: ``num_return_sequences`` in a row per prompt."""
        if config.num_beams > 1:
            return self.beam_search_batch(prompts, config)
        n = config.num_return_sequences
        outputs: list[list[int]] = [[] for _ in range(len(prompts) * n)]
        done = [False] * len(outputs)
        for step_tokens in self.stream(prompts, config):
            for row, token in enumerate(step_tokens):
                if token is None:
                    done[row] = True
                elif not done[row]:
                    outputs[row].append(token)
        return [
            Generation(tokens=out, finish_reason="stop" if d else "length", prompt_tokens=len(prompts[i // n]))
            for i, (out, d) in enumerate(zip(outputs, done))
        ]

    # ------------------------------------------------------------------------------------------
    def beam_bytes(self, beams: int, prompt_tokens: int, max_new: int) -> int:
        """About the memory a beam search of ``beams`` rows (beams x prompts) takes at its peak: the KV cache
        (twice: reordering the beams copies it) and the prefill's logits over every prompt position, per row."""
        cfg = self.model.config
        dtype_bytes = next(self.model.parameters()).element_size()
        cache = 2 * cfg.num_layers * cfg.query_groups * (prompt_tokens + max_new) * cfg.head_dim * dtype_bytes
        logits = (prompt_tokens + 3) * cfg.padded_vocab_size * 4
        return beams * (2 * cache + logits)

    def check_beam_memory(self, beams: int, prompt_tokens: int, max_new: int, prompts: int = 1) -> None:
        """Refuse a beam search that would not fit in the memory free on the model's device, naming the widest
        that would (``--beams 100000`` asks for tens of GB); ``prompts`` searched at once multiply the need."""
        free = _free_bytes(self.device)
        if free is None:
            return
        need = self.beam_bytes(beams * prompts, prompt_tokens, max_new)
        budget = int(0.8 * free)
        if need > budget:
            fits = max(1, budget // max(1, self.beam_bytes(prompts, prompt_tokens, max_new)))
            times = f" x {prompts} prompts" if prompts > 1 else ""
            raise ConfigError(
                f"num_beams={beams}{times} needs about {need / 2**30:.1f} GiB for the search "
                f"({prompt_tokens} prompt + {max_new} new tokens) but {free / 2**30:.1f} GiB are free on "
                f"{self.device}; use at most {fits} beams, fewer prompts at once, or fewer new tokens"
            )

    def beam_search(self, prompt: Sequence[int], config: GenerationConfig) -> Generation:
        """Beam search for one prompt: its best beam (see ``beam_search_batch``)."""
        return self.beam_search_batch([prompt], dataclasses.replace(config, num_return_sequences=1))[0]

    @torch.inference_mode()
    def beam_search_batch(self, prompts: Sequence[Sequence[int]], config: GenerationConfig) -> list[Generation]:
        """Beam search over several prompts at once, as transformers' ``num_beams`` (``_beam_search``)."""
        from megasense.inference.beam import BeamSearch

        K = config.num_beams
        P = max((len(p) for p in prompts), default=0)
        self.check_beam_memory(K, P, config.max_new_tokens, len(prompts))  # before anything is allocated
        batch = self._prepare([p for p in prompts for _ in range(K)], config.max_new_tokens)
        session = self._session(batch, batch.ids.shape[1] + config.max_new_tokens)
        search = BeamSearch(config, len(prompts), self._stop_ids(config), batch.ids, self.pad_token_id)
        logits = session.prefill(batch.ids, batch.prefill_positions)
        for step in range(config.max_new_tokens):
            logprobs = process(
                logits.log_softmax(-1),
                config,
                seen=search.seen(),
                rows=search.rows(batch.lengths) if config.no_repeat_ngram_size else None,
                generated=step,
                stop_ids=search.stop,
            )
            origins, tokens = search.advance(logprobs, step)
            if search.done:
                break
            session.reorder(origins)
            logits = session.step(tokens[:, None], (batch.next_pos + step)[:, None])
        return [
            Generation(tokens=t, finish_reason=r, prompt_tokens=len(prompts[i // config.num_return_sequences]), score=s)
            for i, (t, r, s) in enumerate(search.results())
        ]


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
