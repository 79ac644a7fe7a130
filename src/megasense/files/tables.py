"""Tables of texts (CSV, TSV, JSONL, Parquet, plain text) read in chunks and written atomically.

Files are streamed chunk by chunk so a million-row file never sits whole in memory. Errors name the
file, the row and the column. Output goes to a temporary file beside the target and is renamed into
place only when complete; the input file is never the output.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from megasense.errors import TableError
from megasense.files.atomic import AtomicPath, AtomicWriter

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
}


@dataclass
class Chunk:
    frame: pd.DataFrame
    first_row: int
    """File row number of the chunk's first record (1-based, counting a header line as row 1)."""
    done: float | None = None
    """Fraction of the file read once this chunk is done (bytes for text files, rows for Parquet), for
    progress bars that show time left without reading the file twice; None when unknown."""


def table_format(path: Path, explicit: str | None = None) -> str:
    if explicit:
        if explicit not in set(FORMATS.values()):
            raise TableError(f"unknown format {explicit!r}; expected one of {sorted(set(FORMATS.values()))}")
        return explicit
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise TableError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"use one of {', '.join(sorted(FORMATS))} (or give the format explicitly)"
        )
    return fmt


def check_readable(path: Path) -> None:
    if not path.exists():
        raise TableError(f"{path}: no such file")
    if path.is_dir():
        raise TableError(f"{path}: is a directory, expected a file (CSV, TSV, JSONL, Parquet or TXT)")
    if path.stat().st_size == 0:
        raise TableError(f"{path}: the file is empty")


_SURROGATE = re.compile("[\udc80-\udcff]")


def _check_utf8(frame: pd.DataFrame, path: Path, first_row: int) -> None:
    """Text read with ``surrogateescape`` carries lone surrogates where the bytes were not UTF-8."""
    for column in frame.columns:
        for offset, value in enumerate(frame[column].tolist()):
            if isinstance(value, str) and _SURROGATE.search(value):
                raise TableError(
                    f"{path}: row {first_row + offset}, column {column!r}: invalid UTF-8 bytes; save the file as UTF-8"
                )


class _TextFile:
    """A UTF-8 text reader (gzip too) that knows how far into the file on disk it has read."""

    def __init__(self, path: Path) -> None:
        self.raw = open(path, "rb")  # noqa: SIM115 -- closed in close()
        self.size = max(1, os.fstat(self.raw.fileno()).st_size)
        binary = gzip.GzipFile(fileobj=self.raw, mode="rb") if path.suffix == ".gz" else self.raw
        self.text = io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="")

    def done(self) -> float:
        return min(1.0, self.raw.tell() / self.size)

    def close(self) -> None:
        self.text.close()
        self.raw.close()

    def __enter__(self) -> _TextFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _delimited_chunks(path: Path, sep: str, chunk_rows: int) -> Iterator[Chunk]:
    # The standard csv module rather than pandas: it reports exact record numbers and keeps invalid
    # bytes (as surrogates) so the error can name the row instead of failing somewhere in a chunk.
    with _TextFile(path) as file:
        reader = csv.reader(file.text, delimiter=sep)
        header = next(reader, None)
        if not header:
            raise TableError(f"{path}: the file has no header row")
        header[0] = header[0].lstrip("\ufeff")  # a UTF-8 byte-order mark from spreadsheet exports
        rows: list[list[str]] = []
        row_no = first = 2
        try:
            for row_no, record in enumerate(reader, start=2):
                if len(record) != len(header):
                    if not record:
                        continue
                    raise TableError(
                        f"{path}: row {row_no} (line {reader.line_num}) has {len(record)} fields, "
                        f"the header has {len(header)}"
                    )
                if not rows:
                    first = row_no
                rows.append(record)
                if len(rows) >= chunk_rows:
                    yield _frame_of(rows, header, path, first, file.done())
                    rows = []
        except csv.Error as exc:
            raise TableError(f"{path}: row {row_no}: not valid CSV ({exc})") from None
        if rows:
            yield _frame_of(rows, header, path, first, 1.0)


def _frame_of(rows: list[list[str]], header: list[str], path: Path, first: int, done: float) -> Chunk:
    for offset, record in enumerate(rows):
        for column, value in zip(header, record):
            if _SURROGATE.search(value):
                raise TableError(
                    f"{path}: row {first + offset}, column {column!r}: invalid UTF-8 bytes; save the file as UTF-8"
                )
    return Chunk(frame=pd.DataFrame(rows, columns=header, dtype=object), first_row=first, done=done)


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    records, first, line_no = [], 1, 0
    with _TextFile(path) as file:
        for line_no, line in enumerate(file.text, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TableError(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise TableError(f"{path}: line {line_no} holds a {type(record).__name__}, expected a JSON object")
            if not records:
                first = line_no
            records.append(record)
            if len(records) >= chunk_rows:
                frame = pd.DataFrame.from_records(records)
                _check_utf8(frame, path, first)
                yield Chunk(frame=frame, first_row=first, done=file.done())
                records = []
    if records:
        frame = pd.DataFrame.from_records(records)
        _check_utf8(frame, path, first)
        yield Chunk(frame=frame, first_row=first, done=1.0)


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TableError(f"{path}: not a readable Parquet file ({exc})") from None
    row, total = 1, max(1, parquet.metadata.num_rows)
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        frame = batch.to_pandas()
        yield Chunk(frame=frame, first_row=row, done=min(1.0, (row - 1 + len(frame)) / total))
        row += len(frame)


def _txt_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    texts, first = [], 1
    size = max(1, path.stat().st_size)
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise TableError(f"{path}: line {line_no}: invalid UTF-8 bytes; save the file as UTF-8") from None
            if not texts:
                first = line_no
            texts.append(text)
            if len(texts) >= chunk_rows:
                yield Chunk(frame=pd.DataFrame({"text": texts}), first_row=first, done=min(1.0, handle.tell() / size))
                texts = []
    if texts:
        yield Chunk(frame=pd.DataFrame({"text": texts}), first_row=first, done=1.0)


def read_chunks(path: str | Path, *, fmt: str | None = None, chunk_rows: int = 8192) -> Iterator[Chunk]:
    """Stream a table in chunks of at most ``chunk_rows`` records."""
    path = Path(path)
    check_readable(path)
    kind = table_format(path, fmt)
    if kind in ("csv", "tsv"):
        return _delimited_chunks(path, "," if kind == "csv" else "\t", chunk_rows)
    if kind == "jsonl":
        return _jsonl_chunks(path, chunk_rows)
    if kind == "parquet":
        return _parquet_chunks(path, chunk_rows)
    return _txt_chunks(path, chunk_rows)


def read_table(path: str | Path, *, fmt: str | None = None) -> pd.DataFrame:
    """A whole (small) table; prefer ``read_chunks`` for files of unknown size."""
    chunks = [c.frame for c in read_chunks(path, fmt=fmt)]
    if not chunks:
        raise TableError(f"{path}: the file has a header but no rows")
    return pd.concat(chunks, ignore_index=True)


def text_column(frame, column: str) -> list[str]:
    """The column as strings: missing values become empty texts, numbers their decimal form."""
    return ["" if value is None or value != value else str(value) for value in frame[column].tolist()]


def require_column(frame: pd.DataFrame, column: str, path: Path | str, *, option: str = "--text-col") -> None:
    if column not in frame.columns:
        existing = ", ".join(repr(c) for c in frame.columns)
        raise TableError(f"{path}: no column {column!r} (choose one with {option}); the columns are: {existing}")


class TableWriter(AtomicWriter):
    """Append chunks to a temporary file beside ``path``; ``close()`` renames it into place."""

    def __init__(self, path: str | Path, *, fmt: str | None = None, protect: tuple[Path, ...] = ()) -> None:
        self.path = Path(path)
        self.fmt = table_format(self.path, fmt)
        for other in protect:
            if other.exists() and self.path.exists() and os.path.samefile(other, self.path):
                raise TableError(f"{self.path}: refusing to overwrite the input file; choose another output path")
        self._out = AtomicPath(self.path)
        self.tmp = self._out.tmp
        self._parquet: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt in ("csv", "tsv"):
            frame.to_csv(
                self.tmp,
                mode="a",
                header=self._rows == 0,
                index=False,
                sep="," if self.fmt == "csv" else "\t",
                encoding="utf-8",
            )
        elif self.fmt == "jsonl":
            frame.to_json(self.tmp, orient="records", lines=True, force_ascii=False, mode="a")
        elif self.fmt == "parquet":
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._schema = table.schema
                self._parquet = pq.ParquetWriter(self.tmp, self._schema)
            self._parquet.write_table(table.cast(self._schema))
        else:
            raise TableError(f"{self.path}: cannot write the {self.fmt!r} format; use csv, tsv, jsonl or parquet")
        self._rows += len(frame)

    def close(self) -> Path:
        try:
            if self._parquet is not None:
                self._parquet.close()
        except BaseException:
            self._out.discard()
            raise
        return self._out.commit()

    def abort(self) -> None:
        try:
            if self._parquet is not None:
                self._parquet.close()
        finally:
            self._out.discard()
