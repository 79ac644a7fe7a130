"""``megasense segment``: Chinese word segmentation (and part-of-speech tags) of a text or a file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from megasense.cli.errors import user_errors
from megasense.errors import MegasenseInputError
from megasense.files.progress import progress_bar

# Suffixes of the tables that get a words column; any other file is plain text, one line per line.
TABLE_SUFFIXES = {".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".parquet", ".pq"}


def segment(
    input: Annotated[str, typer.Argument(help="A file (TXT, CSV, TSV, JSONL, Parquet) or a text to segment.")],
    pos: Annotated[bool, typer.Option("--pos", help="Add part-of-speech tags: word/TAG.")] = False,
    user_dict: Annotated[
        Path | None,
        typer.Option("--dict", help="User dictionary (jieba's format): per line a word, then maybe frequency and tag."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write: a .txt (one line per input line) or a table."),
    ] = None,
    engine: Annotated[str, typer.Option(help="Segmenter: auto (pkuseg, else jieba), pkuseg or jieba.")] = "auto",
    tagset: Annotated[
        str, typer.Option(help="Tags: native (jieba's: n, v, nr, ns...) or upos (Universal POS: NOUN, VERB...).")
    ] = "native",
    text_col: Annotated[str, typer.Option(help="Column that holds the text (tables only).")] = "text",
    progress: Annotated[bool, typer.Option(help="Show a progress bar when writing a file.")] = True,
) -> None:
    """Cut Chinese text into words, with part-of-speech tags on request; English words and numbers stay whole.

    A plain-text file gives one line per input line, words separated by one space.

    A table gets a 'words' column (and 'pos', the tags in the same order, with --pos).

    Without --output the result is printed, one line per text.

    User-dictionary words (product names) are always kept whole.

    The default engine, pkuseg, loads in a few seconds (its first run converts the model once); jieba is faster.

    Examples:

      megasense segment "我买了小米14 Pro，续航很好" --pos

      megasense segment reviews.txt --dict products.txt -o reviews.words.txt

      megasense segment posts.csv --text-col body --pos --tagset upos -o posts.segmented.parquet
    """
    from megasense.segmentation import Segmenter

    with user_errors():
        segmenter = Segmenter(engine, user_dict=user_dict, tagset=tagset)
        source = Path(input)
        if not source.is_file():
            _check_not_a_missing_file(input)
            line = segmenter.segment([input], pos=pos)[0].format()
            if output is None:
                typer.echo(line)
            else:
                _write_lines(output, iter([line]), protect=None)
            return
        if output is None:
            for line in _segmented_lines(segmenter, source, text_col, pos, None):
                typer.echo(line)
            return
        with progress_bar("segmenting", None, enabled=progress) as advance:
            if _is_table(output):
                n = _write_table(segmenter, source, output, text_col, pos, advance)
            else:
                n = _write_lines(output, _segmented_lines(segmenter, source, text_col, pos, advance), protect=source)
        typer.echo(f"segmented {n:,} texts into {output}")


def _chunks(source: Path, text_col: str, advance) -> Iterator[tuple[object, list[str]]]:
    """(chunk, its texts) of ``source``: a table's ``text_col``, or a plain-text file's lines."""
    from megasense.files.progress import estimate_total
    from megasense.files.tables import read_chunks, require_column, text_column

    table = _is_table(source)
    column = text_col if table else "text"
    done = 0
    for chunk in read_chunks(source, fmt=None if table else "txt"):
        require_column(chunk.frame, column, source)
        texts = text_column(chunk.frame, column)
        yield chunk, texts
        done += len(texts)
        if advance is not None:
            estimate_total(advance, done, chunk.done)
            advance(len(texts))


def _segmented_lines(segmenter, source: Path, text_col: str, pos: bool, advance) -> Iterator[str]:
    for _, texts in _chunks(source, text_col, advance):
        yield from (s.format() for s in segmenter.segment(texts, pos=pos))


def _write_lines(output: Path, lines: Iterator[str], *, protect: Path | None) -> int:
    from megasense.files.atomic import atomic_file

    _refuse_overwriting(protect, output)
    n = 0
    with atomic_file(output, "w") as handle:
        for line in lines:
            handle.write(line + "\n")
            n += 1
    return n


def _write_table(segmenter, source: Path, output: Path, text_col: str, pos: bool, advance) -> int:
    from megasense.files.tables import TableWriter

    writer = TableWriter(output, protect=(source,))
    n = 0
    try:
        for chunk, texts in _chunks(source, text_col, advance):
            segmented = segmenter.segment(texts, pos=pos)
            frame = chunk.frame.copy()
            frame["words"] = [" ".join(s.words) for s in segmented]
            if pos:
                frame["pos"] = [" ".join(s.tags) for s in segmented]
            writer.write(frame)
            n += len(frame)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return n


def _is_table(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in TABLE_SUFFIXES


def _check_not_a_missing_file(text: str) -> None:
    """A lone word ending in a file suffix (posts.csv, notes.txt) is a file that is not there, not a text."""
    suffix = Path(text).suffix.lower()
    if text.strip() == text and " " not in text and (suffix in TABLE_SUFFIXES or suffix in (".txt", ".gz")):
        raise MegasenseInputError(f"{text}: no such file")


def _refuse_overwriting(source: Path | None, output: Path) -> None:
    if source is not None and output.exists() and os.path.samefile(source, output):
        raise MegasenseInputError(f"{output}: refusing to overwrite the input file; choose another output path")
