"""An analysis directory: ``analysis.duckdb``, Parquet copies of its tables, ``summary.json``, the topic model.

The directory is written whole into a temporary sibling and renamed into place (``atomic_directory``),
so a failed run leaves the previous analysis as it was. A directory is recognised as an analysis by
its ``summary.json``; one holding anything else is never replaced.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from megasense.errors import MegasenseInputError, MissingExtraError, TableError

DATABASE = "analysis.duckdb"
SUMMARY = "summary.json"
PARQUET = "parquet"
MODEL = "model"
REPORT = "report.html"
FORMAT = "megasense-analysis"
TABLES = ("documents", "topics", "topic_terms", "timeseries")


def _duckdb():
    try:
        import duckdb
    except ImportError:
        raise MissingExtraError(
            "analysis tables need duckdb (the 'analytics' extra): pip install 'megasense[analytics]'"
        ) from None
    return duckdb


def read_summary(directory: Path) -> dict[str, Any] | None:
    """The summary of an analysis directory, or None when ``directory`` holds no analysis."""
    path = directory / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("format") == FORMAT else None


def check_target(directory: Path, *, append: bool, overwrite: bool) -> dict[str, Any] | None:
    """Refuse what would lose work; returns the existing summary when appending."""
    if append and overwrite:
        raise MegasenseInputError("--append and --overwrite contradict each other: choose one")
    if directory.exists() and not directory.is_dir():
        raise MegasenseInputError(f"{directory}: exists and is not a directory; choose another --out")
    existing = read_summary(directory) if directory.is_dir() else None
    busy = directory.is_dir() and any(directory.iterdir())
    if append:
        if existing is None:
            what = "holds other files" if busy else "holds no analysis yet"
            raise MegasenseInputError(
                f"{directory}: --append needs an existing analysis there, but it {what}; drop --append"
            )
        return existing
    if busy and existing is None:
        raise MegasenseInputError(
            f"{directory}: is not empty and holds no megasense analysis (no {SUMMARY}); "
            "refusing to replace it, choose another --out"
        )
    if existing is not None and not overwrite:
        raise MegasenseInputError(
            f"{directory}: already holds an analysis (of {existing.get('input', '?')}, "
            f"{existing.get('documents', '?')} documents); pass --append to add documents to it "
            "or --overwrite to replace it"
        )
    return None


def write_tables(directory: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Each table into ``analysis.duckdb`` and ``parquet/<name>.parquet``."""
    duckdb = _duckdb()
    (directory / PARQUET).mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(directory / DATABASE)) as con:
        for name, frame in tables.items():
            frame = storable(frame)
            con.register("frame_view", frame)
            con.execute(f"CREATE TABLE {quote(name)} AS SELECT * FROM frame_view")
            con.unregister("frame_view")
            # COPY takes no bound parameters: the path goes in as a quoted literal (an --out "ana'q" is fine)
            con.execute(f"COPY {quote(name)} TO {literal(directory / PARQUET / (name + '.parquet'))} (FORMAT parquet)")


def storable(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns as strings (lists stay lists) so DuckDB and Parquet get one type per column."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            sample = next((v for v in out[column] if v is not None and v == v), None)
            if not isinstance(sample, list | tuple | dict):
                out[column] = out[column].map(lambda v: None if v is None or v != v else str(v)).astype("string")
    return out


def connect(path: Path, *, read_only: bool = False):
    return _duckdb().connect(str(path), read_only=read_only)


WORK_MEMORY = "128MB"
"""DuckDB's memory for an analysis's work database: past it, its joins, sorts and cached pages go to disk.
Without a limit DuckDB keeps up to 80% of the machine's memory of pages it has read or written, so an
analysis's memory would grow with its input. 64 MB is too little for a million rows (a join ran out)."""
WORK_THREADS = 4
"""DuckDB threads on the work database, at most: each needs its own buffers within ``WORK_MEMORY``, and the
models, not the SQL, take an analysis's time."""


def connect_work(path: Path, *, memory: str | None = None):
    """A work database at ``path`` whose memory is bounded (``memory``, by default ``WORK_MEMORY``), spilling
    beside it."""
    con = _duckdb().connect(str(path))
    con.execute(f"SET memory_limit = {literal(memory or WORK_MEMORY)}")
    con.execute(f"SET threads = {max(1, min(WORK_THREADS, os.cpu_count() or 1))}")
    con.execute(f"SET temp_directory = {literal(path.with_suffix('.tmp'))}")
    # rows are read back in doc_id order by ORDER BY where order matters; kept in insertion order, DuckDB would
    # buffer whole results in memory
    con.execute("SET preserve_insertion_order = false")
    return con


def connect_memory():
    """An in-memory DuckDB for counting over small DataFrames."""
    return _duckdb().connect()


def insert_frame(con, table: str, frame: pd.DataFrame) -> None:
    """Add ``frame``'s columns by name to ``table``, which exists with its types (no checks: our own rows)."""
    con.register("insert_view", frame)
    try:
        con.execute(f"INSERT INTO {quote(table)} BY NAME SELECT * FROM insert_view")
    finally:
        con.unregister("insert_view")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def append_rows(con, table: str, frame: pd.DataFrame, *, where: str) -> None:
    """Add ``frame`` to ``table`` (created by the first call) by column name; new columns are added."""
    duckdb = _duckdb()
    con.register("chunk_view", frame)
    try:
        exists = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchone()[0]
        if not exists:
            con.execute(f"CREATE TABLE {quote(table)} AS SELECT * FROM chunk_view")
            return
        have = {r[0] for r in con.execute(f"DESCRIBE {quote(table)}").fetchall()}
        for name, kind, *_ in con.execute("DESCRIBE chunk_view").fetchall():
            if name not in have:
                con.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(name)} {kind}")
        con.execute(f"INSERT INTO {quote(table)} BY NAME SELECT * FROM chunk_view")
    except duckdb.Error as exc:
        raise TableError(f"{where}: a column's values do not fit the type of the rows before them ({exc})") from None
    finally:
        con.unregister("chunk_view")


DOCUMENT_RANGE = 65_536
"""doc_ids joined and sorted at a time when ``documents`` is written: DuckDB's memory for it is bounded by this."""


def write_documents(con, directory: Path, results: str, input_table: str) -> None:
    """``documents`` in ``directory``'s database and Parquet: the rows of ``input_table`` joined to ``results``.

    ``results`` (a table or view of ``con``) holds, per doc_id, the columns computed by the analysis
    (time_utc, period, sentiment, score, polarity, topic, topic_label, has_words); the input's columns
    come from ``input_table``. Both live in DuckDB, and they are joined ``DOCUMENT_RANGE`` doc_ids at a
    time, in order: the rows are never in memory all at once.
    """
    fixed = ("doc_id", "batch", "row", "sentiment", "score", "polarity")
    columns = [r[0] for r in con.execute(f"DESCRIBE {quote(input_table)}").fetchall()]
    own = [c for c in columns if c not in fixed]
    select = [f"i.{quote(c)}" for c in ("doc_id", "batch", "row", *own)]
    select += ["r.time_utc", "r.period", "r.sentiment", "r.score", "r.polarity", "r.topic", "r.topic_label"]
    select += ["r.has_words"]
    query = f"SELECT {', '.join(select)} FROM {quote(input_table)} i JOIN {quote(results)} r USING (doc_id)"
    first, last = con.execute(f"SELECT min(doc_id), max(doc_id) FROM {quote(input_table)}").fetchone()
    (directory / PARQUET).mkdir(parents=True, exist_ok=True)
    order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    try:
        con.execute(f"ATTACH {literal(directory / DATABASE)} AS analysis")
        con.execute("SET preserve_insertion_order = true")  # rows stored in doc_id order, as inserted
        con.execute(f"CREATE TABLE analysis.documents AS {query} LIMIT 0")
        for start in range(first, last + 1, DOCUMENT_RANGE):
            con.execute(
                f"INSERT INTO analysis.documents {query} WHERE i.doc_id >= ? AND i.doc_id < ? ORDER BY doc_id",
                [start, start + DOCUMENT_RANGE],
            )
        con.execute(f"COPY analysis.documents TO {literal(directory / PARQUET / 'documents.parquet')} (FORMAT parquet)")
    finally:
        con.execute(f"SET preserve_insertion_order = {str(order).lower()}")
        con.execute("DETACH DATABASE IF EXISTS analysis")


def literal(path: Path) -> str:
    """``path`` as a SQL string literal, for the statements that take no bound parameters (COPY, ATTACH)."""
    return "'" + str(path).replace("'", "''") + "'"


def read_table(directory: Path, name: str) -> pd.DataFrame:
    duckdb = _duckdb()
    with duckdb.connect(str(directory / DATABASE), read_only=True) as con:
        return con.execute(f"SELECT * FROM {quote(name)}").df()


def write_summary(directory: Path, summary: dict[str, Any]) -> None:
    (directory / SUMMARY).write_text(json.dumps(summary, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
