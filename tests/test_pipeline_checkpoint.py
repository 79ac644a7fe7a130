"""Training-checkpoint keys that pipeline stages rely on, in one process: flat optimizer state, aliases, old files."""

from __future__ import annotations

import copy

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict

from megasense.config.presets import gpt_tiny
from megasense.models import build_model
from megasense.parallel.pipeline_parallel import split_stage
from megasense.training import checkpoint as ckpt
from megasense.training.checkpoint import TrainingCheckpoints


def _trained(model=None):
    torch.manual_seed(0)
    if model is None:
        model = build_model(gpt_tiny())
        model.init_weights()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    return model, optimizer


def test_optimizer_state_is_keyed_by_parameter_name(tmp_path):
    model, optimizer = _trained()
    TrainingCheckpoints(tmp_path).save(1, model, optimizer, {})
    keys = set(dcp.FileSystemReader(str(tmp_path / "step-00000001")).read_metadata().state_dict_metadata)
    assert "optim.state.layers.1.mlp.dense_4h_to_h.weight.exp_avg" in keys
    assert "optim.param_groups.layers.1.mlp.dense_4h_to_h.weight.lr" in keys
    assert not any(k.startswith("optim.param_groups.0.") for k in keys)


def test_a_stage_saves_its_tied_copy_under_the_first_name_and_loads_it_back(tmp_path):
    whole, _ = _trained()
    last = copy.deepcopy(whole)
    split = split_stage(last, stage=1, num_stages=2)
    last, optimizer = _trained(last)
    aliases = {"output_layer.weight": "embedding.word_embeddings.weight"}
    assert {n: f for n, f in split.shared.items() if n != f} == aliases
    checkpoints = TrainingCheckpoints(tmp_path)
    checkpoints.save(1, last, optimizer, {}, aliases=aliases)
    keys = set(dcp.FileSystemReader(str(tmp_path / "step-00000001")).read_metadata().state_dict_metadata)
    assert "optim.state.embedding.word_embeddings.weight.exp_avg" in keys
    assert not any(k.startswith("optim.state.output_layer") for k in keys)
    # A fresh last stage reads the state back under its own name.
    fresh = copy.deepcopy(whole)
    split_stage(fresh, stage=1, num_stages=2)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    checkpoints.load(fresh, fresh_opt, aliases=aliases, restore_rng=False)
    saved = optimizer.state[dict(last.named_parameters())["output_layer.weight"]]["exp_avg"]
    loaded = fresh_opt.state[dict(fresh.named_parameters())["output_layer.weight"]]["exp_avg"]
    assert saved.abs().sum() > 0 and torch.equal(saved, loaded)


def test_a_checkpoint_with_nested_optimizer_state_still_loads(tmp_path, monkeypatch):
    """Checkpoints written before the state was flattened (``optim.param_groups.0.*``) still resume."""
    model, optimizer = _trained()
    real = ckpt.get_state_dict
    monkeypatch.setattr(ckpt, "get_state_dict", lambda m, o, options=None: get_state_dict(m, o))
    TrainingCheckpoints(tmp_path).save(1, model, optimizer, {})
    monkeypatch.setattr(ckpt, "get_state_dict", real)
    keys = set(dcp.FileSystemReader(str(tmp_path / "step-00000001")).read_metadata().state_dict_metadata)
    assert "optim.param_groups.0.params" in keys
    fresh = build_model(gpt_tiny())
    fresh.init_weights()
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    TrainingCheckpoints(tmp_path).load(fresh, fresh_opt, restore_rng=False)
    for p, q in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q) and torch.equal(optimizer.state[p]["exp_avg"], fresh_opt.state[q]["exp_avg"])
