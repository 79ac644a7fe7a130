"""Training checkpoints on one process: what is saved, the ``latest`` pointer, pruning, RNG, and broken files."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from megasense.config.presets import gpt_tiny
from megasense.errors import CheckpointError
from megasense.models import build_model
from megasense.training.checkpoint import TrainingCheckpoints


def _trained(seed: int = 0, **changes):
    torch.manual_seed(seed)
    model = build_model(gpt_tiny().replace(**changes))
    model.init_weights()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(0, 99, (2, 8))
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return model, optimizer


def test_model_optimizer_state_and_generators_round_trip(tmp_path):
    model, optimizer = _trained()
    checkpoints = TrainingCheckpoints(tmp_path, keep=2)
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    checkpoints.save(1, model, optimizer, {"trainer": {"step": 1}, "consumed_samples": 8})
    expected = (random.random(), np.random.rand(), torch.rand(3))
    files = sorted(p.name for p in (tmp_path / "step-00000001").iterdir())
    assert files == [".metadata", "__0_0.distcp", "rng-rank-0.json", "state.json"]  # no pickle anywhere

    fresh, fresh_opt = _trained(seed=1)
    torch.manual_seed(0)
    state = TrainingCheckpoints(tmp_path).load(fresh, fresh_opt)
    assert state["step"] == 1 and state["consumed_samples"] == 8 and state["rng_restored"]
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(3), expected[2])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True))
    assert fresh.output_layer.weight is fresh.embedding.word_embeddings.weight  # still tied
    for p, q in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(optimizer.state[p]["exp_avg_sq"], fresh_opt.state[q]["exp_avg_sq"])


def test_latest_pointer_pruning_and_fallback(tmp_path):
    model, optimizer = _trained()
    checkpoints = TrainingCheckpoints(tmp_path, keep=2)
    for step in (2, 4, 6):
        checkpoints.save(step, model, optimizer, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000004", "step-00000006"]
    assert checkpoints.latest().name == "step-00000006"
    (tmp_path / "latest").write_text("step-00000099\n")  # names a checkpoint that is gone
    assert checkpoints.latest().name == "step-00000006"
    (tmp_path / "step-00000006" / "state.json").unlink()  # incomplete: never chosen
    assert checkpoints.latest().name == "step-00000004"
    with pytest.raises(CheckpointError, match="not a complete training checkpoint"):
        checkpoints.load(model, optimizer, tmp_path / "step-00000006")
    with pytest.raises(CheckpointError, match="holds no complete training checkpoint"):
        TrainingCheckpoints(tmp_path / "empty").load(model, optimizer)


def test_broken_or_mismatched_checkpoints_are_named(tmp_path):
    model, optimizer = _trained()
    checkpoints = TrainingCheckpoints(tmp_path)
    with pytest.raises(TypeError, match="not JSON serializable"):
        checkpoints.save(1, model, optimizer, {"trainer": object()})
    assert not any(tmp_path.iterdir())  # refused before anything was written
    path = checkpoints.save(1, model, optimizer, {})
    wider, wider_opt = _trained(hidden_size=64)
    with pytest.raises(CheckpointError, match=r"step-00000001: cannot load the sharded model/optimizer state"):
        checkpoints.load(wider, wider_opt)
    (path / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"state\.json: is not valid JSON"):
        checkpoints.load(model, optimizer)
    (path / "state.json").write_text(json.dumps({"format": "something-else", "step": 1}))
    with pytest.raises(CheckpointError, match="format is 'something-else'"):
        checkpoints.load(model, optimizer)


def test_a_write_error_inside_dcp_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import torch.distributed.checkpoint as dcp

    model, optimizer = _trained()
    checkpoints = TrainingCheckpoints(tmp_path)
    checkpoints.save(1, model, optimizer, {})

    def disk_full(self, plan, planner):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dcp.FileSystemWriter, "write_data", disk_full)
    with pytest.raises(CheckpointError, match=r"step-00000002: saving .*No space left.*step-00000001 is intact"):
        checkpoints.save(2, model, optimizer, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000001"]
    monkeypatch.undo()
    assert checkpoints.load(model, optimizer)["step"] == 1
