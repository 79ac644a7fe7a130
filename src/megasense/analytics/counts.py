"""Term counts of many texts on disk: a (texts, terms) count matrix written chunk by chunk, read back in row blocks.

``TermCounter`` (``analytics.text``) writes here when given a directory, so the counts of a million
distinct texts (about 100 bytes each) stay out of memory: what stays is one offset per text. Readers
take CSR row blocks (``blocks``) and aggregate them, e.g. per topic (``represent.class_counts``); the
columns come back renumbered by ``remap`` (the alphabetical order ``CountVectorizer`` gives).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy import sparse

BLOCK = 16_384
INDICES, COUNTS = "terms.indices.i32", "terms.counts.i32"


class TermFile:
    """(rows, terms) int32 counts in two raw files (column indices and counts, row after row).

    Write with ``append`` chunk by chunk, then ``close``; read with ``blocks``. In memory: the row
    offsets (8 bytes a row), nothing per term occurrence.
    """

    def __init__(self, directory: Path) -> None:
        self.paths = (directory / INDICES, directory / COUNTS)
        self._handles = [open(p, "wb") for p in self.paths]  # noqa: SIM115 - closed by close()
        self._lengths: list[np.ndarray] = []
        self.indptr = np.zeros(1, dtype=np.int64)
        self.remap: np.ndarray | None = None
        self.shape = (0, 0)

    def append(self, indices: np.ndarray, counts: np.ndarray, lengths: np.ndarray) -> None:
        """Rows whose ``lengths[i]`` (column, count) pairs follow one another in ``indices`` and ``counts``."""
        self._handles[0].write(np.ascontiguousarray(indices, dtype=np.int32).tobytes())
        self._handles[1].write(np.ascontiguousarray(counts, dtype=np.int32).tobytes())
        self._lengths.append(np.asarray(lengths, dtype=np.int32))

    def close(self, n_terms: int, remap: np.ndarray | None = None) -> TermFile:
        """Done writing: ``n_terms`` columns; ``remap[j]`` is the final column of column ``j`` as written."""
        for handle in self._handles:
            handle.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int32)
        self._lengths = []
        self.indptr = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        self.remap, self.shape = remap, (len(lengths), n_terms)
        return self

    def __len__(self) -> int:
        return self.shape[0]

    def has_terms(self) -> np.ndarray:
        """(rows,) whether each row counts any term."""
        return np.diff(self.indptr) > 0

    def rows(self, start: int, stop: int) -> sparse.csr_matrix:
        """Rows ``start:stop`` as a CSR matrix with sorted column indices (as ``TermCounter.matrix()`` gives)."""
        first, last = int(self.indptr[start]), int(self.indptr[stop])
        indices, counts = (np.fromfile(p, dtype=np.int32, count=last - first, offset=4 * first) for p in self.paths)
        if self.remap is not None and len(indices):
            indices = self.remap[indices].astype(np.int32)
        block = sparse.csr_matrix(
            (counts, indices, self.indptr[start : stop + 1] - first), shape=(stop - start, self.shape[1])
        )
        block.sort_indices()
        return block

    def blocks(self, size: int | None = None) -> Iterator[tuple[int, sparse.csr_matrix]]:
        """(first row, CSR rows ``first:first + size``) over the whole matrix; ``size``: ``BLOCK``."""
        size = size or BLOCK
        for start in range(0, len(self), size):
            yield start, self.rows(start, min(len(self), start + size))

    def matrix(self) -> sparse.csr_matrix:
        """The whole matrix in memory (tests and small corpora)."""
        return self.rows(0, len(self))


def has_terms(X) -> np.ndarray:
    """(rows,) whether each row of a count matrix (in memory or a ``TermFile``) counts any term."""
    if isinstance(X, TermFile):
        return X.has_terms()
    return np.asarray(X.sum(axis=1)).ravel() > 0


def row_blocks(X, size: int | None = None) -> Iterator[tuple[int, sparse.csr_matrix]]:
    """(first row, CSR row block) of a count matrix in memory or a ``TermFile``; ``size``: ``BLOCK``."""
    if isinstance(X, TermFile):
        yield from X.blocks(size)
        return
    size = size or BLOCK
    X = sparse.csr_matrix(X)
    for start in range(0, X.shape[0], size):
        yield start, X[start : start + size]
