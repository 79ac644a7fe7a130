"""The input read once, in chunks: distinct texts scored and embedded once, rows stored as they come.

Memory is bounded by the chunk, not the corpus. Of each row only small values stay (its distinct
text's id, its file row, its date and group values); the row itself goes to the ``_input`` table of
a work database chunk by chunk, and the embeddings of the distinct texts to a float32 file that the
topic model reads back a block at a time. Texts that differ only in case, whitespace or Unicode form
(NFKC) are one distinct text: scored and embedded once, through the first of them, and the result
is given to every row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from megasense.analytics import store
from megasense.analytics.protocols import Embedder, Progress, score_texts
from megasense.analytics.text import TermCounter, normalize_text
from megasense.analytics.vectors import VectorFile
from megasense.files.tables import TableError, read_chunks, require_column

INPUT = "_input"
EMBEDDINGS = "embeddings.f32"


class Growing:
    """A 1-D array that grows at the end (capacity doubling), for per-distinct-text values."""

    def __init__(self, dtype: Any) -> None:
        self._data = np.empty(1024, dtype=dtype)
        self.size = 0

    def extend(self, values: Sequence[Any] | np.ndarray) -> None:
        values = np.asarray(values, dtype=self._data.dtype) if len(values) else np.zeros(0, self._data.dtype)
        while self.size + len(values) > len(self._data):
            self._data = np.concatenate([self._data, np.empty_like(self._data)])
        self._data[self.size : self.size + len(values)] = values
        self.size += len(values)

    @property
    def values(self) -> np.ndarray:
        return self._data[: self.size]


class Deduper:
    """Id of each text's normalised form, first come first numbered; keys are 16-byte hashes, not the texts."""

    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}

    def add(self, texts: Sequence[str]) -> tuple[np.ndarray, list[int]]:
        """(id of each text, positions of the texts seen for the first time)."""
        ids = np.empty(len(texts), dtype=np.int64)
        new: list[int] = []
        for i, text in enumerate(texts):
            key = hashlib.blake2b(normalize_text(text).encode("utf-8", "surrogatepass"), digest_size=16).digest()
            before = len(self.ids)
            ids[i] = self.ids.setdefault(key, before)
            if ids[i] == before:
                new.append(i)
        return ids, new


class LanguageSample:
    """An evenly spread sample of the texts (every ``step``-th), between ``size`` and ``2 * size`` of them."""

    def __init__(self, size: int = 2000) -> None:
        self.size, self.step, self.seen = size, 1, 0
        self.texts: list[str] = []

    def add(self, texts: Sequence[str]) -> None:
        for text in texts:
            if self.seen % self.step == 0:
                self.texts.append(text)
                if len(self.texts) >= 2 * self.size:
                    self.texts, self.step = self.texts[::2], self.step * 2
            self.seen += 1


@dataclass
class Ingested:
    ids: np.ndarray
    """(N,) distinct-text id of each row."""
    rows: np.ndarray
    """(N,) file row numbers."""
    times: pd.Series | None
    groups: pd.Series | None
    vectors: VectorFile | np.ndarray
    """(U, dim) float32 embeddings of the distinct texts, in a file read a block at a time."""
    sentiment: tuple[np.ndarray, np.ndarray, np.ndarray]
    """(U,) labels, scores, polarity of the distinct texts."""
    first_doc: np.ndarray
    """(U,) doc_id of each distinct text's first row: where its text is read back from."""
    empty_texts: int


def texts_of(column: pd.Series) -> list[str]:
    return ["" if v is None or v != v else str(v) for v in column.tolist()]


def check_columns(frame: pd.DataFrame, source: Path, text_col: str, time_col: str | None, group_col: str | None):
    require_column(frame, text_col, source)
    if time_col:
        require_column(frame, time_col, source, option="--time-col")
    if group_col:
        require_column(frame, group_col, source, option="--group-col")


def first_chunk(source: Path, opts: Any) -> pd.DataFrame:
    """The first rows, to check the columns before any model loads."""
    for chunk in read_chunks(source, chunk_rows=64, encoding=opts.encoding):
        check_columns(chunk.frame, source, opts.text_col, opts.time_col, opts.group_col)
        return chunk.frame
    raise TableError(f"{source}: the file has a header but no rows")


def language_sample(source: Path, text_col: str, chunk_rows: int, encoding: str | None = None) -> list[str]:
    sample = LanguageSample()
    for chunk in read_chunks(source, chunk_rows=chunk_rows, encoding=encoding):
        sample.add(texts_of(chunk.frame[text_col]))
    return sample.texts


class _Sink:
    """Scores and embeds new distinct texts batch by batch; embeddings go straight to a file."""

    def __init__(self, path: Path, embedder: Embedder, scorer: Any, batch: int) -> None:
        self.handle = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.path, self.embedder, self.scorer, self.batch = path, embedder, scorer, batch
        self.dim: int | None = None
        self.labels, self.scores, self.polarity = Growing(object), Growing(np.float64), Growing(np.float64)

    def score(self, texts: list[str], advance: Callable[[int], None]) -> None:
        labels = np.full(len(texts), None, dtype=object)
        scores, polarity = np.full(len(texts), np.nan), np.full(len(texts), np.nan)
        keep = [i for i, t in enumerate(texts) if t.strip()] if self.scorer is not False else []
        for start in range(0, len(keep), self.batch):
            picked = keep[start : start + self.batch]
            result = score_texts(self.scorer, [texts[i] for i in picked])
            labels[picked], scores[picked], polarity[picked] = result.labels, result.scores, result.polarity
            advance(len(picked))
        self.labels.extend(labels)
        self.scores.extend(scores)
        self.polarity.extend(polarity)

    def embed(self, texts: list[str], advance: Callable[[int], None]) -> None:
        for start in range(0, len(texts), self.batch):
            part = texts[start : start + self.batch]
            vectors = np.asarray(self.embedder.embed(part), dtype=np.float32)
            if (
                vectors.ndim != 2
                or len(vectors) != len(part)
                or (self.dim is not None and vectors.shape[1] != self.dim)
            ):
                raise ValueError(
                    f"the embedder {type(self.embedder).__name__} returned shape {vectors.shape} for {len(part)} "
                    f"texts; expected ({len(part)}, {self.dim or 'dim'})"
                )
            self.dim = vectors.shape[1]
            self.handle.write(np.ascontiguousarray(vectors).tobytes())
            advance(len(part))

    def close(self, count: int) -> np.ndarray:
        self.handle.close()
        if not count:
            return np.zeros((0, self.dim or 1), dtype=np.float32)
        return VectorFile(self.path, count, self.dim)


def ingest(
    source: Path,
    con: Any,
    work: Path,
    *,
    opts: Any,
    embedder: Embedder,
    scorer: Any,
    terms: TermCounter,
    first_id: int,
    batch_no: int,
    timer: Any,
    progress: Progress,
    redactor: Callable[[list[str]], list[str]] | None = None,
) -> Ingested:
    """Read ``source`` chunk by chunk into ``con``'s ``_input`` table, ``work``'s embeddings file and ``terms``.

    With a ``redactor`` (``privacy.Redactor``) each chunk's texts are redacted as they are read: what is
    scored, embedded, counted into key phrases and stored is the redacted text."""
    dedup, sink = Deduper(), _Sink(work / EMBEDDINGS, embedder, scorer, opts.batch_size)
    ids, rows, times, groups, first_doc = [], [], [], [], Growing(np.int64)
    next_id, empty = first_id, 0
    chunks = read_chunks(source, chunk_rows=opts.chunk_size, encoding=opts.encoding)
    with (
        progress("reading", None) as read,
        progress("sentiment", None) as scored,
        progress("embedding", None) as embedded,
    ):
        while True:
            with timer.stage("read"):
                chunk = next(chunks, None)
                if chunk is None:
                    break
                check_columns(chunk.frame, source, opts.text_col, opts.time_col, opts.group_col)
                texts = texts_of(chunk.frame[opts.text_col])
                if redactor is not None:
                    texts = redactor(texts)
                    chunk.frame[opts.text_col] = texts
                chunk_ids, new = dedup.add(texts)
            doc_ids = np.arange(next_id, next_id + len(texts), dtype=np.int64)
            new_texts = [texts[i] for i in new]
            first_doc.extend(doc_ids[new])
            with timer.stage("sentiment"):
                sink.score(new_texts, scored)
            with timer.stage("embed"):
                sink.embed(new_texts, embedded)
            with timer.stage("terms"):
                terms.add(new_texts)
            with timer.stage("store"):
                sentiment = (
                    sink.labels.values[chunk_ids],
                    sink.scores.values[chunk_ids],
                    sink.polarity.values[chunk_ids],
                )
                _store(con, chunk, source, doc_ids, batch_no, sentiment)
            ids.append(chunk_ids)
            rows.append(np.arange(chunk.first_row, chunk.first_row + len(texts), dtype=np.int64))
            times.append(chunk.frame[opts.time_col].reset_index(drop=True) if opts.time_col else None)
            groups.append(chunk.frame[opts.group_col].reset_index(drop=True) if opts.group_col else None)
            empty += sum(not t.strip() for t in texts)
            next_id += len(texts)
            read(len(texts))
    if not ids:
        raise TableError(f"{source}: the file has a header but no rows")
    return Ingested(
        ids=np.concatenate(ids),
        rows=np.concatenate(rows),
        times=pd.concat(times, ignore_index=True) if opts.time_col else None,
        groups=pd.concat(groups, ignore_index=True) if opts.group_col else None,
        vectors=sink.close(len(dedup.ids)),
        sentiment=(sink.labels.values, sink.scores.values, sink.polarity.values),
        first_doc=first_doc.values,
        empty_texts=empty,
    )


def _store(con, chunk, source: Path, doc_ids: np.ndarray, batch_no: int, sentiment) -> None:
    from megasense.analytics.tables import input_columns

    labels, scores, polarity = sentiment
    frame = input_columns(chunk.frame.reset_index(drop=True))
    frame.insert(0, "doc_id", doc_ids)
    frame.insert(1, "batch", np.int64(batch_no))
    frame.insert(2, "row", np.arange(chunk.first_row, chunk.first_row + len(frame), dtype=np.int64))
    frame["sentiment"] = pd.Series(labels, dtype="string")
    frame["score"], frame["polarity"] = scores, polarity
    last = chunk.first_row + len(frame) - 1
    store.append_rows(con, INPUT, store.storable(frame), where=f"{source}: rows {chunk.first_row}-{last}")
