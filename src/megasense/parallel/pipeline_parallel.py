"""Pipeline parallelism for decoders: a model cut into ``pp`` stages, run by GPipe or 1F1B schedules.

A model says where it may be cut as plain data (``model.pp_plan``: its layer container, the modules
only the first stage keeps, those only the last stage keeps). :func:`split_stage` prunes a whole
model in place to one stage's part by setting the other parts to ``None``, so parameter names stay
those of the unsplit model and a checkpoint looks the same at every ``pp``. The schedules are
PyTorch's own (``torch.distributed.pipelining``); the loss is computed on the last stage, per
micro-batch, and the micro-batch losses are averaged, which equals the loss of the whole batch when
every micro-batch has the same number of targets.

Tied weights (GPT-2's word embedding reused by the output layer) end up on two stages: the first
keeps the embedding, the last the output layer. Both copies start equal;
:meth:`Pipeline.sync_tied_grads` sums their gradients over the stages that hold them (Megatron's
"embedding group") before the optimizer runs, so they stay equal, and the gradient norm counts them once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe
from torch.distributed.tensor import DTensor

from megasense.config.model import ConfigError
from megasense.config.parallel import ParallelConfig
from megasense.parallel.data_parallel import _global_norm, _local, full_state_dict
from megasense.parallel.mesh import mesh_size, sub_mesh
from megasense.parallel.plan import PlanError, tied_parameters

SCHEDULES = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}


def stage_layers(num_layers: int, num_stages: int, stage: int) -> range:
    """The indices of the consecutive layers stage ``stage`` of ``num_stages`` holds (equal runs)."""
    if num_layers % num_stages:
        raise ConfigError(f"num_layers={num_layers} is not divisible by pp={num_stages}")
    if not 0 <= stage < num_stages:
        raise ValueError(f"stage {stage} is not in 0..{num_stages - 1}")
    per = num_layers // num_stages
    return range(stage * per, (stage + 1) * per)


@dataclass
class StageSplit:
    """What :func:`split_stage` left on this stage, and which of its parameters are tied to another stage."""

    index: int
    num_stages: int
    layers: range
    ties: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Tied weights that the split spread over several stages: first name -> the stages holding a copy
    (the same on every rank)."""
    shared: dict[str, str] = field(default_factory=dict)
    """Parameter name on this stage -> first name of the tie it belongs to (for the tied weights above)."""

    @property
    def is_first(self) -> bool:
        return self.index == 0

    @property
    def is_last(self) -> bool:
        return self.index == self.num_stages - 1


def _pp_plan(model: nn.Module) -> dict:
    plan = getattr(model, "pp_plan", None)
    if plan is None:
        raise PlanError(f"{type(model).__name__} declares no pp_plan; pipeline parallelism is for GPT decoders")
    return plan


def _owner(name: str, plan: dict, num_layers: int, num_stages: int) -> tuple[int, ...]:
    """The stages that keep parameter ``name`` after a split."""
    head = name.split(".", 1)[0]
    if head in plan["first"]:
        return (0,)
    if head in plan["last"]:
        return (num_stages - 1,)
    prefix = plan["layers"] + "."
    if name.startswith(prefix):
        index = int(name[len(prefix) :].split(".", 1)[0])
        return (index // (num_layers // num_stages),)
    return tuple(range(num_stages))


def split_stage(model: nn.Module, *, stage: int, num_stages: int) -> StageSplit:
    """Prune ``model`` in place to pipeline stage ``stage`` of ``num_stages``; names stay unchanged.

    Layers of other stages become ``None`` in the layer container; the first stage keeps the
    ``first`` modules of the plan, the last the ``last`` ones. Call it on a whole model whose
    weights are initialised or loaded identically on every stage (tied copies must start equal).
    """
    plan = _pp_plan(model)
    container = model.get_submodule(plan["layers"])
    num_layers = len(container)
    owned = stage_layers(num_layers, num_stages, stage)
    ties = tied_parameters(model)  # {alias: first name}, found before the split separates them
    for i in range(num_layers):
        if i not in owned:
            container[i] = None
    parts = ([] if stage == 0 else list(plan["first"])) + ([] if stage == num_stages - 1 else list(plan["last"]))
    for name in parts:
        setattr(model, name, None)
    present = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    split = StageSplit(index=stage, num_stages=num_stages, layers=owned)
    for alias, first in ties.items():
        holders = tuple(
            sorted({*_owner(first, plan, num_layers, num_stages), *_owner(alias, plan, num_layers, num_stages)})
        )
        if len(holders) < 2:
            continue  # both names on one stage: an ordinary tie there
        split.ties[first] = holders
        for name in (first, alias):
            if name in present:
                split.shared[name] = first
    return split


class _StageForward(nn.Module):
    """What the schedule calls: one tensor in, one tensor out (a pipeline stage cannot pass a dataclass)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out.hidden_states if out.logits is None else out.logits


class Pipeline:
    """One rank's pipeline stage and its schedule; :meth:`step` runs the forward and backward of one batch.

    ``module`` is this rank's stage of the model, already cut by :func:`split_stage` (``split``),
    then sharded over ``dp``/``tp`` if wanted and materialised: it is what the optimizer, clipping
    and checkpoints see. ``loss_fn(logits, labels)`` runs on the last stage for each micro-batch and
    must return the mean over that micro-batch. Before each optimizer step call
    :meth:`sync_tied_grads` (then, to clip, :meth:`clip_grad_norm_`).
    """

    def __init__(
        self,
        module: nn.Module,
        split: StageSplit,
        mesh: DeviceMesh,
        config: ParallelConfig,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> None:
        pp = mesh_size(mesh, "pp")
        if (pp, split.num_stages) != (config.pp, config.pp):
            raise ValueError(f"the mesh has pp={pp}, the split {split.num_stages} stages, the config pp={config.pp}")
        pp_mesh = sub_mesh(mesh, "pp")
        if pp_mesh.get_local_rank() != split.index:
            raise ValueError(f"this rank is stage {pp_mesh.get_local_rank()} on the mesh, not {split.index}")
        self.module, self.split, self.config = module, split, config
        self.pp_group = pp_mesh.get_group()
        self.tie_groups = _tie_groups(split, mesh, pp_mesh)
        self.loss_fn, self._scale = loss_fn, 1.0
        device = next(iter(module.parameters())).device
        stage = PipelineStage(_StageForward(module), split.index, pp, device, group=self.pp_group)
        schedule = SCHEDULES[config.pp_schedule]
        # The loss is divided by the micro-batch count here, not by the schedule (scale_grads), which
        # would divide every gradient present, also those accumulated by earlier steps.
        self.schedule = schedule(stage, config.num_microbatches, loss_fn=self._scaled_loss, scale_grads=False)

    def _scaled_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(logits, labels) * (self._scale / self.config.num_microbatches)

    def step(self, input_ids: torch.Tensor, labels: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
        """Forward and backward of one (data-parallel rank's) batch; its mean loss, on every stage.

        Every stage passes the same ``input_ids`` and ``labels`` (B, T) (the first stage reads the
        ids, the last the labels). Gradients of ``scale * loss`` accumulate into ``module``'s
        parameters as ``loss.backward()`` would (``scale = 1 / grad_accum`` for accumulation).
        """
        self.config.check_batch_size(input_ids.shape[0])
        args = (input_ids,) if self.split.is_first else ()
        losses: list[torch.Tensor] = []
        self._scale = scale
        if self.split.is_last:
            self.schedule.step(*args, target=labels, losses=losses, return_outputs=False)
            # With loss_parallel (tp > 1) each loss is a replicated DTensor: its full value is the loss.
            loss = torch.stack([_full(x.detach()).float() for x in losses]).sum() / scale
        else:
            self.schedule.step(*args, return_outputs=False)
            loss = torch.zeros((), device=input_ids.device)
        if self.split.num_stages > 1:
            dist.broadcast(loss, group_src=self.split.num_stages - 1, group=self.pp_group)
        return loss

    def aliases(self) -> dict[str, str]:
        """{name on this stage: the tie's first name} for tied copies held under another name (checkpoint keys)."""
        return {name: first for name, first in self.split.shared.items() if name != first}

    def sync_tied_grads(self) -> None:
        """Sum the gradients of each tied weight's copies over the stages that hold one (once per step)."""
        params = dict(self.module.named_parameters(remove_duplicate=False))
        for first, group in self.tie_groups:
            name = next(n for n, f in self.split.shared.items() if f == first)
            param = params[name]
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            elif isinstance(param.grad, DTensor) and param.grad.placements != param.placements:
                # A vocab-parallel embedding's gradient may come back replicated; the copies on the
                # two stages must be laid out alike before their local tensors are summed.
                param.grad = param.grad.redistribute(param.device_mesh, param.placements)
            dist.all_reduce(_local(param.grad), group=group)

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Clip by the 2-norm over the whole model (every stage, tied weights once); returns the norm."""
        named = list(self.module.named_parameters())
        # A tied weight is counted on the stage that holds its first name only.
        counted = [p.grad for n, p in named if p.grad is not None and self.split.shared.get(n, n) == n]
        device = next(iter(self.module.parameters())).device
        local = _global_norm(counted, 2.0, device) ** 2 if counted else torch.zeros((), device=device)
        if self.split.num_stages > 1:
            dist.all_reduce(local, group=self.pp_group)
        total = local.sqrt()
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        with torch.no_grad():
            for _, p in named:
                if p.grad is not None:
                    _local(p.grad).mul_(coef.to(_local(p.grad).device))
        return total


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def stage_index(mesh: DeviceMesh) -> int:
    """This rank's pipeline stage: its position along ``pp`` (0 without a ``pp`` axis)."""
    return sub_mesh(mesh, "pp").get_local_rank() if mesh_size(mesh, "pp") > 1 else 0


def stage_state_dict(full: dict[str, torch.Tensor], split: StageSplit, keys: list[str]) -> dict[str, torch.Tensor]:
    """A stage's ``keys`` taken from a whole model's state dict; a tied copy is filled from the tie's first name."""
    return {key: full[key] if key in full else full[split.shared[key]] for key in keys}


def gather_stage_states(module: nn.Module, mesh: DeviceMesh) -> dict[str, torch.Tensor]:
    """The whole model's unsharded state dict on global rank 0 (``{}`` elsewhere), from every stage.

    A collective over all ranks: each stage first gathers its own ``dp``/``tp`` shards, then the first
    rank of each stage sends its part to rank 0 (object collectives: pickle on the wire only, never
    in a file).
    """
    state = full_state_dict(module, rank0_only=False)
    inner = [sub_mesh(mesh, d).get_local_rank() for d in ("dp", "tp") if mesh_size(mesh, d) > 1]
    part = state if not any(inner) else None
    parts: list | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(part, parts, dst=0)
    merged: dict[str, torch.Tensor] = {}
    for piece in parts or []:
        merged.update(piece or {})
    return merged


def build_pipeline(
    model: nn.Module,
    mesh: DeviceMesh,
    config: ParallelConfig,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Pipeline:
    """Cut an initialised ``model`` to this rank's stage along ``mesh["pp"]`` and set up ``config.pp_schedule``."""
    split = split_stage(model, stage=stage_index(mesh), num_stages=config.pp)
    return Pipeline(model, split, mesh, config, loss_fn)


def _tie_groups(split: StageSplit, mesh: DeviceMesh, pp_mesh: DeviceMesh) -> list[tuple[str, dist.ProcessGroup]]:
    """(tie's first name, group of this rank's copies) for each spread tie this stage holds a copy of.

    A tie held by every stage uses the ``pp`` group; otherwise one new group per model replica
    (each ``(dp, tp)`` position) is made, and every rank creates every group in the same order.
    """
    groups = []
    grid = mesh.mesh.reshape(split.num_stages, -1)  # (pp, dp * tp) global ranks
    for first, holders in sorted(split.ties.items()):
        if len(holders) == split.num_stages:
            mine = pp_mesh.get_group()
        else:
            mine = None
            for column in range(grid.shape[1]):
                ranks = [int(grid[h, column]) for h in holders]
                group = dist.new_group(ranks)
                if dist.get_rank() in ranks:
                    mine = group
        if split.index in holders:
            groups.append((first, mine))
    return groups


def bubble_fraction(pp: int, microbatches: int) -> float:
    """Idle share of a GPipe/1F1B step: ``(pp - 1) / (microbatches + pp - 1)``."""
    return (pp - 1) / (microbatches + pp - 1) if pp > 1 else 0.0


__all__ = [
    "SCHEDULES",
    "Pipeline",
    "StageSplit",
    "bubble_fraction",
    "build_pipeline",
    "gather_stage_states",
    "split_stage",
    "stage_index",
    "stage_layers",
    "stage_state_dict",
]
