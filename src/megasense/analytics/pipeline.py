"""``analyze``: a table of posts -> sentiment, topics, time series -> an analysis directory, in timed stages.

Stages: read -> dates -> sentiment -> embed -> topics -> tables -> write. Models come in as objects
(an ``Embedder`` and a ``SentimentScorer``); when none is given they are loaded here, lazily, from
``megasense.inference``. Each long stage reports progress through ``progress(description, total)``,
a context manager yielding ``advance(n)`` (the CLI passes its rich progress bar), and runs in batches
so memory stays bounded by the batch, not the corpus. With ``append=True`` the new documents get
sentiment and topics from the models saved in the directory; old documents keep theirs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from megasense.analytics import store
from megasense.analytics.protocols import Embedder, SentimentScorer, score_texts
from megasense.analytics.tables import build_tables, read_input
from megasense.analytics.text import detect_language
from megasense.analytics.timeseries import parse_times
from megasense.analytics.topics import TopicModel
from megasense.checkpoints.atomic import atomic_directory

Progress = Callable[[str, int], contextlib.AbstractContextManager[Callable[[int], None]]]
EMBEDDING_MODELS = {"en": "all-minilm-l6-v2", "zh": "multilingual-e5-small", "mixed": "multilingual-e5-small"}
LANGS = ("auto", "en", "zh", "mixed")


@dataclass
class AnalyzeOptions:
    text_col: str | None = None
    """Column of the text [default: text; when appending: the analysis's own]."""
    time_col: str | None = None
    group_col: str | None = None
    lang: str = "auto"
    """``auto`` (from the texts' scripts), ``en``, ``zh`` or ``mixed``: picks the embedding model."""
    freq: str | None = None
    """``day``, ``week`` or ``month``; None chooses from the span of the dates."""
    min_topic_size: int | None = None
    reducer: str = "auto"
    clusterer: str = "hdbscan"
    strict: bool = False
    """Refuse bad dates instead of skipping them (with a count) from the time series."""
    report: bool = True
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.lang not in LANGS:
            raise ValueError(f"lang {self.lang!r}: expected one of {', '.join(LANGS)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be at least 1")


@dataclass
class AnalysisResult:
    directory: Path
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _no_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 4)


def analyze(
    source: str | Path,
    out: str | Path,
    *,
    embedder: Embedder | None = None,
    scorer: SentimentScorer | bool | None = None,
    embedding_model: str | None = None,
    sentiment_model: str = "default",
    append: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    topic_model: TopicModel | None = None,
    **options: Any,
) -> AnalysisResult:
    """Analyse the posts in ``source`` (CSV, TSV, JSONL, Parquet, TXT) into the directory ``out``.

    ``options`` are ``AnalyzeOptions`` fields (text_col, time_col, group_col, lang, freq, ...).
    ``scorer=False`` skips sentiment. Returns the summary written to ``out/summary.json``.

    >>> megasense.analyze("reviews.csv", "reviews-analysis", time_col="date", group_col="product")  # doctest: +SKIP
    """
    source, out = Path(source), Path(out)
    opts = AnalyzeOptions(**options)
    progress = progress or _no_progress
    timer = _Timer()
    existing = store.check_target(out, append=append, overwrite=overwrite)
    if existing is not None:
        _inherit(opts, existing["settings"])
    opts.text_col = opts.text_col or "text"
    if existing is not None and scorer is None:  # new documents are scored as the old ones were
        sentiment_model = existing.get("sentiment_model") or sentiment_model
        scorer = None if existing.get("sentiment_model") else False
    warnings: list[str] = []

    with timer.stage("read"):
        frame, rows = read_input(source, opts.text_col, opts.time_col, opts.group_col)
        texts = _texts(frame[opts.text_col])
    with timer.stage("dates"):
        times = _times(frame, rows, opts, warnings)
    lang = existing["language"] if existing else _language(opts.lang, texts)
    model_name = existing["embedding_model"] if existing else (embedding_model or _name(embedder, lang))
    with timer.stage("sentiment"):
        sentiment, sentiment_name = _sentiment(scorer, sentiment_model, texts, opts.batch_size, progress)
    with timer.stage("embed"):
        embedder = embedder or _load_embedder(model_name)
        vectors, inverse = _embed(embedder, texts, opts.batch_size, progress)
    with timer.stage("topics"):
        if existing is not None:
            model = TopicModel.load(out / store.MODEL, embedder=embedder)
            topics = model.transform(texts, vectors[inverse])
        else:
            model = topic_model or TopicModel(
                reducer_kind=opts.reducer,
                clusterer_kind=opts.clusterer,
                min_topic_size=opts.min_topic_size,
                seed=opts.seed,
            )
            with progress("topics", 1) as advance:
                topics = model.fit_transform(texts, vectors[inverse])
                advance(1)
            warnings += model.warnings_
    with timer.stage("tables"):
        old = store.read_table(out, "documents") if existing is not None else None
        tables, facts = build_tables(frame, rows, texts, times, sentiment, topics, model, opts, old=old)
        warnings += facts.pop("warnings")
    summary = _summary(existing, source, opts, lang, model_name, sentiment_name, facts, model, timer, warnings)
    with timer.stage("write"), atomic_directory(out, overwrite=existing is not None or overwrite) as tmp:
        store.write_tables(tmp, tables)
        if existing is None:
            model.save(tmp / store.MODEL, metadata={"embedding_model": model_name})
        else:
            _copy_model(out, tmp)
        if opts.report:
            from megasense.analytics.report import write_report

            with timer.stage("report"):
                write_report(tmp / store.REPORT, tables, summary)
        summary["timings"] = dict(timer.seconds)
        summary["throughput"] = _throughput(timer.seconds, len(texts))
        store.write_summary(tmp, summary)
    summary["timings"]["write"] = timer.seconds["write"]
    return AnalysisResult(out, summary, warnings)


def _name(embedder: Embedder | None, lang: str) -> str:
    if embedder is None:
        return EMBEDDING_MODELS[lang]
    return str(getattr(embedder, "name", None) or type(embedder).__name__)


def _inherit(opts: AnalyzeOptions, saved: dict[str, Any]) -> None:
    """When appending, the columns and periods of the analysis unless given anew."""
    for name in ("text_col", "time_col", "group_col", "freq"):
        if getattr(opts, name) is None:
            setattr(opts, name, saved.get(name))


def _texts(column: pd.Series) -> list[str]:
    return ["" if v is None or v != v else str(v) for v in column.tolist()]


def _times(frame: pd.DataFrame, rows: np.ndarray, opts: AnalyzeOptions, warnings: list[str]):
    if not opts.time_col:
        return None
    parsed = parse_times(frame[opts.time_col], rows)
    problems = parsed.problems(opts.time_col)
    if problems and opts.strict:
        raise ValueError(
            "; ".join(problems) + " (--strict refuses them; without it they are left out of the time series)"
        )
    warnings += [p + "; left out of the time series" for p in problems]
    if parsed.times.isna().all():
        raise ValueError(f"column {opts.time_col!r} holds no usable dates; check --time-col")
    return parsed


def _language(lang: str, texts: Sequence[str]) -> str:
    return detect_language(texts) if lang == "auto" else lang


def _sentiment(scorer, name: str, texts: list[str], batch: int, progress: Progress):
    """(labels, scores, polarity) per text; empty texts and ``scorer=False`` give no sentiment."""
    labels = np.full(len(texts), None, dtype=object)
    scores = np.full(len(texts), np.nan)
    polarity = np.full(len(texts), np.nan)
    if scorer is False:
        return (labels, scores, polarity), None
    scorer = scorer or _load_scorer(name)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    with progress("sentiment", len(keep)) as advance:
        for start in range(0, len(keep), batch):
            picked = keep[start : start + batch]
            result = score_texts(scorer, [texts[i] for i in picked])
            labels[picked], scores[picked], polarity[picked] = result.labels, result.scores, result.polarity
            advance(len(picked))
    return (labels, scores, polarity), getattr(scorer, "name", name)


def _load_scorer(name: str) -> SentimentScorer:
    from megasense.inference.sentiment import load_predictor

    try:
        return load_predictor(name)
    except ValueError as exc:
        raise ValueError(f"{exc} (to analyse without sentiment, pass --no-sentiment / scorer=False)") from None


def _load_embedder(name: str) -> Embedder:
    from megasense.checkpoints.loading import load_model
    from megasense.inference.pipelines import SentenceEmbedder

    return SentenceEmbedder(load_model(name))


def _embed(embedder: Embedder, texts: list[str], batch: int, progress: Progress):
    """Embeddings of the distinct texts and, per text, the row of its embedding."""
    index: dict[str, int] = {}
    inverse = np.array([index.setdefault(t, len(index)) for t in texts], dtype=np.int64)
    unique = list(index)
    parts = []
    with progress("embedding", len(unique)) as advance:
        for start in range(0, len(unique), batch):
            parts.append(np.asarray(embedder.embed(unique[start : start + batch]), dtype=np.float32))
            advance(len(parts[-1]))
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32), inverse


def _copy_model(out: Path, tmp: Path) -> None:
    import shutil

    shutil.copytree(out / store.MODEL, tmp / store.MODEL)


def _throughput(seconds: dict[str, float], n: int) -> dict[str, float]:
    return {stage: round(n / s, 1) for stage, s in seconds.items() if s > 0 and stage != "write"}


def _summary(existing, source, opts, lang, model_name, sentiment_name, facts, model, timer, warnings):
    now = datetime.now(UTC).isoformat(timespec="seconds")
    settings = asdict(opts)
    settings["freq"] = facts.pop("freq")
    batch = {"input": str(source), "documents": facts["documents_added"], "at": now}
    summary = {
        "format": store.FORMAT,
        "version": 1,
        "created": existing["created"] if existing else now,
        "updated": now,
        "input": str(source) if existing is None else existing["input"],
        "batches": [*(existing["batches"] if existing else []), batch],
        "language": lang,
        "embedding_model": model_name,
        "sentiment_model": sentiment_name if existing is None else existing.get("sentiment_model"),
        "settings": settings,
        "topic_model": {"timings": getattr(model, "timings_", {}), "min_topic_size": model.min_topic_size_},
        **facts,
        "warnings": warnings,
    }
    summary["settings"]["min_topic_size"] = model.min_topic_size_
    return summary
