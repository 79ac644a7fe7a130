"""What a pretraining run is: model shape, data, optimisation, parallel layout, checkpoints and export.

A :class:`PretrainConfig` is made of one small dataclass per concern and loads from a TOML file
with one table per section (``[model]``, ``[data]``, ``[train]``, ``[parallel]``, ``[checkpoint]``,
``[export]``). ``--set section.key=value`` overrides any value (the value is read as TOML, else as
a string). Unknown keys and values of the wrong type or range are refused with a message that names
the file, the key and the value. Paths are relative to the working directory, as on a command
line. Like every config here this imports no torch.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from megasense.config.model import ConfigError, ModelConfig
from megasense.config.parallel import ParallelConfig
from megasense.config.presets import PRESETS, preset
from megasense.config.train import Schedule, TrainConfig

Objective = Literal["gpt", "bert"]


@dataclass(kw_only=True, frozen=True)
class ModelSection:
    """A preset shape plus field overrides, e.g. ``preset = "gpt-tiny"`` and ``hidden_dropout = 0.0``."""

    preset: str = "gpt-tiny"
    """Name of a preset in ``megasense.config.presets`` (``gpt-tiny``, ``megatron-gpt2-345m``, ...)."""

    overrides: dict[str, Any] = field(default_factory=dict)
    """``ModelConfig`` fields that replace the preset's (any other key of ``[model]`` lands here)."""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"model.preset={self.preset!r} is not a preset; known presets: {', '.join(PRESETS)}")
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = sorted(set(self.overrides) - known)
        if unknown:
            raise ConfigError(f"unknown model key(s) {unknown}; model keys are preset and {sorted(known)}")

    def resolve(self, *, vocab_size: int | None = None) -> ModelConfig:
        """The model shape; ``vocab_size`` (the tokenizer's) applies unless the config sets one itself."""
        changes = dict(self.overrides)
        if vocab_size is not None and "vocab_size" not in changes:
            changes["vocab_size"] = vocab_size
        try:
            return preset(self.preset).replace(**changes)
        except ConfigError as exc:
            raise ConfigError(f"model (preset {self.preset!r} with overrides {sorted(changes)}): {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, **self.overrides}


@dataclass(kw_only=True, frozen=True)
class DataSection:
    """The tokenized corpus (``megasense tokenize`` output) and how samples are cut from it."""

    prefix: str = ""
    """Path prefix of ``PREFIX.bin`` + ``PREFIX.idx`` (Megatron's indexed-dataset format)."""

    objective: Objective = "gpt"
    """``gpt``: causal LM over packed windows. ``bert``: masked LM + sentence-order prediction."""

    seq_length: int = 64
    """Tokens per sample (at most the model's ``max_position_embeddings``)."""

    tokenizer: str | None = None
    """Directory of the tokenizer the corpus was made with: sets the vocabulary size, the special
    token ids and travels with the exported model."""

    seed: int = 1234
    """Seed of the document order (each epoch) and of BERT's masks."""

    reset_position_ids: bool = False
    """GPT: restart position ids after every end-of-document token."""

    mask_prob: float = 0.15
    """BERT: fraction of tokens chosen for prediction."""

    def __post_init__(self) -> None:
        if not self.prefix:
            raise ConfigError("data.prefix is required: the PREFIX of PREFIX.bin/.idx written by megasense tokenize")
        if self.objective not in ("gpt", "bert"):
            raise ConfigError(f"data.objective={self.objective!r} is not one of gpt, bert")
        if self.seq_length < (8 if self.objective == "bert" else 2):
            raise ConfigError(f"data.seq_length={self.seq_length} is too short for objective {self.objective!r}")
        if not 0.0 < self.mask_prob < 1.0:
            raise ConfigError(f"data.mask_prob={self.mask_prob} must be in (0, 1)")


@dataclass(kw_only=True, frozen=True)
class TrainSection(TrainConfig):
    """The ``[train]`` table: a ``TrainConfig`` (what the Trainer runs) with pretraining's defaults, plus
    the batch size, the device, how weights are initialised, TensorBoard and the FLOP peak."""

    # This job's defaults, where they differ from TrainConfig's (GPT-style: a higher peak rate, a cosine
    # decay and beta2 = 0.95; see megasense.config.train).
    max_steps: int = 100
    """Optimizer steps of the whole run (also the schedule's horizon)."""

    lr: float = 1e-3
    """Peak learning rate, reached at the end of warm-up."""

    warmup_ratio: float = 0.01
    """Fraction of the run spent warming up linearly from 0."""

    schedule: Schedule = "cosine"
    """Decay after warm-up: to 0 along a cosine or a line, or none."""

    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW's moment decay rates."""

    log_every: int = 10
    """Write a metrics record every this many steps (the progress bar updates every step)."""

    # Pretraining's own fields.
    micro_batch_size: int = 8
    """Samples per rank per forward pass; global batch = micro_batch_size x dp x grad_accum."""

    tensorboard: bool | str = False
    """TensorBoard event files (rank 0 only; needs ``pip install 'megasense[tensorboard]'``):
    ``true`` writes under ``runs/`` (TensorBoard's default run directory), a string is the log directory."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto``: CUDA with NCCL when a GPU is visible, else CPU with gloo."""

    init: Literal["single", "sharded"] = "single"
    """How sharded runs initialise weights. ``single``: draw the whole model once on each rank's CPU,
    exactly as one device would from ``seed``, and keep the local shards (every layout starts from
    the same weights; needs host memory for one full copy). ``sharded``: draw each shard in place."""

    peak_flops: float | None = None
    """Peak FLOP/s of one device for MFU (e.g. 989e12 for an H100's dense bf16); None: no MFU."""

    UNUSED: ClassVar[tuple[str, ...]] = (
        "epochs",
        "steps_per_epoch",
        "eval_every",
        "monitor",
        "mode",
        "patience",
        "time_budget_s",
    )
    """``TrainConfig`` fields a pretraining run has no use for (it runs ``max_steps`` over an endless
    stream of samples and does not evaluate): not keys of ``[train]``, and left at their defaults."""

    def __post_init__(self) -> None:
        if self.max_steps is None:
            raise ConfigError("train.max_steps is required: the optimizer steps of the whole run")
        for key in ("max_steps", "micro_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}={getattr(self, key)} must be at least 1")
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        for key in self.UNUSED:
            if getattr(self, key) != defaults[key]:
                raise ConfigError(f"train.{key}={getattr(self, key)!r}: pretraining does not use {key}")
        super().__post_init__()
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"train.device={self.device!r} is not one of auto, cpu, cuda")
        if self.init not in ("single", "sharded"):
            raise ConfigError(f"train.init={self.init!r} is not one of single, sharded")
        if self.peak_flops is not None and self.peak_flops <= 0:
            raise ConfigError(f"train.peak_flops={self.peak_flops} must be positive")

    @classmethod
    def keys(cls) -> list[str]:
        """The keys of the ``[train]`` table."""
        return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in cls.UNUSED]

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in super().to_dict().items() if key not in self.UNUSED}


@dataclass(kw_only=True, frozen=True)
class CheckpointSection:
    """Sharded training state (``torch.distributed.checkpoint``) for resuming."""

    dir: str | None = None
    """Directory of ``step-NNNNNNNN/`` checkpoints and the ``latest`` pointer; None: no checkpoints."""

    every: int = 100
    """Save every this many optimizer steps (and at the last step)."""

    keep: int = 2
    """Keep the newest this many checkpoints; older ones are deleted after a successful save."""

    def __post_init__(self) -> None:
        for key in ("every", "keep"):
            if getattr(self, key) < 1:
                raise ConfigError(f"checkpoint.{key}={getattr(self, key)} must be at least 1")


@dataclass(kw_only=True, frozen=True)
class ExportSection:
    """The released model written at the end (``model.safetensors`` + ``config.json`` + tokenizer)."""

    dir: str | None = None
    """Release directory; None: no export."""

    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    overwrite: bool = False
    """Replace an existing non-empty release directory."""

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"export.dtype={self.dtype!r} is not one of float32, bfloat16, float16")


SECTIONS: dict[str, type] = {
    "model": ModelSection,
    "data": DataSection,
    "train": TrainSection,
    "parallel": ParallelConfig,
    "checkpoint": CheckpointSection,
    "export": ExportSection,
}


@dataclass(kw_only=True, frozen=True)
class PretrainConfig:
    """A whole pretraining run; ``load(path, overrides)`` reads it from TOML."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection
    train: TrainSection = field(default_factory=TrainSection)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    export: ExportSection = field(default_factory=ExportSection)

    def __post_init__(self) -> None:
        objective_arch = {"gpt": "gpt", "bert": "bert"}[self.data.objective]
        arch = preset(self.model.preset).arch
        if arch != objective_arch:
            raise ConfigError(
                f"data.objective={self.data.objective!r} needs an arch={objective_arch!r} model, but "
                f"model.preset={self.model.preset!r} is arch={arch!r}"
            )
        self.parallel.check_sequence_length(self.data.seq_length)
        if self.parallel.pp > 1:
            self._check_pipeline()

    def _check_pipeline(self) -> None:
        """What the driver cannot combine with pipeline stages, named before any process starts."""
        pp = self.parallel.pp
        micro, chunks = self.train.micro_batch_size, self.parallel.num_microbatches
        if micro % chunks:
            raise ConfigError(
                f"train.micro_batch_size={micro} is not divisible by parallel.microbatches={chunks} "
                f"(the pipeline cuts each rank's batch into that many micro-batches; pp={pp})"
            )
        if self.data.reset_position_ids:
            raise ConfigError(f"data.reset_position_ids needs parallel.pp=1 (pp={pp} stages pass hidden states only)")
        if self.parallel.dp > 1 and self.parallel.data_parallel == "ddp":
            raise ConfigError(f"parallel.pp={pp} with data_parallel='ddp' is not supported; use 'fsdp'")

    def check_model(self, model: ModelConfig) -> None:
        """Sizes that depend on the resolved model: tensor-parallel splits and the sequence length."""
        if self.data.seq_length > model.max_position_embeddings and model.position_embedding == "learned":
            raise ConfigError(
                f"data.seq_length={self.data.seq_length} exceeds the model's "
                f"max_position_embeddings={model.max_position_embeddings}"
            )
        self.parallel.check_model(model)

    @property
    def global_batch_size(self) -> int:
        return self.train.micro_batch_size * self.parallel.dp * self.train.grad_accum

    def to_dict(self) -> dict[str, Any]:
        out = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        out["model"] = self.model.to_dict()
        out["train"] = self.train.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> PretrainConfig:
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {unknown}; sections are {sorted(SECTIONS)}")
        if "data" not in data:
            raise ConfigError(f"{source}: the [data] section is required (prefix = the tokenized corpus)")
        sections = {}
        for name, kind in SECTIONS.items():
            table = data.get(name, {})
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: {name} must be a table ([{name}]), got {table!r}")
            try:
                sections[name] = _section(name, kind, table)
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None
        try:
            return cls(**sections)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PretrainConfig:
        """Read ``path`` (TOML), apply ``section.key=value`` overrides, validate."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(apply_overrides(data, overrides), source=str(path))


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["train.lr=3e-4", "data.prefix=corpus/x"]`` applied to a nested dict (a new one)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.lr=3e-4")
        section, name = parts
        if section not in SECTIONS:
            raise ConfigError(f"--set {item!r}: unknown section {section!r}; sections are {sorted(SECTIONS)}")
        out.setdefault(section, {})[name] = parse_value(raw.strip())
    return out


def parse_value(raw: str) -> Any:
    """A ``--set`` value: TOML (``3e-4``, ``true``, ``[0.9, 0.95]``, ``"x"``), else the plain string."""
    if raw.lower() in ("none", "null"):
        return None
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _section(name: str, kind: type, table: dict[str, Any]) -> Any:
    if kind is ModelSection:
        table = dict(table)
        preset_name = table.pop("preset", ModelSection.preset)
        if not isinstance(preset_name, str):
            raise ConfigError(f"model.preset={preset_name!r} must be a string (a preset name)")
        hints = typing.get_type_hints(ModelConfig)
        overrides = {k: _coerce(f"model.{k}", v, hints[k]) if k in hints else v for k, v in table.items()}
        return ModelSection(preset=preset_name, overrides=overrides)
    fields = kind.keys() if kind is TrainSection else [f.name for f in dataclasses.fields(kind) if f.init]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"unknown {name} key(s) {unknown}; {name} keys are {sorted(fields)}")
    hints = typing.get_type_hints(kind)
    values = {k: _coerce(f"{name}.{k}", v, hints[k]) for k, v in table.items()}
    return kind(**values)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the annotation ``hint``; ints pass as floats, lists as tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, value, option)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}={value!r} has the wrong type")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or (args and args[-1] is not Ellipsis and len(value) != len(args)):
            raise ConfigError(f"{key}={value!r} must be a list of {len(args)} values")
        inner = args if args and args[-1] is not Ellipsis else (args[0] if args else Any,) * len(value)
        return tuple(_coerce(key, v, t) for v, t in zip(value, inner, strict=True))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} must be a table")
        return value
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be true or false")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be an integer")
        return value
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}={value!r} must be a string")
        return value
    return value
