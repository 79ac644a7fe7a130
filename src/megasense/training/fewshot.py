"""Few-shot classification in SetFit's way: contrastive fine-tuning of the encoder on sentence pairs, then a
logistic regression on the frozen embeddings, written into the classifier's linear layer.

With 5-20 examples per class a freshly initialised head trained by cross-entropy learns little (77 classes
x 10 examples are 24 optimizer steps an epoch); pairs of texts are many more (n^2), and teaching the
encoder that texts of one label lie close and texts of two labels far apart is what SetFit (Tunstall et
al. 2022) and CPFT (Zhang et al. 2021) do. The steps:

1. ``sample_pairs``: balanced pairs, per round and text one with a text of its label (1) and one with a text
   of another label (0), seeded, as SetFit's ``sentence_pairs_generation``.
2. ``PairLoss`` around the classifier's own encoder, on the vectors its classifier reads (``model.pooled``,
   mean pooling by default), normalised: ``cosine`` is SetFit's loss (the squared error between the two
   texts' cosine and the pair's 0/1), ``mnrl`` is MultipleNegativesRanking (each positive pair's partner
   against the batch's other texts, those of the same label left out), which uses only the positive pairs
   and so costs half as much per pair. The generic ``Trainer`` runs it (AdamW, warm-up, bf16 autocast).
3. ``fit_head``: a scikit-learn logistic regression on the trained encoder's embeddings of the training
   texts, copied into ``model.classifier``. The embeddings are not normalised: on Banking77 10-shot (frozen
   MiniLM, seed 0) the default C=1 reads raw mean-pooled vectors (norm about 5.5) as well (0.840) as
   normalised ones at C=10 (0.842; 0.814 at C=1), so no new pooling mode is needed for it. The result is
   an ordinary ``BertForSequenceClassification``: it saves, loads, predicts and evaluates like any
   classifier megasense trains.

``choose_method`` is ``megasense train --method auto``'s rule (see ``FEW_SHOT_MEDIAN``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from megasense.config.train import TrainConfig
from megasense.data.collate import pad_right
from megasense.errors import ConfigError
from megasense.training.trainer import Trainer, TrainResult

LOSSES = ("mnrl", "cosine")

FEW_SHOT_MEDIAN = 16
"""``auto`` trains contrastively when the median class has at most this many training texts (see
``choose_method``)."""


def choose_method(labels: Sequence[int], *, multi_label: bool = False, label_mask: bool = False) -> tuple[str, str]:
    """``(method, reason)`` for ``method="auto"``: ``contrastive`` for few-shot data, else ``classifier``.

    Few-shot means the median class has at most ``FEW_SHOT_MEDIAN`` texts: there a fresh linear head trained
    by cross-entropy sees too few steps, while the contrastive pairs grow with the square of the data.
    Multi-label data and rows with a label mask always take the classifier (pairs need one label per text)."""
    if multi_label:
        return "classifier", "multi-label data (the contrastive method needs one label per text)"
    if label_mask:
        return "classifier", "rows restricted to some labels (a label mask), which the contrastive method ignores"
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    median = float(np.median(counts[counts > 0]))
    if median <= FEW_SHOT_MEDIAN:
        return "contrastive", f"few-shot data: median {median:g} texts per class (<= {FEW_SHOT_MEDIAN})"
    return "classifier", f"median {median:g} texts per class (> {FEW_SHOT_MEDIAN}): enough for a trained head"


def sample_pairs(labels: Sequence[int], pairs_per_example: int, *, seed: int) -> list[tuple[int, int, float]]:
    """Balanced pairs of example indices ``(i, j, similar)``: ``pairs_per_example // 2`` rounds (at least one),
    each giving every example one partner of its own label (1.0) and one of another label (0.0).

    A label with a single example pairs it with itself; data with a single label has no negative pairs."""
    if pairs_per_example < 1:
        raise ConfigError(f"pairs_per_example={pairs_per_example} must be at least 1")
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_label.setdefault(int(y), []).append(i)
    others = {y: [i for i, z in enumerate(labels) if int(z) != y] for y in by_label}
    pairs: list[tuple[int, int, float]] = []
    for _ in range(max(1, pairs_per_example // 2)):
        for i, y in enumerate(labels):
            same = by_label[int(y)]
            partners = [j for j in same if j != i] or same
            pairs.append((i, rng.choice(partners), 1.0))
            if others[int(y)]:
                pairs.append((i, rng.choice(others[int(y)]), 0.0))
    rng.shuffle(pairs)
    return pairs


@dataclass
class PairOutput:
    loss: torch.Tensor
    """The contrastive loss of the batch (what the Trainer minimises)."""


class PairLoss(nn.Module):
    """The classifier's encoder, trained on pairs: a batch holds the first texts of B pairs, then their
    partners, in one padded (2B, T) tensor, so the encoder runs once a batch."""

    def __init__(self, model: nn.Module, loss: str = "mnrl", *, scale: float = 20.0) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"contrastive loss={loss!r} is not one of {', '.join(LOSSES)}")
        self.model, self.loss, self.scale = model, loss, scale

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, similar: torch.Tensor, labels: torch.Tensor
    ) -> PairOutput:
        """``similar``: (B,) 1.0 / 0.0 per pair; ``labels``: (2B,) each text's label (``mnrl``'s mask)."""
        pooled = self.model.pooled(self.model.encode(input_ids, attention_mask), attention_mask)
        emb = F.normalize(pooled.float(), dim=-1)  # (2B, H)
        first, second = emb.chunk(2)  # (B, H) each
        if self.loss == "cosine":
            return PairOutput(loss=F.mse_loss((first * second).sum(-1), similar.float()))
        scores = self.scale * first @ second.T  # (B, B): row i's partner is column i
        label_a, label_b = labels.chunk(2)
        same = label_a[:, None] == label_b[None, :]
        same.fill_diagonal_(False)  # a text of the same label is no negative, but the partner stays the target
        scores = scores.masked_fill(same, float("-inf"))
        target = torch.arange(len(first), device=scores.device)
        return PairOutput(loss=(F.cross_entropy(scores, target) + F.cross_entropy(scores.T, target)) / 2)


class PairBatches:
    """Seeded batches of pairs for ``PairLoss`` (``mnrl`` keeps the positive pairs only)."""

    def __init__(
        self,
        ids: list[list[int]],
        labels: Sequence[int],
        pairs: list[tuple[int, int, float]],
        *,
        batch_size: int,
        pad_id: int,
        seed: int,
    ) -> None:
        self.ids, self.labels, self.pairs = ids, [int(y) for y in labels], pairs
        self.batch_size, self.pad_id, self.seed = batch_size, pad_id, seed

    def __len__(self) -> int:
        return (len(self.pairs) + self.batch_size - 1) // self.batch_size

    def __call__(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        """Shuffled pairs, sorted by length within pools of 50 batches, the batches shuffled: little padding."""
        rng = random.Random(self.seed * 1000 + epoch)
        order = list(self.pairs)
        rng.shuffle(order)
        pool, size = self.batch_size * 50, self.batch_size
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda p: max(len(self.ids[p[0]]), len(self.ids[p[1]])))
            batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
        rng.shuffle(batches)
        for batch in batches:
            texts = [i for i, _, _ in batch] + [j for _, j, _ in batch]
            input_ids, mask = pad_right([self.ids[k] for k in texts], self.pad_id)
            yield {
                "input_ids": input_ids,
                "attention_mask": mask,
                "similar": torch.tensor([s for _, _, s in batch]),
                "labels": torch.tensor([self.labels[k] for k in texts]),
            }


def train_contrastive(
    model: nn.Module,
    ids: list[list[int]],
    labels: Sequence[int],
    config: TrainConfig,
    *,
    pad_id: int,
    batch_size: int,
    pairs_per_example: int,
    loss: str = "mnrl",
) -> TrainResult:
    """Fine-tune ``model``'s encoder in place on pairs of the tokenized texts ``ids``: one pass over
    ``pairs_per_example`` pairs per text (``batch_size`` pairs a step), with ``config``'s optimiser;
    ``config.max_steps``, when set, stops it earlier (a fixed budget, whatever the data's size). No
    evaluation: the pairs' loss is no measure of the classifier, whose head is fitted afterwards."""
    pairs = sample_pairs(labels, pairs_per_example, seed=config.seed)
    if loss == "mnrl":
        pairs = [p for p in pairs if p[2] == 1.0]
    batches = PairBatches(ids, labels, pairs, batch_size=batch_size, pad_id=pad_id, seed=config.seed)
    run = config.replace(epochs=1, steps_per_epoch=len(batches), eval_every=None, monitor=None, patience=None)
    return Trainer(PairLoss(model, loss), run).fit(batches)


@torch.no_grad()
def embed_ids(model: nn.Module, ids: list[list[int]], *, pad_id: int, bf16: bool, batch_size: int = 64) -> np.ndarray:
    """(N, H) what ``model.classifier`` reads for each tokenized text (``model.pooled``; length-sorted batches)."""
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = np.zeros((len(ids), model.config.hidden_size), dtype=np.float32)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        input_ids, mask = pad_right([ids[i] for i in rows], pad_id)
        input_ids, mask = input_ids.to(device), mask.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            pooled = model.pooled(model.encode(input_ids, mask), mask)  # the classifier's own input
        out[rows] = pooled.float().cpu().numpy()
    return out


def fit_head(
    model: nn.Module, embeddings: np.ndarray, labels: Sequence[int], num_labels: int, *, C: float = 1.0
) -> dict[str, float]:
    """Fit a logistic regression on ``embeddings`` (as ``model.pooled`` gives them) and copy it into
    ``model.classifier``; returns its training accuracy. Labels absent from the data get a bias of -30."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=np.int64)
    present = np.unique(y)
    if len(present) < 2:
        raise ConfigError(f"the contrastive method needs at least 2 labels in the training data, got {len(present)}")
    regression = LogisticRegression(C=C, max_iter=2000).fit(embeddings, y)
    coef, intercept = regression.coef_, regression.intercept_
    if len(present) == 2:  # scikit-learn keeps one row for two classes: softmax(-z/2, z/2) = sigmoid(z)
        coef, intercept = np.stack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((num_labels, embeddings.shape[1]), dtype=np.float32)
    bias = np.full(num_labels, -30.0, dtype=np.float32)
    weight[regression.classes_], bias[regression.classes_] = coef, intercept
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(weight))
        model.classifier.bias.copy_(torch.from_numpy(bias))
    return {"head_train_accuracy": float(regression.score(embeddings, y))}
