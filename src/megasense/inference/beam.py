"""Beam search bookkeeping for several prompts at once, with transformers' semantics step for step.

The engine runs the model on ``prompts x num_beams`` rows; ``BeamSearch`` turns each step's log-probabilities
into the surviving beams (which rows to keep, which token each appends) and the finished hypotheses. As
transformers' vectorised ``_beam_search``: each step keeps the top ``max(2, 1 + ends) * num_beams`` candidates
per prompt; a candidate that ends (an end token, or the last allowed step) among the first ``num_beams`` may
enter the prompt's ``num_beams`` finished slots with its score divided by ``length ** length_penalty``; the
best ``num_beams`` others run on. A prompt stops taking hypotheses once its slots are full and, as
``early_stopping`` says, its best open beam cannot beat the worst finished one; the search ends when every
prompt has stopped.
"""

from __future__ import annotations

import torch

from megasense.config import GenerationConfig

_NEG = -1.0e9  # transformers' "impossible" score: added, not set, so scores keep their order


class BeamSearch:
    def __init__(
        self, config: GenerationConfig, prompts: int, stop: torch.Tensor, prompt_ids: torch.Tensor, pad: int
    ) -> None:
        """``prompt_ids`` (prompts * num_beams, P): the left-padded prompts, each repeated num_beams times."""
        self.config, self.stop = config, stop
        self.N, self.K, self.pad = prompts, config.num_beams, pad
        self.keep = max(2, 1 + stop.numel()) * self.K  # candidates per prompt per step
        device = prompt_ids.device
        self.P = prompt_ids.shape[1]
        steps = config.max_new_tokens
        self.history = torch.full((self.N * self.K, self.P + steps), pad, dtype=torch.long, device=device)
        self.history[:, : self.P] = prompt_ids  # (N*K, P + steps): prompt and running beams' tokens
        self.scores = torch.zeros(self.N, self.K, device=device)  # running beams' summed log-probs
        self.scores[:, 1:] = _NEG  # the beams start identical: expand from the first only
        self.final_tokens = torch.full((self.N, self.K, steps), pad, dtype=torch.long, device=device)
        self.final_scores = torch.full((self.N, self.K), _NEG, device=device)
        self.final_lengths = torch.zeros(self.N, self.K, dtype=torch.long, device=device)
        self.final_set = torch.zeros(self.N, self.K, dtype=torch.bool, device=device)  # slot holds a hypothesis
        self.open = torch.ones(self.N, 1, dtype=torch.bool, device=device)  # may still improve (heuristic)
        self.top = torch.arange(self.keep, device=device) < self.K  # candidates allowed to finish
        self.offsets = torch.arange(self.N, device=device)[:, None] * self.K  # (N, 1): first row of each prompt
        self.done = False

    def seen(self) -> torch.Tensor | None:
        """Prompt and tokens so far (N*K, S), for the repetition penalty (None when it is off)."""
        if self.config.repetition_penalty == 1.0:
            return None
        return self.history[:, : self.P + self._step]

    def rows(self, lengths: list[int]) -> list[list[int]]:
        """Each row's real tokens so far (left padding dropped), for the no-repeat n-gram ban."""
        width = self.P + self._step
        return [row[self.P - n : width] for row, n in zip(self.history[:, :width].tolist(), lengths)]

    _step = 0

    def advance(self, logprobs: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Take step ``step``'s processed log-probs (N*K, V); return the rows to keep (N*K,) and their tokens."""
        N, K, V = self.N, self.K, logprobs.shape[-1]
        totals = (logprobs.view(N, K, V) + self.scores[:, :, None]).view(N, K * V)
        cand_scores, cand_index = torch.topk(totals, self.keep)  # (N, keep), best first
        cand_beam, cand_token = cand_index // V, cand_index % V  # beam within the prompt, token
        ends = torch.isin(cand_token, self.stop)
        if step == self.config.max_new_tokens - 1:
            ends = torch.ones_like(ends)  # the last allowed step: every candidate ends here
        self._finish(cand_scores, cand_beam, cand_token, ends, step)
        # the best num_beams candidates that did not end run on
        running = cand_scores + ends.float() * _NEG
        chosen = torch.topk(running, K).indices  # (N, K)
        self.scores = running.gather(1, chosen)
        rows = (cand_beam.gather(1, chosen) + self.offsets).flatten()  # (N*K,) rows of the previous step
        tokens = cand_token.gather(1, chosen).flatten()
        self.history = self.history[rows]
        self.history[:, self.P + step] = tokens
        self._step = step + 1
        self._update_open(step + 1)
        all_full = bool(self.final_set.all()) and self.config.early_stopping is True
        self.done = not bool(self.open.any()) or all_full or bool(ends.all())
        return rows, tokens

    def _finish(self, cand_scores, cand_beam, cand_token, ends, step: int) -> None:
        """Merge the candidates that end now into the finished slots (transformers' ``_update_finished_beams``)."""
        N, K = self.N, self.K
        scores = cand_scores / ((step + 1) ** self.config.length_penalty)
        full = self.final_set.all(dim=1, keepdim=True) & (self.config.early_stopping is True)
        scores = scores + full.float() * _NEG + (~self.open).float() * _NEG
        finishing = ends & self.top[None, :]
        scores = scores + (~finishing).float() * _NEG
        rows = (cand_beam + self.offsets).flatten()
        tokens = self.history[rows, self.P : self.P + self.config.max_new_tokens].clone()
        tokens[:, step] = cand_token.flatten()
        tokens = tokens.view(N, self.keep, -1)
        lengths = torch.full((N, self.keep), step + 1, dtype=torch.long, device=scores.device)
        merged = torch.cat((self.final_scores, scores), dim=1)
        best = torch.topk(merged, K).indices  # (N, K)
        self.final_scores = merged.gather(1, best)
        self.final_tokens = torch.cat((self.final_tokens, tokens), dim=1)[torch.arange(N)[:, None], best]
        self.final_lengths = torch.cat((self.final_lengths, lengths), dim=1).gather(1, best)
        self.final_set = torch.cat((self.final_set, finishing), dim=1).gather(1, best)

    def _update_open(self, generated: int) -> None:
        """transformers' ``_check_early_stop_heuristic``: can the best running beam still beat the worst finished?"""
        penalty = self.config.length_penalty
        length = generated
        if self.config.early_stopping == "never" and penalty > 0.0:
            length = self.config.max_new_tokens
        best_possible = self.scores[:, :1] / (length**penalty)
        worst = torch.where(self.final_set, self.final_scores.min(dim=1, keepdim=True).values, _NEG)
        self.open &= (best_possible > worst).any(dim=-1, keepdim=True)

    def results(self) -> list[tuple[list[int], str, float]]:
        """(tokens without the end token, finish reason, score) of the best ``num_return_sequences`` per prompt."""
        stops = set(self.stop.tolist())
        out = []
        for n in range(self.N):
            for j in range(self.config.num_return_sequences):
                tokens = self.final_tokens[n, j, : int(self.final_lengths[n, j])].tolist()
                reason = "stop" if tokens and tokens[-1] in stops else "length"
                out.append((tokens[:-1] if reason == "stop" else tokens, reason, float(self.final_scores[n, j])))
        return out
