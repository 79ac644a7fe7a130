"""The input read once, in chunks, into a work database; then each distinct text scored and embedded once.

Memory is bounded by the chunk, not the corpus: nothing is kept per row. ``read_rows`` streams the
file into DuckDB: the input's own columns to ``_input`` and, per row, a 16-byte hash of its
normalised text, its date (parsed to UTC) and its group to ``_docs``. Texts that differ only in case,
whitespace or Unicode form (NFKC) are one distinct text: ``find_distinct`` groups the rows by hash in
SQL (DuckDB spills to disk past its memory limit) and numbers the distinct texts in order of first
appearance. ``score_distinct`` reads each distinct text back once, through its first row, a chunk at
a time: it is scored (to ``_scored``), embedded (a float32 file the topic model reads a block at a
time) and its terms counted (a ``counts.TermFile``), and the result is given to every row. What stays
in memory is a few bytes per distinct text: how many rows share it and its sentiment's code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from megasense.analytics import store
from megasense.analytics.protocols import Embedder, Progress, score_texts
from megasense.analytics.text import TermCounter, normalize_text
from megasense.analytics.timeseries import MAX_ROWS, ParsedTimes, TimeParser
from megasense.analytics.vectors import VectorFile
from megasense.files.tables import TableError, read_chunks, require_column

INPUT, DOCS, DISTINCT, SCORED, ROWS = "_input", "_docs", "_distinct", "_scored", "_rows"
EMBEDDINGS = "embeddings.f32"
DOCS_SCHEMA = "doc_id BIGINT, row BIGINT, k1 UBIGINT, k2 UBIGINT, t TIMESTAMP, zoned BOOLEAN, grp VARCHAR"
"""Per row: the hash of its normalised text (two halves), its date in UTC, whether it named a zone, its group."""
SCORED_SCHEMA = "id BIGINT, sentiment VARCHAR, score DOUBLE, polarity DOUBLE, has_words BOOLEAN"
ROWS_SCHEMA = "doc_id BIGINT, batch BIGINT, row BIGINT, time_utc TIMESTAMP, sentiment VARCHAR, score DOUBLE, "
ROWS_SCHEMA += "polarity DOUBLE, topic BIGINT, has_words BOOLEAN, grp VARCHAR"
"""Per document, old and new: what the tables are counted from and ``documents`` adds to the input's columns."""


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
class RowsRead:
    """What ``read_rows`` learnt on the way."""

    rows: int
    empty_texts: int
    times: TimeParser | None


@dataclass
class Ingested:
    """The distinct texts of the new rows, in order of first appearance (their ``id``)."""

    rows: int
    """New rows read."""
    empty_texts: int
    counts: np.ndarray
    """(U,) rows sharing each distinct text."""
    vectors: VectorFile | np.ndarray
    """(U, dim) float32 embeddings of the distinct texts, in a file read a block at a time."""
    sentiment: np.ndarray
    """(U,) index of each distinct text's sentiment label in ``labels``."""
    labels: list[str | None] = field(default_factory=lambda: [None])
    """Sentiment labels seen (None: not scored, an empty text or ``scorer=False``)."""

    @property
    def distinct(self) -> int:
        return len(self.counts)


def texts_of(column: pd.Series) -> list[str]:
    return ["" if v is None or v != v else str(v) for v in column.tolist()]


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """(N, 2) uint64: the 16-byte BLAKE2b hash of each text's normalised form, as two halves."""
    digests = b"".join(
        hashlib.blake2b(normalize_text(t).encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts
    )
    return np.frombuffer(digests, dtype="<u8").reshape(len(texts), 2)


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


def read_rows(
    source: Path,
    con: Any,
    *,
    opts: Any,
    first_id: int,
    batch_no: int,
    timer: Any,
    progress: Progress,
    redactor: Callable[[list[str]], list[str]] | None = None,
) -> RowsRead:
    """Pass 1: ``source`` chunk by chunk into ``con``'s ``_input`` (its columns) and ``_docs`` (hash, date, group).

    With a ``redactor`` (``privacy.Redactor``) each chunk's texts are redacted as they are read: what is
    hashed, stored, and later scored, embedded and counted is the redacted text."""
    con.execute(f"CREATE TABLE {DOCS} ({DOCS_SCHEMA})")
    times = TimeParser() if opts.time_col else None
    next_id, empty = first_id, 0
    chunks = read_chunks(source, chunk_rows=opts.chunk_size, encoding=opts.encoding)
    with progress("reading", None) as read:
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
                keys = text_keys(texts)
            rows = np.arange(chunk.first_row, chunk.first_row + len(texts), dtype=np.int64)
            doc_ids = np.arange(next_id, next_id + len(texts), dtype=np.int64)
            docs = pd.DataFrame({"doc_id": doc_ids, "row": rows, "k1": keys[:, 0], "k2": keys[:, 1]})
            if times is not None:
                with timer.stage("dates"):
                    parsed, zoned = times.add(chunk.frame[opts.time_col], rows)
                    docs["t"], docs["zoned"] = parsed.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(), zoned
            if opts.group_col:
                docs["grp"] = chunk.frame[opts.group_col].astype("string").to_numpy()
            with timer.stage("store"):
                _store(con, chunk, source, doc_ids, batch_no)
                store.insert_frame(con, DOCS, docs)
            empty += sum(not t.strip() for t in texts)
            next_id += len(texts)
            read(len(texts))
    if next_id == first_id:
        raise TableError(f"{source}: the file has a header but no rows")
    con.execute("CHECKPOINT")  # DuckDB holds a table's new rows in memory until they are checkpointed
    return RowsRead(rows=next_id - first_id, empty_texts=empty, times=times)


def _store(con, chunk, source: Path, doc_ids: np.ndarray, batch_no: int) -> None:
    from megasense.analytics.tables import input_columns

    frame = input_columns(chunk.frame.reset_index(drop=True))
    frame.insert(0, "doc_id", doc_ids)
    frame.insert(1, "batch", np.int64(batch_no))
    frame.insert(2, "row", np.arange(chunk.first_row, chunk.first_row + len(frame), dtype=np.int64))
    last = chunk.first_row + len(frame) - 1
    store.append_rows(con, INPUT, store.storable(frame), where=f"{source}: rows {chunk.first_row}-{last}")


def finish_dates(con, times: TimeParser) -> tuple[ParsedTimes, str]:
    """The dates' facts once every row is in, and the SQL for each row's usable time (NULL where it is not).

    A column mixing values with and without a zone leaves out the rarer kind (``TimeParser.left_out``)."""
    facts, odd = times.facts, times.left_out()
    usable = "t" if odd is None else f"CASE WHEN zoned = {str(odd).upper()} THEN NULL ELSE t END"
    if odd is not None:
        where = f"zoned = {str(odd).upper()} AND t IS NOT NULL"
        facts.ambiguous = con.execute(f"SELECT count(*) FROM {DOCS} WHERE {where}").fetchone()[0]
        found = con.execute(f"SELECT row FROM {DOCS} WHERE {where} ORDER BY doc_id LIMIT {MAX_ROWS}").fetchall()
        facts.ambiguous_rows = [r[0] for r in found]
    facts.parsed, first, last = con.execute(
        f"SELECT count({usable}), min({usable}), max({usable}) FROM {DOCS}"
    ).fetchone()
    facts.first, facts.last = (None if t is None else pd.Timestamp(t) for t in (first, last))
    return facts, usable


def find_distinct(con) -> np.ndarray:
    """Number the distinct texts of ``_docs`` by first appearance (table ``_distinct``); returns rows per text."""
    con.execute(
        f"CREATE TABLE {DISTINCT} AS SELECT (row_number() OVER (ORDER BY first_doc) - 1)::BIGINT AS id, k1, k2, "
        f"first_doc, documents FROM (SELECT k1, k2, min(doc_id) AS first_doc, count(*) AS documents FROM {DOCS} "
        "GROUP BY k1, k2)"
    )
    con.execute("CHECKPOINT")
    return con.execute(f"SELECT documents FROM {DISTINCT} ORDER BY id").fetchnumpy()["documents"].astype(np.int64)


def distinct_texts(con, text_col: str, ids: np.ndarray | None = None, *, chunk_rows: int = 8192):
    """The distinct texts (all, or those of ``ids``, in that order), read back through their first rows, in chunks.

    All of them: copied once, in id order, to ``_distinct_text``, then read a page of ids at a time, so no
    query stays open while the caller writes (an open one would keep DuckDB from checkpointing, and so
    from freeing, what is written meanwhile)."""
    text = f"i.{store.quote(text_col)}"
    join = f"FROM {DISTINCT} u JOIN {INPUT} i ON i.doc_id = u.first_doc"
    if ids is not None:
        con.register("wanted_view", pd.DataFrame({"id": np.asarray(ids, np.int64), "pos": range(len(ids))}))
        try:
            rows = con.execute(f"SELECT {text} {join} JOIN wanted_view w ON w.id = u.id ORDER BY w.pos").fetchall()
        finally:
            con.unregister("wanted_view")
        for start in range(0, len(rows), chunk_rows):
            yield texts_of(pd.Series([r[0] for r in rows[start : start + chunk_rows]], dtype=object))
        return
    con.execute(f"CREATE OR REPLACE TABLE _distinct_text AS SELECT u.id, {text} AS text {join} ORDER BY u.id")
    con.execute("CHECKPOINT")
    total = con.execute("SELECT count(*) FROM _distinct_text").fetchone()[0]
    for start in range(0, total, chunk_rows):
        rows = con.execute(
            "SELECT text FROM _distinct_text WHERE id >= ? AND id < ? ORDER BY id", [start, start + chunk_rows]
        ).fetchall()
        yield texts_of(pd.Series([r[0] for r in rows], dtype=object))
    con.execute("DROP TABLE _distinct_text")


class _Sink:
    """Scores and embeds distinct texts batch by batch; embeddings go straight to a file, the rest to ``_scored``."""

    def __init__(self, path: Path, embedder: Embedder, scorer: Any, batch: int) -> None:
        self.handle = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.path, self.embedder, self.scorer, self.batch = path, embedder, scorer, batch
        self.dim: int | None = None
        self.codes: dict[str | None, int] = {None: 0}
        self.sentiment: list[np.ndarray] = []

    def score(self, texts: list[str], advance: Callable[[int], None]) -> pd.DataFrame:
        labels = np.full(len(texts), None, dtype=object)
        scores, polarity = np.full(len(texts), np.nan), np.full(len(texts), np.nan)
        keep = [i for i, t in enumerate(texts) if t.strip()] if self.scorer is not False else []
        for start in range(0, len(keep), self.batch):
            picked = keep[start : start + self.batch]
            result = score_texts(self.scorer, [texts[i] for i in picked])
            labels[picked], scores[picked], polarity[picked] = result.labels, result.scores, result.polarity
            advance(len(picked))
        codes = [self.codes.setdefault(None if v is None else str(v), len(self.codes)) for v in labels]
        self.sentiment.append(np.asarray(codes, dtype=np.int32))
        return pd.DataFrame({"sentiment": pd.Series(labels, dtype="string"), "score": scores, "polarity": polarity})

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

    def close(self, count: int) -> VectorFile | np.ndarray:
        self.handle.close()
        if not count:
            return np.zeros((0, self.dim or 1), dtype=np.float32)
        return VectorFile(self.path, count, self.dim)


def score_distinct(
    con: Any,
    work: Path,
    read: RowsRead,
    *,
    opts: Any,
    text_col: str,
    embedder: Embedder,
    scorer: Any,
    terms: TermCounter,
    timer: Any,
    progress: Progress,
) -> Ingested:
    """Pass 2: every distinct text of the new rows scored, embedded and counted into ``terms``, once."""
    with timer.stage("store"):
        counts = find_distinct(con)
    con.execute(f"CREATE TABLE {SCORED} ({SCORED_SCHEMA})")
    sink, done = _Sink(work / EMBEDDINGS, embedder, scorer, opts.batch_size), 0
    texts_chunks = distinct_texts(con, text_col, chunk_rows=opts.chunk_size)
    with progress("sentiment", None) as scored, progress("embedding", None) as embedded:
        while True:
            with timer.stage("read"):
                texts = next(texts_chunks, None)
            if texts is None:
                break
            with timer.stage("sentiment"):
                frame = sink.score(texts, scored)
            with timer.stage("embed"):
                sink.embed(texts, embedded)
            with timer.stage("terms"):
                frame["has_words"] = terms.add(texts) > 0
            with timer.stage("store"):
                frame.insert(0, "id", np.arange(done, done + len(texts), dtype=np.int64))
                store.insert_frame(con, SCORED, frame)
            done += len(texts)
    con.execute("CHECKPOINT")  # DuckDB holds a table's new rows in memory until they are checkpointed
    return Ingested(
        rows=read.rows,
        empty_texts=read.empty_texts,
        counts=counts,
        vectors=sink.close(len(counts)),
        sentiment=np.concatenate(sink.sentiment) if sink.sentiment else np.zeros(0, np.int32),
        labels=list(sink.codes),
    )


def create_rows(con) -> None:
    con.execute(f"CREATE TABLE {ROWS} ({ROWS_SCHEMA})")


def add_old_rows(con, group_col: str | None) -> None:
    """The documents of the analysis appended to (attached as ``old``), as they were."""
    group = f"CAST({store.quote(group_col)} AS VARCHAR)" if group_col else "NULL"
    con.execute(
        f"INSERT INTO {ROWS} SELECT doc_id, batch, row, time_utc, sentiment, score, polarity, topic, has_words, "
        f"{group} FROM old.documents"
    )


def add_new_rows(con, batch_no: int, usable_time: str, topics: np.ndarray) -> None:
    """The new rows, each given its distinct text's sentiment, words and ``topics`` (one per distinct text)."""
    con.register("topic_view", pd.DataFrame({"id": np.arange(len(topics), dtype=np.int64), "topic": topics}))
    try:  # per distinct text first, then one join of the rows with it: one hash table at a time
        con.execute(
            "CREATE TABLE _per_text AS SELECT u.k1, u.k2, s.sentiment, s.score, s.polarity, s.has_words, tv.topic "
            f"FROM {DISTINCT} u JOIN {SCORED} s ON s.id = u.id JOIN topic_view tv ON tv.id = u.id"
        )
    finally:
        con.unregister("topic_view")
    con.execute(
        f"INSERT INTO {ROWS} SELECT d.doc_id, {int(batch_no)}, d.row, {usable_time}, x.sentiment, x.score, "
        f"x.polarity, x.topic, x.has_words, d.grp FROM {DOCS} d JOIN _per_text x USING (k1, k2)"
    )
    con.execute("DROP TABLE _per_text")
    con.execute("CHECKPOINT")
