"""Activation checkpointing (full and selective): the same gradients, less memory kept for backward."""

from __future__ import annotations

import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from megasense.config import HeadConfig
from megasense.config.presets import preset
from megasense.models import build_model
from megasense.parallel.activation_checkpointing import apply_activation_checkpointing, checkpoint_targets

SEQ = 64  # max_position_embeddings of the tiny presets: attention's share of the activations is visible


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(name: str, mode: str):
    # Dropout on in both places: a recomputed forward must replay the same masks.
    cfg = preset(name).replace(hidden_dropout=0.1, attention_dropout=0.1)
    head = HeadConfig(task="causal_lm" if cfg.arch == "gpt" else "pretraining")
    torch.manual_seed(0)
    model = build_model(cfg, head)
    model.init_weights()
    apply_activation_checkpointing(model, mode)
    return model.train()


def _batch(name: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 99, (4, SEQ), generator=g)
    if name.startswith("gpt"):
        return {"input_ids": ids, "labels": ids}
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.15, ids, -100)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


class _KeptForBackward(TorchDispatchMode):
    """Bytes of the tensors made during forward that are still alive when it ends (what backward keeps).

    Counted by storage, so views are counted once; this sees what autograd saved, what checkpoint
    regions keep (their inputs) and nothing they free, unlike a saved-tensor hook, which a
    checkpoint region's own hooks hide.
    """

    def __init__(self) -> None:
        super().__init__()
        self.storages: dict[int, tuple[StorageWeakRef, int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                self.storages.setdefault(storage.data_ptr(), (StorageWeakRef(storage), storage.nbytes()))
        return out

    def alive_bytes(self, exclude: list[torch.Tensor]) -> int:
        skip = {t.untyped_storage().data_ptr() for t in exclude}
        return sum(n for ptr, (ref, n) in self.storages.items() if ptr not in skip and not ref.expired())


def _run(name: str, mode: str) -> tuple[dict[str, torch.Tensor], int]:
    model, batch = _model(name, mode), _batch(name)
    torch.manual_seed(2)  # the dropout masks
    tracker = _KeptForBackward()
    with tracker:
        out = model(**batch)
    kept = tracker.alive_bytes([out.loss, out.logits])
    out.loss.backward()
    return {k: p.grad for k, p in model.named_parameters()}, kept


@pytest.mark.parametrize("name", ["bert-tiny", "gpt-tiny"])
def test_checkpointing_keeps_gradients_and_saves_memory(name):
    grads, kept = {}, {}
    for mode in ("none", "full", "selective"):
        grads[mode], kept[mode] = _run(name, mode)
    for mode in ("full", "selective"):
        assert grads[mode].keys() == grads["none"].keys()
        for key, ref in grads["none"].items():
            torch.testing.assert_close(grads[mode][key], ref, atol=1e-6, rtol=0, msg=f"{mode} {key}")
    assert kept["full"] < kept["selective"] < kept["none"], kept


def test_targets_are_layers_or_their_attention():
    model = _model("gpt-tiny", "none")
    assert [p for p, _ in checkpoint_targets(model, "full")] == ["layers.0", "layers.1"]
    assert [p for p, _ in checkpoint_targets(model, "selective")] == [
        "layers.0.self_attention",
        "layers.1.self_attention",
    ]
    names = [k for k, _ in model.named_parameters()]
    assert apply_activation_checkpointing(model, "full") == ["layers.0", "layers.1"]
    assert [k for k, _ in model.named_parameters()] == names  # paths and checkpoints unchanged
    assert apply_activation_checkpointing(model, "full") == []  # idempotent
    with pytest.raises(ValueError, match="already has activation_checkpointing='full'"):
        apply_activation_checkpointing(model, "selective")


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match=r"activation_checkpointing='partial' is not one of none, full, selective"):
        apply_activation_checkpointing(_model("gpt-tiny", "none"), "partial")


def test_trainer_and_config_options(tmp_path):
    from megasense.config import ConfigError
    from megasense.config.pretrain import PretrainConfig
    from megasense.training.trainer import TrainConfig, Trainer

    model = _model("gpt-tiny", "none")
    Trainer(model, TrainConfig(max_steps=1, activation_checkpointing="selective", progress=False))
    assert type(model.layers[0].self_attention).__name__ == "CheckpointedSelfAttention"
    with pytest.raises(ValueError, match="activation_checkpointing='all' is not one of none, full, selective"):
        TrainConfig(max_steps=1, activation_checkpointing="all")
    data = {"data": {"prefix": "corpus"}, "train": {"activation_checkpointing": "ful"}}
    with pytest.raises(ConfigError, match=r"run\.toml: train\.activation_checkpointing='ful' is not one of none"):
        PretrainConfig.from_dict(data, source="run.toml")
    data["train"]["activation_checkpointing"] = "full"
    assert PretrainConfig.from_dict(data).train.activation_checkpointing == "full"


# Sharded layouts: checkpointing composes with tensor/sequence parallel and FSDP2 (two gloo ranks).
LAYOUTS = {
    "tp_sp_gpt_full": ("gpt-tiny", {"tp": 2, "sequence_parallel": True}, "full"),
    "tp_bert_selective": ("bert-tiny", {"tp": 2}, "selective"),
    "fsdp_gpt_selective": ("gpt-tiny", {"dp": 2}, "selective"),
    "fsdp_bert_full": ("bert-tiny", {"dp": 2}, "full"),
}


def _sharded_grad_diffs(rank: int, world_size: int) -> dict[str, float | str]:
    import copy
    import traceback

    from megasense.config.parallel import ParallelConfig
    from megasense.parallel import build_mesh, loss_context, parallelize

    out: dict[str, float | str] = {}
    for name, (model_name, options, mode) in LAYOUTS.items():
        try:
            config = ParallelConfig(**options)
            reference = _model(model_name, "none")
            for m in reference.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = 0.0  # sharded dropout draws other masks; compare the deterministic maths
                if hasattr(m, "dropout_p"):
                    m.dropout_p = 0.0
            model = copy.deepcopy(reference)
            model = parallelize(model, build_mesh(config, device_type="cpu"), config, activation_checkpointing=mode)
            batch = {k: v[:, :32] for k, v in _batch(model_name).items()}
            batch["labels"] = batch["input_ids"]  # as many targets in each dp half: their mean is the mean
            reference(**batch).loss.backward()
            dp_rank = rank if config.dp > 1 else 0
            local = {k: v.chunk(config.dp)[dp_rank] for k, v in batch.items()}
            with loss_context(config):
                model(**local).loss.backward()
            diff = 0.0
            params = dict(model.named_parameters())
            for key, p in reference.named_parameters():
                if p.grad is None:
                    continue
                grad = params[key].grad
                grad = grad.full_tensor() if hasattr(grad, "full_tensor") else grad
                diff = max(diff, (grad - p.grad).abs().max().item())
            kind = type(model.layers[0]).__name__ + "/" + type(model.layers[0].self_attention).__name__
            out[name] = diff
            out[name + ":classes"] = kind
        except Exception:
            out[name] = traceback.format_exc()
    return out


@pytest.mark.distributed
def test_checkpointing_composes_with_tensor_parallel_and_fsdp():
    from megasense.parallel.launch import run_distributed

    results = run_distributed(_sharded_grad_diffs, world_size=2, timeout=240)[0]
    for name, (_, _, mode) in LAYOUTS.items():
        assert isinstance(results[name], float), results[name]
        assert results[name] < 1e-5, (name, results[name])
        wrapped = "CheckpointedSelfAttention" if mode == "selective" else "Checkpointed"
        assert wrapped in results[name + ":classes"], results[name + ":classes"]
