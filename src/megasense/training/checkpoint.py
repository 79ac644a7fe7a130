"""Sharded training checkpoints: model, optimizer, schedule, data position and RNG, resumable bit for bit.

Model and optimizer go through ``torch.distributed.checkpoint`` (DCP) with the state-dict helpers of
``torch.distributed.checkpoint.state_dict``: every rank writes its own shards, keyed by the
single-device parameter names with global shapes, so a checkpoint saved at one ``(pp, dp, tp)`` layout
loads at another (DCP reshards on load). Optimizer state is flattened per parameter name
(``state.<name>.exp_avg``, ``param_groups.<name>.lr``): pipeline stages, each holding some of the
parameters, then write disjoint keys that any layout reads back. A tied weight that a pipeline
stage holds under another name (GPT-2's output layer on the last stage) is saved and loaded under
the tie's first name, given as ``aliases``. Everything else is JSON: ``state.json`` (step, data
position, scheduler, anything the caller adds) and one ``rng-rank-N.json`` per rank (Python, NumPy
and torch generator states). Nothing is pickled.

Layout of ``DIR``::

    latest                  one line: the name of the newest complete checkpoint
    step-00000100/          .metadata + __R_0.distcp shards (DCP), state.json, rng-rank-*.json
    step-00000200/

A save writes into ``.step-00000200.tmp``, renames it into place when every rank has finished, then
replaces ``latest`` atomically, so a kill at any moment leaves the previous checkpoint loadable;
older checkpoints beyond ``keep`` are deleted only after that. Every rank calls every method here
(they are collectives); the directory must be one that all ranks see.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from megasense.errors import CheckpointError, ConfigError
from megasense.files.atomic import atomic_write_text, publish_directory

LATEST = "latest"
STATE = "state.json"
FORMAT = "megasense-training-checkpoint"
_STEP_DIR = re.compile(r"^step-(\d{8})$")
_OPTIONS = StateDictOptions(flatten_optimizer_state_dict=True)


class TrainingCheckpoints:
    """Save and load training checkpoints under ``directory``, keeping the newest ``keep``."""

    def __init__(self, directory: str | Path, *, keep: int = 2) -> None:
        if keep < 1:
            raise ConfigError(f"checkpoint keep={keep} must be at least 1 (the checkpoints kept on disk)")
        self.directory = Path(directory)
        self.keep = keep

    # ------------------------------------------------------------------------------------------
    def latest(self) -> Path | None:
        """The newest complete checkpoint: what ``latest`` names, else the highest complete ``step-*``."""
        pointer = self.directory / LATEST
        if pointer.is_file():
            name = pointer.read_text(encoding="utf-8").strip()
            path = self.directory / name
            if _STEP_DIR.match(name) and _complete(path):
                return path
        complete = [p for p in self._step_dirs() if _complete(p)]
        return complete[-1] if complete else None

    def save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        state: dict[str, Any],
        *,
        aliases: dict[str, str] | None = None,
    ) -> Path:
        """Write checkpoint ``step`` (``state`` must be JSON-serialisable); returns its directory.

        ``aliases``: {parameter name on this rank: name to save its optimizer state under}.
        """
        rank = _rank()
        final = self.directory / f"step-{step:08d}"
        tmp = self.directory / f".{final.name}.tmp"
        payload = {"format": FORMAT, "step": step, "world_size": _world_size(), **state}
        text = json.dumps(payload, indent=1, sort_keys=True)  # refuse non-JSON state before writing anything
        if rank == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)  # left by a save that was killed
        _barrier()
        try:
            model_sd, optim_sd = get_state_dict(model, optimizer, options=_OPTIONS)
            _save_shards({"model": model_sd, "optim": _renamed(optim_sd, aliases or {})}, tmp)
            (tmp / f"rng-rank-{rank}.json").write_text(json.dumps(rng_state()), encoding="utf-8")
            if rank == 0:
                (tmp / STATE).write_text(text, encoding="utf-8")
            ok = _all_ok(True)
        except (Exception, CheckpointException) as exc:  # DCP's own error is a BaseException
            _all_ok(False)
            if rank == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            previous = self.latest()
            kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
            raise CheckpointError(final, f"saving the training checkpoint failed ({_short(exc)}); {kept}") from exc
        if not ok:
            previous = self.latest()
            raise CheckpointError(
                final, f"another rank failed while saving; the previous checkpoint {previous} is kept"
            )
        if rank == 0:
            publish_directory(tmp, final)
            atomic_write_text(self.directory / LATEST, final.name + "\n")
            self._prune(final)
        _barrier()
        return final

    def load(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        path: str | Path | None = None,
        *,
        restore_rng: bool = True,
        aliases: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Load model (and optimizer) shards from ``path`` (default: the latest); returns ``state.json``.

        RNG states are restored when the checkpoint has one for this rank (same world size);
        ``state["rng_restored"]`` says whether they were.
        """
        path = Path(path) if path is not None else self.latest()
        if path is None:
            raise CheckpointError(self.directory, "holds no complete training checkpoint to resume from")
        if not _complete(path):
            raise CheckpointError(path, f"is not a complete training checkpoint (no .metadata or {STATE})")
        try:
            state = json.loads((path / STATE).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise CheckpointError(path / STATE, f"is not valid JSON: {exc}") from None
        if state.get("format") != FORMAT:
            raise CheckpointError(path / STATE, f"format is {state.get('format')!r}, expected {FORMAT!r}")
        aliases = aliases or {}
        options = _OPTIONS if _flat_optimizer_state(path) else StateDictOptions()
        if optimizer is not None:
            model_sd, optim_sd = get_state_dict(model, optimizer, options=options)
            shards = {"model": model_sd, "optim": _renamed(optim_sd, aliases)}
        else:
            shards = {"model": get_state_dict(model, [], options=options)[0]}
        try:
            with warnings.catch_warnings():  # without a process group DCP says it assumes one process: so do we
                warnings.filterwarnings("ignore", message="torch.distributed is disabled")
                dcp.load(shards, checkpoint_id=str(path), no_dist=not dist.is_initialized())
        except (Exception, CheckpointException) as exc:  # DCP's own error is a BaseException
            raise CheckpointError(path, f"cannot load the sharded model/optimizer state: {_short(exc)}") from exc
        set_state_dict(
            model,
            optimizer if optimizer is not None else [],
            model_state_dict=shards["model"],
            optim_state_dict=_renamed(shards.get("optim", {}), {v: k for k, v in aliases.items()}),
            options=options,
        )
        rng_file = path / f"rng-rank-{_rank()}.json"
        state["rng_restored"] = False
        if restore_rng and state.get("world_size") == _world_size() and rng_file.is_file():
            set_rng_state(json.loads(rng_file.read_text(encoding="utf-8")))
            state["rng_restored"] = True
        return state

    # ------------------------------------------------------------------------------------------
    def _step_dirs(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))

    def _prune(self, newest: Path) -> None:
        complete = [p for p in self._step_dirs() if _complete(p)]
        for old in complete[: max(0, len(complete) - self.keep)]:
            if old != newest:
                shutil.rmtree(old, ignore_errors=True)


def _flat_optimizer_state(path: Path) -> bool:
    """False for checkpoints written before optimizer state was flattened (``optim.param_groups.0.*`` keys)."""
    try:
        keys = dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata
    except Exception as exc:
        raise CheckpointError(path / ".metadata", f"cannot be read: {_short(exc)}") from exc
    return not any(key.startswith("optim.param_groups.0.") for key in keys)


def _renamed(optim_sd: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """Flattened optimizer keys (``state.<name>.<field>``, ``param_groups.<name>.<field>``) with names renamed."""
    if not aliases:
        return optim_sd
    out = {}
    for key, value in optim_sd.items():
        kind, _, rest = key.partition(".")
        for old, new in aliases.items():
            if rest.startswith(old + "."):
                key = f"{kind}.{new}{rest[len(old) :]}"
                break
        out[key] = value
    return out


def rng_state() -> dict[str, Any]:
    """Every generator this process draws from, as JSON-able values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _jsonable(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), *(_jsonable(v) for v in np_state[2:])],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state().tolist()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))


def _save_shards(state: dict[str, Any], directory: Path) -> None:
    """DCP's save into ``directory`` (a seam: tests replace it to simulate a crash in the middle)."""
    with warnings.catch_warnings():  # without a process group DCP says it assumes one process: so do we
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        writer = dcp.FileSystemWriter(str(directory), sync_files=True)
        dcp.save(state, storage_writer=writer, no_dist=not dist.is_initialized())


def _complete(path: Path) -> bool:
    return (path / ".metadata").is_file() and (path / STATE).is_file()


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _all_ok(ok: bool) -> bool:
    """True when every rank reports ``ok`` (so all ranks agree whether to publish the checkpoint)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return ok
    flag = torch.tensor([0 if ok else 1], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag)
    return int(flag.item()) == 0
