"""Dropout under sequence parallelism: each rank drops its own positions, as one device would."""

from __future__ import annotations

import copy
import traceback
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from megasense.config import HeadConfig
from megasense.config.presets import preset
from megasense.models import build_model
from megasense.parallel.sequence_parallel_dropout import shard_dropout_over_sequence


def _fake_mesh(rank: int, size: int):
    return SimpleNamespace(get_local_rank=lambda: rank, size=lambda: size)


def _model(name: str):
    cfg = preset(name).replace(hidden_dropout=0.2, attention_dropout=0.0)
    torch.manual_seed(0)
    model = build_model(cfg, HeadConfig(task="causal_lm" if cfg.arch == "gpt" else "pretraining"))
    model.init_weights()
    return model.train()


def test_slices_of_the_whole_sequence_mask():
    x = torch.randn(3, 8, 5)
    torch.manual_seed(7)
    whole = F.dropout(x, 0.2, training=True)  # the models' hidden_dropout
    pieces = []
    for rank in range(2):
        model = _model("gpt-tiny")
        changed = shard_dropout_over_sequence(model, "layers", ["layers.0.self_attention"], _fake_mesh(rank, 2))
        assert changed == ["layers.0.dropout", "layers.1.dropout"]
        torch.manual_seed(7)
        pieces.append(model.layers[0].dropout(x.chunk(2, dim=1)[rank]))
    assert torch.equal(torch.cat(pieces, dim=1), whole)
    assert not torch.equal(pieces[0] != 0, pieces[1] != 0)  # the ranks' masks differ
    model.eval()
    assert torch.equal(model.layers[0].dropout(x), x)


CASES = {
    "gpt_sp": ("gpt-tiny", "none"),
    "bert_sp": ("bert-tiny", "none"),
    "gpt_sp_full_checkpointing": ("gpt-tiny", "full"),
}


def _sp_vs_one_device(rank: int, world_size: int) -> dict[str, dict[str, float] | str]:
    from megasense.config.parallel import ParallelConfig
    from megasense.parallel import build_mesh, loss_context, parallelize

    config = ParallelConfig(tp=2, sequence_parallel=True)
    out: dict[str, dict[str, float] | str] = {}
    for case, (name, checkpointing) in CASES.items():
        try:
            reference = _model(name)
            model = parallelize(
                copy.deepcopy(reference),
                build_mesh(config, device_type="cpu"),
                config,
                activation_checkpointing=checkpointing,
            )
            g = torch.Generator().manual_seed(1)
            ids = torch.randint(0, 99, (2, 16), generator=g)
            batch = {"input_ids": ids, "labels": ids}
            torch.manual_seed(3)
            ref_loss = reference(**batch).loss
            ref_loss.backward()
            torch.manual_seed(3)
            with loss_context(config):
                loss = model(**batch).loss
                loss.backward()
            loss = loss.full_tensor() if hasattr(loss, "full_tensor") else loss
            params = dict(model.named_parameters())
            grad = 0.0
            for key, p in reference.named_parameters():
                if p.grad is not None:
                    mine = params[key].grad
                    mine = mine.full_tensor() if hasattr(mine, "full_tensor") else mine
                    grad = max(grad, (mine - p.grad).abs().max().item())
            out[case] = {"loss": abs(float(loss) - float(ref_loss)), "grad": grad}
        except Exception:
            out[case] = traceback.format_exc()
    return out


@pytest.mark.distributed
def test_sequence_parallel_dropout_matches_one_device():
    """tp=2 with sequence parallel and hidden dropout 0.2: the loss and gradients of one device."""
    from megasense.parallel.launch import run_distributed

    results = run_distributed(_sp_vs_one_device, world_size=2, timeout=240)
    for rank_results in results:
        for case in CASES:
            diffs = rank_results[case]
            assert isinstance(diffs, dict), diffs
            assert diffs["loss"] < 1e-5 and diffs["grad"] < 1e-5, (case, diffs)
