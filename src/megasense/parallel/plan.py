"""Reading a model's tensor-parallel plan: module path patterns -> style names, matched to real modules.

A plan is plain data declared beside the model (``{"layers.*.mlp.dense_h_to_4h": "colwise"}``).
``*`` stands for one path segment. An entry that matches no module is skipped, so one plan can name
optional modules (``dense_h_to_4h_gate`` exists only with SwiGLU). Nothing here knows a model class:
only module paths, ``nn.Module`` and the parameters that several paths share (tied weights).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from torch import nn

from megasense.errors import MegasenseInputError

STYLES = ("colwise", "rowwise", "vocab_embedding", "vocab_output")


class PlanError(MegasenseInputError):
    """A tensor-parallel plan does not fit the model it is applied to; the message names the module."""


def model_plan(model: nn.Module, plan: dict[str, str] | None = None) -> dict[str, str]:
    """``plan`` if given, else the plan the model declares as ``tp_plan``."""
    if plan is None:
        plan = getattr(model, "tp_plan", None)
        if plan is None:
            raise PlanError(f"{type(model).__name__} declares no tp_plan; pass a plan explicitly")
    for pattern, style in plan.items():
        if style not in STYLES:
            raise PlanError(f"plan entry {pattern!r}: style {style!r} is not one of {', '.join(STYLES)}")
    return dict(plan)


def _matches(pattern: str, name: str) -> bool:
    parts, names = pattern.split("."), name.split(".")
    return len(parts) == len(names) and all(fnmatchcase(n, p) for p, n in zip(parts, names))


def match_plan(model: nn.Module, plan: dict[str, str]) -> dict[str, str]:
    """Concrete module path -> style, in the model's module order. Two styles for one module is an error."""
    matched: dict[str, str] = {}
    for name, _ in model.named_modules():
        for pattern, style in plan.items():
            if name and _matches(pattern, name):
                if matched.get(name, style) != style:
                    raise PlanError(f"module {name!r} matches plan entries with styles {matched[name]!r} and {style!r}")
                matched[name] = style
    return matched


def block_container(model: nn.Module, plan: dict[str, str]) -> str | None:
    """The path of the repeated-layer container the plan's ``*`` entries iterate (``"layers"``), if any.

    Transformer layers are where FSDP2 puts its sharding units and where sequence parallelism holds
    the residual stream split over the sequence.
    """
    prefixes = {pattern.split(".*", 1)[0] for pattern in plan if ".*" in pattern}
    if not prefixes:
        return None
    if len(prefixes) > 1:
        raise PlanError(f"plan entries iterate several layer containers {sorted(prefixes)}; expected one")
    prefix = prefixes.pop()
    try:
        model.get_submodule(prefix)
    except AttributeError:
        raise PlanError(f"the plan iterates {prefix!r}, which this model does not have") from None
    return prefix


def blocks(model: nn.Module, container: str) -> list[tuple[str, nn.Module]]:
    """(path, module) of each layer in ``container``, in order."""
    return [(f"{container}.{name}", child) for name, child in model.get_submodule(container).named_children()]


def tied_parameters(model: nn.Module) -> dict[str, str]:
    """Parameters reachable under several names: {alias path: first path}, found from identity alone."""
    first: dict[int, str] = {}
    ties: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            ties[name] = first[id(param)]
        else:
            first[id(param)] = name
    return ties
