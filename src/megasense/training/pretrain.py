"""Pretraining driver: config -> mesh -> model on the meta device -> plan -> weights -> data -> train -> export.

One code path for one CPU process, ``torchrun --nproc-per-node N`` on CPUs (gloo) and GPUs (NCCL):
the job's processes form a ``(dp, tp)`` mesh; the model is built without memory on the meta device,
sharded by its own tensor-parallel plan and FSDP2 (or DDP), then materialised and initialised.
Samples are indexed by a global sample number, so the data position is one integer
(``consumed_samples``) and a checkpoint resumes bit for bit, at the same or another layout. Rank 0
logs loss, learning rate, gradient norm, tokens/s and MFU to a progress bar and a JSONL file.
With ``parallel.pp > 1`` (GPT decoders) each rank builds only its pipeline stage on the meta device,
loads that stage's part of the one-device initial weights, and a GPipe or 1F1B schedule runs every
batch; gradients are clipped by the norm over all stages and the release is gathered from all of them.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from megasense.config import ConfigError, HeadConfig, ModelConfig
from megasense.config.pretrain import PretrainConfig
from megasense.data.indexed import IndexedDataset
from megasense.data.pretrain import BertMaskedDataset, GPTPackedDataset, collate
from megasense.errors import CheckpointError
from megasense.files.atomic import check_output_dir
from megasense.formats.release import save_release
from megasense.models import build_model, reset_buffers
from megasense.models.gpt import causal_lm_loss
from megasense.parallel import build_mesh, full_state_dict, load_full_state_dict, loss_context, parallelize, unwrap
from megasense.parallel.activation_checkpointing import apply_activation_checkpointing
from megasense.parallel.mesh import sub_mesh
from megasense.parallel.pipeline_parallel import (
    Pipeline,
    gather_stage_states,
    split_stage,
    stage_index,
    stage_state_dict,
)
from megasense.tokenization import Tokenizer
from megasense.training.checkpoint import TrainingCheckpoints
from megasense.training.pretrain_log import StepReporter, flops_per_token
from megasense.training.trainer import Trainer

StepCallback = Callable[[Trainer, dict[str, Any]], None]


@dataclass
class PretrainResult:
    steps: int
    """Optimizer steps done in total (including those before a resume)."""
    losses: list[float] = field(default_factory=list)
    """Loss of every step this call ran (averaged over data-parallel ranks)."""
    tokens_per_s: float = 0.0
    mfu: float | None = None
    resumed_from: int | None = None
    """The step of the checkpoint this run resumed from."""
    checkpoint: str | None = None
    export_dir: str | None = None


def pretrain(
    config: PretrainConfig, *, resume: bool = False, callbacks: tuple[StepCallback, ...] = ()
) -> PretrainResult:
    """Run ``config`` on this process's share of the job; every rank calls it. Returns the same on all ranks."""
    device = _device(config.train.device)
    with _process_group(device):
        return _run(config, device, resume=resume, callbacks=callbacks)


def _run(config: PretrainConfig, device: torch.device, *, resume: bool, callbacks) -> PretrainResult:
    # Everything that can be wrong with the inputs is checked before the mesh and the model exist.
    tokenizer = Tokenizer.load(config.data.tokenizer) if config.data.tokenizer else None
    model_cfg = config.model.resolve(vocab_size=tokenizer.vocab_size if tokenizer else None)
    config.check_model(model_cfg)
    config.parallel.check_world_size(dist.get_world_size())
    corpus = open_corpus(config.data.prefix)
    check_token_range(corpus, model_cfg)
    checkpoints = _checkpoints(config, resume)
    if config.export.dir:  # on every rank, so that all of them stop (a shared filesystem is assumed)
        check_output_dir(Path(config.export.dir), overwrite=config.export.overwrite)

    mesh = build_mesh(config.parallel, device_type=device.type)
    head = HeadConfig(task="causal_lm" if model_cfg.is_decoder else "pretraining")
    pipeline = build_pipeline_model(model_cfg, head, mesh, config, device) if config.parallel.pp > 1 else None
    model = pipeline.module if pipeline is not None else build_parallel_model(model_cfg, head, mesh, config, device)
    dataset = make_dataset(config, corpus, model_cfg, tokenizer)
    # The [train] section is the Trainer's config; logging is the driver's (rank 0, with tokens/s and MFU).
    trainer = Trainer(
        model,
        config.train.replace(progress=False, metrics_path=None),
        loss_context=lambda: loss_context(config.parallel),
        pipeline=pipeline,
    )
    result = PretrainResult(steps=0)
    aliases = pipeline.aliases() if pipeline is not None else {}
    if checkpoints is not None and resume and checkpoints.latest() is not None:
        result.resumed_from = _resume(checkpoints, trainer, config, aliases)

    dp_mesh = sub_mesh(mesh, "dp")
    reporter = _reporter(config, model_cfg, start=trainer.step)

    def on_step(trainer: Trainer, record: dict[str, Any]) -> None:
        loss = _dp_mean(record["loss"], dp_mesh, device) if config.parallel.dp > 1 else record["loss"]
        record = {**record, "loss": loss}
        result.losses.append(loss)
        reporter.step(record)
        step = trainer.step
        if checkpoints is not None and (step % config.checkpoint.every == 0 or step == config.train.max_steps):
            saved = checkpoints.save(step, model, trainer.optimizer, _train_state(trainer, config), aliases=aliases)
            result.checkpoint = str(saved)
        for callback in callbacks:
            callback(trainer, record)

    trainer.on_step = on_step
    start = trainer.step * config.global_batch_size
    stream = sample_stream(dataset, config, start=start, dp_rank=dp_mesh.get_local_rank(), device=device)
    with reporter:
        reporter.write({"event": "start", "config": config.to_dict(), "resumed_from": result.resumed_from})
        if trainer.step < config.train.max_steps:
            trainer.fit(stream)
        summary = reporter.summary()
        reporter.write({"event": "end", "steps": trainer.step, **summary})
    result.steps = trainer.step
    result.tokens_per_s, result.mfu = summary["tokens_per_s"], summary.get("mfu")
    if config.export.dir:
        result.export_dir = str(export(model, model_cfg, head, config, tokenizer, trainer.step, mesh=mesh))
    return result


def _resume(checkpoints: TrainingCheckpoints, trainer: Trainer, config: PretrainConfig, aliases: dict[str, str]) -> int:
    """Load the latest checkpoint into the trainer; its step. Called after the Trainer is built, so
    that the Trainer's seeding does not overwrite the restored generators."""
    state = checkpoints.load(trainer.model, trainer.optimizer, aliases=aliases)
    if state["consumed_samples"] != state["step"] * config.global_batch_size:
        written = state["consumed_samples"] // max(1, state["step"])
        raise ConfigError(
            f"the checkpoint was written with a global batch of {written} samples; this config has "
            f"{config.global_batch_size} (micro_batch_size x dp x grad_accum)"
        )
    trainer.load_state_dict(state["trainer"])
    return state["step"]


def _reporter(config: PretrainConfig, model_cfg: ModelConfig, *, start: int) -> StepReporter:
    seq, peak = config.data.seq_length, config.train.peak_flops
    return StepReporter(
        total=config.train.max_steps,
        start=start,
        tokens_per_step=config.global_batch_size * seq,
        flops_per_token=flops_per_token(model_cfg, seq),
        peak_flops=peak * dist.get_world_size() if peak else None,
        log_every=config.train.log_every,
        metrics_path=config.train.metrics_path,
        enabled=dist.get_rank() == 0,
        progress=config.train.progress,
        tensorboard=config.train.tensorboard,
    )


# ----------------------------------------------------------------------------------------------
# Building blocks (each usable on its own)
# ----------------------------------------------------------------------------------------------
def open_corpus(prefix: str | Path) -> IndexedDataset:
    """The tokenized corpus; a missing, truncated or corrupt file raises an error naming it."""
    return IndexedDataset(prefix)


def check_token_range(corpus: IndexedDataset, cfg: ModelConfig) -> None:
    """Every token id must have a row in the embedding (a corpus tokenized with another tokenizer fails here)."""
    if len(corpus.tokens) == 0:
        raise CheckpointError(corpus.prefix.with_suffix(".bin"), "holds no tokens")
    top = int(np.max(corpus.tokens))
    if top >= cfg.vocab_size:
        raise ConfigError(
            f"{corpus.prefix.with_suffix('.bin')}: token id {top} is outside the model's vocabulary "
            f"(vocab_size={cfg.vocab_size}); set data.tokenizer to the corpus's tokenizer or model.vocab_size"
        )


def build_parallel_model(
    cfg: ModelConfig, head: HeadConfig, mesh, config: PretrainConfig, device: torch.device
) -> nn.Module:
    """Model on the meta device, sharded by its plan over ``mesh``, then materialised and initialised.

    With ``train.init = "single"`` the weights are drawn for the whole model on the CPU, exactly as
    one device would from ``train.seed``, and each rank keeps its shards: every layout starts from
    the same weights. ``"sharded"`` draws each shard in place (DTensor's random ops) for models that
    do not fit in host memory. DDP broadcasts rank 0's weights when it wraps, so it wraps last.
    """
    ddp = config.parallel.dp > 1 and config.parallel.data_parallel == "ddp"
    sharded = config.parallel.world_size > 1 and not ddp
    with torch.device("meta"):
        model = build_model(cfg, head)
    checkpointing = config.train.activation_checkpointing
    if sharded:  # activation checkpointing goes after tensor parallelism, before FSDP2
        model = parallelize(model, mesh, config.parallel, activation_checkpointing=checkpointing)
    else:
        apply_activation_checkpointing(model, checkpointing)
    model.to_empty(device=device)
    inner = unwrap(model)
    if sharded and config.train.init == "single":
        load_full_state_dict(inner, _initial_weights(cfg, head, config.train.seed))
    else:
        torch.manual_seed(config.train.seed)
        with torch.no_grad(), warnings.catch_warnings():
            # DTensor's CPU random ops are deterministic per seed, which is all initialisation needs.
            warnings.filterwarnings("ignore", message="DTensor random operators may not have complete support")
            inner.init_weights()
    reset_buffers(inner)
    return parallelize(model, mesh, config.parallel) if ddp else model


def build_pipeline_model(
    cfg: ModelConfig, head: HeadConfig, mesh, config: PretrainConfig, device: torch.device
) -> Pipeline:
    """``pp > 1``: this rank's stage, cut on the meta device (it never holds other stages' layers),
    sharded over ``dp``/``tp``, loaded with its part of the one-device initial weights (any ``pp``
    starts from the same model; tied copies start equal), and wrapped in its schedule."""
    with torch.device("meta"):
        model = build_model(cfg, head)
    split = split_stage(model, stage=stage_index(mesh), num_stages=config.parallel.pp)
    checkpointing = config.train.activation_checkpointing
    if config.parallel.dp > 1 or config.parallel.tp > 1:
        model = parallelize(model, mesh, config.parallel, activation_checkpointing=checkpointing)
    else:
        apply_activation_checkpointing(model, checkpointing)
    model.to_empty(device=device)
    full = _initial_weights(cfg, head, config.train.seed)
    load_full_state_dict(model, stage_state_dict(full, split, list(model.state_dict())))
    reset_buffers(model)
    return Pipeline(model, split, mesh, config.parallel, causal_lm_loss)


def _initial_weights(cfg: ModelConfig, head: HeadConfig, seed: int) -> dict[str, torch.Tensor]:
    """The weights one device initialises from ``seed`` (tied aliases left out), on the CPU."""
    with torch.device("meta"):
        full = build_model(cfg, head)
    full.to_empty(device="cpu")
    torch.manual_seed(seed)
    with torch.no_grad():
        full.init_weights()
    aliases = set(full.tied_parameters())
    return {k: v for k, v in full.state_dict().items() if k not in aliases}


def make_dataset(config: PretrainConfig, corpus: IndexedDataset, cfg: ModelConfig, tokenizer: Tokenizer | None):
    data = config.data
    if data.objective == "gpt":
        eod = tokenizer.eos_id if tokenizer is not None else None
        if data.reset_position_ids and eod is None:
            raise ConfigError("data.reset_position_ids needs data.tokenizer (for the end-of-document token id)")
        return GPTPackedDataset(
            corpus, seq_length=data.seq_length, seed=data.seed, eod_id=eod, reset_position_ids=data.reset_position_ids
        )
    if tokenizer is None:
        raise ConfigError("data.objective='bert' needs data.tokenizer (for the [CLS], [SEP], [MASK] and pad ids)")
    ids = {name: tokenizer.token_to_id(getattr(tokenizer.special, name) or "") for name in ("cls", "sep", "mask")}
    missing = [name for name, value in ids.items() if value is None]
    if missing:
        raise ConfigError(f"{data.tokenizer}: the tokenizer has no {', '.join(missing)} token, which BERT needs")
    return BertMaskedDataset(
        corpus,
        seq_length=data.seq_length,
        vocab_size=cfg.vocab_size,
        cls_id=ids["cls"],
        sep_id=ids["sep"],
        mask_id=ids["mask"],
        pad_id=tokenizer.pad_id,
        special_ids=tokenizer.special_ids,
        mask_prob=data.mask_prob,
        seed=data.seed,
    )


def sample_stream(
    dataset, config: PretrainConfig, *, start: int, dp_rank: int, device: torch.device
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless micro-batches for this data-parallel rank, from global sample ``start`` on.

    Micro-batch ``k`` covers global samples ``start + k*M*dp ... + M*dp`` (``M`` the micro-batch
    size); rank ``r`` takes its ``r``-th run of ``M``, so dp ranks at ``M`` see what one rank at
    ``M*dp`` would.
    """
    micro, dp = config.train.micro_batch_size, config.parallel.dp
    position = start
    while True:
        first = position + dp_rank * micro
        batch = collate([dataset[i] for i in range(first, first + micro)])
        if "binary_label" in batch:
            batch["binary_labels"] = batch.pop("binary_label")
        if "position_ids" in batch and not config.data.reset_position_ids:
            del batch["position_ids"]  # the model's own 0..T-1
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        position += micro * dp


def export(
    model: nn.Module, cfg: ModelConfig, head: HeadConfig, config: PretrainConfig, tokenizer, step: int, *, mesh=None
) -> Path:
    """Gather the full weights on rank 0 (from every pipeline stage) and write the release directory (a collective)."""
    inner = unwrap(model)
    state = gather_stage_states(inner, mesh) if config.parallel.pp > 1 else full_state_dict(inner)
    target = Path(config.export.dir)
    if dist.get_rank() == 0:
        with torch.device("meta"):
            aliases = set(build_model(cfg, head).tied_parameters())  # a stage alone does not see its ties
        weights = {k: v for k, v in state.items() if k not in aliases}
        save_release(
            target,
            config=cfg,
            head=head,
            state_dict=weights,
            tokenizer=tokenizer,
            metadata={"source": "megasense pretrain", "steps": step, "data": config.data.prefix},
            dtype=getattr(torch, config.export.dtype),
            overwrite=config.export.overwrite,
        )
    dist.barrier()
    return target


# ----------------------------------------------------------------------------------------------
def _train_state(trainer: Trainer, config: PretrainConfig) -> dict[str, Any]:
    return {
        "trainer": trainer.state_dict(),  # step and scheduler
        "consumed_samples": trainer.step * config.global_batch_size,
        "config": config.to_dict(),
    }


def _checkpoints(config: PretrainConfig, resume: bool) -> TrainingCheckpoints | None:
    if config.checkpoint.dir is None:
        if resume:
            raise ConfigError("--resume needs checkpoint.dir (where the checkpoints of the run are)")
        return None
    checkpoints = TrainingCheckpoints(config.checkpoint.dir, keep=config.checkpoint.keep)
    latest = checkpoints.latest()
    if latest is not None and not resume:
        raise CheckpointError(
            config.checkpoint.dir,
            f"already holds checkpoints (latest {latest.name}); pass --resume to continue that run, "
            "or choose another checkpoint.dir",
        )
    return checkpoints


def _dp_mean(value: float, dp_mesh, device: torch.device) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, group=dp_mesh.get_group())
    return float(t.item()) / dp_mesh.size()


def _device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device='cuda' but no GPU is visible to this process")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


@contextlib.contextmanager
def _process_group(device: torch.device) -> Iterator[None]:
    """The job's default process group: torchrun's (env://), else a one-process group of our own."""
    if dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()
