"""Sharded equals unsharded: TP=2 (with and without sequence parallel) and FSDP2/DDP dp=2 against one device.

All scenarios run in one pair of spawned gloo processes (starting processes costs more than the
tiny models do); each test then checks its scenario's numbers. Every scenario trains the parallel
model and a single-device reference from the same initial weights for a few SGD steps with
gradient clipping and reports the largest differences of loss, gradients, clipped norm and final
parameters (gathered with ``full_state_dict``).
"""

from __future__ import annotations

import copy
import traceback

import pytest
import torch

from megasense.config import HeadConfig, ModelConfig
from megasense.config.parallel import ParallelConfig
from megasense.config.presets import bert_tiny, gpt_tiny, llama_tiny
from megasense.models import build_model
from megasense.models.bert import BERT_TP_PLAN
from megasense.parallel import (
    build_mesh,
    clip_grad_norm_,
    full_state_dict,
    load_full_state_dict,
    loss_context,
    parallelize,
    unwrap,
)
from megasense.parallel.launch import run_distributed

pytestmark = pytest.mark.distributed

TOL = 1e-5
STEPS, BATCH, SEQ, LR, MAX_NORM = 3, 4, 8, 0.5, 0.5

SCENARIOS: dict[str, tuple[str, dict]] = {
    "tp_bert": ("bert", dict(tp=2)),
    "tp_gpt": ("gpt", dict(tp=2)),
    "tp_llama": ("llama", dict(tp=2)),
    "tp_gpt_gathered_logits": ("gpt", dict(tp=2, loss_parallel=False)),
    "sp_bert": ("bert", dict(tp=2, sequence_parallel=True)),
    "sp_gpt": ("gpt", dict(tp=2, sequence_parallel=True)),
    "sp_llama": ("llama", dict(tp=2, sequence_parallel=True)),
    "fsdp_bert": ("bert", dict(dp=2)),
    "fsdp_gpt": ("gpt", dict(dp=2)),
    "fsdp_llama": ("llama", dict(dp=2, reshard_after_forward=False)),
    "ddp_gpt": ("gpt", dict(dp=2, data_parallel="ddp")),
}
# dp x tp on four ranks: FSDP2 over tensor-parallel DTensors (2-D). Four processes on two cores cost
# more, so one scenario covers the composition.
SCENARIOS_2D: dict[str, tuple[str, dict]] = {
    "fsdp_tp_sp_llama": ("llama", dict(dp=2, tp=2, sequence_parallel=True)),
}


def _model_config(kind: str) -> ModelConfig:
    cfg = {"bert": bert_tiny, "gpt": gpt_tiny, "llama": llama_tiny}[kind]()
    return cfg.replace(hidden_dropout=0.0, attention_dropout=0.0)


def _batch(kind: str, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, cfg.vocab_size, (BATCH, SEQ), generator=gen)
    labels = torch.randint(0, cfg.vocab_size, (BATCH, SEQ), generator=gen)
    labels[:, ::4] = -100  # same number of targets in every row, so dp slices average like the whole
    batch = {"input_ids": input_ids, "labels": labels}
    if kind == "bert":
        mask = torch.ones(BATCH, SEQ, dtype=torch.long)
        mask[1::2, -2:] = 0  # one padded row in each half of the batch
        labels[1::2, -2:] = -100
        labels[0::2, 1] = -100  # keep target counts equal per row
        batch |= {"attention_mask": mask, "token_type_ids": (torch.arange(SEQ) >= SEQ // 2).long().expand(BATCH, -1)}
    return batch


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _step(model, batch, ctx_factory, optimizer, params) -> tuple[float, dict[str, torch.Tensor], float]:
    optimizer.zero_grad()
    with ctx_factory():
        loss = model(**batch).loss
        loss.backward()
    grads = {name: _full(p.grad).detach().clone() for name, p in params if p.grad is not None}
    norm = clip_grad_norm_([p for _, p in params], MAX_NORM)
    optimizer.step()
    return float(_full(loss.detach())), grads, float(norm)


def _scenario(rank: int, kind: str, options: dict) -> dict[str, float]:
    import contextlib

    config = ParallelConfig(**options)
    cfg = _model_config(kind)
    torch.manual_seed(0)
    head = HeadConfig(task="pretraining") if kind == "bert" else None
    reference = build_model(cfg, head)
    reference.init_weights()
    model = copy.deepcopy(reference)
    mesh = build_mesh(config, device_type="cpu")
    model = parallelize(model, mesh, config)  # each model's own declared plan
    seen: list[int] = []  # sequence length a norm inside a layer works on (T / tp with sequence parallel)
    unwrap(model).layers[0].post_attention_layernorm.register_forward_hook(lambda m, a, out: seen.append(out.shape[1]))

    batch = _batch(kind, cfg)
    local = {k: v.chunk(config.dp)[mesh["dp"].get_local_rank()] for k, v in batch.items()}
    ref_params = list(reference.named_parameters())
    par_params = [(n.removeprefix("module."), p) for n, p in model.named_parameters()]
    ref_opt = torch.optim.SGD(reference.parameters(), lr=LR)
    par_opt = torch.optim.SGD(model.parameters(), lr=LR)
    diffs = {"loss": 0.0, "grad": 0.0, "norm": 0.0, "param": 0.0, "min_norm": float("inf")}
    for _ in range(STEPS):
        ref_loss, ref_grads, ref_norm = _step(reference, batch, contextlib.nullcontext, ref_opt, ref_params)
        par_loss, par_grads, par_norm = _step(model, local, lambda: loss_context(config), par_opt, par_params)
        if config.dp > 1:  # each rank saw half the batch; the global loss is their mean
            par_loss = _dp_mean(par_loss, mesh)
        assert ref_grads.keys() == par_grads.keys(), sorted(ref_grads.keys() ^ par_grads.keys())
        diffs["loss"] = max(diffs["loss"], abs(ref_loss - par_loss))
        diffs["grad"] = max(diffs["grad"], *((ref_grads[k] - par_grads[k]).abs().max().item() for k in ref_grads))
        diffs["norm"] = max(diffs["norm"], abs(ref_norm - par_norm))
        diffs["min_norm"] = min(diffs["min_norm"], ref_norm)
    state = full_state_dict(unwrap(model), rank0_only=False)
    expected = reference.state_dict()
    assert state.keys() == expected.keys(), sorted(state.keys() ^ expected.keys())
    diffs["param"] = max((state[k] - expected[k]).abs().max().item() for k in expected)
    moved = max((expected[k] - v).abs().max().item() for k, v in _initial(cfg, head).items())
    diffs["moved"] = moved
    diffs["norm_tokens"] = float(seen[0])
    local = sum(_local_numel(p) for p in unwrap(model).parameters())
    diffs["local_fraction"] = local / sum(p.numel() for p in reference.parameters())
    rank0 = full_state_dict(unwrap(model))
    # Loading full weights into a freshly sharded model (export's inverse) reproduces them exactly.
    fresh = parallelize(build_model(cfg, head), mesh, config)
    load_full_state_dict(unwrap(fresh), {k: v for k, v in expected.items() if k not in _aliases(reference)})
    reloaded = full_state_dict(unwrap(fresh), rank0_only=False)
    diffs["reload"] = max((reloaded[k] - expected[k]).abs().max().item() for k in expected)
    diffs["rank0_keys"] = float(len(rank0) == len(expected) if rank == 0 else len(rank0) == 0)
    return diffs


def _aliases(model) -> set[str]:
    return set(model.tied_parameters())


def _local_numel(p: torch.Tensor) -> int:
    return p.to_local().numel() if hasattr(p, "to_local") else p.numel()


def _initial(cfg: ModelConfig, head) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model(cfg, head)
    model.init_weights()
    return model.state_dict()


def _dp_mean(value: float, mesh) -> float:
    import torch.distributed as dist

    t = torch.tensor(value, dtype=torch.float64)
    dist.all_reduce(t, group=mesh["dp"].get_group())
    return t.item() / mesh["dp"].size()


def _all_scenarios(rank: int, world_size: int, names: list[str]) -> dict[str, dict | str]:
    results: dict[str, dict | str] = {}
    table = SCENARIOS if world_size == 2 else SCENARIOS_2D
    for name in names:
        kind, options = table[name]
        try:
            results[name] = _scenario(rank, kind, options)
        except Exception:
            results[name] = traceback.format_exc()
    if world_size == 2:
        results["errors"] = _error_cases()
    return results


@pytest.fixture(scope="module")
def results() -> dict[str, dict | str]:
    return run_distributed(_all_scenarios, world_size=2, args=(list(SCENARIOS),), timeout=240)[0]


@pytest.fixture(scope="module")
def results_2d() -> dict[str, dict | str]:
    return run_distributed(_all_scenarios, world_size=4, args=(list(SCENARIOS_2D),), timeout=240)[0]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_parallel_matches_single_device(results, name):
    _check(name, results[name], SCENARIOS[name][1])


@pytest.mark.parametrize("name", list(SCENARIOS_2D))
def test_2d_parallel_matches_single_device(results_2d, name):
    _check(name, results_2d[name], SCENARIOS_2D[name][1])


def _check(name: str, got: dict | str, options: dict) -> None:
    assert isinstance(got, dict), f"{name} failed on rank 0:\n{got}"
    assert got["min_norm"] > MAX_NORM, "the test must exercise clipping"
    assert got["moved"] > 1e-3, "the SGD steps must change the parameters"
    for key in ("loss", "grad", "norm", "param", "reload"):
        assert got[key] < TOL, f"{name}: {key} differs by {got[key]:.3g} from one device"
    assert got["rank0_keys"] == 1.0, "full_state_dict(rank0_only=True) gives rank 0 everything, the others nothing"
    sharded = options.get("tp", 1) > 1 or options.get("data_parallel", "fsdp") == "fsdp"
    # Each rank really holds less than the whole model (TP: the planned layers; FSDP: ~half of all).
    assert (got["local_fraction"] < 0.9) == sharded, got["local_fraction"]
    assert got["norm_tokens"] == (SEQ // 2 if options.get("sequence_parallel") else SEQ)


class _Toy(torch.nn.Module):
    """A model-free module with a plan whose projection cannot split evenly over tp=2."""

    tp_plan = {"proj": "colwise"}  # noqa: RUF012

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 3)


def _error_cases() -> dict[str, str]:
    """Each bad layout, applied on 2 ranks, and the message it raised (or 'no error')."""
    from megasense.parallel import apply_tensor_parallel

    tp_mesh = build_mesh(ParallelConfig(tp=2), device_type="cpu")["tp"]
    three_heads = gpt_tiny().replace(hidden_size=36, num_attention_heads=3, name="three-heads")
    cases = {
        "mesh": lambda: build_mesh(ParallelConfig(dp=2, tp=2)),
        "heads": lambda: apply_tensor_parallel(build_model(three_heads), tp_mesh),
        "toy": lambda: apply_tensor_parallel(_Toy(), tp_mesh),
        # A plan that shards the embedding but not the output layer tied to it.
        "tie": lambda: apply_tensor_parallel(
            build_model(bert_tiny(), HeadConfig(task="pretraining")), tp_mesh, plan=BERT_TP_PLAN
        ),
    }
    sp_model = apply_tensor_parallel(build_model(_model_config("gpt")), tp_mesh, sequence_parallel=True)
    cases["odd_sequence"] = lambda: sp_model(torch.zeros(1, 7, dtype=torch.long))
    messages = {}
    for name, case in cases.items():
        try:
            case()
            messages[name] = "no error"
        except Exception as exc:
            messages[name] = f"{type(exc).__name__}: {exc}"
    return messages


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("mesh", "ConfigError: dp=2 x tp=2 = 4 processes, but the job has world_size=2"),
        ("heads", "ConfigError: three-heads: num_attention_heads=3, num_query_groups=3 not divisible by tp=2"),
        ("toy", "ConfigError: proj: out_features=3 is not divisible by tp=2 (colwise)"),
        ("tie", "PlanError: lm_head.output_layer.weight is tied to embedding.word_embeddings.weight"),
        ("odd_sequence", "ConfigError: sequence length 7 is not divisible by tp=2 (sequence_parallel=True)"),
    ],
)
def test_bad_layouts_name_the_numbers(results, case, expected):
    assert results["errors"][case].startswith(expected), results["errors"][case]
