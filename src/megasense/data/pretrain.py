"""Pretraining samples from an indexed dataset: packed GPT windows and dynamically masked BERT pairs.

Both are indexable by a global sample number and deterministic given (seed, sample number), so the
data position of a run is one integer: resuming at sample ``n`` continues exactly where it stopped,
on any number of data-parallel ranks (each rank takes every ``dp``-th sample).

GPT (causal LM, Megatron's packing): each epoch shuffles the documents, lays their tokens end to end
(every document ends with the end-of-document token written by ``megasense tokenize``) and cuts
windows of ``seq_length + 1`` tokens; inputs are the first ``seq_length``, labels the last. Windows
cross document boundaries, as in Megatron-LM; ``reset_position_ids`` restarts positions after each
end-of-document token.

BERT (masked LM + sentence-order prediction, as in ALBERT and Megatron-BERT): a sample is two runs
of consecutive sentences of one document, swapped with probability 1/2 (the binary label); 15% of
the tokens are chosen for prediction (80% replaced by [MASK], 10% by a random token, 10% kept),
with a fresh mask every time the sample is drawn again in a later epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from megasense.data.indexed import IndexedDataset
from megasense.errors import ConfigError, MegasenseInputError


@dataclass
class GPTSample:
    input_ids: torch.Tensor  # (T,)
    labels: torch.Tensor  # (T,)
    position_ids: torch.Tensor  # (T,)


class GPTPackedDataset:
    def __init__(
        self,
        data: IndexedDataset,
        *,
        seq_length: int,
        seed: int = 1234,
        eod_id: int | None = None,
        reset_position_ids: bool = False,
    ) -> None:
        if seq_length < 2:
            raise ConfigError(f"seq_length={seq_length} must be at least 2")
        self.data, self.seq_length, self.seed = data, seq_length, seed
        self.eod_id, self.reset_position_ids = eod_id, reset_position_ids
        doc_tokens = np.array(
            [int(data.lengths[data.doc_index[j] : data.doc_index[j + 1]].sum()) for j in range(data.num_documents)],
            dtype=np.int64,
        )
        self.doc_tokens = doc_tokens
        self.tokens_per_epoch = int(doc_tokens.sum())
        self.samples_per_epoch = (self.tokens_per_epoch - 1) // seq_length
        if self.samples_per_epoch < 1:
            raise MegasenseInputError(
                f"{_name(data)} has {self.tokens_per_epoch} tokens, fewer than one sample of seq_length+1="
                f"{seq_length + 1}; use a larger corpus or a shorter seq_length"
            )
        self._epoch_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(document order, cumulative token offsets) of one epoch; the two last epochs are kept."""
        if epoch not in self._epoch_cache:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.data.num_documents)
            starts = np.concatenate([[0], np.cumsum(self.doc_tokens[order])])
            if len(self._epoch_cache) >= 2:
                self._epoch_cache.pop(min(self._epoch_cache))
            self._epoch_cache[epoch] = (order, starts)
        return self._epoch_cache[epoch]

    def _doc_tokens(self, doc: int) -> np.ndarray:
        return np.concatenate(self.data.document(doc)) if self.doc_tokens[doc] else np.zeros(0, self.data.dtype)

    def __getitem__(self, index: int) -> GPTSample:
        epoch, within = divmod(int(index), self.samples_per_epoch)
        order, starts = self._epoch(epoch)
        begin, end = within * self.seq_length, within * self.seq_length + self.seq_length + 1
        first = int(np.searchsorted(starts, begin, side="right")) - 1
        pieces, position = [], begin
        doc = first
        while position < end:
            tokens = self._doc_tokens(int(order[doc]))
            offset = position - int(starts[doc])
            take = tokens[offset : offset + (end - position)]
            pieces.append(take)
            position += len(take)
            doc += 1
        window = torch.from_numpy(np.concatenate(pieces).astype(np.int64))
        inputs, labels = window[:-1], window[1:]
        positions = torch.arange(self.seq_length)
        if self.reset_position_ids and self.eod_id is not None:
            positions = _positions_after_eod(inputs, self.eod_id)
        return GPTSample(input_ids=inputs, labels=labels, position_ids=positions)


def _name(data: IndexedDataset) -> str:
    """How an error names the corpus: its prefix (PREFIX.bin/.idx) where it has one."""
    prefix = getattr(data, "prefix", None)
    return f"the corpus {prefix}" if prefix is not None else "the corpus"


def _positions_after_eod(ids: torch.Tensor, eod: int) -> torch.Tensor:
    """Position ids that restart at 0 after every end-of-document token."""
    T = len(ids)
    starts = torch.zeros(T, dtype=torch.long)
    boundary = (ids == eod).nonzero().flatten() + 1
    boundary = boundary[boundary < T]
    starts[boundary] = boundary
    return torch.arange(T) - torch.cummax(starts, dim=0).values


@dataclass
class BertSample:
    input_ids: torch.Tensor  # (T,)
    token_type_ids: torch.Tensor  # (T,)
    attention_mask: torch.Tensor  # (T,)
    labels: torch.Tensor  # (T,) -100 where nothing is predicted
    binary_label: int  # 1 when the two segments were swapped


class BertMaskedDataset:
    def __init__(
        self,
        data: IndexedDataset,
        *,
        seq_length: int,
        vocab_size: int,
        cls_id: int,
        sep_id: int,
        mask_id: int,
        pad_id: int,
        special_ids: set[int] | None = None,
        mask_prob: float = 0.15,
        seed: int = 1234,
    ) -> None:
        if seq_length < 8:
            raise ConfigError(f"seq_length={seq_length} must be at least 8 for two segments and 3 special tokens")
        self.data, self.seq_length, self.vocab_size = data, seq_length, vocab_size
        self.cls_id, self.sep_id, self.mask_id, self.pad_id = cls_id, sep_id, mask_id, pad_id
        self.special = {cls_id, sep_id, mask_id, pad_id, *(special_ids or set())}
        self.mask_prob, self.seed = mask_prob, seed
        # Documents with at least two sentences can give a sentence-order pair.
        counts = np.diff(data.doc_index)
        self.docs = np.flatnonzero(counts >= 2)
        if len(self.docs) == 0:
            raise MegasenseInputError(
                f"{_name(data)}: no document has two or more sentences; tokenize with --split-sentences "
                "for BERT pretraining"
            )
        self.samples_per_epoch = len(self.docs)

    def __getitem__(self, index: int) -> BertSample:
        epoch, within = divmod(int(index), self.samples_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.docs))
        sentences = self.data.document(int(self.docs[order[within]]))
        rng = np.random.default_rng([self.seed, epoch, within])  # a fresh mask in every epoch
        budget = self.seq_length - 3
        cut = int(rng.integers(1, len(sentences)))
        a = np.concatenate(sentences[:cut]).astype(np.int64)
        b = np.concatenate(sentences[cut:]).astype(np.int64)
        a, b = _truncate_pair(a, b, budget, rng)
        swapped = int(rng.random() < 0.5)
        if swapped:
            a, b = b, a
        ids = np.concatenate([[self.cls_id], a, [self.sep_id], b, [self.sep_id]])
        types = np.concatenate([np.zeros(len(a) + 2, np.int64), np.ones(len(b) + 1, np.int64)])
        ids, labels = self._mask(ids, rng)
        pad = self.seq_length - len(ids)
        return BertSample(
            input_ids=torch.from_numpy(np.pad(ids, (0, pad), constant_values=self.pad_id)),
            token_type_ids=torch.from_numpy(np.pad(types, (0, pad))),
            attention_mask=torch.from_numpy(np.pad(np.ones(len(ids), np.int64), (0, pad))),
            labels=torch.from_numpy(np.pad(labels, (0, pad), constant_values=-100)),
            binary_label=swapped,
        )

    def _mask(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        candidates = np.array([i for i, t in enumerate(ids) if int(t) not in self.special])
        n = max(1, round(len(candidates) * self.mask_prob))
        chosen = rng.choice(candidates, size=min(n, len(candidates)), replace=False)
        labels = np.full(len(ids), -100, dtype=np.int64)
        labels[chosen] = ids[chosen]
        out = ids.copy()
        roll = rng.random(len(chosen))
        out[chosen[roll < 0.8]] = self.mask_id
        random_positions = chosen[(roll >= 0.8) & (roll < 0.9)]
        out[random_positions] = rng.integers(0, self.vocab_size, len(random_positions))
        return out, labels


def _truncate_pair(a: np.ndarray, b: np.ndarray, budget: int, rng: np.random.Generator):
    """Trim the longer segment, from a random end, until both fit (BERT's truncate_seq_pair)."""
    bounds = [[0, len(a)], [0, len(b)]]
    while (bounds[0][1] - bounds[0][0]) + (bounds[1][1] - bounds[1][0]) > budget:
        longer = bounds[0] if bounds[0][1] - bounds[0][0] >= bounds[1][1] - bounds[1][0] else bounds[1]
        if rng.random() < 0.5:
            longer[0] += 1
        else:
            longer[1] -= 1
    return a[bounds[0][0] : bounds[0][1]], b[bounds[1][0] : bounds[1][1]]


def collate(samples: list) -> dict[str, torch.Tensor]:
    """Stack samples of one kind into a batch of tensors keyed by field name."""
    first = samples[0]
    out = {}
    for name in vars(first):
        values = [getattr(s, name) for s in samples]
        out[name] = torch.stack(values) if isinstance(values[0], torch.Tensor) else torch.tensor(values)
    return out
