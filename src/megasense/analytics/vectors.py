"""Row-block arithmetic over embeddings that may not fit in memory (a float32 file): read ``BLOCK`` rows at a time.

Every function normalises each block to unit length as it reads it, so callers pass raw embeddings
and the results do not depend on how the rows were written (one chunk or many).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy import sparse

BLOCK = 4096


class VectorFile:
    """(rows, dim) float32 rows in a raw file, indexed like an array; read a block at a time.

    Rows are read with plain file reads, one per run of consecutive rows, never through a memory map:
    a mapped file counts in the process's memory for every page touched, and the kernel maps up to
    64 KB around each one, so a scattered sample of 20,000 rows from a file of a million would count
    hundreds of megabytes.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, path: Path, rows: int, dim: int) -> None:
        self.path, self.shape = path, (rows, dim)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.arange(self.shape[0])[rows]
        if rows.ndim == 0:
            return self[rows.reshape(1)][0]
        got = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        if not len(rows):
            return got
        order = np.argsort(rows, kind="stable")
        wanted = rows[order]
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
        size = self.shape[1] * self.dtype.itemsize
        with open(self.path, "rb") as handle:
            for start, end in zip(np.r_[0, breaks].tolist(), np.r_[breaks, len(wanted)].tolist(), strict=True):
                handle.seek(int(wanted[start]) * size)
                if handle.readinto(memoryview(got[start:end]).cast("B")) != (end - start) * size:
                    raise ValueError(f"{self.path}: shorter than its {self.shape[0]} rows of {self.shape[1]} floats")
        out = np.empty_like(got)
        out[order] = got
        return out


def normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def blocks(vectors: np.ndarray, rows: np.ndarray, size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(offset into ``rows``, unit-length rows ``rows[offset:offset + size]`` of ``vectors``); ``size``: ``BLOCK``."""
    size = size or BLOCK
    for start in range(0, len(rows), size):
        yield start, normalize(np.asarray(vectors[rows[start : start + size]], dtype=np.float32))


def gather(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Unit-length ``vectors[rows]`` in memory (callers keep ``rows`` bounded)."""
    out = np.empty((len(rows), vectors.shape[1]), dtype=np.float32)
    for start, block in blocks(vectors, rows):
        out[start : start + len(block)] = block
    return out


def group_means(vectors: np.ndarray, rows: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups, dim) unit-length mean of the unit rows ``rows`` of each group (``group`` aligned with rows)."""
    sums = np.zeros((n_groups, vectors.shape[1]), dtype=np.float64)
    for start, block in blocks(vectors, rows):
        part = group[start : start + len(block)]
        onehot = sparse.csr_matrix((np.ones(len(part)), (part, np.arange(len(part)))), shape=(n_groups, len(part)))
        sums += onehot @ block.astype(np.float64)
    return normalize(sums)


def similarity_to(vectors: np.ndarray, rows: np.ndarray, centroids: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(len(rows),) cosine similarity of each row to its own centroid, ``centroids[index]`` (``index`` aligned with
    rows; looked up a block at a time, so no (rows, dim) array of centroids is ever built)."""
    out = np.empty(len(rows), dtype=np.float32)
    for start, block in blocks(vectors, rows):
        mine = centroids[index[start : start + len(block)]]
        out[start : start + len(block)] = np.einsum("ij,ij->i", block, mine)
    return out


def nearest(vectors: np.ndarray, rows: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the most similar centroid, its cosine similarity) of each row."""
    best = np.zeros(len(rows), dtype=np.int64)
    sims = np.zeros(len(rows), dtype=np.float32)
    for start, block in blocks(vectors, rows):
        s = block @ centroids.T  # (block, centroids)
        b = s.argmax(axis=1)
        best[start : start + len(block)] = b
        sims[start : start + len(block)] = s[np.arange(len(block)), b]
    return best, sims
