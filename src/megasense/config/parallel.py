"""How a model is spread over devices: pipeline-, data- and tensor-parallel sizes and their options.

Like every config here this imports no torch; ``megasense.parallel`` turns it into a DeviceMesh
and applies the model's plan. Sizes are checked against a :class:`ModelConfig` with messages that
name the numbers, before any process group exists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from megasense.config.model import ConfigError, ModelConfig

DataParallel = Literal["fsdp", "ddp"]
PipelineSchedule = Literal["gpipe", "1f1b"]


@dataclass(kw_only=True, frozen=True)
class ParallelConfig:
    """Sizes of the ``pp``, ``dp`` and ``tp`` mesh axes and how each is used; ``pp * dp * tp`` is the world size."""

    pp: int = 1
    """Pipeline-parallel size (GPT decoders only): the layers are split into this many consecutive stages,
    one per rank along ``pp``; the first stage also holds the embedding, the last the final norm and
    output layer."""

    pp_schedule: PipelineSchedule = "1f1b"
    """With ``pp > 1``: ``gpipe`` (all forwards, then all backwards: simple, activations of every
    micro-batch alive at once) or ``1f1b`` (one forward, one backward in the steady state: at most
    ``pp`` micro-batches in flight)."""

    microbatches: int | None = None
    """With ``pp > 1``: micro-batches each (data-parallel) batch is cut into; ``None`` means ``pp``.
    More micro-batches shrink the pipeline bubble, ``(pp - 1) / (microbatches + pp - 1)`` of the time."""

    dp: int = 1
    """Data-parallel size: replicas (DDP) or shards (FSDP2) of the model, each seeing its own batch slice."""

    tp: int = 1
    """Tensor-parallel size: each layer's weights are split over this many devices (Megatron's pattern)."""

    sequence_parallel: bool = False
    """With ``tp > 1``: norms and dropout inside the transformer layers work on a 1/tp slice of the
    sequence (Megatron's sequence parallelism); the sequence length must then divide by ``tp``."""

    loss_parallel: bool = True
    """With ``tp > 1``: the output layer keeps its logits split over the vocabulary and cross entropy
    is computed on the shards (no all-gather of the logits); the loss must run under
    ``megasense.parallel.loss_parallel_context``."""

    data_parallel: DataParallel = "fsdp"
    """``fsdp`` (FSDP2 ``fully_shard``: parameters, gradients and optimizer state sharded over ``dp``)
    or ``ddp`` (every rank keeps a full replica; gradients are all-reduced)."""

    reshard_after_forward: bool = True
    """FSDP2: free the gathered parameters after each layer's forward (ZeRO-3) instead of keeping them
    until the backward (ZeRO-2; faster, more memory)."""

    def __post_init__(self) -> None:
        for key in ("pp", "dp", "tp"):
            _check_positive(key, getattr(self, key))
        if self.microbatches is not None:
            _check_positive("microbatches", self.microbatches)
        if self.pp_schedule not in ("gpipe", "1f1b"):
            raise ConfigError(f"pp_schedule={self.pp_schedule!r} is not one of gpipe, 1f1b")
        if self.pp > 1 and self.pp_schedule == "1f1b" and self.num_microbatches < self.pp:
            raise ConfigError(
                f"pp_schedule='1f1b' needs at least pp={self.pp} micro-batches, got microbatches={self.microbatches}"
            )
        if self.data_parallel not in ("fsdp", "ddp"):
            raise ConfigError(f"data_parallel={self.data_parallel!r} is not one of fsdp, ddp")
        if self.data_parallel == "ddp" and self.tp > 1:
            raise ConfigError(f"data_parallel='ddp' cannot be combined with tp={self.tp}; use data_parallel='fsdp'")

    @property
    def world_size(self) -> int:
        return self.pp * self.dp * self.tp

    @property
    def num_microbatches(self) -> int:
        """Micro-batches per pipeline step (``microbatches``, or ``pp`` when unset)."""
        return self.microbatches if self.microbatches is not None else self.pp

    def check_world_size(self, world_size: int) -> None:
        """The launcher started ``world_size`` processes; the mesh needs exactly ``pp * dp * tp``."""
        if world_size != self.world_size:
            sizes = f"pp={self.pp} x " if self.pp > 1 else ""
            raise ConfigError(
                f"{sizes}dp={self.dp} x tp={self.tp} = {self.world_size} processes, "
                f"but the job has world_size={world_size}"
            )

    def check_model(self, model: ModelConfig) -> None:
        """Refuse sizes that would not split ``model`` into whole heads, even shards and equal stages."""
        check_tensor_parallel(model, self.tp)
        check_pipeline_parallel(model, self.pp)

    def check_batch_size(self, batch_size: int) -> None:
        """A pipeline step cuts each rank's batch of ``batch_size`` rows into equal micro-batches."""
        if self.pp > 1 and batch_size % self.num_microbatches:
            raise ConfigError(
                f"batch size {batch_size} (per data-parallel rank) is not divisible by "
                f"microbatches={self.num_microbatches} (pp={self.pp})"
            )

    def check_sequence_length(self, length: int) -> None:
        if self.sequence_parallel and self.tp > 1 and length % self.tp:
            raise ConfigError(f"sequence length {length} is not divisible by tp={self.tp} (sequence_parallel=True)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "parallel") -> ParallelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown parallel config keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


def _check_positive(key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key}={value!r} must be a positive integer")


def check_pipeline_parallel(model: ModelConfig, pp: int) -> None:
    """Pipeline stages are whole, equal runs of decoder layers; encoders (BERT) are not pipelined here."""
    if pp == 1:
        return
    name = model.name or model.arch
    if model.arch != "gpt":
        raise ConfigError(f"{name}: pipeline parallelism (pp={pp}) is for GPT decoders; arch={model.arch!r} needs pp=1")
    if model.num_layers % pp:
        raise ConfigError(f"{name}: num_layers={model.num_layers} is not divisible by pp={pp}")


def check_tensor_parallel(model: ModelConfig, tp: int) -> None:
    """Every split that tensor parallelism makes must be even: heads, key/value groups, FFN, vocabulary.

    Column-parallel ``linear_qkv`` hands each rank ``query_groups / tp`` whole groups (each with its
    query heads), so the group count, not only the head count, must divide by ``tp``.
    """
    if tp == 1:
        return
    sizes = {
        "num_attention_heads": model.num_attention_heads,
        "num_query_groups": model.query_groups,
        "ffn_hidden_size": model.ffn_size,
        "padded_vocab_size": model.padded_vocab_size,
    }
    bad = [f"{name}={value}" for name, value in sizes.items() if value % tp]
    if bad:
        hint = ""
        if model.padded_vocab_size % tp:
            hint = f" (raise make_vocab_size_divisible_by={model.make_vocab_size_divisible_by} to a multiple of {tp})"
        raise ConfigError(f"{model.name or model.arch}: {', '.join(bad)} not divisible by tp={tp}{hint}")
