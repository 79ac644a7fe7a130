"""Memory-mapped token files in Megatron-LM's indexed-dataset format (``PREFIX.bin`` + ``PREFIX.idx``).

Megatron's format rather than one of our own, so corpora tokenized here train in Megatron-LM and the
other way round. ``.bin`` is every token id back to back in one integer dtype; ``.idx`` is:

    b"MMIDIDX\\x00\\x00"            magic
    <Q  version (1)
    <B  dtype code (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16)
    <Q  number of sequences S
    <Q  number of document boundaries D (documents + 1)
    int32[S]  sequence lengths (tokens)
    int64[S]  sequence pointers (byte offset of each sequence in .bin)
    int64[D]  document indices (the sequence index where each document starts, then S)

A document is one sequence unless sentences were split into sequences of their own (BERT's
sentence-order objective). The writer streams tokens to disk and keeps only per-sequence lengths in
memory (4 bytes each), so a corpus larger than RAM tokenizes fine; both files are written to
temporary names and renamed into place when complete.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from megasense.errors import MegasenseInputError
from megasense.files.atomic import AtomicPath, AtomicWriter, atomic_file

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPES: dict[int, type[np.generic]] = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}
CODES = {np.dtype(v): k for k, v in DTYPES.items()}


class IndexedDatasetError(MegasenseInputError):
    """A token file is missing, truncated or not in the indexed-dataset format; the message names it."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """The smallest dtype that holds every id (uint16 for vocabularies up to 65,536, as Megatron does)."""
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.int32)


class IndexedDatasetWriter(AtomicWriter):
    """``add_document([ids, ...])`` per document; ``close()`` publishes ``PREFIX.bin`` and ``PREFIX.idx``."""

    def __init__(self, prefix: str | Path, *, dtype: np.dtype | type = np.uint16, overwrite: bool = False) -> None:
        self.prefix = Path(prefix)
        self.dtype = np.dtype(dtype)
        if self.dtype not in CODES:
            raise IndexedDatasetError(f"dtype {self.dtype} is not one the indexed-dataset format knows")
        self.bin_path, self.idx_path = self.prefix.with_suffix(".bin"), self.prefix.with_suffix(".idx")
        for path in (self.bin_path, self.idx_path):
            if path.exists() and not overwrite:
                raise IndexedDatasetError(f"{path}: already exists; pass --overwrite or choose another output prefix")
        self._bin_out = AtomicPath(self.bin_path)
        self._bin = open(self._bin_out.tmp, "wb")  # noqa: SIM115 -- closed in close() / abort()
        self._lengths = array("i")
        self._doc_index = array("q", [0])
        self._limit = np.iinfo(self.dtype).max if self.dtype.kind in "iu" else None
        self.tokens = 0

    def add_document(self, sequences: Sequence[Sequence[int]]) -> None:
        """One document made of one or more sequences (sentences); empty sequences are dropped."""
        for seq in sequences:
            if not len(seq):
                continue
            ids = np.asarray(seq, dtype=np.int64)
            if self._limit is not None and (ids.max() > self._limit or ids.min() < 0):
                raise IndexedDatasetError(f"token id {int(ids.max())} does not fit in {self.dtype}")
            self._bin.write(ids.astype(self.dtype).tobytes())
            self._lengths.append(len(ids))
            self.tokens += len(ids)
        if len(self._lengths) > self._doc_index[-1]:
            self._doc_index.append(len(self._lengths))

    @property
    def documents(self) -> int:
        return len(self._doc_index) - 1

    def close(self) -> None:
        self._bin.close()
        lengths = np.frombuffer(self._lengths, dtype=np.int32) if self._lengths else np.zeros(0, np.int32)
        pointers = np.zeros(len(lengths), dtype=np.int64)
        if len(lengths):
            pointers[1:] = np.cumsum(lengths[:-1].astype(np.int64)) * self.dtype.itemsize
        docs = np.frombuffer(self._doc_index, dtype=np.int64)
        try:
            with atomic_file(self.idx_path, "wb") as handle:
                handle.write(MAGIC)
                handle.write(struct.pack("<Q", VERSION))
                handle.write(struct.pack("<B", CODES[self.dtype]))
                handle.write(struct.pack("<Q", len(lengths)))
                handle.write(struct.pack("<Q", len(docs)))
                handle.write(lengths.tobytes(order="C"))
                handle.write(pointers.tobytes(order="C"))
                handle.write(docs.tobytes(order="C"))
                # .bin first: a reader that finds the new .idx always finds its .bin.
                self._bin_out.commit()
        finally:
            self._bin_out.discard()  # nothing left to delete once committed

    def abort(self) -> None:
        self._bin.close()
        self._bin_out.discard()


class IndexedDataset:
    """Read-only, memory-mapped view: ``ds[i]`` is sequence i; ``ds.document(j)`` its sequences."""

    def __init__(self, prefix: str | Path) -> None:
        self.prefix = Path(prefix)
        idx, bin_ = self.prefix.with_suffix(".idx"), self.prefix.with_suffix(".bin")
        for path in (idx, bin_):
            if not path.is_file():
                raise IndexedDatasetError(f"{path}: no such file (run `megasense tokenize` to make it)")
        raw = idx.read_bytes()
        header = len(MAGIC) + 8 + 1 + 8 + 8
        if len(raw) < header or raw[: len(MAGIC)] != MAGIC:
            raise IndexedDatasetError(f"{idx}: not a Megatron indexed-dataset index (bad magic)")
        offset = len(MAGIC)
        (version,) = struct.unpack_from("<Q", raw, offset)
        (code,) = struct.unpack_from("<B", raw, offset + 8)
        count, doc_count = struct.unpack_from("<QQ", raw, offset + 9)
        if version != VERSION or code not in DTYPES:
            raise IndexedDatasetError(f"{idx}: unsupported version {version} or dtype code {code}")
        expected = header + count * 4 + count * 8 + doc_count * 8
        if len(raw) != expected:
            raise IndexedDatasetError(f"{idx}: {len(raw)} bytes, expected {expected} (truncated or corrupt)")
        self.dtype = np.dtype(DTYPES[code])
        self.lengths = np.frombuffer(raw, dtype=np.int32, count=count, offset=header)
        self.pointers = np.frombuffer(raw, dtype=np.int64, count=count, offset=header + count * 4)
        self.doc_index = np.frombuffer(raw, dtype=np.int64, count=doc_count, offset=header + count * 12)
        size = bin_.stat().st_size
        needed = int(self.lengths.astype(np.int64).sum()) * self.dtype.itemsize
        if size != needed:
            raise IndexedDatasetError(f"{bin_}: {size} bytes, but the index describes {needed} (truncated?)")
        self.tokens = np.memmap(bin_, dtype=self.dtype, mode="r") if size else np.zeros(0, self.dtype)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def num_documents(self) -> int:
        return len(self.doc_index) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        start = int(self.pointers[i]) // self.dtype.itemsize
        return np.asarray(self.tokens[start : start + int(self.lengths[i])])

    def document(self, j: int) -> list[np.ndarray]:
        return [self[i] for i in range(int(self.doc_index[j]), int(self.doc_index[j + 1]))]
