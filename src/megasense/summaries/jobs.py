"""Summaries of what a user points at: a text, a document file, or every row of a table.

A table is read chunk by chunk (``files.tables.read_chunks``) and written the same way (``TableWriter``: a temporary
file renamed into place when complete, never over the input), with a ``summary`` column added (an input column of
that name is kept as ``input_summary``), plus ``summary_notes`` saying what was cut or substituted in each row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from megasense.errors import TableError
from megasense.files.progress import Progress, estimate_total
from megasense.files.tables import FORMATS, TableWriter, read_chunks, require_column, text_column
from megasense.summaries.sources import DOCUMENT_SUFFIXES, Document, read_document
from megasense.summaries.summarizer import Summarizer, Summary

TABLE_SUFFIXES = tuple(s for s in FORMATS if s != ".txt")
"""Tables of texts (``.txt`` is a document here: lecture notes, not one text per line)."""


def classify_input(value: str) -> str:
    """``table``, ``document`` or ``text``: what ``megasense summarize INPUT`` was given."""
    path = Path(value)
    looks_like_file = (
        "\n" not in value and len(value) < 4096 and path.suffix.lower() in (*TABLE_SUFFIXES, *DOCUMENT_SUFFIXES)
    )
    if looks_like_file:
        return "table" if path.suffix.lower() in TABLE_SUFFIXES else "document"
    return "text"


def summarize_document(summarizer: Summarizer, value: str, **options: Any) -> tuple[Summary, Document]:
    """A document file's (or, for ``classify_input(value) == "text"``, the text's own) summary."""
    document = read_document(value) if classify_input(value) == "document" else Document(value, "text", "text")
    summary = summarizer.summarize(document.text, **options)
    summary.notes = document.notes + summary.notes
    return summary, document


@dataclass
class TableSummaries:
    rows: int = 0
    skipped_empty: list[int] = field(default_factory=list)
    """File rows with an empty text (their summary is empty)."""
    renamed: bool = False
    """The input had a ``summary`` column, kept as ``input_summary``."""
    generated: int = 0
    extracted: int = 0
    output: Path | None = None


def summarize_table(
    summarizer: Summarizer,
    source: str | Path,
    output: str | Path | None,
    *,
    text_col: str = "text",
    encoding: str | None = None,
    progress: Progress | None = None,
    on_row: Callable[[int, str, Summary | None], None] | None = None,
    chunk_rows: int = 64,
    **options: Any,
) -> TableSummaries:
    """Add ``summary`` and ``summary_notes`` columns to every row of ``source``; written to ``output`` (atomically)
    when given, and each row passed to ``on_row(file_row, text, summary)`` as it is done (None for an empty text)."""
    source = Path(source)
    result = TableSummaries(output=Path(output) if output is not None else None)
    writer = TableWriter(output, protect=(source,)) if output is not None else None
    try:
        for chunk in read_chunks(source, chunk_rows=chunk_rows, encoding=encoding):
            require_column(chunk.frame, text_col, source)
            texts = text_column(chunk.frame, text_col)
            estimate_total(progress, result.rows + len(texts), chunk.done)
            summaries = list(_summaries(summarizer, texts, chunk.first_row, result, progress, on_row, options))
            frame = chunk.frame.reset_index(drop=True)
            if "summary" in frame:
                frame = frame.rename(columns={"summary": "input_summary"})
                result.renamed = True
            added = pd.DataFrame(
                {
                    "summary": [s.text if s else "" for s in summaries],
                    "summary_notes": ["; ".join(s.notes) if s else "empty text" for s in summaries],
                }
            )
            result.rows += len(frame)
            if writer is not None:
                writer.write(pd.concat([frame, added], axis=1))
        if result.rows == 0:
            raise TableError(f"{source}: the file has a header but no rows")
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return result


def _summaries(
    summarizer: Summarizer,
    texts: list[str],
    first_row: int,
    result: TableSummaries,
    progress: Progress | None,
    on_row: Callable[[int, str, Summary | None], None] | None,
    options: dict[str, Any],
) -> Iterator[Summary | None]:
    for offset, text in enumerate(texts):
        row = first_row + offset
        summary = None
        if text.strip():
            summary = summarizer.summarize(text, **options)
            if summary.method == "generated":
                result.generated += 1
            else:
                result.extracted += 1
        else:
            result.skipped_empty.append(row)
        if on_row is not None:
            on_row(row, text, summary)
        if progress is not None:
            progress(1)
        yield summary
