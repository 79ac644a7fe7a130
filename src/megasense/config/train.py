"""How a model is trained: one dataclass for the optimiser and the loop, shared by pretraining and fine-tuning.

``TrainConfig`` is what ``training.trainer.Trainer`` consumes: AdamW, the learning-rate schedule,
accumulation and clipping, bf16 autocast, activation checkpointing, seeding, evaluation with early
stopping, logging and the time budget. Each job extends it with its own fields and nothing is copied
between configs: pretraining's ``[train]`` table is ``config.pretrain.TrainSection`` (plus batch size,
device, initialisation and the FLOP peak), fine-tuning's options are ``training.finetune.FinetuneConfig``
(plus labels, batch size, LoRA, augmentation). Both are ``TrainConfig`` instances, handed to the
``Trainer`` as they are, and ``to_dict()`` is what a run records.

The defaults below are the generic ones (those of a fine-tuning optimiser, BERT-style). The jobs
change a few, each in its own class, in one block marked "this job's defaults"::

    field          TrainConfig   pretraining [train]   fine-tuning (megasense train)
    lr             5e-5          1e-3                  5e-5, or 5e-4 with LoRA
    warmup_ratio   0.06          0.01                  0.06
    schedule       linear        cosine                linear
    betas          (0.9, 0.999)  (0.9, 0.95)           (0.9, 0.999)
    max_steps      None          100                   None (epochs of the data)
    epochs         1             (not used)            3
    log_every      20            10                    20
    bf16           False         False                 True
    monitor        None          (not used)            macro_recall (with a validation set)
    patience       None          (not used)            2

Like every config here this imports no torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from megasense.errors import ConfigError

Schedule = Literal["cosine", "linear", "constant"]
SCHEDULES = ("cosine", "linear", "constant")
Checkpointing = Literal["none", "full", "selective"]
CHECKPOINTING = ("none", "full", "selective")

FINETUNE_METRICS = (
    "accuracy",
    "macro_f1",
    "micro_f1",
    "weighted_f1",
    "macro_recall",
    "in_scope_accuracy",
    "oos_recall",
    "ece",
    "slot_f1",
    "slot_precision",
    "slot_recall",
    "exact_match",
)
"""What a fine-tuning run can ``monitor``: the metrics its validation reports (classification's, slot
filling's), or ``<set>/<metric>`` of one validation set among several."""
PER_SET_METRICS = ("macro_recall", "accuracy")
"""The metrics reported per validation set (``<set>/macro_recall``)."""


def check_finite(prefix: str, **values: float | None) -> None:
    """Refuse NaN and infinities (``lr=inf`` would train to NaN weights): a ConfigError naming the field."""
    for key, value in values.items():
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"{prefix}.{key}={value} must be a finite number")


def check_finetune_numbers(config: Any) -> None:
    """Fine-tuning's own numbers, checked when its config is made (``FinetuneConfig.__post_init__``): finite,
    in range, and a ``monitor`` its validation reports. ``max_length`` against the base model's positions is
    checked where the base is loaded (``training.finetune.finetune``)."""
    check_finite("train", dropout=config.dropout, lora_alpha=config.lora_alpha)
    if config.max_length < MIN_MAX_LENGTH:
        raise ConfigError(
            f"train.max_length={config.max_length} must be at least {MIN_MAX_LENGTH} tokens (the special tokens "
            "alone take 2; 128 is the default)"
        )
    if not 0.0 <= config.dropout < 1.0:
        raise ConfigError(f"train.dropout={config.dropout} must be in [0, 1)")
    if config.lora_alpha <= 0:
        raise ConfigError(f"train.lora_alpha={config.lora_alpha} must be positive")
    check_monitor(config.monitor)


MIN_MAX_LENGTH = 16
"""Shortest ``max_length`` fine-tuning takes."""


def check_monitor(monitor: str | None) -> None:
    """A fine-tuning ``monitor`` its validation reports, checked before any model is loaded."""
    if monitor is None:
        return
    name = monitor.split("/", 1)[1] if "/" in monitor else monitor
    known = PER_SET_METRICS if "/" in monitor else FINETUNE_METRICS
    if name not in known:
        raise ConfigError(
            f"train.monitor={monitor!r} is not a metric validation reports; choose one of {', '.join(FINETUNE_METRICS)}"
            " (or <set>/macro_recall, <set>/accuracy with several validation sets)"
        )


@dataclass(kw_only=True, frozen=True)
class TrainConfig:
    """The optimiser, the schedule and the loop of a training run; errors name ``train.<field>`` and the value."""

    lr: float = 5e-5
    """Peak learning rate, reached at the end of warm-up."""

    epochs: int = 1
    """Passes over the batch source (``max_steps`` stops earlier when set)."""

    max_steps: int | None = None
    """Optimizer steps to run at most; also the horizon of the schedule when given."""

    steps_per_epoch: int | None = None
    """Optimizer steps in one epoch; the schedule's horizon (with ``epochs``) when ``max_steps`` is not
    given. Fine-tuning sets it from its data."""

    warmup_ratio: float = 0.06
    """Fraction of the schedule spent warming up linearly from 0."""

    schedule: Schedule = "linear"
    """Decay after warm-up: to 0 along a cosine or a line, or none."""

    weight_decay: float = 0.01
    """AdamW decoupled weight decay, on matrices only (never on biases and norm weights)."""

    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW's moment decay rates."""

    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this value (None: no clipping)."""

    grad_accum: int = 1
    """Micro-batches whose gradients add up before each optimizer step."""

    bf16: bool = False
    """Run forward passes under bf16 autocast (weights and optimizer state stay fp32)."""

    activation_checkpointing: Checkpointing = "none"
    """Recompute activations in backward instead of keeping them: ``full`` recomputes every transformer
    layer (keeps only layer inputs), ``selective`` only each layer's attention, the part whose
    activations grow with the sequence length squared (Megatron's selective recomputation)."""

    seed: int = 0
    """Seed of the weight initialisation, dropout and data order."""

    eval_every: int | None = None
    """Evaluate every this many optimizer steps (None: at the end of each epoch)."""

    monitor: str | None = None
    """Evaluation metric to keep the best weights by, e.g. ``macro_recall`` (None: keep the last)."""

    mode: Literal["max", "min"] = "max"
    """Whether a higher or a lower ``monitor`` is better."""

    patience: int | None = None
    """Stop after this many evaluations without improvement of ``monitor`` (None: never stop early)."""

    log_every: int = 20
    """Write a training record to the metrics log every this many optimizer steps."""

    metrics_path: str | None = None
    """JSONL file that receives one record per log and per evaluation (None: none)."""

    progress: bool = True
    """Show a progress bar on stderr."""

    time_budget_s: float | None = None
    """Stop after the optimizer step that passes this many seconds (then evaluate and keep the best)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))  # a list from JSON or TOML reads the same
        check_finite(
            "train",
            lr=self.lr,
            warmup_ratio=self.warmup_ratio,
            weight_decay=self.weight_decay,
            grad_clip=self.grad_clip,
            time_budget_s=self.time_budget_s,
            beta1=self.betas[0] if self.betas else None,
            beta2=self.betas[1] if len(self.betas) > 1 else None,
        )
        for key in ("epochs", "grad_accum", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}={getattr(self, key)} must be at least 1")
        for key in ("max_steps", "steps_per_epoch", "eval_every", "patience"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"train.{key}={value} must be at least 1 (or None)")
        if self.lr <= 0:
            raise ConfigError(f"train.lr={self.lr} must be positive")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"train.warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"train.schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay={self.weight_decay} must not be negative")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"train.betas={self.betas} must be two numbers in [0, 1)")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"train.grad_clip={self.grad_clip} must be positive (or None: no clipping)")
        if self.activation_checkpointing not in CHECKPOINTING:
            raise ConfigError(
                f"train.activation_checkpointing={self.activation_checkpointing!r} is not one of "
                f"{', '.join(CHECKPOINTING)}"
            )
        if self.mode not in ("max", "min"):
            raise ConfigError(f"train.mode={self.mode!r} is not one of max, min")
        if self.patience is not None and self.monitor is None:
            raise ConfigError("train.patience needs a metric to watch: set monitor (e.g. monitor='macro_recall')")
        if self.time_budget_s is not None and self.time_budget_s < 0:
            raise ConfigError(f"train.time_budget_s={self.time_budget_s} must not be negative")

    @property
    def total_steps(self) -> int:
        """The schedule's horizon: ``max_steps``, else ``epochs`` x ``steps_per_epoch``."""
        if self.max_steps is not None:
            return self.max_steps
        if self.steps_per_epoch is None:
            raise ConfigError(
                "train: give max_steps or steps_per_epoch, so the learning-rate schedule knows its length"
            )
        return self.epochs * self.steps_per_epoch

    def replace(self, **changes: Any) -> TrainConfig:
        """The same config (same class) with ``changes``, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Every field, as a run records it (a metrics log, a model card, release metadata)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    """Tuples as lists, so the dict is what JSON and TOML hold."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value
