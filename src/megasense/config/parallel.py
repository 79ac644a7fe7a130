"""How a model is spread over devices: data-parallel and tensor-parallel sizes and their options.

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


@dataclass(kw_only=True, frozen=True)
class ParallelConfig:
    """Sizes of the ``dp`` and ``tp`` mesh axes and how each is used; ``dp * tp`` is the world size."""

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
        for key in ("dp", "tp"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key}={value!r} must be a positive integer")
        if self.data_parallel not in ("fsdp", "ddp"):
            raise ConfigError(f"data_parallel={self.data_parallel!r} is not one of fsdp, ddp")
        if self.data_parallel == "ddp" and self.tp > 1:
            raise ConfigError(f"data_parallel='ddp' cannot be combined with tp={self.tp}; use data_parallel='fsdp'")

    @property
    def world_size(self) -> int:
        return self.dp * self.tp

    def check_world_size(self, world_size: int) -> None:
        """The launcher started ``world_size`` processes; the mesh needs exactly ``dp * tp``."""
        if world_size != self.world_size:
            raise ConfigError(
                f"dp={self.dp} x tp={self.tp} = {self.world_size} processes, but the job has world_size={world_size}"
            )

    def check_model(self, model: ModelConfig) -> None:
        """Refuse a tensor-parallel size that would not split ``model`` into whole heads and even shards."""
        check_tensor_parallel(model, self.tp)

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
