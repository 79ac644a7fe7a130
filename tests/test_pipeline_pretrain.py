"""The pretrain driver at ``parallel.pp = 2`` (two gloo ranks) follows the one-device run; its checkpoints load at pp=1.

Same corpus and tiny GPT (tied embeddings) as ``test_pretrain``; dropout off so every layout computes
the same numbers. Both schedules run with gradient accumulation and clipping.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from megasense.config import ConfigError
from test_pretrain import _config, corpus  # noqa: F401  (the corpus fixture)

TOL = 1e-5
CLIP = 0.5
SCHEDULES = ("gpipe", "1f1b")


def _run_config(corpus, root: Path, name: str, **parallel):  # noqa: F811
    return _config(
        corpus,
        root,
        name=name,
        model={"hidden_dropout": 0.0, "attention_dropout": 0.0},
        train={"max_steps": 6, "grad_accum": 2, "micro_batch_size": 4, "grad_clip": CLIP},
        parallel=parallel,
    )


def _ranks(rank: int, world_size: int, configs, resumes) -> list[tuple[list[float], list[float]]]:
    """Fresh pp=2 runs, then pp=2 runs resumed from copies of other runs' step-3 checkpoints."""
    import torch.distributed as dist

    from megasense.training.pretrain import pretrain

    out = []
    for cfg in configs:
        norms: list[float] = []
        result = pretrain(cfg, callbacks=(lambda trainer, record, norms=norms: norms.append(record["grad_norm"]),))
        out.append((result.losses, norms))
    for cfg, source in resumes:
        if rank == 0:
            _copy_step(Path(source.checkpoint.dir), Path(cfg.checkpoint.dir), 3)
        dist.barrier()
        result = pretrain(cfg, resume=True)
        out.append((result.losses, [float(result.resumed_from)]))
    return out


def _copy_step(source: Path, target: Path, step: int) -> None:
    name = f"step-{step:08d}"
    shutil.copytree(source / name, target / name)
    (target / "latest").write_text(name + "\n")


def _resumed(cfg, root: Path, name: str, **parallel):
    """``cfg`` continued at another layout from a copied checkpoint, without export."""
    return replace(
        cfg,
        parallel=replace(cfg.parallel, **parallel),
        checkpoint=replace(cfg.checkpoint, dir=str(root / name / "ckpt")),
        export=replace(cfg.export, dir=None),
    )


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):  # noqa: F811
    from megasense.parallel.launch import run_distributed
    from megasense.training.pretrain import pretrain

    root = tmp_path_factory.mktemp("pp")
    single = _run_config(corpus, root, "pp1")
    norms: list[float] = []
    reference = pretrain(single, callbacks=(lambda trainer, record: norms.append(record["grad_norm"]),))
    configs = {s: _run_config(corpus, root, f"pp2-{s}", pp=2, pp_schedule=s) for s in SCHEDULES}
    resumes = {  # pp=1 -> pp=2 (the tied output layer's optimizer state comes from the embedding's) and pp=2 -> pp=2
        "pp1_to_pp2": (_resumed(single, root, "pp1-to-pp2", pp=2), single),
        "pp2_to_pp2": (_resumed(configs["1f1b"], root, "pp2-to-pp2", pp_schedule="gpipe"), configs["1f1b"]),
    }
    jobs = (list(configs.values()), list(resumes.values()))
    results = run_distributed(_ranks, world_size=2, args=jobs, timeout=400)
    names = [*configs, *resumes]
    cfgs = {**configs, **{name: cfg for name, (cfg, _) in resumes.items()}}
    return {"pp1": (single, (reference.losses, norms))} | {
        name: (cfgs[name], results[0][i], results[1][i]) for i, name in enumerate(names)
    }


@pytest.fixture(scope="module")
def runs_4(runs, corpus, tmp_path_factory):  # noqa: F811
    """pp=2 x dp=2 (FSDP2) and pp=2 x tp=2 on four gloo ranks, started once; the same global batch of 8."""
    from megasense.parallel.launch import run_distributed

    root = tmp_path_factory.mktemp("pp4")
    ppdp = _run_config(corpus, root, "pp2-dp2", pp=2, dp=2)
    configs = {
        "pp2_dp2": replace(ppdp, train=replace(ppdp.train, micro_batch_size=2)),
        "pp2_tp2": _run_config(corpus, root, "pp2-tp2", pp=2, tp=2, pp_schedule="gpipe"),
    }
    results = run_distributed(_ranks, world_size=4, args=(list(configs.values()), []), timeout=500)
    return {name: (cfg, [r[i] for r in results]) for i, (name, cfg) in enumerate(configs.items())}


@pytest.mark.distributed
@pytest.mark.parametrize("layout", ["pp2_dp2", "pp2_tp2"])
def test_pp2_with_dp_or_tp_pretrain_follows_the_one_device_run(runs, runs_4, layout):
    single, (losses, norms) = runs["pp1"]
    cfg, per_rank = runs_4[layout]
    assert all(got == per_rank[0] for got in per_rank)
    assert per_rank[0][0] == pytest.approx(losses, abs=TOL)
    assert per_rank[0][1] == pytest.approx(norms, abs=TOL)
    a, b = _weights(single), _weights(cfg)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < TOL


def _weights(cfg) -> dict[str, torch.Tensor]:
    return load_file(str(Path(cfg.export.dir) / "model.safetensors"))


@pytest.mark.distributed
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_pp2_pretrain_follows_the_one_device_run(runs, schedule):
    single, (losses, norms) = runs["pp1"]
    cfg, rank0, rank1 = runs[schedule]
    assert rank0 == rank1, "every stage reports the same loss and gradient norm"
    assert rank0[0] == pytest.approx(losses, abs=TOL)
    assert min(norms) > CLIP, "the runs must clip"
    assert rank0[1] == pytest.approx(norms, abs=TOL)  # the norm over both stages, tied embedding once
    assert losses[-1] < losses[0]
    # The release gathered from both stages holds the whole model, equal to the one-device export.
    a, b = _weights(single), _weights(cfg)
    assert a.keys() == b.keys() and "embedding.word_embeddings.weight" in a and "output_layer.weight" not in a
    assert max((a[k] - b[k]).abs().max().item() for k in a) < TOL


@pytest.mark.distributed
@pytest.mark.parametrize("name", ["pp1_to_pp2", "pp2_to_pp2"])
def test_a_checkpoint_resumes_at_pp2(runs, name):
    _, (losses, _) = runs["pp1"]
    _, rank0, rank1 = runs[name]
    assert rank0 == rank1 and rank0[1] == [3.0]
    assert rank0[0] == pytest.approx(losses[3:], abs=TOL)


@pytest.mark.distributed
def test_a_pp2_checkpoint_resumes_at_pp1(runs):
    from megasense.models import build_model
    from megasense.training.checkpoint import TrainingCheckpoints
    from megasense.training.pretrain import pretrain

    cfg, (losses, _), _ = runs["1f1b"]
    exported = _weights(cfg)
    # Step 6 of the two stages, loaded into one plain model and optimizer: the exported weights exactly.
    model = build_model(cfg.model.resolve(vocab_size=512))
    model.init_weights()
    optimizer = torch.optim.AdamW(model.parameters())
    state = TrainingCheckpoints(cfg.checkpoint.dir).load(model, optimizer)
    assert state["step"] == 6 and state["world_size"] == 2
    params = dict(model.named_parameters())
    assert all(torch.equal(params[k], v) for k, v in exported.items())
    moments = optimizer.state[params["embedding.word_embeddings.weight"]]["exp_avg"]
    assert moments.abs().sum() > 0
    # The step-3 checkpoint resumed on one device continues the pp=2 loss curve.
    shutil.rmtree(Path(cfg.checkpoint.dir) / "step-00000006")
    (Path(cfg.checkpoint.dir) / "latest").write_text("step-00000003\n")
    single = replace(cfg, parallel=replace(cfg.parallel, pp=1), export=replace(cfg.export, dir=None))
    resumed = pretrain(single, resume=True)
    assert resumed.resumed_from == 3 and resumed.steps == 6
    assert resumed.losses == pytest.approx(losses[3:], abs=TOL)


def test_pipeline_options_the_driver_refuses_are_named(corpus, tmp_path):  # noqa: F811
    indivisible = r"^run: train.micro_batch_size=3 is not divisible by parallel.microbatches=2 \("
    with pytest.raises(ConfigError, match=indivisible):
        _config(corpus, tmp_path, train={"micro_batch_size": 3}, parallel={"pp": 2})
    with pytest.raises(ConfigError, match=r"^run: parallel.pp=2 with data_parallel='ddp' is not supported; use 'fsdp'"):
        _config(corpus, tmp_path, parallel={"pp": 2, "dp": 2, "data_parallel": "ddp"})
    with pytest.raises(ConfigError, match=r"^run: data.reset_position_ids needs parallel.pp=1"):
        _config(corpus, tmp_path, data={"reset_position_ids": True}, parallel={"pp": 2})


def test_torchrun_two_pipeline_stages(corpus, tmp_path):  # noqa: F811
    """What a user types: torchrun starts two gloo ranks, one stage each, from the tiny config."""
    import json

    from test_pretrain import run_torchrun_pretrain

    run = tmp_path / "run"
    done = run_torchrun_pretrain(corpus, run, "parallel.pp=2", "parallel.microbatches=4", max_steps=10)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained to step 10") == 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["config"]["parallel"]["pp"] == 2 and records[-1]["steps"] == 10
    shards = sorted(p.name for p in (run / "ckpt" / "step-00000010").glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]  # each stage writes its own parameters
    weights = load_file(str(run / "model" / "model.safetensors"))
    assert {"embedding.word_embeddings.weight", "layers.0.mlp.dense_4h_to_h.weight", "final_layernorm.weight"} <= set(
        weights
    )  # gathered from both stages
