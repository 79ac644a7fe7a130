"""GGUF files (llama.cpp's format) -> megasense: Llama and GPT-2 weights, dequantised, plus the tokenizer.

The ``gguf`` package parses the file and dequantises every tensor type it knows (Q4_0 ... Q8_0, the
K-quants, F16, BF16) with numpy, one vectorised call per tensor. What this module adds is the
mapping: llama.cpp's tensor names and metadata keys onto megasense's config and Megatron layout,
undoing the two conventions llama.cpp's converter imposes on the way in:

- GGUF lists dimensions innermost first (``ne``); the reader's arrays are already (rows, columns),
  i.e. torch's ``(out_features, in_features)``, and ``_torch_shape`` reverses ``ne`` to check them.
- ``convert_hf_to_gguf.py`` permutes the rows of Llama's Q and K projections so that ggml's
  interleaved ("GPT-J") rotary applies; ``_unpermute`` restores Hugging Face's rotate-half order.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from megasense.config import ConfigError, HeadConfig, ModelConfig
from megasense.errors import CheckpointError
from megasense.formats.qkv import fuse_qkv, pad_rows
from megasense.formats.types import ImportedModel

StateDict = dict[str, torch.Tensor]

_MAGIC = b"GGUF"
_ARCHITECTURES = ("llama", "gpt2")

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED = 1, 2, 3, 4

# How each ``tokenizer.ggml.pre`` splits text before BPE (llama-vocab.cpp's regex_exprs). "smollm",
# StarCoder's and a few others isolate every digit (\p{N}) and then apply GPT-2's regex, which is
# Digits(individual_digits=True) + ByteLevel here. transformers' GGUF converter does not know
# "smollm" and uses GPT-2's split alone, which differs on runs of spaces before a digit
# ("x   5": llama.cpp and we give x|ĠĠĠ|5, transformers x|ĠĠ|Ġ|5). Llama 3's and Qwen 2's are one regex.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT2_PRE = ("gpt2", "default", "gpt-2")
_DIGIT_PRE = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva")
_REGEX_PRE = {"llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT}


def read_gguf(path: str | Path, *, name: str = "") -> ImportedModel:
    """Read a Llama or GPT-2 GGUF file: config from its metadata, float32 weights, its BPE tokenizer."""
    path = Path(path)
    reader = _open(path)
    meta = _Metadata(reader, path)
    arch = meta.get("general.architecture")
    if arch not in _ARCHITECTURES:
        raise CheckpointError(
            path, f"general.architecture={arch!r} is not supported; megasense reads {' and '.join(_ARCHITECTURES)}"
        )
    tensors, types = _dequantise(reader, path)
    build_config, build_state = (_llama_config, _llama_state) if arch == "llama" else (_gpt2_config, _gpt2_state)
    try:
        config = build_config(meta, tensors, name or path.stem)
    except ConfigError as exc:
        raise CheckpointError(path, f"the metadata describes a model megasense cannot build: {exc}") from None
    state = build_state(tensors, config, path)
    if tensors:
        raise CheckpointError(path, f"{len(tensors)} tensors have no place in a {arch} model: {sorted(tensors)[:10]}")
    tokenizer, notes = _tokenizer(meta, config)
    notes.insert(0, _quant_note(types))
    if meta.get("general.name"):
        notes.append(f"GGUF general.name: {meta.get('general.name')}")
    return ImportedModel(
        config=config,
        head=HeadConfig(task="causal_lm"),
        state_dict=state,
        tokenizer=tokenizer,
        source=str(path),
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------
# The file: header checks, metadata, tensors
# ---------------------------------------------------------------------------------------------
def _open(path: Path):
    import gguf

    if not path.is_file():
        raise CheckpointError(path, "is not a file" if path.exists() else "does not exist")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != _MAGIC:
        raise CheckpointError(path, f"is not a GGUF file: it starts with {magic!r}, a GGUF file with {_MAGIC!r}")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError/IndexError/struct.error on damaged files
        raise CheckpointError(path, f"is truncated or corrupt: the GGUF reader failed with {exc}") from None
    size = path.stat().st_size
    for t in reader.tensors:
        end = int(t.data_offset) + int(t.n_bytes)
        if end > size:
            raise CheckpointError(path, f"is truncated: tensor {t.name} ends at byte {end}, the file has {size}")
    return reader


class _Metadata:
    """Typed access to the key/value section, with errors that name the key."""

    def __init__(self, reader, path: Path) -> None:
        self.fields, self.path = reader.fields, path

    def get(self, key: str, default: Any = None) -> Any:
        field = self.fields.get(key)
        if field is None:
            return default
        try:
            return field.contents()
        except Exception as exc:
            raise CheckpointError(self.path, f"metadata {key} cannot be read ({exc})") from None

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.get(key, default)
        if isinstance(value, list):
            if len(set(value)) != 1:
                raise CheckpointError(self.path, f"{key}={value} varies per layer, which megasense does not support")
            value = value[0]
        if value is None:
            raise CheckpointError(self.path, f"metadata key {key} is missing")
        return int(value)

    def number(self, key: str, default: float) -> float:
        return float(self.get(key, default))


def _dequantise(reader, path: Path) -> tuple[StateDict, Counter]:
    """Every tensor as float32 in torch's (out, in) layout, and a count of the stored types."""
    from gguf.quants import dequantize

    out: StateDict = {}
    types: Counter = Counter()
    for t in reader.tensors:
        qtype = t.tensor_type
        try:
            array = dequantize(t.data.view(np.ndarray), qtype)  # a plain view: memmap slicing is slow
        except NotImplementedError:
            raise CheckpointError(
                path, f"tensor {t.name} is stored as {qtype.name}, which the gguf package cannot dequantise"
            ) from None
        shape = _torch_shape(t.shape)
        if array.size != int(np.prod(shape)):
            raise CheckpointError(path, f"tensor {t.name}: {array.size} values for shape {shape}; the file is damaged")
        array = array.reshape(shape).astype(np.float32, copy=False)
        if not array.flags.writeable:  # F32 tensors come back as views of the read-only memory map
            array = array.copy()
        out[t.name] = torch.from_numpy(array)
        types[qtype.name] += 1
    return out, types


def _torch_shape(ne) -> tuple[int, ...]:
    return tuple(int(n) for n in reversed(list(ne)))


def _quant_note(types: Counter) -> str:
    counts = ", ".join(f"{k} x{v}" for k, v in types.most_common())
    quantised = [k for k, _ in types.most_common() if k not in ("F32", "F16", "BF16", "F64")]
    if not quantised:
        return f"read from a {types.most_common(1)[0][0]} GGUF file ({counts}), stored as float32"
    return f"dequantised from {quantised[0]} GGUF to float32 (tensor types: {counts})"


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------
def _vocab_size(meta: _Metadata, arch: str, tensors: StateDict) -> int:
    if "token_embd.weight" not in tensors:
        raise CheckpointError(meta.path, "tensor token_embd.weight is missing")
    rows = tensors["token_embd.weight"].shape[0]
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = len(tokens) if tokens else meta.integer(f"{arch}.vocab_size", rows)
    if rows != vocab:
        raise CheckpointError(meta.path, f"token_embd.weight has {rows} rows but the tokenizer lists {vocab} tokens")
    return vocab


def _tied(tensors: StateDict) -> bool:
    """No output matrix, or one identical to the embedding (llama.cpp's GPT-2 converter writes a copy)."""
    out = tensors.get("output.weight")
    return out is None or torch.equal(out, tensors["token_embd.weight"])


def _llama_config(meta: _Metadata, tensors: StateDict, name: str) -> ModelConfig:
    p = "llama."
    if meta.integer(p + "expert_count", 0) > 0:
        raise CheckpointError(meta.path, "mixture-of-experts Llama files (llama.expert_count > 0) are not supported")
    scaling, factor = meta.get(p + "rope.scaling.type", "none"), meta.number(p + "rope.scaling.factor", 1.0)
    if scaling not in ("none", "linear") or (scaling == "linear" and factor != 1.0):
        raise CheckpointError(meta.path, f"rope scaling {scaling!r} is not supported; only plain rotary embeddings are")
    if "rope_freqs.weight" in tensors:
        raise CheckpointError(meta.path, "rope_freqs.weight (Llama 3.1 frequency scaling) is not supported")
    hidden, heads = meta.integer(p + "embedding_length"), meta.integer(p + "attention.head_count")
    head_dim = meta.integer(p + "attention.key_length", hidden // heads)
    if meta.integer(p + "attention.value_length", head_dim) != head_dim:
        raise CheckpointError(meta.path, "attention.value_length differs from key_length; megasense needs them equal")
    rope_dim = meta.integer(p + "rope.dimension_count", head_dim)
    if rope_dim != head_dim:
        raise CheckpointError(
            meta.path, f"rope.dimension_count={rope_dim} < head size {head_dim}: partial rotary is not supported"
        )
    return ModelConfig(
        arch="gpt",
        name=name,
        vocab_size=_vocab_size(meta, "llama", tensors),
        hidden_size=hidden,
        num_layers=meta.integer(p + "block_count"),
        num_attention_heads=heads,
        num_query_groups=meta.integer(p + "attention.head_count_kv", heads),
        kv_channels=head_dim if head_dim != hidden // heads else None,
        ffn_hidden_size=meta.integer(p + "feed_forward_length"),
        max_position_embeddings=meta.integer(p + "context_length", 2048),
        position_embedding="rope",
        rotary_base=meta.number(p + "rope.freq_base", 10000.0),
        normalization="rmsnorm",
        norm_eps=meta.number(p + "attention.layer_norm_rms_epsilon", 1e-5),
        activation="swiglu",
        add_bias_linear=False,
        add_qkv_bias=False,
        tie_word_embeddings=_tied(tensors),
        hidden_dropout=0.0,
        attention_dropout=0.0,
        extra={"source_format": "gguf", "gguf_architecture": "llama"},
    )


def _gpt2_config(meta: _Metadata, tensors: StateDict, name: str) -> ModelConfig:
    p = "gpt2."
    return ModelConfig(
        arch="gpt",
        name=name,
        vocab_size=_vocab_size(meta, "gpt2", tensors),
        hidden_size=meta.integer(p + "embedding_length"),
        num_layers=meta.integer(p + "block_count"),
        num_attention_heads=meta.integer(p + "attention.head_count"),
        ffn_hidden_size=meta.integer(p + "feed_forward_length"),
        max_position_embeddings=meta.integer(p + "context_length"),
        norm_eps=meta.number(p + "attention.layer_norm_epsilon", 1e-5),
        activation="gelu_tanh",
        tie_word_embeddings=_tied(tensors),
        extra={"source_format": "gguf", "gguf_architecture": "gpt2"},
    )


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------
def _take(tensors: StateDict, key: str, shape: tuple[int, ...], path: Path) -> torch.Tensor:
    if key not in tensors:
        raise CheckpointError(path, f"tensor {key} is missing")
    t = tensors.pop(key)
    if tuple(t.shape) != shape:
        raise CheckpointError(path, f"tensor {key} has shape {tuple(t.shape)}, the metadata implies {shape}")
    return t


def _unpermute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo convert_hf_to_gguf's ``permute``, which reorders each head's rows (2, d/2) -> (d/2, 2)."""
    d = w.shape[0] // n_heads
    return w.reshape(n_heads, d // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _llama_state(t: StateDict, cfg: ModelConfig, path: Path) -> StateDict:
    V, H, F, D = cfg.vocab_size, cfg.hidden_size, cfg.ffn_size, cfg.head_dim
    heads, groups = cfg.num_attention_heads, cfg.query_groups
    out: StateDict = {
        "embedding.word_embeddings.weight": pad_rows(_take(t, "token_embd.weight", (V, H), path), cfg.padded_vocab_size)
    }
    for i in range(cfg.num_layers):
        src, dst = f"blk.{i}.", f"layers.{i}."
        q = _unpermute(_take(t, src + "attn_q.weight", (heads * D, H), path), heads)
        k = _unpermute(_take(t, src + "attn_k.weight", (groups * D, H), path), groups)
        v = _take(t, src + "attn_v.weight", (groups * D, H), path)
        out[dst + "self_attention.linear_qkv.weight"] = fuse_qkv(q, k, v, num_heads=heads, num_groups=groups)
        out[dst + "self_attention.dense.weight"] = _take(t, src + "attn_output.weight", (H, heads * D), path)
        out[dst + "mlp.dense_h_to_4h_gate.weight"] = _take(t, src + "ffn_gate.weight", (F, H), path)
        out[dst + "mlp.dense_h_to_4h.weight"] = _take(t, src + "ffn_up.weight", (F, H), path)
        out[dst + "mlp.dense_4h_to_h.weight"] = _take(t, src + "ffn_down.weight", (H, F), path)
        out[dst + "input_layernorm.weight"] = _take(t, src + "attn_norm.weight", (H,), path)
        out[dst + "post_attention_layernorm.weight"] = _take(t, src + "ffn_norm.weight", (H,), path)
    out["final_layernorm.weight"] = _take(t, "output_norm.weight", (H,), path)
    if not cfg.tie_word_embeddings:
        out["output_layer.weight"] = pad_rows(_take(t, "output.weight", (V, H), path), cfg.padded_vocab_size)
    t.pop("output.weight", None)  # tied: at most a copy of token_embd (see _tied)
    return out


def _gpt2_state(t: StateDict, cfg: ModelConfig, path: Path) -> StateDict:
    V, H, F, P = cfg.vocab_size, cfg.hidden_size, cfg.ffn_size, cfg.max_position_embeddings
    n = dict(num_heads=cfg.num_attention_heads, num_groups=cfg.query_groups)
    out: StateDict = {
        "embedding.word_embeddings.weight": pad_rows(
            _take(t, "token_embd.weight", (V, H), path), cfg.padded_vocab_size
        ),
        "embedding.position_embeddings.weight": _take(t, "position_embd.weight", (P, H), path),
    }
    for i in range(cfg.num_layers):
        src, dst = f"blk.{i}.", f"layers.{i}."
        w, b = _take(t, src + "attn_qkv.weight", (3 * H, H), path), _take(t, src + "attn_qkv.bias", (3 * H,), path)
        out[dst + "self_attention.linear_qkv.weight"] = fuse_qkv(w[:H], w[H : 2 * H], w[2 * H :], **n)
        out[dst + "self_attention.linear_qkv.bias"] = fuse_qkv(b[:H], b[H : 2 * H], b[2 * H :], **n)
        for ours, theirs, shape in (
            ("self_attention.dense", "attn_output", (H, H)),
            ("mlp.dense_h_to_4h", "ffn_up", (F, H)),
            ("mlp.dense_4h_to_h", "ffn_down", (H, F)),
        ):
            out[f"{dst}{ours}.weight"] = _take(t, f"{src}{theirs}.weight", shape, path)
            out[f"{dst}{ours}.bias"] = _take(t, f"{src}{theirs}.bias", shape[:1], path)
        for p in ("weight", "bias"):
            out[f"{dst}input_layernorm.{p}"] = _take(t, f"{src}attn_norm.{p}", (H,), path)
            out[f"{dst}post_attention_layernorm.{p}"] = _take(t, f"{src}ffn_norm.{p}", (H,), path)
    for p in ("weight", "bias"):
        out[f"final_layernorm.{p}"] = _take(t, f"output_norm.{p}", (H,), path)
    if not cfg.tie_word_embeddings:
        out["output_layer.weight"] = pad_rows(_take(t, "output.weight", (V, H), path), cfg.padded_vocab_size)
    t.pop("output.weight", None)  # tied: at most a copy of token_embd (see _tied)
    return out


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------
def _tokenizer(meta: _Metadata, cfg: ModelConfig):
    """The byte-level BPE tokenizer the metadata describes, and notes; (None, [why]) for other kinds."""
    model = meta.get("tokenizer.ggml.model")
    if model is None:
        return None, [f"{meta.path.name} carries no tokenizer; pass one separately"]
    if model != "gpt2":
        return None, [f"tokenizer.ggml.model={model!r} is not supported (only 'gpt2' byte-level BPE); pass a tokenizer"]
    import tokenizers
    from tokenizers import AddedToken, decoders, models, processors

    from megasense.tokenization import SpecialTokens, Tokenizer, TokenizerError

    tokens: list[str] = meta.get("tokenizer.ggml.tokens")
    types: list[int] = meta.get("tokenizer.ggml.token_type") or [_NORMAL] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges") or []]
    if len(types) != len(tokens) or any(len(m) != 2 for m in merges):
        raise CheckpointError(meta.path, "tokenizer.ggml.token_type or merges do not match the token list")
    keys = _byte_level_spelling(tokens, types)
    backend = tokenizers.Tokenizer(models.BPE(vocab={k: i for i, k in enumerate(keys)}, merges=merges))
    pre, notes = _pre_tokenizer(meta.get("tokenizer.ggml.pre"))
    backend.pre_tokenizer = pre
    backend.decoder = decoders.ByteLevel()
    # Control tokens (<|im_start|>) and user-defined ones are matched whole, before BPE, as llama.cpp does.
    backend.add_special_tokens(
        [AddedToken(k, special=True, normalized=False) for k, ty in zip(keys, types) if ty in (_CONTROL, _UNKNOWN)]
    )
    backend.add_tokens(
        [AddedToken(k, special=False, normalized=False) for k, ty in zip(keys, types) if ty == _USER_DEFINED]
    )

    def special(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}")
        if index is None:
            return None
        if not 0 <= int(index) < len(keys):
            raise CheckpointError(
                meta.path, f"tokenizer.ggml.{key}={index} is outside the {len(keys)}-token vocabulary"
            )
        return keys[int(index)]

    specials = SpecialTokens(
        bos=special("bos_token_id"),
        eos=special("eos_token_id"),
        unk=special("unknown_token_id"),
        pad=special("padding_token_id"),
    )
    backend.post_processor = _post_processor(specials, meta, processors)
    try:
        tokenizer = Tokenizer(
            backend,
            kind="bpe",
            special=specials,
            model_max_length=cfg.max_position_embeddings,
            chat_template=meta.get("tokenizer.chat_template"),
        )
    except TokenizerError as exc:
        raise CheckpointError(meta.path, f"the tokenizer metadata is unusable: {exc}") from None
    return tokenizer, notes


def _byte_level_spelling(tokens: list[str], types: list[int]) -> list[str]:
    """Tokens as byte-level BPE spells them; a normal token written in plain text gets respelled.

    Control and user-defined tokens keep their text: they are matched whole, never built by merges.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = set(ByteLevel.alphabet())
    spelling = _bytes_to_unicode()
    return [
        tok if ty != _NORMAL or set(tok) <= alphabet else "".join(spelling[b] for b in tok.encode("utf-8"))
        for tok, ty in zip(tokens, types)
    ]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def _pre_tokenizer(pre: str | None):
    from tokenizers import Regex, pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _DIGIT_PRE:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level]), []
    if pre in _REGEX_PRE:
        split = pre_tokenizers.Split(Regex(_REGEX_PRE[pre]), behavior="isolated")
        return pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), []
    notes = (
        []
        if pre in (*_GPT2_PRE, None)
        else [f"tokenizer.ggml.pre={pre!r} is not known to megasense; GPT-2's split is used, so some ids may differ"]
    )
    return byte_level, notes


def _post_processor(specials, meta: _Metadata, processors):
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False)) and specials.bos is not None
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False)) and specials.eos is not None
    if not (add_bos or add_eos):
        return processors.ByteLevel(trim_offsets=False)
    bos, eos = [specials.bos] if add_bos else [], [specials.eos] if add_eos else []
    single = [*bos, "$A", *eos]
    used = {
        (t, int(meta.get(f"tokenizer.ggml.{k}_token_id")))
        for t, k, on in ((specials.bos, "bos", add_bos), (specials.eos, "eos", add_eos))
        if on
    }
    return processors.TemplateProcessing(
        single=" ".join(single), pair=" ".join([*single, *bos, "$B:1", *eos]), special_tokens=sorted(used)
    )
