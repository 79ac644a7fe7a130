"""Tables of texts (CSV, TSV, JSONL, Parquet, plain text) read in chunks and written atomically.

Files are streamed chunk by chunk so a million-row file never sits whole in memory. Errors name the
file, the row and the column. Output goes to a temporary file beside the target and is renamed into
place only when complete; the input file is never the output.

Text files are UTF-8 unless they start with a byte-order mark (UTF-8, UTF-16 or UTF-32, either byte
order), which is honoured, or the caller names another encoding (``--encoding gbk``). A file that holds
NUL bytes but no mark (UTF-16 saved without one) is refused with a message naming ``--encoding``, never
read as garbage.
"""

from __future__ import annotations

import codecs
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

# Longest first: UTF-32 LE's mark starts with UTF-16 LE's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def check_encoding(encoding: str | None) -> str | None:
    """``encoding`` if Python knows it (``gbk``, ``utf-16``, ``latin-1``...); a TableError naming it if not."""
    if encoding is None:
        return None
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise TableError(
            f"unknown encoding {encoding!r} (--encoding); use a name such as utf-8, gbk, gb18030, big5, "
            "shift_jis, utf-16 or latin-1"
        ) from None


def detect_encoding(head: bytes, path: Path, encoding: str | None = None) -> str:
    """The encoding to read a text file with, from its first bytes: ``encoding`` if given, else the one its
    byte-order mark names, else UTF-8. NUL bytes without a mark mean UTF-16/32 saved without one: refused."""
    if encoding is not None:
        name = check_encoding(encoding)
        return "utf-8-sig" if name == "utf-8" else name  # a UTF-8 mark is never part of the first value
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if b"\x00" in head:
        raise TableError(
            f"{path}: holds NUL bytes, as UTF-16 or UTF-32 text saved without a byte-order mark does; "
            "give its encoding (--encoding utf-16-le, utf-16-be, ...) or save the file as UTF-8"
        )
    return "utf-8"


def _bad_bytes(path: Path, where: str, encoding: str) -> TableError:
    if encoding in ("utf-8", "utf-8-sig"):
        return TableError(
            f"{path}: {where}: invalid UTF-8 bytes; save the file as UTF-8, or name its encoding (--encoding gbk)"
        )
    return TableError(f"{path}: {where}: bytes that are not valid {encoding}; check --encoding")


def _check_utf8(frame: pd.DataFrame, path: Path, first_row: int, encoding: str = "utf-8") -> None:
    """Text read with ``surrogateescape`` carries lone surrogates where the bytes were not valid ``encoding``."""
    for column in frame.columns:
        for offset, value in enumerate(frame[column].tolist()):
            if isinstance(value, str) and _SURROGATE.search(value):
                raise _bad_bytes(path, f"row {first_row + offset}, column {column!r}", encoding)


class _TextFile:
    """A text reader (gzip too) in the file's encoding (``detect_encoding``) that knows how far into the
    file on disk it has read."""

    def __init__(self, path: Path, encoding: str | None = None, newline: str = "") -> None:
        self.raw = open(path, "rb")  # noqa: SIM115 -- closed in close()
        self.size = max(1, os.fstat(self.raw.fileno()).st_size)
        binary = gzip.GzipFile(fileobj=self.raw, mode="rb") if path.suffix == ".gz" else self.raw
        buffered = io.BufferedReader(binary) if not isinstance(binary, io.BufferedReader) else binary
        try:
            self.encoding = detect_encoding(buffered.peek(4096)[:4096], path, encoding)
        except BaseException:
            self.raw.close()
            raise
        self.text = io.TextIOWrapper(buffered, encoding=self.encoding, errors="surrogateescape", newline=newline)

    def done(self) -> float:
        return min(1.0, self.raw.tell() / self.size)

    def close(self) -> None:
        self.text.close()
        self.raw.close()

    def __enter__(self) -> _TextFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _delimited_chunks(path: Path, sep: str, chunk_rows: int, encoding: str | None = None) -> Iterator[Chunk]:
    # The standard csv module rather than pandas: it reports exact record numbers and keeps invalid
    # bytes (as surrogates) so the error can name the row instead of failing somewhere in a chunk.
    with _TextFile(path, encoding) as file:
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
                    yield _frame_of(rows, header, path, first, file.done(), file.encoding)
                    rows = []
        except csv.Error as exc:
            raise TableError(f"{path}: row {row_no}: not valid CSV ({exc})") from None
        if rows:
            yield _frame_of(rows, header, path, first, 1.0, file.encoding)


def _frame_of(
    rows: list[list[str]], header: list[str], path: Path, first: int, done: float, encoding: str = "utf-8"
) -> Chunk:
    for offset, record in enumerate(rows):
        for column, value in zip(header, record):
            if _SURROGATE.search(value):
                raise _bad_bytes(path, f"row {first + offset}, column {column!r}", encoding)
    return Chunk(frame=pd.DataFrame(rows, columns=header, dtype=object), first_row=first, done=done)


def _jsonl_chunks(path: Path, chunk_rows: int, encoding: str | None = None) -> Iterator[Chunk]:
    records, first, line_no = [], 1, 0
    with _TextFile(path, encoding) as file:
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
                _check_utf8(frame, path, first, file.encoding)
                yield Chunk(frame=frame, first_row=first, done=file.done())
                records = []
        encoding = file.encoding
    if records:
        frame = pd.DataFrame.from_records(records)
        _check_utf8(frame, path, first, encoding)
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


def _txt_chunks(path: Path, chunk_rows: int, encoding: str | None = None) -> Iterator[Chunk]:
    texts, first = [], 1
    with _TextFile(path, encoding, newline="\n") as file:  # one text per "\n"-ended line, as before
        for line_no, line in enumerate(file.text, start=1):
            text = line.rstrip("\r\n")
            if line_no == 1:
                text = text.lstrip("\ufeff")  # a mark the named encoding does not consume (utf-16-le, say)
            if _SURROGATE.search(text):
                raise _bad_bytes(path, f"line {line_no}", file.encoding)
            if not texts:
                first = line_no
            texts.append(text)
            if len(texts) >= chunk_rows:
                yield Chunk(frame=pd.DataFrame({"text": texts}), first_row=first, done=file.done())
                texts = []
    if texts:
        yield Chunk(frame=pd.DataFrame({"text": texts}), first_row=first, done=1.0)


def read_chunks(
    path: str | Path, *, fmt: str | None = None, chunk_rows: int = 8192, encoding: str | None = None
) -> Iterator[Chunk]:
    """Stream a table in chunks of at most ``chunk_rows`` records.

    ``encoding`` (text formats): the file's encoding, e.g. ``gbk``; None reads UTF-8, or the encoding a
    byte-order mark names."""
    path = Path(path)
    check_readable(path)
    kind = table_format(path, fmt)
    check_encoding(encoding)  # an unknown name fails here, before anything is read
    if kind in ("csv", "tsv"):
        return _delimited_chunks(path, "," if kind == "csv" else "\t", chunk_rows, encoding)
    if kind == "jsonl":
        return _jsonl_chunks(path, chunk_rows, encoding)
    if kind == "parquet":
        return _parquet_chunks(path, chunk_rows)
    return _txt_chunks(path, chunk_rows, encoding)


def read_table(path: str | Path, *, fmt: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    """A whole (small) table; prefer ``read_chunks`` for files of unknown size."""
    chunks = [c.frame for c in read_chunks(path, fmt=fmt, encoding=encoding)]
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
