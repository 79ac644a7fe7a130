"""BERT pretraining scores only the labelled positions when labels are given: the same loss, less work."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from megasense.config import HeadConfig
from megasense.config.presets import bert_tiny
from megasense.models import build_model


def test_labelled_positions_only_give_the_full_loss_and_logits():
    torch.manual_seed(0)
    model = build_model(bert_tiny().replace(binary_head=True), HeadConfig(task="pretraining"))
    model.init_weights()
    model.eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 99, (3, 16), generator=g)
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.2, ids, -100)
    binary = torch.tensor([0, 1, 1])
    full = model(ids).logits  # (B, T, V)
    out = model(ids, labels=labels, binary_labels=binary)
    picked = labels != -100
    assert out.logits.shape == (int(picked.sum()), full.shape[-1])
    torch.testing.assert_close(out.logits, full[picked], atol=1e-6, rtol=0)
    expected = F.cross_entropy(full.flatten(0, 1), labels.flatten(), ignore_index=-100)
    expected = expected + F.cross_entropy(out.binary_logits, binary)
    torch.testing.assert_close(out.loss, expected, atol=1e-6, rtol=0)
