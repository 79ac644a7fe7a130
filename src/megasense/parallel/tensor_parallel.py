"""Tensor (and sequence) parallelism: a model's plan turned into PyTorch's parallel styles over ``tp``.

Megatron's pattern, one docstring line per split (``Y = X W^T``, ``t`` the tensor-parallel size):

- ``colwise``: ``W`` split by output rows, ``Y_i = X W_i^T``; each rank keeps its slice of features
  (``linear_qkv`` rows are whole key/value groups, so each rank computes whole heads).
- ``rowwise``: ``W`` split by input columns, ``Y = sum_i X_i W_i^T`` (an all-reduce, or a
  reduce-scatter over the sequence with sequence parallelism).
- ``vocab_embedding``: the table split by vocabulary rows; each rank looks up the ids it owns and
  the partial results are summed.
- ``vocab_output``: the output layer split by vocabulary rows; logits stay split over the vocabulary
  for ``loss_parallel`` cross entropy, or are all-gathered.

Sequence parallelism (an option) keeps the residual stream inside the transformer layers split over
the sequence: norms and dropout work on ``T / t`` positions (each rank with its own slice of a
whole-sequence dropout mask, see ``megasense.parallel.sequence_parallel_dropout``); each sub-layer that owns a
column-parallel projection (attention, MLP) all-gathers the sequence at its entry, because it reads
``T`` from its input and attention needs every position; row-parallel layers reduce-scatter their
output back to ``T / t``. It starts at the first layer and ends after the last one, so embeddings,
heads and everything outside the layers see whole sequences.
"""

from __future__ import annotations

import contextlib

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    RowwiseParallel,
    SequenceParallel,
    loss_parallel,
    parallelize_module,
)

from megasense.config.model import ConfigError, ModelConfig
from megasense.config.parallel import check_tensor_parallel
from megasense.parallel.plan import PlanError, block_container, blocks, match_plan, model_plan, tied_parameters
from megasense.parallel.sequence_parallel_dropout import shard_dropout_over_sequence

_NORMS = (nn.LayerNorm, nn.RMSNorm)
SEQUENCE_DIM = 1  # activations are (B, T, H)


def apply_tensor_parallel(
    model: nn.Module,
    tp_mesh: DeviceMesh,
    *,
    plan: dict[str, str] | None = None,
    sequence_parallel: bool = False,
    loss_parallel: bool = True,
) -> nn.Module:
    """Shard ``model`` in place over the 1-D ``tp_mesh`` following ``plan`` (default: ``model.tp_plan``).

    With ``loss_parallel`` the ``vocab_output`` layer returns logits as a DTensor split over the
    vocabulary; compute the loss and run the backward under :func:`loss_parallel_context`.
    """
    plan = model_plan(model, plan)
    tp = tp_mesh.size()
    if tp == 1:
        return model
    config = getattr(model, "config", None)
    if isinstance(config, ModelConfig):
        check_tensor_parallel(config, tp)
    matched = match_plan(model, plan)
    container = block_container(model, plan)
    if sequence_parallel and container is None:
        raise PlanError("sequence_parallel needs a plan with per-layer entries such as 'layers.*.mlp.dense_h_to_4h'")
    in_blocks = f"{container}." if sequence_parallel else None
    styles: dict[str, ParallelStyle] = {}
    for name, style in matched.items():
        module = model.get_submodule(name)
        _check_module(name, module, style, tp)
        sequence_sharded = in_blocks is not None and name.startswith(in_blocks)
        styles[name] = _parallel_style(style, sequence_sharded=sequence_sharded, loss_parallel=loss_parallel)
    gather_points = _gather_points(model, matched, container) if sequence_parallel else []
    if sequence_parallel:
        for block_name, block in blocks(model, container):
            for sub_name, sub in block.named_modules():
                if isinstance(sub, _NORMS):
                    styles[f"{block_name}.{sub_name}"] = SequenceParallel(use_local_output=True)
    ties = tied_parameters(model)
    _check_ties(ties, matched, set(styles))
    parallelize_module(model, tp_mesh, styles)
    _retie(model, ties)
    if sequence_parallel:
        _split_sequence_over_blocks(model, container, gather_points, tp_mesh)
        shard_dropout_over_sequence(model, container, gather_points, tp_mesh, sequence_dim=SEQUENCE_DIM)
    return model


def loss_parallel_context(enabled: bool) -> contextlib.AbstractContextManager:
    """PyTorch's ``loss_parallel`` when the logits are vocabulary-sharded, else a no-op context.

    Both the loss and its backward must run inside it.
    """
    return loss_parallel() if enabled else contextlib.nullcontext()


def _parallel_style(style: str, *, sequence_sharded: bool, loss_parallel: bool) -> ParallelStyle:
    if style == "colwise":  # under sequence parallelism its parent module already gathered the sequence
        return ColwiseParallel(input_layouts=Replicate())
    if style == "rowwise":
        return RowwiseParallel(output_layouts=Shard(SEQUENCE_DIM) if sequence_sharded else Replicate())
    if style == "vocab_embedding":
        return RowwiseParallel(input_layouts=Replicate(), output_layouts=Replicate())
    # vocab_output
    return ColwiseParallel(
        input_layouts=Replicate(),
        output_layouts=Shard(-1) if loss_parallel else Replicate(),
        use_local_output=not loss_parallel,
    )


def _check_module(name: str, module: nn.Module, style: str, tp: int) -> None:
    """The module type fits the style and its split dimension divides evenly by ``tp``."""
    if style == "vocab_embedding":
        if not isinstance(module, nn.Embedding):
            raise PlanError(f"plan marks {name!r} as vocab_embedding, but it is a {type(module).__name__}")
        size, what = module.num_embeddings, "num_embeddings"
    else:
        if not isinstance(module, nn.Linear):
            raise PlanError(f"plan marks {name!r} as {style}, but it is a {type(module).__name__}, not nn.Linear")
        size, what = (
            (module.in_features, "in_features") if style == "rowwise" else (module.out_features, "out_features")
        )
    if size % tp:
        raise ConfigError(f"{name}: {what}={size} is not divisible by tp={tp} ({style})")


# How each style splits a weight: vocab_embedding's table (vocab, H) and a column-parallel Linear's
# (out, in) are both split by rows, so an embedding tied to the output layer stays one tensor.
_WEIGHT_SPLIT = {"colwise": "rows", "vocab_output": "rows", "vocab_embedding": "rows", "rowwise": "columns"}


def _check_ties(ties: dict[str, str], matched: dict[str, str], styled: set[str]) -> None:
    """Before touching the model: both names of a tied parameter must be split the same way."""

    def split(param_path: str) -> str:
        module = param_path.rpartition(".")[0]
        if module in matched:
            return _WEIGHT_SPLIT[matched[module]]
        return "replicated" if module in styled else "not sharded"

    for alias, source in ties.items():
        if split(alias) != split(source):
            raise PlanError(
                f"{alias} is tied to {source}, but the plan splits them differently ({split(alias)} vs "
                f"{split(source)}); give {alias.rpartition('.')[0]!r} a matching style "
                "(vocab_embedding pairs with vocab_output)"
            )


def _retie(model: nn.Module, ties: dict[str, str]) -> None:
    """Point each tied alias back at its source after sharding replaced both with new parameters."""
    for alias, source in ties.items():
        source_param = model.get_parameter(source)
        alias_param = model.get_parameter(alias)
        if source_param is alias_param:
            continue
        src_sharded, alias_sharded = isinstance(source_param, DTensor), isinstance(alias_param, DTensor)
        if src_sharded != alias_sharded or (
            src_sharded and tuple(source_param.placements) != tuple(alias_param.placements)
        ):
            raise PlanError(
                f"{alias} is tied to {source}, but the plan shards them differently "
                f"({_layout(source_param)} vs {_layout(alias_param)}); give "
                f"{alias.rsplit('.', 1)[0]!r} the matching style (vocab_embedding pairs with vocab_output)"
            )
        module_path, _, attr = alias.rpartition(".")
        setattr(model.get_submodule(module_path), attr, source_param)


def _layout(param) -> str:
    return f"sharded {list(param.placements)}" if isinstance(param, DTensor) else "not sharded"


def _gather_points(model: nn.Module, matched: dict[str, str], container: str) -> list[str]:
    """The sub-layers (parents of column-parallel projections inside the layers) that gather the sequence."""
    block_names = {name for name, _ in blocks(model, container)}
    points: list[str] = []
    for name, style in matched.items():
        parent = name.rpartition(".")[0]
        if style != "colwise" or not name.startswith(f"{container}."):
            continue
        if parent in block_names:
            raise PlanError(
                f"sequence_parallel: {name!r} sits directly in layer {parent!r}; it needs a parent sub-layer "
                "(attention or MLP) at whose entry the sequence can be all-gathered"
            )
        if parent not in points:
            points.append(parent)
    return points


def _split_sequence_over_blocks(
    model: nn.Module, container: str, gather_points: list[str], tp_mesh: DeviceMesh
) -> None:
    """Hooks: the first layer takes its slice of the sequence, the last all-gathers it back, and each
    sub-layer in ``gather_points`` all-gathers its (first, hidden-state) input."""
    layers = blocks(model, container)
    if not layers:
        return
    tp = tp_mesh.size()

    def first_arg(module, args) -> tuple:
        if not args:
            raise PlanError(f"sequence_parallel: {type(module).__name__} must get the hidden states positionally")
        return args

    def gather(module, args, kwargs):
        x, *rest = first_arg(module, args)
        x = DTensor.from_local(x, tp_mesh, [Shard(SEQUENCE_DIM)], run_check=False)
        return (x.redistribute(tp_mesh, [Replicate()]).to_local(), *rest), kwargs

    for name in gather_points:
        model.get_submodule(name).register_forward_pre_hook(gather, with_kwargs=True)

    def enter(module, args, kwargs):
        x, *rest = first_arg(module, args)
        length = x.shape[SEQUENCE_DIM]
        if length % tp:
            raise ConfigError(f"sequence length {length} is not divisible by tp={tp} (sequence_parallel=True)")
        x = DTensor.from_local(x, tp_mesh, [Replicate()], run_check=False)
        return (x.redistribute(tp_mesh, [Shard(SEQUENCE_DIM)]).to_local(), *rest), kwargs

    def leave(_module, _args, output):
        out = DTensor.from_local(output, tp_mesh, [Shard(SEQUENCE_DIM)], run_check=False)
        out = out.redistribute(tp_mesh, [Replicate()]).to_local()
        # A view would let a later in-place op bypass FSDP2's pre-backward hook on this layer.
        return out if out._base is None else out.clone()

    layers[0][1].register_forward_pre_hook(enter, with_kwargs=True)
    layers[-1][1].register_forward_hook(leave)
