"""One call that spreads a single-device model over a ``(dp, tp)`` mesh: tensor parallel, then data parallel.

The order matters: tensor parallelism replaces parameters with ``tp``-sharded DTensors first, then
FSDP2 shards those again over ``dp`` (2-D DTensors). The model code is the same with and without it.
"""

from __future__ import annotations

from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from megasense.config.parallel import ParallelConfig
from megasense.parallel.activation_checkpointing import apply_activation_checkpointing
from megasense.parallel.data_parallel import apply_ddp, apply_fsdp
from megasense.parallel.mesh import mesh_size, sub_mesh
from megasense.parallel.plan import block_container, model_plan
from megasense.parallel.tensor_parallel import apply_tensor_parallel, loss_parallel_context


def parallelize(
    model: nn.Module,
    mesh: DeviceMesh,
    config: ParallelConfig,
    *,
    plan: dict[str, str] | None = None,
    activation_checkpointing: str = "none",
) -> nn.Module:
    """Apply ``config`` to ``model`` over ``mesh`` (built by :func:`build_mesh`); returns the model to train.

    The returned module is ``model`` itself, except with DDP, where it is the DDP wrapper.
    ``activation_checkpointing`` (``none``, ``full``, ``selective``) is applied between tensor and
    data parallelism, so the recomputed layers are FSDP2's units.
    """
    tp, dp = mesh_size(mesh, "tp"), mesh_size(mesh, "dp")
    if (dp, tp) != (config.dp, config.tp):
        raise ValueError(f"the mesh has dp={dp}, tp={tp} but the config asks for dp={config.dp}, tp={config.tp}")
    if tp > 1:
        apply_tensor_parallel(
            model,
            sub_mesh(mesh, "tp"),
            plan=model_plan(model, plan),
            sequence_parallel=config.sequence_parallel,
            loss_parallel=config.loss_parallel,
        )
    apply_activation_checkpointing(model, activation_checkpointing, plan=plan)
    if dp > 1:
        if config.data_parallel == "ddp":
            return apply_ddp(model, sub_mesh(mesh, "dp"))
        # FSDP2 alone needs no plan; when there is one, its layer container gives the sharding units.
        resolved = plan if plan is not None else getattr(model, "tp_plan", None)
        container = block_container(model, resolved) if resolved else None
        apply_fsdp(model, sub_mesh(mesh, "dp"), container=container, reshard_after_forward=config.reshard_after_forward)
    return model


def loss_context(config: ParallelConfig):
    """The context the loss and its backward run in: ``loss_parallel`` when the logits are vocab-sharded."""
    return loss_parallel_context(config.tp > 1 and config.loss_parallel)
