"""Trainer: the logged learning rate is the one each optimizer step applied."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from megasense.training.trainer import TrainConfig, Trainer


class _Regression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(loss=nn.functional.mse_loss(self.linear(x).squeeze(-1), y))


def _batches(n: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"x": torch.randn(8, 4, generator=g), "y": torch.randn(8, generator=g)} for _ in range(n)]


def test_logged_lr_is_the_lr_each_step_applied(tmp_path):
    # 3 steps, 1 of warm-up, then cosine: the applied rates are 1.0, 1.0, 0.5 times the peak.
    cfg = TrainConfig(
        lr=0.1,
        max_steps=3,
        warmup_ratio=0.34,
        schedule="cosine",
        log_every=1,
        progress=False,
        metrics_path=str(tmp_path / "metrics.jsonl"),
    )
    trainer = Trainer(_Regression(), cfg)
    applied, reported = [], []
    trainer.optimizer.register_step_pre_hook(lambda opt, *_: applied.append(opt.param_groups[0]["lr"]))
    trainer.on_step = lambda _, record: reported.append(record["lr"])
    trainer.fit(_batches(3))

    logged = [
        r["lr"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()) if r["event"] == "train"
    ]
    assert applied == pytest.approx([0.1, 0.1, 0.05])
    assert reported == pytest.approx(applied)
    assert logged == pytest.approx(applied)
    assert logged[-1] > 0
