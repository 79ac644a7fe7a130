"""The device mesh: the job's processes arranged as a ``(pp, dp, tp)`` grid with named axes.

The mesh is built once from a :class:`ParallelConfig` and passed explicitly to everything that
shards (no global process groups). ``mesh["tp"]`` is the 1-D sub-mesh a tensor-parallel group
shares, ``mesh["dp"]`` the one a data-parallel group shares, ``mesh["pp"]`` the ranks that hold
consecutive pipeline stages of one model replica. ``tp`` is the inner (fastest-varying) axis so that
a tensor-parallel group sits on neighbouring ranks, usually one node; ``pp`` is the outer one, since
pipeline stages exchange only activations. ``pp`` is 1 unless a config asks for more.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from megasense.config.parallel import ParallelConfig

MESH_DIMS = ("pp", "dp", "tp")


def default_device_type() -> str:
    """``cuda`` when this process sees a GPU (NCCL), else ``cpu`` (gloo)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def build_mesh(config: ParallelConfig, *, device_type: str | None = None) -> DeviceMesh:
    """A 3-D mesh ``(pp, dp, tp)`` over the already initialised default process group.

    Raises ``ConfigError`` naming the sizes when ``pp * dp * tp`` differs from the world size.
    """
    if not dist.is_initialized():
        raise RuntimeError(
            "torch.distributed is not initialised; start the job with torchrun (or "
            "megasense.parallel.launch.run_distributed) before building a mesh"
        )
    config.check_world_size(dist.get_world_size())
    device_type = device_type or default_device_type()
    return init_device_mesh(device_type, (config.pp, config.dp, config.tp), mesh_dim_names=MESH_DIMS)


def mesh_size(mesh: DeviceMesh, dim: str) -> int:
    """Size of axis ``dim`` of ``mesh`` (1 when the mesh has no such axis)."""
    names = mesh.mesh_dim_names or ()
    return mesh.size(names.index(dim)) if dim in names else 1


def sub_mesh(mesh: DeviceMesh, dim: str) -> DeviceMesh:
    """The 1-D sub-mesh of axis ``dim`` (``mesh`` itself when it is already that 1-D mesh)."""
    names = mesh.mesh_dim_names or ()
    if dim not in names:
        raise ValueError(f"the mesh has axes {names}, not {dim!r}")
    return mesh if len(names) == 1 else mesh[dim]
