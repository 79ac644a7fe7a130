"""Parallelism applied from outside the model: a ``(pp, dp, tp)`` mesh, pipeline stages, TP/SP plans, FSDP2 or DDP.

Models declare their tensor-parallel plan as data (``model.tp_plan``); this package turns it into
PyTorch's own ``ColwiseParallel`` / ``RowwiseParallel`` / ``SequenceParallel`` over the ``tp``
sub-mesh and ``fully_shard`` over ``dp``; ``model.pp_plan`` says where a decoder may be cut into pipeline
stages along ``pp``. It never names a model class.
"""

from megasense.config.parallel import ParallelConfig, check_tensor_parallel
from megasense.parallel.data_parallel import (
    apply_ddp,
    apply_fsdp,
    clip_grad_norm_,
    full_state_dict,
    load_full_state_dict,
    unwrap,
)
from megasense.parallel.mesh import MESH_DIMS, build_mesh, mesh_size, sub_mesh
from megasense.parallel.parallelize import loss_context, parallelize
from megasense.parallel.pipeline_parallel import Pipeline, build_pipeline, split_stage
from megasense.parallel.plan import STYLES, PlanError, block_container, match_plan, tied_parameters
from megasense.parallel.tensor_parallel import apply_tensor_parallel, loss_parallel_context

__all__ = [
    "MESH_DIMS",
    "STYLES",
    "ParallelConfig",
    "Pipeline",
    "PlanError",
    "apply_ddp",
    "apply_fsdp",
    "apply_tensor_parallel",
    "block_container",
    "build_mesh",
    "build_pipeline",
    "check_tensor_parallel",
    "clip_grad_norm_",
    "full_state_dict",
    "load_full_state_dict",
    "loss_context",
    "loss_parallel_context",
    "match_plan",
    "mesh_size",
    "parallelize",
    "split_stage",
    "sub_mesh",
    "tied_parameters",
    "unwrap",
]
