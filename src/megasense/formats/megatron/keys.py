"""Megatron-LM parameter names and tensor-parallel layouts <-> megasense's: pure functions on tensors.

Megatron-LM has saved the same model under several names: ``transformer`` (2020) then ``encoder``,
``attention`` then ``self_attention``, ``*_layernorm`` then ``*_norm`` (2023), and Megatron-Core's flat
``decoder.layers.N.self_attention.linear_qkv`` names. :func:`canonical_name` rewrites all of them to
one form; :data:`_TABLE` maps that form to megasense's name and says how tensor-parallel shards join:

- ``col``: column-parallel (output features split): QKV, ``dense_h_to_4h``, embeddings, output layer,
  the LM-head bias -- concatenate on dim 0;
- ``row``: row-parallel (input features split): ``dense``, ``dense_4h_to_h`` -- concatenate on dim 1;
- ``rep``: replicated on every rank (norms, row-parallel biases, positions, pooler) -- take rank 0.

The fused QKV rows of each rank hold whole heads, ordered by checkpoint version (see
:func:`qkv_to_current`); a SwiGLU ``dense_h_to_4h`` holds ``[gate; up]`` per rank.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

StateDict = dict[str, torch.Tensor]

# Rewrites applied in order; the result is the legacy 2023 naming without the ``language_model.`` level.
_REWRITES: tuple[tuple[re.Pattern, str], ...] = tuple(
    (re.compile(pattern), repl)
    for pattern, repl in (
        (r"^language_model\.", ""),
        (r"^(transformer|decoder)\.", "encoder."),
        (r"\.attention\.", ".self_attention."),
        (r"\.self_attention\.linear_qkv\.layer_norm_(weight|bias)$", r".input_norm.\1"),  # Transformer Engine
        (r"\.mlp\.linear_fc1\.layer_norm_(weight|bias)$", r".post_attention_norm.\1"),
        (r"layer_?norm", "norm"),
        (r"\.pre_mlp_norm\.", ".post_attention_norm."),
        (r"\.linear_qkv\.", ".query_key_value."),
        (r"\.linear_proj\.", ".dense."),
        (r"\.linear_fc1\.", ".dense_h_to_4h."),
        (r"\.linear_fc2\.", ".dense_4h_to_h."),
        (r"^output_layer\.bias$", "lm_head.bias"),  # Megatron-Core BERT: the tied output layer's bias
    )
)

# Tensors that carry no weights: Transformer Engine's FP8 metadata, rotary tables, tied copies.
_IGNORED = re.compile(r"(_extra_state|inv_freq)$|^word_embeddings_for_head\.weight$")

_LAYER = r"encoder\.layers\.(?P<layer>\d+)\."
_TABLE: tuple[tuple[re.Pattern, str, str], ...] = tuple(
    (re.compile(f"^{pattern}$"), ours, how)
    for pattern, ours, how in (
        (r"embedding\.word_embeddings\.weight", "embedding.word_embeddings.weight", "col"),
        (r"embedding\.position_embeddings\.weight", "embedding.position_embeddings.weight", "rep"),
        (r"embedding\.tokentype_embeddings\.weight", "embedding.tokentype_embeddings.weight", "rep"),
        (_LAYER + r"input_norm\.(?P<p>weight|bias)", "input_layernorm", "rep"),
        (_LAYER + r"self_attention\.query_key_value\.(?P<p>weight|bias)", "self_attention.linear_qkv", "qkv"),
        (_LAYER + r"self_attention\.dense\.(?P<p>weight)", "self_attention.dense", "row"),
        (_LAYER + r"self_attention\.dense\.(?P<p>bias)", "self_attention.dense", "rep"),
        (_LAYER + r"post_attention_norm\.(?P<p>weight|bias)", "post_attention_layernorm", "rep"),
        (_LAYER + r"mlp\.dense_h_to_4h\.(?P<p>weight|bias)", "mlp.dense_h_to_4h", "fc1"),
        (_LAYER + r"mlp\.dense_4h_to_h\.(?P<p>weight)", "mlp.dense_4h_to_h", "row"),
        (_LAYER + r"mlp\.dense_4h_to_h\.(?P<p>bias)", "mlp.dense_4h_to_h", "rep"),
        (r"encoder\.final_norm\.(?P<p>weight|bias)", "final_layernorm", "rep"),
        (r"pooler\.dense\.(?P<p>weight|bias)", "pooler.dense", "rep"),
        (r"output_layer\.weight", "output_layer.weight", "col"),
        (r"lm_head\.dense\.(?P<p>weight|bias)", "lm_head.dense", "rep"),
        (r"lm_head\.norm\.(?P<p>weight|bias)", "lm_head.layernorm", "rep"),
        (r"lm_head\.bias", "lm_head.output_layer.bias", "col"),
        (r"binary_head\.(?P<p>weight|bias)", "binary_head", "rep"),
    )
)


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """Nested dicts (Megatron's ``model['language_model']['embedding']['word_embeddings']``) -> dotted keys."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def canonical_name(key: str) -> str | None:
    """The one spelling used below, or None for tensors that hold no weights."""
    for pattern, repl in _REWRITES:
        key = pattern.sub(repl, key)
    return None if _IGNORED.search(key) else key


def layer_index(canonical: str) -> int | None:
    match = re.match(_LAYER, canonical)
    return int(match.group("layer")) if match else None


def shift_layer(canonical: str, offset: int) -> str:
    """Renumber a stage-local layer key (pipeline stages count their layers from 0)."""
    index = layer_index(canonical)
    if index is None or offset == 0:
        return canonical
    return re.sub(r"^encoder\.layers\.\d+\.", f"encoder.layers.{index + offset}.", canonical)


def ours_for(canonical: str) -> tuple[str, str] | None:
    """(megasense name, how shards join) for a canonical Megatron name; None if it has no place."""
    for pattern, ours, how in _TABLE:
        match = pattern.match(canonical)
        if match is None:
            continue
        groups = match.groupdict()
        if "layer" in groups:
            return f"layers.{groups['layer']}.{ours}.{groups['p']}", how
        if "p" in groups:
            return f"{ours}.{groups['p']}", how
        return ours, how
    return None


def megatron_name(ours: str) -> str:
    """megasense name -> the nested path Megatron-LM's legacy models save (2021-2023 spelling).

    ``*_layernorm`` is written, not ``*_norm``: Megatron renames it on load since 2023, and older
    Megatron and transformers' conversion scripts only know that spelling.
    """
    match = re.match(r"^layers\.(\d+)\.(.+)$", ours)
    if match:
        rest = match.group(2).replace("linear_qkv", "query_key_value")
        return f"language_model.encoder.layers.{match.group(1)}.{rest}"
    fixed = {
        "embedding.word_embeddings.weight": "language_model.embedding.word_embeddings.weight",
        "embedding.position_embeddings.weight": "language_model.embedding.position_embeddings.weight",
        "embedding.tokentype_embeddings.weight": "language_model.embedding.tokentype_embeddings.weight",
        "output_layer.weight": "language_model.output_layer.weight",
        "lm_head.output_layer.bias": "lm_head.bias",
    }
    if ours in fixed:
        return fixed[ours]
    if ours.startswith("final_layernorm."):
        return "language_model.encoder." + ours
    if ours.startswith("pooler."):
        return "language_model." + ours
    return ours  # lm_head.dense.*, lm_head.layernorm.*, binary_head.*


def split_kind(ours: str) -> str:
    """How a megasense tensor is cut into tensor-parallel shards (the inverse of :data:`_TABLE`)."""
    found = ours_for(canonical_name(megatron_name(ours)) or "")
    if found is None:
        raise KeyError(ours)
    return found[1]


# ---------------------------------------------------------------------------------------------
# QKV row order by checkpoint version
# ---------------------------------------------------------------------------------------------
def qkv_to_current(t: torch.Tensor, version: float, *, heads: int) -> torch.Tensor:
    """One rank's fused QKV rows in ``version``'s order -> ``[heads, 3, head_dim]`` (versions 2 and 3).

    Version 0 stored ``[3, heads, head_dim]`` (all queries, then keys, then values); version 1.0
    ``[heads, head_dim, 3]``. ``heads`` is the number of heads on this rank.
    """
    if version >= 2:
        return t
    rest = t.shape[1:]
    head_dim = t.shape[0] // (3 * heads)
    if version == 0:
        return t.reshape(3, heads, head_dim, *rest).transpose(0, 1).reshape(t.shape).contiguous()
    return t.reshape(heads, head_dim, 3, *rest).transpose(1, 2).reshape(t.shape).contiguous()


# ---------------------------------------------------------------------------------------------
# Joining and cutting tensor-parallel shards
# ---------------------------------------------------------------------------------------------
def join(name: str, how: str, shards: Sequence[torch.Tensor], *, swiglu: bool) -> StateDict:
    """Merge one tensor's per-rank shards; a SwiGLU ``dense_h_to_4h`` yields the gate and up halves."""
    if how == "rep":
        return {name: shards[0]}
    if how == "row":
        return {name: torch.cat(list(shards), dim=1)}
    if how == "fc1" and swiglu:
        halves = [torch.chunk(s, 2, dim=0) for s in shards]  # per rank: [gate_r; up_r]
        gate = name.replace("dense_h_to_4h", "dense_h_to_4h_gate")
        return {gate: torch.cat([h[0] for h in halves]), name: torch.cat([h[1] for h in halves])}
    return {name: torch.cat(list(shards), dim=0)}


def _own(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if it owns its storage, else a copy: ``torch.save`` of a view writes the whole storage."""
    t = t.detach().contiguous()
    return t if t.untyped_storage().nbytes() == t.nbytes else t.clone()


def cut(name: str, tensor: torch.Tensor, tp: int, *, gate: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Cut one megasense tensor into ``tp`` Megatron shards; ``gate`` is the SwiGLU gate of a ``dense_h_to_4h``."""
    how = split_kind(name)
    if gate is not None:  # SwiGLU: Megatron keeps [gate_r; up_r] together on each rank
        pairs = zip(torch.chunk(gate.detach(), tp, dim=0), torch.chunk(tensor.detach(), tp, dim=0))
        return [torch.cat([g, u]) for g, u in pairs]
    if how == "rep":
        return [_own(tensor)] * tp
    return [_own(part) for part in torch.chunk(tensor.detach(), tp, dim=1 if how == "row" else 0)]
