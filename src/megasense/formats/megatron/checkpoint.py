"""Megatron-LM checkpoints (``torch`` format) -> megasense, and back: files, shards and pipeline stages.

A checkpoint root holds ``latest_checkpointed_iteration.txt`` (``release`` or a number) and
``release/`` or ``iter_0000100/``; each of those holds one ``mp_rank_XX/model_optim_rng.pt`` per
tensor-parallel rank, or ``mp_rank_XX_YYY/`` per (tensor, pipeline) rank. Names and tensor layouts
live in ``megatron_keys``, args <-> config in ``megatron_args``, tokenizers in ``megatron_vocab``; this
module reads and writes the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from megasense.config import ConfigError, HeadConfig, ModelConfig
from megasense.errors import CheckpointError
from megasense.files.atomic import atomic_directory
from megasense.formats.megatron import args as margs
from megasense.formats.megatron import keys, vocab
from megasense.formats.torch_load import safe_torch_load
from megasense.formats.types import ImportedModel
from megasense.models import build_model

StateDict = dict[str, torch.Tensor]
_RANK_DIR = re.compile(r"^mp_rank_(\d{2})(?:_(\d{3}))?$")
_VERSIONS = (0.0, 1.0, 2.0, 3.0)


@dataclass
class _Shard:
    """What one ``model_optim_rng.pt`` contributes: its model chunks (one per virtual stage) and metadata."""

    path: Path
    chunks: list[dict[str, object]]
    args: object
    version: float
    iteration: int | None


@dataclass
class _Layout:
    root: Path
    files: dict[tuple[int, int], Path]
    """(tensor rank, pipeline rank) -> file."""
    notes: list[str] = field(default_factory=list)

    @property
    def tp(self) -> int:
        return 1 + max(t for t, _ in self.files)

    @property
    def pp(self) -> int:
        return 1 + max(p for _, p in self.files)


# ---------------------------------------------------------------------------------------------
# Finding the files
# ---------------------------------------------------------------------------------------------
def _iteration_dir(root: Path) -> tuple[Path, list[str]]:
    tracker = root / "latest_checkpointed_iteration.txt"
    if tracker.is_file():
        text = tracker.read_text(encoding="utf-8", errors="replace").strip()
        if text == "release":
            target = root / "release"
        elif text.isdigit():
            target = root / f"iter_{int(text):07d}"
        else:
            raise CheckpointError(tracker, f"holds {text[:40]!r}; expected 'release' or an iteration number")
        if not target.is_dir():
            raise CheckpointError(tracker, f"points to {target.name}/, which does not exist in {root}")
        return target, []
    if (root / "release").is_dir():
        return root / "release", []
    iters = sorted(p for p in root.glob("iter_*") if p.is_dir() and p.name[5:].isdigit())
    if iters:
        note = f"no latest_checkpointed_iteration.txt in {root}; read the newest, {iters[-1].name}"
        return iters[-1], [note] if len(iters) > 1 else []
    return root, []


def _find_layout(path: Path) -> _Layout:
    if path.is_file():
        return _Layout(root=path, files={(0, 0): path})
    if not path.is_dir():
        raise CheckpointError(path, "does not exist")
    if (path / "model_optim_rng.pt").is_file():  # the user passed one mp_rank_XX directory
        return _Layout(root=path, files={(0, 0): path / "model_optim_rng.pt"})
    directory, notes = _iteration_dir(path)
    if (directory / ".metadata").is_file() or any(directory.glob("*.distcp")):
        raise CheckpointError(
            directory,
            "is a distributed checkpoint (--ckpt-format torch_dist); megasense reads the 'torch' format "
            "(mp_rank_XX/model_optim_rng.pt). Convert it with Megatron-LM's tools/checkpoint/convert.py "
            "or by loading and saving once with --ckpt-format torch",
        )
    files: dict[tuple[int, int], Path] = {}
    for sub in sorted(directory.iterdir()) if directory.is_dir() else []:
        match = _RANK_DIR.match(sub.name)
        if not match or not sub.is_dir():
            continue
        candidates = (
            [sub / "model_optim_rng.pt"] if (sub / "model_optim_rng.pt").is_file() else sorted(sub.glob("*.pt"))
        )
        if len(candidates) != 1:
            found = ", ".join(c.name for c in candidates) or "no .pt file"
            raise CheckpointError(sub, f"expected one model_optim_rng.pt, found {found}")
        files[(int(match.group(1)), int(match.group(2) or 0))] = candidates[0]
    if not files:
        if directory.is_dir() and not any(directory.iterdir()):
            raise CheckpointError(directory, "is an empty directory")
        raise CheckpointError(
            directory,
            "holds no Megatron-LM checkpoint: expected latest_checkpointed_iteration.txt, release/ or "
            "iter_NNNNNNN/, and mp_rank_XX/model_optim_rng.pt inside",
        )
    layout = _Layout(root=path, files=files, notes=notes)
    for t in range(layout.tp):
        for p in range(layout.pp):
            if (t, p) not in files:
                name = f"mp_rank_{t:02d}" + (f"_{p:03d}" if layout.pp > 1 else "")
                raise CheckpointError(directory / name, "is missing: a tensor/pipeline-parallel shard is absent")
    return layout


def _read_shard(path: Path) -> _Shard:
    obj = safe_torch_load(path)
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"holds a {type(obj).__name__}, expected Megatron-LM's checkpoint dict")
    if "model" in obj:
        chunks = [obj["model"]]
    elif "model0" in obj:
        chunks = [obj[f"model{i}"] for i in range(sum(1 for k in obj if re.fullmatch(r"model\d+", str(k))))]
    elif "module" in obj:  # Megatron-DeepSpeed wraps the same dict in 'module'
        chunks = [obj["module"]]
    else:
        raise CheckpointError(path, f"has no 'model' entry (keys: {sorted(map(str, obj))[:12]})")
    if not all(isinstance(c, dict) for c in chunks):
        raise CheckpointError(path, "its 'model' entry is not a dict of tensors")
    if obj.get("args") is None:
        raise CheckpointError(
            path, "has no 'args'; megasense needs the training arguments (num_attention_heads, ...) stored there"
        )
    version = float(obj.get("checkpoint_version", 0) or 0)
    if version not in _VERSIONS:
        raise CheckpointError(path, f"checkpoint_version={version} is not one megasense knows (0, 1, 2 or 3)")
    return _Shard(
        path=path, chunks=[keys.flatten(c) for c in chunks], args=obj["args"], version=version,
        iteration=obj.get("iteration"),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def _canonical_chunk(shard: _Shard, chunk: dict[str, object]) -> dict[str, tuple[str, torch.Tensor]]:
    """Canonical name -> (the name in the file, tensor), without entries that hold no weights."""
    out: dict[str, tuple[str, torch.Tensor]] = {}
    for key, value in chunk.items():
        name = keys.canonical_name(key)
        if name is None or value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(shard.path, f"model entry {key!r} is a {type(value).__name__}, not a tensor")
        out[name] = (key, value)
    return out


def _gather(layout: _Layout, shards: dict[tuple[int, int], _Shard]) -> tuple[dict[str, list[torch.Tensor]], dict]:
    """Canonical name (global layer numbers) -> its per-tensor-rank shards, over all pipeline stages;
    and canonical name -> (file, name in the file), for messages."""
    merged: dict[str, list[torch.Tensor]] = {}
    origin: dict[str, tuple[Path, str]] = {}
    offset = 0
    for vp in range(len(shards[(0, 0)].chunks)):
        for pp in range(layout.pp):
            per_rank = [_canonical_chunk(shards[(t, pp)], shards[(t, pp)].chunks[vp]) for t in range(layout.tp)]
            layers = {keys.layer_index(k) for k in per_rank[0]} - {None}
            for t, chunk in enumerate(per_rank):
                if set(chunk) != set(per_rank[0]):
                    odd = sorted(set(chunk) ^ set(per_rank[0]))[:5]
                    raise CheckpointError(shards[(t, pp)].path, f"holds different tensors than rank 0: {odd}")
                for name, (key, tensor) in chunk.items():
                    global_name = keys.shift_layer(name, offset)
                    merged.setdefault(global_name, []).append(tensor)
                    origin.setdefault(global_name, (shards[(t, pp)].path, key))
            offset += 1 + max(layers) if layers else 0
    return merged, origin


def _to_ours(merged: dict[str, list[torch.Tensor]], origin: dict, facts: margs.Facts) -> StateDict:
    out: StateDict = {}
    unknown = [name for name in merged if keys.ours_for(name) is None]
    if unknown:
        file = origin[unknown[0]][0]
        names = sorted(origin[n][1] for n in unknown if origin[n][0] == file)
        raise CheckpointError(file, f"{len(names)} tensors have no place in a megasense model: {names[:8]}")
    for name, shards in merged.items():
        ours, how = keys.ours_for(name)
        if how == "qkv":
            shards = [facts.check_qkv(origin[name][1], s, origin[name][0]) for s in shards]
        out.update(keys.join(ours, how, shards, swiglu=facts.swiglu))
    if facts.layernorm_1p:  # Megatron's --apply-layernorm-1p stores gamma - 1
        for name in out:
            if name.endswith("layernorm.weight"):
                out[name] = out[name] + 1
    return out


def _check_against_model(config: ModelConfig, head: HeadConfig, state: StateDict, source: Path, what: str) -> None:
    with torch.device("meta"):
        model = build_model(config, head)
    tied = set(model.tied_parameters())
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in tied}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    if missing or extra or wrong:
        parts = [f"missing {missing[:6]}" if missing else "", f"unexpected {extra[:6]}" if extra else "",
                 f"wrong shapes {wrong[:4]}" if wrong else ""]  # fmt: skip
        raise CheckpointError(source, f"{what}: " + "; ".join(p for p in parts if p))


def read_megatron(
    path: str | Path, *, vocab_file: str | Path | None = None, merges_file: str | Path | None = None, name: str = ""
) -> ImportedModel:
    """Read a Megatron-LM BERT or GPT checkpoint (any tensor/pipeline split) into megasense's layout.

    ``path`` is a checkpoint root, an ``iter_*``/``release`` directory, or one ``.pt`` file.
    ``vocab_file`` (a WordPiece ``vocab.txt``, or GPT-2's ``vocab.json`` with ``merges_file``) gives
    the real vocabulary size and a tokenizer; without it, ``vocab.txt``/``vocab.json`` beside the
    checkpoint are used if present, else the padded size stands in and there is no tokenizer.
    """
    path = Path(path)
    layout = _find_layout(path)
    shards = {rank: _read_shard(file) for rank, file in sorted(layout.files.items())}
    first = shards[(0, 0)]
    facts = margs.Facts.from_args(first.args, first.path, version=first.version)
    facts.check_parallel(layout.tp, layout.pp, single_file=path.is_file() or layout.files[(0, 0)].parent == path)
    state = _to_ours(*_gather(layout, shards), facts)
    vocab_file, merges_file, vocab_notes = vocab.find_vocab_files(layout.root, vocab_file, merges_file)
    tokenizer, vocab_size, tok_notes = vocab.build_tokenizer(facts.args, vocab_file, merges_file)
    try:
        config, head, notes = facts.model_config(state, name=name or _model_name(layout.root), vocab_size=vocab_size)
    except ConfigError as exc:
        raise CheckpointError(first.path, str(exc)) from None
    _check_against_model(config, head, state, first.path, "does not match the model its args describe")
    notes = [*layout.notes, *vocab_notes, *tok_notes, *notes]
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in state.values()})
    if dtypes != ["float32"]:
        notes.append(f"weights are stored as {', '.join(dtypes)}")
    if first.iteration is not None:
        notes.append(f"Megatron-LM iteration {first.iteration}, checkpoint_version {first.version:g}")
    return ImportedModel(
        config=config, head=head, state_dict=state, tokenizer=tokenizer, source=str(path), notes=notes
    )  # fmt: skip


def _model_name(root: Path) -> str:
    if root.is_file():
        root = root.parent
    while root.name == "release" or _RANK_DIR.match(root.name) or re.fullmatch(r"iter_\d+", root.name):
        root = root.parent
    return root.name or "megatron"


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
def _nest(path: str) -> list[str]:
    """Megatron's nesting: ``model['language_model']['embedding']['word_embeddings']['weight']``."""
    parts = path.split(".")
    if parts[0] == "language_model":
        if parts[1] == "embedding":
            return [*parts[:3], ".".join(parts[3:])]
        return [*parts[:2], ".".join(parts[2:])]
    return [parts[0], ".".join(parts[1:])]


def _put(tree: dict, path: list[str], value: torch.Tensor) -> None:
    for level in path[:-1]:
        tree = tree.setdefault(level, {})
    tree[path[-1]] = value


def _shard_trees(config: ModelConfig, state: StateDict, tp: int) -> list[dict]:
    trees: list[dict] = [{} for _ in range(tp)]
    for name, tensor in state.items():
        if ".dense_h_to_4h_gate." in name:
            continue  # travels inside dense_h_to_4h, as Megatron fuses it
        gate = state.get(name.replace(".dense_h_to_4h.", ".dense_h_to_4h_gate.")) if ".dense_h_to_4h." in name else None
        for rank, part in enumerate(keys.cut(name, tensor, tp, gate=gate)):
            _put(trees[rank], _nest(keys.megatron_name(name)), part)
    return trees


def write_megatron(
    config: ModelConfig,
    head: HeadConfig,
    state_dict: StateDict,
    directory: str | Path,
    *,
    tp: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write a Megatron-LM ``torch``-format checkpoint: ``release/mp_rank_XX/model_optim_rng.pt`` x ``tp``.

    The layout is Megatron-LM's legacy model (checkpoint_version 3): what its ``load_checkpoint``,
    ``tools/checkpoint/convert.py --loader legacy`` and transformers' conversion scripts read. Llama-
    style models (RoPE, RMSNorm, SwiGLU, grouped-query attention) are written the same way, with each
    rank's ``dense_h_to_4h`` holding ``[gate_r; up_r]`` as Megatron fuses them.
    """
    directory = Path(directory)
    try:
        args = margs.args_for(config, head, tp=tp, dtype=next(iter(state_dict.values())).dtype)
    except ConfigError as exc:
        raise CheckpointError(directory, f"cannot export to Megatron-LM: {exc}") from None
    with torch.device("meta"):
        model = build_model(config, head)
    tied = set(model.tied_parameters())
    state = {k: v for k, v in state_dict.items() if k not in tied}
    _check_against_model(config, head, state, directory, "the state dict does not match the config")
    trees = _shard_trees(config, state, tp)
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        (tmp / "latest_checkpointed_iteration.txt").write_text("release", encoding="utf-8")
        for rank, tree in enumerate(trees):
            shard_dir = tmp / "release" / f"mp_rank_{rank:02d}"
            shard_dir.mkdir(parents=True)
            payload = {"args": args, "checkpoint_version": 3.0, "iteration": 0, "model": tree}
            torch.save(payload, shard_dir / "model_optim_rng.pt")
    return directory
