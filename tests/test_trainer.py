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


@pytest.fixture
def tiny_corpus(tmp_path) -> str:
    """Random token ids below gpt-tiny's vocabulary (99), as ``megasense tokenize`` would write them."""
    from megasense.data.indexed import IndexedDatasetWriter

    rng = torch.Generator().manual_seed(0)
    with IndexedDatasetWriter(tmp_path / "corpus") as writer:
        for _ in range(20):
            writer.add_document([torch.randint(0, 99, (40,), generator=rng).tolist()])
    return str(tmp_path / "corpus")


def _pretrain_config(prefix: str, **train):
    from megasense.config.pretrain import PretrainConfig

    data = {
        "model": {"preset": "gpt-tiny"},
        "data": {"prefix": prefix, "seq_length": 16},
        "train": {"max_steps": 3, "micro_batch_size": 2, "progress": False, "device": "cpu", **train},
    }
    return PretrainConfig.from_dict(data, source="run.toml")


def test_pretrain_writes_tensorboard_scalars(tiny_corpus, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from megasense.training.pretrain import pretrain

    logdir = tmp_path / "tb"
    result = pretrain(_pretrain_config(tiny_corpus, tensorboard=str(logdir), warmup_ratio=0.34, log_every=2))
    events = list(logdir.glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s"} <= set(acc.Tags()["scalars"])
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx(result.losses, rel=1e-6)
    assert [e.value for e in acc.Scalars("train/lr")] == pytest.approx([1e-3, 1e-3, 5e-4])
    assert [e.step for e in acc.Scalars("train/tokens_per_s")] == [1, 2, 3]  # first step, every 2nd, the last


def test_tensorboard_without_the_package_names_the_extra(tiny_corpus, monkeypatch):
    import builtins

    from megasense.training.pretrain import pretrain
    from megasense.training.pretrain_log import TensorBoardUnavailableError

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith(("tensorboard.", "torch.utils.tensorboard")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(TensorBoardUnavailableError, match=r"pip install 'megasense\[tensorboard\]'"):
        pretrain(_pretrain_config(tiny_corpus, tensorboard=True))


def test_tensorboard_option_type_is_checked():
    from megasense.config import ConfigError

    assert _pretrain_config("c", tensorboard=True).train.tensorboard is True
    assert _pretrain_config("c", tensorboard="runs/a").train.tensorboard == "runs/a"
    with pytest.raises(ConfigError, match=r"run\.toml: .*train\.tensorboard=3"):
        _pretrain_config("c", tensorboard=3)


def test_pretrain_with_activation_checkpointing_follows_the_same_curve(tiny_corpus):
    """gpt-tiny has dropout on: recomputed layers must replay it, so the losses match a plain run."""
    from megasense.training.pretrain import pretrain

    plain = pretrain(_pretrain_config(tiny_corpus)).losses
    for mode in ("full", "selective"):
        assert pretrain(_pretrain_config(tiny_corpus, activation_checkpointing=mode)).losses == pytest.approx(
            plain, abs=1e-6
        )


def test_fused_adamw_on_plain_parameters_makes_the_same_update():
    from megasense.training.trainer import adamw, parameter_groups

    models = [_Regression(), _Regression()]
    models[1].load_state_dict(models[0].state_dict())
    fused = adamw(parameter_groups(models[0], 0.01), lr=0.1)
    plain = torch.optim.AdamW(parameter_groups(models[1], 0.01), lr=0.1)
    assert fused.defaults["fused"] is True
    for batch in _batches(3):
        for model, opt in zip(models, (fused, plain), strict=True):
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
