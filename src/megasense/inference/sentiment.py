"""Sentiment at scale: batched prediction over texts and files, and evaluation against gold labels.

``SentimentClassifier`` runs one classification model: the task turns texts into token windows,
the encoder engine runs them in length-sorted batches at the chosen precision (``"auto"``: bf16 autocast
where the CPU has native bf16 matrix units, 2-3.5x faster than fp32 at equal accuracy; see
``inference.quantize``), and the task turns
logits back into labels. ``SentimentRouter`` is the ``default`` model: each text goes to the English
or the multilingual classifier by its script. Files stream through in chunks, so memory stays
bounded, and the output is written to a temporary file renamed into place at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from megasense.checkpoints.loading import load_model
from megasense.checkpoints.release import LoadedModel
from megasense.checkpoints.sentiment_models import ROUTER
from megasense.data.tables import TableError, TableWriter, read_chunks, require_column
from megasense.inference.encoder import EncoderEngine, EncoderSettings
from megasense.inference.pipelines import check_texts, require_tokenizer, text_column
from megasense.inference.quantize import check_precision
from megasense.tasks.baselines import BaselineUnavailable, vader_labels
from megasense.tasks.labels import LabelError, normalize_labels
from megasense.tasks.language import needs_multilingual
from megasense.tasks.metrics import classification_report
from megasense.tasks.sentiment import SentimentResult, SentimentTask

Progress = Callable[[int], None]


class SentimentClassifier:
    """Texts -> labels, scores and probabilities with one classification model."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        labels: Sequence[str] | None = None,
        max_length: int = 256,
        overlap: int = 64,
        precision: str = "auto",
        bf16: bool | None = None,
        settings: EncoderSettings | None = None,
        name: str | None = None,
    ) -> None:
        if loaded.head.task != "classification":
            raise ValueError(
                f"{loaded.path}: is a {loaded.head.task!r} model, not a classifier; use sentiment-en, "
                "sentiment-multilingual, or a model made by `megasense train`"
            )
        require_tokenizer(loaded)
        self.loaded = loaded
        self.name = name or str(loaded.metadata.get("name") or loaded.path)
        max_length = min(max_length, loaded.config.max_position_embeddings)
        self.task = SentimentTask(
            loaded.tokenizer,
            loaded.head.labels,
            prefix=loaded.head.text_prefix,
            max_length=max_length,
            overlap=min(overlap, max_length // 4),
            allowed=labels,
        )
        if bf16 is not None:  # the older switch: bf16=True/False means precision bf16/fp32
            precision = "bf16" if bf16 else "fp32"
        self.engine = EncoderEngine(
            loaded.model, pad_id=loaded.tokenizer.pad_id, settings=settings, precision=check_precision(precision)
        )

    @property
    def precision(self) -> str:
        """The concrete precision the model runs at: fp32, bf16, int8, onnx or onnx-int8."""
        return self.engine.precision

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels predictions are chosen from (the model's, or the restricted subset)."""
        return self.task.allowed

    def restricted(self, labels: Sequence[str] | None) -> SentimentClassifier:
        clone = object.__new__(SentimentClassifier)
        clone.__dict__.update(self.__dict__)
        clone.task = self.task.restricted(labels)
        return clone

    def predict(self, texts: Sequence[str] | str, *, progress: Progress | None = None) -> SentimentResult:
        texts = check_texts(texts)
        if not texts:
            return self.task.decode(np.zeros((0, len(self.labels)), dtype=np.float32), [])
        plan = self.task.encode(texts)
        logits: torch.Tensor | None = None
        done = set()
        for indices, out in self.engine.batches(plan.sequences):
            if logits is None:
                logits = out.new_empty((len(plan.sequences), out.shape[1]))
            logits[torch.as_tensor(indices)] = out
            if progress is not None:
                finished = {plan.owner[i] for i in indices} - done
                done |= finished
                progress(len(finished))
        return self.task.aggregate(logits, plan)


class SentimentRouter:
    """The ``default`` model: Chinese (and other non-Latin) texts to the multilingual classifier, others to
    the English one. The multilingual model is loaded only when a text needs it."""

    def __init__(self, english: SentimentClassifier, multilingual: Callable[[], SentimentClassifier]) -> None:
        self.english = english
        self._multilingual_factory = multilingual
        self._multilingual: SentimentClassifier | None = None
        self.name = ROUTER

    @property
    def labels(self) -> tuple[str, ...]:
        return self.english.labels

    @property
    def multilingual(self) -> SentimentClassifier:
        if self._multilingual is None:
            model = self._multilingual_factory()
            if tuple(model.labels) != tuple(self.english.labels):
                raise ValueError(f"the routed models disagree on labels: {self.english.labels} vs {model.labels}")
            self._multilingual = model
        return self._multilingual

    def restricted(self, labels: Sequence[str] | None) -> SentimentRouter:
        return SentimentRouter(self.english.restricted(labels), lambda: self.multilingual.restricted(labels))

    def predict(self, texts: Sequence[str] | str, *, progress: Progress | None = None) -> SentimentResult:
        texts = check_texts(texts)
        route = np.array([needs_multilingual(t) for t in texts], dtype=bool)
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        windows = [1] * len(texts)
        for mask, model in ((~route, self.english), (route, None)):
            picked = np.flatnonzero(mask)
            if len(picked) == 0:
                continue
            model = model or self.multilingual
            part = model.predict([texts[i] for i in picked], progress=progress)
            probs[picked] = part.probs
            for i, w in zip(picked, part.windows):
                windows[i] = w
        return self.english.task.decode(probs, windows)


Predictor = SentimentClassifier | SentimentRouter


def load_predictor(
    model: str | Path | LoadedModel = ROUTER, *, labels: Sequence[str] | None = None, **options: Any
) -> Predictor:
    """A predictor for a model name (``default``, ``sentiment-en``, ``sentiment-multilingual``), a path or a
    loaded model. ``options`` go to ``SentimentClassifier`` (``precision``, ``max_length``, ...)."""
    check_precision(options.get("precision", "auto"))  # before any model is loaded
    if isinstance(model, LoadedModel):
        return SentimentClassifier(model, labels=labels, **options)
    if str(model) == ROUTER:
        english = SentimentClassifier(load_model("sentiment-en"), labels=labels, name="sentiment-en", **options)
        return SentimentRouter(
            english,
            lambda: SentimentClassifier(
                load_model("sentiment-multilingual"), labels=labels, name="sentiment-multilingual", **options
            ),
        )
    return SentimentClassifier(load_model(model), labels=labels, name=str(model), **options)


def result_columns(result: SentimentResult) -> dict[str, Any]:
    columns: dict[str, Any] = {"label": result.labels, "score": np.round(result.scores, 6)}
    for j, name in enumerate(result.label_names):
        columns[f"prob_{name}"] = np.round(result.probs[:, j], 6)
    columns["chunks"] = result.windows
    return columns


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


def predict_frame(predictor: Predictor, texts: list[str], *, progress: Progress | None = None) -> pd.DataFrame:
    """The prediction columns for ``texts``; empty texts get an empty label and no probabilities."""
    keep = [i for i, t in enumerate(texts) if t.strip()]
    result = predictor.predict([texts[i] for i in keep], progress=progress)
    columns = result_columns(result)
    frame = pd.DataFrame(index=range(len(texts)), columns=list(columns), dtype=object)
    frame["label"] = ""
    for name, values in columns.items():
        frame.loc[keep, name] = list(values)
    frame["chunks"] = frame["chunks"].fillna(0).astype(int)
    return frame


def predict_file(
    predictor: Predictor,
    source: str | Path,
    output: str | Path | None,
    *,
    text_col: str = "text",
    strict: bool = False,
    chunk_rows: int = 4096,
    progress: Progress | None = None,
    preview_rows: int | None = None,
) -> PredictSummary:
    """Add ``label``, ``score``, ``prob_<label>`` and ``chunks`` columns to every row of a table.

    With ``output`` the rows are written there (atomically; never over the input); without, they are
    returned in ``summary.frames`` (only the first ``preview_rows``, when given, so memory stays bounded).
    """
    source = Path(source)
    summary = PredictSummary(output=Path(output) if output is not None else None)
    writer = TableWriter(output, protect=(source,)) if output is not None else None
    kept = 0
    try:
        for chunk in read_chunks(source, chunk_rows=chunk_rows):
            require_column(chunk.frame, text_col, source)
            texts = text_column(chunk.frame, text_col)
            empty = _empty_rows(texts, chunk.first_row, source, strict)
            predicted = predict_frame(predictor, texts, progress=progress)
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


def read_gold(source: Path, label_col: str, text_col: str) -> list[str]:
    """Every row's canonical label, read in one pass over the label column (numbers read consistently)."""
    raw: list[object] = []
    first = None
    for chunk in read_chunks(source):
        require_column(chunk.frame, label_col, source, option="--label-col")
        require_column(chunk.frame, text_col, source)
        first = chunk.first_row if first is None else first
        raw.extend(chunk.frame[label_col].tolist())
    if not raw:
        raise TableError(f"{source}: the file has a header but no rows")
    try:
        return normalize_labels(raw, column=label_col, first_row=first or 2).labels
    except LabelError as exc:
        raise LabelError(f"{source}: {exc}") from None


def evaluate_file(
    predictor: Predictor,
    source: str | Path,
    *,
    label_col: str = "label",
    text_col: str = "text",
    labels: Sequence[str] | None = None,
    baseline: bool = True,
    strict: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The report ``megasense evaluate`` prints: metrics of the model (and VADER for English) on a labelled table."""
    source = Path(source)
    gold = read_gold(source, label_col, text_col)
    model_labels = tuple(predictor.labels)
    outside = sorted(set(gold) - set(model_labels))
    if outside:
        raise LabelError(f"{source}: labels {outside} are not among the model's labels {list(model_labels)}")
    present = tuple(label for label in model_labels if label in set(gold))
    allowed = tuple(labels) if labels else (present if 2 <= len(present) < len(model_labels) else None)
    restricted = predictor.restricted(allowed) if allowed else predictor
    texts, kept_gold, predicted, confidence, empty = [], [], [], [], 0
    row = 0
    for chunk in read_chunks(source):
        chunk_texts = text_column(chunk.frame, text_col)
        skip = set(_empty_rows(chunk_texts, chunk.first_row, source, strict))
        empty += len(skip)
        keep = [i for i in range(len(chunk_texts)) if i not in skip]
        result = restricted.predict([chunk_texts[i] for i in keep], progress=progress)
        predicted += result.labels
        confidence += result.scores.tolist()
        kept_gold += [gold[row + i] for i in keep]
        texts += [chunk_texts[i] for i in keep]
        row += len(chunk_texts)
    used = tuple(restricted.labels)
    report = classification_report(kept_gold, predicted, used, confidence=confidence)
    report["model"] = predictor.name
    report["data"] = str(source)
    report["labels"] = list(used)
    report["restricted"] = used != model_labels
    if report["restricted"]:
        report["note"] = f"predictions restricted to {', '.join(used)} (the model also knows {', '.join(model_labels)})"
    report["skipped_empty"] = empty
    if baseline:
        report["baseline"] = _vader_report(texts, kept_gold, used)
    return report


def _vader_report(texts: list[str], gold: list[str], labels: tuple[str, ...]) -> dict[str, Any] | None:
    """VADER's scores beside the model's, for data that is mostly English (VADER reads no other language)."""
    if not texts or sum(needs_multilingual(t) for t in texts) > 0.2 * len(texts):
        return None
    try:
        predicted = vader_labels(texts, allowed=labels)
    except BaselineUnavailable as exc:
        return {"name": "vader", "unavailable": str(exc)}
    full = classification_report(gold, predicted, labels)
    keys = ("accuracy", "macro_f1", "weighted_f1", "macro_recall")
    return {"name": "vader", **{k: full[k] for k in keys}}


def sentiment(
    texts: Sequence[str] | str,
    *,
    model: str | Path | LoadedModel | Predictor = ROUTER,
    labels: Sequence[str] | None = None,
    precision: str = "auto",
) -> dict[str, Any] | list[dict[str, Any]]:
    """``{"label", "score", "probs", "chunks"}`` for a text, or a list of them for a list of texts.

    ``precision`` is ``"auto"`` (the fastest at fp32's accuracy on this machine), fp32, bf16, int8, or
    onnx / onnx-int8 (ONNX Runtime; needs ``megasense[onnx]``).

    >>> megasense.sentiment(["The staff were lovely", "房间太小了"])  # doctest: +SKIP
    """
    loaded = isinstance(model, SentimentClassifier | SentimentRouter)
    predictor = model if loaded else load_predictor(model, precision=precision)
    if labels is not None:
        predictor = predictor.restricted(labels)
    single = isinstance(texts, str)
    items = check_texts(texts)
    result = predictor.predict(items)
    out = [
        {
            "label": result.labels[i],
            "score": float(result.scores[i]),
            "probs": {name: float(result.probs[i, j]) for j, name in enumerate(result.label_names)},
            "chunks": result.windows[i],
        }
        for i in range(len(items))
    ]
    return out[0] if single else out


def evaluate(
    data: str | Path,
    *,
    label_col: str = "label",
    text_col: str = "text",
    model: str | Path | LoadedModel | Predictor = ROUTER,
    labels: Sequence[str] | None = None,
    baseline: bool = True,
) -> dict[str, Any]:
    """Accuracy, F1, recall, per-class scores, confusion matrix and calibration of ``model`` on a labelled table.

    >>> megasense.evaluate("reviews.csv", label_col="stars_sentiment")  # doctest: +SKIP
    """
    predictor = model if isinstance(model, SentimentClassifier | SentimentRouter) else load_predictor(model)
    return evaluate_file(predictor, data, label_col=label_col, text_col=text_col, labels=labels, baseline=baseline)
