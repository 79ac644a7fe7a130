"""Pipeline parallelism: pp=2 (GPipe and 1F1B, tied and untied embeddings) trains exactly like pp=1.

The distributed scenarios share one pair of spawned gloo processes. Each trains a two-stage
pipeline and a single-device reference from the same initial weights for a few SGD steps with
gradient clipping, then reports the largest differences of loss, gradient norm, gradients and
parameters (each rank compares the parameters its stage holds, under the unsplit model's names).
"""

from __future__ import annotations

import copy
import traceback

import pytest
import torch

from megasense.config import ConfigError
from megasense.config.parallel import ParallelConfig
from megasense.config.presets import bert_tiny, gpt_tiny, llama_tiny
from megasense.models import build_model
from megasense.models.gpt import causal_lm_loss
from megasense.parallel import build_mesh
from megasense.parallel.launch import run_distributed
from megasense.parallel.pipeline_parallel import bubble_fraction, build_pipeline, split_stage, stage_layers

TOL = 1e-5
STEPS, BATCH, SEQ, LR, MAX_NORM = 3, 4, 8, 0.5, 0.5

# name: (model, parallel options, pipeline steps whose gradients accumulate into one optimizer step)
SCENARIOS: dict[str, tuple[str, dict, int]] = {
    "gpipe_gpt_tied": ("gpt", dict(pp=2, pp_schedule="gpipe"), 1),
    "1f1b_gpt_tied": ("gpt", dict(pp=2, pp_schedule="1f1b", microbatches=4), 1),
    "1f1b_gpt_tied_accumulated": ("gpt", dict(pp=2, pp_schedule="1f1b"), 2),
    "1f1b_llama": ("llama", dict(pp=2, pp_schedule="1f1b"), 1),
    "gpipe_llama_4_layers": ("llama4", dict(pp=2, pp_schedule="gpipe", microbatches=4), 1),
}
# On four ranks: stages sharded by FSDP2 over dp, or split by tensor parallelism (vocab-parallel tied
# embedding and output layer, with and without sequence parallelism). Four processes on two cores
# cost more, so these three share one start.
SCENARIOS_4: dict[str, tuple[str, dict, int]] = {
    "gpipe_fsdp_gpt_tied": ("gpt", dict(pp=2, dp=2, pp_schedule="gpipe"), 1),
    "1f1b_tp_gpt_tied": ("gpt", dict(pp=2, tp=2), 1),
    "1f1b_tp_sp_llama": ("llama", dict(pp=2, tp=2, sequence_parallel=True, loss_parallel=False), 1),
    # Four stages: the tied embedding's copies (first and last stage) sum over a group of their own.
    "1f1b_pp4_gpt_tied": ("gpt4", dict(pp=4, microbatches=4), 1),
}


def _model_config(kind: str):
    cfg = {"gpt": gpt_tiny, "llama": llama_tiny, "llama4": llama_tiny, "gpt4": gpt_tiny}[kind]()
    cfg = cfg.replace(hidden_dropout=0.0, attention_dropout=0.0)
    return cfg.replace(num_layers=4) if kind.endswith("4") else cfg


def _batch(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, cfg.vocab_size, (BATCH, SEQ), generator=gen)
    labels = torch.randint(0, cfg.vocab_size, (BATCH, SEQ), generator=gen)
    labels[:, ::4] = -100  # the same number of targets per row, so micro-batch means average to the batch mean
    return input_ids, labels


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _scenario(rank: int, kind: str, options: dict, accum: int) -> dict:
    from megasense.parallel import clip_grad_norm_, full_state_dict, loss_context, parallelize
    from megasense.parallel.pipeline_parallel import Pipeline, stage_index

    config = ParallelConfig(**options)
    cfg = _model_config(kind)
    torch.manual_seed(0)
    reference = build_model(cfg)
    reference.init_weights()
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    mesh = build_mesh(config, device_type="cpu")
    if config.dp == config.tp == 1:
        pipe = build_pipeline(copy.deepcopy(reference), mesh, config, causal_lm_loss)
    else:  # cut first, then shard the stage over dp / tp, as the pretrain driver does
        stage = copy.deepcopy(reference)
        split = split_stage(stage, stage=stage_index(mesh), num_stages=config.pp)
        pipe = Pipeline(parallelize(stage, mesh, config), split, mesh, config, causal_lm_loss)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=LR)
    opt = torch.optim.SGD(pipe.module.parameters(), lr=LR)
    ref_params = dict(reference.named_parameters(remove_duplicate=False))
    input_ids, labels = _batch(cfg)
    dp_rank = mesh["dp"].get_local_rank()
    local_ids, local_labels = input_ids.chunk(config.dp)[dp_rank], labels.chunk(config.dp)[dp_rank]
    diffs = {"loss": 0.0, "norm": 0.0, "grad": 0.0, "min_norm": float("inf")}
    for _ in range(STEPS):
        ref_opt.zero_grad()
        ref_loss = reference(input_ids, labels=labels).loss
        ref_loss.backward()
        opt.zero_grad()
        parts = zip(local_ids.chunk(accum), local_labels.chunk(accum), strict=True)
        with loss_context(config):
            loss = sum(pipe.step(ids, lab, scale=1 / accum) for ids, lab in parts) / accum
        if config.dp > 1:  # each data-parallel rank saw its slice; the global loss is their mean
            torch.distributed.all_reduce(loss, group=mesh["dp"].get_group())
            loss = loss / config.dp
        pipe.sync_tied_grads()
        grads = {n: _full(p.grad) for n, p in pipe.module.named_parameters(remove_duplicate=False)}
        diffs["grad"] = max(diffs["grad"], *((g - ref_params[n].grad).abs().max().item() for n, g in grads.items()))
        ref_norm = clip_grad_norm_(reference.parameters(), MAX_NORM)
        norm = pipe.clip_grad_norm_(MAX_NORM)
        ref_opt.step()
        opt.step()
        diffs["loss"] = max(diffs["loss"], abs(loss.item() - ref_loss.item()))
        diffs["norm"] = max(diffs["norm"], abs(norm.item() - ref_norm.item()))
        diffs["min_norm"] = min(diffs["min_norm"], ref_norm.item())
    state, expected = full_state_dict(pipe.module, rank0_only=False), reference.state_dict()
    diffs["param"] = max((v - expected[k]).abs().max().item() for k, v in state.items())
    diffs["moved"] = max((expected[k] - initial[k]).abs().max().item() for k in state)
    diffs["keys"] = sorted(state)
    diffs["layers"] = list(pipe.split.layers)
    diffs["stage"] = pipe.split.index
    return diffs


def _all_scenarios(rank: int, world_size: int) -> dict:
    results: dict = {}
    table = SCENARIOS if world_size == 2 else SCENARIOS_4
    for name, (kind, options, accum) in table.items():
        try:
            results[name] = _scenario(rank, kind, options, accum)
        except Exception:
            results[name] = traceback.format_exc()
    return results


@pytest.fixture(scope="module")
def results() -> list[dict]:
    return run_distributed(_all_scenarios, world_size=2, timeout=240)


@pytest.fixture(scope="module")
def results_4() -> list[dict]:
    return run_distributed(_all_scenarios, world_size=4, timeout=300)


def _check(name: str, kind: str, per_rank: list) -> None:
    for rank, got in enumerate(per_rank):
        assert isinstance(got, dict), f"{name} failed on rank {rank}:\n{got}"
        assert got["min_norm"] > MAX_NORM, "the test must exercise clipping"
        assert got["moved"] > 1e-3, "the SGD steps must change the parameters"
        for key in ("loss", "norm", "grad", "param"):
            assert got[key] < TOL, f"{name} rank {rank}: {key} differs by {got[key]:.3g} from pp=1"
    # The stages split the layers evenly and together hold every tensor of the whole model, by its own name.
    cfg = _model_config(kind)
    by_stage = {got["stage"]: got for got in per_rank}
    pp = len(by_stage)
    assert [by_stage[i]["layers"] for i in range(pp)] == [list(stage_layers(cfg.num_layers, pp, i)) for i in range(pp)]
    keys = [set(by_stage[i]["keys"]) for i in range(pp)]
    assert set().union(*keys) == set(build_model(cfg).state_dict())
    assert sum(map(len, keys)) == len(set().union(*keys)), "no tensor on two stages"
    assert "embedding.word_embeddings.weight" in keys[0] and "output_layer.weight" in keys[-1]


@pytest.mark.distributed
@pytest.mark.parametrize("name", list(SCENARIOS_4))
def test_pp2_with_dp_or_tp_matches_one_device(results_4, name):
    _check(name, SCENARIOS_4[name][0], [r[name] for r in results_4])
    pp = SCENARIOS_4[name][1]["pp"]
    assert [r[name]["stage"] for r in results_4] == [rank * pp // 4 for rank in range(4)]  # pp: the outer axis


@pytest.mark.distributed
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_pp2_matches_pp1(results, name):
    _check(name, SCENARIOS[name][0], [r[name] for r in results])


def test_split_stages_chain_to_the_whole_model():
    torch.manual_seed(0)
    model = build_model(_model_config("gpt"))
    model.init_weights()
    stages = [copy.deepcopy(model) for _ in range(2)]
    splits = [split_stage(stage, stage=i, num_stages=2) for i, stage in enumerate(stages)]
    ids = torch.randint(0, 99, (2, 8))
    hidden = stages[0](ids)
    assert hidden.logits is None and hidden.hidden_states.shape == (2, 8, 32)
    torch.testing.assert_close(stages[1](hidden.hidden_states).logits, model(ids).logits, rtol=0, atol=0)
    # The tied word embedding is spread over both stages: embedding on the first, output layer on the last.
    assert splits[0].shared == {"embedding.word_embeddings.weight": "embedding.word_embeddings.weight"}
    assert splits[1].shared == {"output_layer.weight": "embedding.word_embeddings.weight"}
    assert stages[0].layers[1] is None and stages[1].embedding is None and stages[0].output_layer is None


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        (gpt_tiny(), dict(pp=3, pp_schedule="gpipe"), "gpt-tiny: num_layers=2 is not divisible by pp=3"),
        (llama_tiny().replace(num_layers=6), dict(pp=4), "llama-tiny: num_layers=6 is not divisible by pp=4"),
        (bert_tiny(), dict(pp=2), "bert-tiny: pipeline parallelism (pp=2) is for GPT decoders; arch='bert' needs pp=1"),
    ],
)
def test_layer_counts_that_do_not_divide_by_pp_are_named(model, options, message):
    with pytest.raises(ConfigError) as err:
        ParallelConfig(**options).check_model(model)
    assert str(err.value) == message


def test_pipeline_options_are_checked_with_numbers():
    with pytest.raises(ConfigError, match=r"^pp_schedule=.1f1b. needs at least pp=4 micro-batches, got microbatches=2"):
        ParallelConfig(pp=4, microbatches=2)
    with pytest.raises(ConfigError, match=r"^pp_schedule='zb' is not one of gpipe, 1f1b$"):
        ParallelConfig(pp=2, pp_schedule="zb")
    with pytest.raises(ConfigError, match=r"^microbatches=0 must be a positive integer$"):
        ParallelConfig(pp=2, microbatches=0)
    config = ParallelConfig(pp=2, dp=2, microbatches=3, pp_schedule="gpipe")
    assert config.world_size == 4 and config.num_microbatches == 3
    assert ParallelConfig(pp=2).num_microbatches == 2
    with pytest.raises(ConfigError, match=r"^pp=2 x dp=2 x tp=1 = 4 processes, but the job has world_size=2$"):
        config.check_world_size(2)
    with pytest.raises(ConfigError, match=r"^batch size 4 \(per data-parallel rank\) is not divisible by micro"):
        config.check_batch_size(4)
    with pytest.raises(ConfigError, match=r"^num_layers=6 is not divisible by pp=4$"):
        stage_layers(6, 4, 0)
    assert stage_layers(8, 4, 2) == range(4, 6)
    assert bubble_fraction(4, 12) == pytest.approx(3 / 15) and bubble_fraction(1, 4) == 0.0
