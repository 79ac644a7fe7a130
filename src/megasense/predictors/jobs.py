"""File jobs: a table of texts in, the same rows with predictions (or vectors) out, or an evaluation report.

Each job reads its input once, in chunks, through ``megasense.files`` (CSV, TSV, JSONL, Parquet,
TXT; errors name the file, row and column) and writes through ``TableWriter`` (a temporary file
renamed into place at the end; never over the input). Predictions are streamed, so memory stays
bounded; an evaluation keeps the texts and gold labels of its (labelled, so smaller) file in memory
and predicts them in one call, which lets it choose the labels to restrict to before predicting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from megasense.errors import LabelError, TableError
from megasense.files.atomic import atomic_file
from megasense.files.progress import Progress, estimate_total
from megasense.files.tables import TableWriter, read_chunks, require_column, text_column
from megasense.predictors.embedding import SentenceEmbedder
from megasense.predictors.evaluation import evaluate_texts
from megasense.predictors.labels import SENTIMENT_LABELS, read_gold


@dataclass
class PredictSummary:
    rows: int = 0
    skipped_empty: int = 0
    chunked: int = 0
    """Texts longer than the model's window, predicted as overlapping chunks."""
    output: Path | None = None
    renamed: list[str] = field(default_factory=list)
    """Input columns that had the name of a prediction column; kept as ``input_<name>``."""
    frames: list[pd.DataFrame] = field(default_factory=list)
    """The predicted rows themselves, when no output file was given."""


def _empty_rows(texts: list[str], first_row: int, path: Path, strict: bool) -> list[int]:
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty and strict:
        rows = ", ".join(str(first_row + i) for i in empty[:10])
        raise TableError(f"{path}: {len(empty)} empty or all-whitespace texts (rows {rows}); --strict refuses them")
    return empty


def predict_frame(
    predictor, texts: list[str], *, progress: Progress | None = None, slots=None, aspects: list[str] | None = None
) -> pd.DataFrame:
    """The prediction columns for ``texts`` (see ``SentimentBatch.columns``); empty texts get an empty label
    and no probabilities. With a slot filler (``predictors.slots.SlotFiller``), a ``slots`` column holds each
    text's slots as JSON (``[{"slot", "value", "start", "end", "score"}, ...]``); ``predictor`` may then be
    None (slots alone). With ``aspects`` (one per text) a pair model predicts the sentiment toward each."""
    keep = [i for i, t in enumerate(texts) if t.strip()]
    kept = [texts[i] for i in keep]
    pair = {} if aspects is None else {"aspects": [aspects[i] for i in keep]}
    if predictor is None:
        frame = pd.DataFrame(index=range(len(texts)), columns=["slots"], dtype=object)
        frame["slots"] = "[]"
        frame.loc[keep, "slots"] = _slot_column(slots, kept, progress)
        return frame
    columns = predictor.predict(kept, progress=progress, **pair).columns()
    if slots is not None:
        columns["slots"] = _slot_column(slots, kept, None)
    frame = pd.DataFrame(index=range(len(texts)), columns=list(columns), dtype=object)
    frame["label"] = ""
    for name, values in columns.items():
        frame.loc[keep, name] = list(values)
    frame["chunks"] = frame["chunks"].fillna(0).astype(int)
    if slots is not None:
        frame["slots"] = frame["slots"].fillna("[]")
    return frame


def _slot_column(slots, texts: list[str], progress: Progress | None) -> list[str]:
    import json

    results = slots.predict(texts, progress=progress) if texts else []
    return [json.dumps([s.to_dict() for s in r.slots], ensure_ascii=False) for r in results]


def predict_file(
    predictor,
    source: str | Path,
    output: str | Path | None,
    *,
    text_col: str = "text",
    strict: bool = False,
    chunk_rows: int = 4096,
    progress: Progress | None = None,
    preview_rows: int | None = None,
    encoding: str | None = None,
    slots=None,
    aspect_col: str | None = None,
    redactor: Callable[[list[str]], list[str]] | None = None,
) -> PredictSummary:
    """Add ``label``, ``score``, ``prob_<label>`` and ``chunks`` columns to every row of a table (and ``slots``
    with a slot filler; ``predictor`` None: ``slots`` alone).

    With ``output`` the rows are written there (atomically; never over the input); without, they are
    returned in ``summary.frames`` (only the first ``preview_rows``, when given, so memory stays bounded).
    ``encoding``: the input's text encoding (``gbk``); None reads UTF-8 or what a byte-order mark says.
    ``aspect_col``: a pair model's second input (aspect sentiment), one aspect per row.
    ``redactor`` (``privacy.Redactor``): the text column is redacted before it is scored and written.
    """
    source = Path(source)
    summary = PredictSummary(output=Path(output) if output is not None else None)
    writer = TableWriter(output, protect=(source,)) if output is not None else None
    kept = 0
    try:
        for chunk in read_chunks(source, chunk_rows=chunk_rows, encoding=encoding):
            require_column(chunk.frame, text_col, source)
            texts = text_column(chunk.frame, text_col)
            if redactor is not None:  # before the model: every column written derives from the redacted text
                texts = redactor(texts)
                chunk.frame[text_col] = texts
            empty = _empty_rows(texts, chunk.first_row, source, strict)
            aspects = aspect_column(chunk.frame, aspect_col, texts, chunk.first_row, source)
            estimate_total(progress, summary.rows + len(texts), chunk.done)
            predicted = predict_frame(predictor, texts, progress=progress, slots=slots, aspects=aspects)
            if progress is not None and empty:
                progress(len(empty))
            frame = chunk.frame.reset_index(drop=True)
            # An input column named like a prediction column (gold labels in 'label', say) is kept, renamed.
            clashes = [c for c in predicted if c in frame]
            if clashes:
                frame = frame.rename(columns={c: f"input_{c}" for c in clashes})
                summary.renamed = sorted(set(summary.renamed) | set(clashes))
            frame = pd.concat([frame, predicted], axis=1)
            summary.rows += len(frame)
            summary.skipped_empty += len(empty)
            if "chunks" in predicted:
                summary.chunked += int((predicted["chunks"] > 1).sum())
            if writer is not None:
                writer.write(frame)
            elif preview_rows is None or kept < preview_rows:
                part = frame if preview_rows is None else frame.head(preview_rows - kept)
                summary.frames.append(part)
                kept += len(part)
        if summary.rows == 0:
            raise TableError(f"{source}: the file has a header but no rows")
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return summary


def aspect_column(
    frame: pd.DataFrame, column: str | None, texts: list[str], first_row: int, path: Path
) -> list[str] | None:
    """The aspects of a chunk (None without ``column``); a row with a text but no aspect is refused by number."""
    if column is None:
        return None
    require_column(frame, column, path, option="--aspect-col")
    aspects = text_column(frame, column)
    missing = [i for i, (t, a) in enumerate(zip(texts, aspects)) if t.strip() and not a.strip()]
    if missing:
        rows = ", ".join(str(first_row + i) for i in missing[:10])
        raise TableError(
            f"{path}: column {column!r} is empty in {len(missing)} rows with a text (rows {rows}); "
            "a pair model needs an aspect for every text"
        )
    return aspects


@dataclass
class LabelledTexts:
    """A labelled table read once: the non-empty texts, their canonical gold labels, and what was skipped."""

    texts: list[str]
    gold: list[str] | list[tuple[str, ...]]
    """Canonical labels (tuples of labels for a multi-label model)."""
    skipped_empty: int = 0
    source: str = ""
    aspects: list[str] | None = None
    """With an aspect column: each text's aspect (pair models)."""


def read_labelled(
    source: str | Path,
    *,
    label_col: str = "label",
    text_col: str = "text",
    strict: bool = False,
    model_labels: Sequence[str] = SENTIMENT_LABELS,
    multi_label: bool = False,
    encoding: str | None = None,
    aspect_col: str | None = None,
) -> LabelledTexts:
    """Texts and gold labels of every non-empty row, in one pass, read for a model with ``model_labels``
    (``labels.read_gold``: sentiment labels are normalised over the whole column, so numbers read
    consistently: 0/1 is binary, 0/1/2 three classes; other labels must be the model's)."""
    source = Path(source)
    texts: list[str] = []
    raw: list[object] = []
    aspects: list[str] = []
    empty = 0
    first = None
    for chunk in read_chunks(source, encoding=encoding):
        require_column(chunk.frame, label_col, source, option="--label-col")
        require_column(chunk.frame, text_col, source)
        first = chunk.first_row if first is None else first
        chunk_texts = text_column(chunk.frame, text_col)
        skip = set(_empty_rows(chunk_texts, chunk.first_row, source, strict))
        aspects.extend(aspect_column(chunk.frame, aspect_col, chunk_texts, chunk.first_row, source) or [])
        empty += len(skip)
        labels = chunk.frame[label_col].tolist()
        raw.extend(labels)
        texts.extend(t if i not in skip else None for i, t in enumerate(chunk_texts))
    if not raw:
        raise TableError(f"{source}: the file has a header but no rows")
    try:
        gold = read_gold(raw, model_labels, multi_label=multi_label, column=label_col, first_row=first or 2)
    except LabelError as exc:
        raise LabelError(f"{source}: {exc}") from None
    kept = [i for i, t in enumerate(texts) if t is not None]
    paired = [aspects[i] for i in kept] if aspect_col is not None else None
    return LabelledTexts([texts[i] for i in kept], [gold[i] for i in kept], empty, str(source), paired)


def evaluate_file(
    predictor,
    source: str | Path,
    *,
    label_col: str = "label",
    text_col: str = "text",
    labels: Sequence[str] | None = None,
    baseline: bool = True,
    strict: bool = False,
    progress: Progress | None = None,
    encoding: str | None = None,
    aspect_col: str | None = None,
) -> dict[str, Any]:
    """The report ``megasense evaluate`` prints: metrics of the model (and VADER for English) on a labelled table;
    with ``aspect_col``, of a pair model on (text, aspect) rows."""
    data = read_labelled(
        source,
        label_col=label_col,
        text_col=text_col,
        strict=strict,
        model_labels=tuple(predictor.labels),
        multi_label=getattr(predictor, "multi_label", False),
        encoding=encoding,
        aspect_col=aspect_col,
    )
    estimate_total(progress, len(data.texts), 1.0)
    report = evaluate_texts(
        predictor,
        data.texts,
        data.gold,
        labels=labels,
        baseline=baseline,
        source=data.source,
        progress=progress,
        aspects=data.aspects,
    )
    report["skipped_empty"] = data.skipped_empty
    return report


def embed_file(
    embedder: SentenceEmbedder,
    source: str | Path,
    output: str | Path,
    *,
    text_col: str = "text",
    chunk_rows: int = 4096,
    progress: Progress | None = None,
    encoding: str | None = None,
) -> int:
    """Embed the ``text_col`` of a table into ``output``; returns the number of rows written.

    ``.npy`` output holds an (N, hidden) float32 matrix; a table output (CSV, TSV, JSONL, Parquet)
    holds the input columns plus ``embedding`` (a list of floats). Written atomically; the input is
    never overwritten.
    """
    source, output = Path(source), Path(output)
    as_matrix = output.suffix.lower() == ".npy"
    rows: list[np.ndarray] = []
    total = 0
    writer = None if as_matrix else TableWriter(output, protect=(source,))
    try:
        for chunk in read_chunks(source, chunk_rows=chunk_rows, encoding=encoding):
            require_column(chunk.frame, text_col, source)
            texts = text_column(chunk.frame, text_col)
            estimate_total(progress, total + len(texts), chunk.done)
            vectors = embedder.embed(texts, progress=progress)
            total += len(texts)
            if as_matrix:
                rows.append(vectors)
            else:
                frame = chunk.frame.copy()
                frame["embedding"] = [v.tolist() for v in vectors]
                writer.write(frame)
        if as_matrix:
            matrix = np.concatenate(rows) if rows else np.zeros((0, embedder.dim), dtype=np.float32)
            with atomic_file(output) as handle:
                np.save(handle, matrix, allow_pickle=False)
        else:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return total


def evaluate_slots_file(
    filler,
    source: str | Path,
    *,
    tags_col: str = "slots",
    text_col: str = "text",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``megasense evaluate`` for a slot model: slot-level precision, recall and F1 on a table with one tag per
    character in ``tags_col`` (``predictors.slots.evaluate_slots``)."""
    from megasense.predictors.slots import evaluate_slots, read_slot_examples

    data = read_slot_examples(source, text_col=text_col, tags_col=tags_col)
    estimate_total(progress, len(data.texts), 1.0)
    return evaluate_slots(filler, data.texts, data.tags, source=str(source), progress=progress)
