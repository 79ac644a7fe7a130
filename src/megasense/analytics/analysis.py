"""``analyze``: a table of posts -> sentiment, topics, time series -> an analysis directory, in timed stages.

Stages: read (with sentiment, embed, terms and store per chunk) -> dates -> topics -> tables -> write.
Models come in as objects (an ``Embedder`` and a ``SentimentScorer``); when none is given they are
loaded here, lazily, from ``megasense.inference``. Each long stage reports progress through
``progress(description, total)``, a context manager yielding ``advance(n)`` (the CLI passes rich
progress bars). The input is streamed in chunks (``ingest``): texts never sit in memory all at once,
only the embeddings' reduced vectors and a few small columns per row do. With ``append=True`` the new documents get
sentiment and topics from the models saved in the directory; old documents keep theirs.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from megasense.analytics import store
from megasense.analytics.explanations import explain_representatives, previous_explanations
from megasense.analytics.guided import read_seed_topics
from megasense.analytics.ingest import INPUT, first_chunk, ingest, language_sample
from megasense.analytics.protocols import Embedder, Progress, SentimentScorer, no_progress
from megasense.analytics.tables import ADDED, build_tables
from megasense.analytics.text import detect_language
from megasense.analytics.timeseries import FREQS, parse_times
from megasense.analytics.topics import TopicModel
from megasense.analytics.trends import topic_structure, topic_trends
from megasense.analytics.vectors import blocks
from megasense.errors import ConfigError, MegasenseInputError, TableError
from megasense.files.atomic import atomic_directory
from megasense.privacy import build_redactor

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
    """Texts per call of the sentiment scorer and the embedder."""
    chunk_size: int = 8192
    """Rows read (and held) at a time; the input is streamed chunk by chunk."""
    seed: int = 0
    encoding: str | None = None
    """The input's text encoding (``gbk``); None: UTF-8, or what a byte-order mark says."""
    redact: bool = False
    """Replace private data in the text (``privacy.Redactor``: [EMAIL], [PHONE], ...) as it is read, before it is
    scored, embedded or stored; an analysis made so redacts what is appended to it too."""
    redact_names: str | None = None
    """A names file (one a line) to redact as [NAME]; implies ``redact``."""
    explain: bool = True
    """Word attributions for the representative posts of each topic (``analytics.explanations``; a few posts,
    so about a second); the report and dashboard highlight them."""
    forecast: bool = False
    """Forecast topic volume and sentiment (``forecasts``, ``forecast_backtest``; about a second a series, so off
    unless asked: ``megasense analyze`` asks by default). Emerging topics are tested either way."""
    horizon: int | None = None
    """Periods to forecast [default: 14 days, 8 weeks or 6 months]."""
    forecast_keys: int = 10
    """Forecast the largest this many topics (and all documents)."""
    n_topics: int | None = None
    """Merge the topics found hierarchically down to this many (``--topics``)."""
    seed_topics: list[list[str]] | str | Path | None = None
    """Seed words per topic, or a file of them (``--seed-topics``, ``guided.read_seed_topics``): documents near a
    seed's words form that topic."""
    aspects: str | Path | None = None
    """``auto`` (discover aspects from noun phrases) or an aspects TOML file (``terms.read_terms``); None: no
    aspect tables (``analytics.aspects``)."""
    brands: str | Path | None = None
    """A brands TOML file (``--brands``): mentions, share of voice, sentiment toward each, co-mentions."""

    def trend_options(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "max_keys": self.forecast_keys, "forecast": self.forecast}

    def __post_init__(self) -> None:
        if self.lang not in LANGS:
            raise ConfigError(f"lang {self.lang!r} (--lang): expected one of {', '.join(LANGS)}")
        if self.freq is not None and self.freq not in FREQS:
            raise ConfigError(f"freq {self.freq!r} (--freq): expected one of {', '.join(FREQS)}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be at least 1")
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size={self.chunk_size} (--chunk-size) must be at least 1")
        if self.horizon is not None and self.horizon < 1:
            raise ConfigError(f"horizon={self.horizon} (--horizon) must be at least 1")
        if self.n_topics is not None and self.n_topics < 1:
            raise ConfigError(f"n_topics={self.n_topics} (--topics) must be at least 1")
        self.aspects, self.brands = (None if v is None else str(v) for v in (self.aspects, self.brands))
        if self.aspects not in (None, "auto") or self.brands is not None:  # a bad file fails before any model runs
            from megasense.analytics.terms import read_terms

            if self.aspects not in (None, "auto"):
                read_terms(self.aspects, "aspect")
            if self.brands is not None:
                read_terms(self.brands, "brand")
        if isinstance(self.seed_topics, str | Path):
            self.seed_topics = read_seed_topics(self.seed_topics)


@dataclass
class AnalysisResult:
    directory: Path
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


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
    aspect_scorer: Any = None,
    **options: Any,
) -> AnalysisResult:
    """Analyse the posts in ``source`` (CSV, TSV, JSONL, Parquet, TXT) into the directory ``out``.

    ``options`` are ``AnalyzeOptions`` fields (text_col, time_col, group_col, lang, freq, ...).
    ``scorer=False`` skips sentiment. Returns the summary written to ``out/summary.json``. With ``aspects`` or
    ``brands`` options, ``aspect_scorer`` (an ``aspects.AspectScorer``, or a pair classifier) scores each mention;
    by default ``aspect-sentiment-en`` for English sentences and ``scorer`` on the clause for Chinese ones.

    >>> megasense.analyze("reviews.csv", "reviews-analysis", time_col="date", group_col="product")  # doctest: +SKIP
    """
    source, out = Path(source), Path(out)
    opts = AnalyzeOptions(**options)
    run = _Run(source, out, opts, progress or no_progress)
    existing = store.check_target(out, append=append, overwrite=overwrite)
    if existing is not None:
        _inherit(opts, existing["settings"])
    opts.text_col = opts.text_col or "text"
    run.redactor = build_redactor(opts.redact, names_file=opts.redact_names)
    if existing is not None and scorer is None:  # new documents are scored as the old ones were
        sentiment_model = existing.get("sentiment_model") or sentiment_model
        scorer = None if existing.get("sentiment_model") else False
    with run.timer.stage("read"):
        first_chunk(source, opts)  # wrong columns are refused before any model loads
        lang = existing["language"] if existing else _language(opts, embedder, source)
    model_name = existing["embedding_model"] if existing else (embedding_model or _name(embedder, lang))
    embedder = embedder or _load_embedder(model_name)
    scorer, sentiment_name = (False, None) if scorer is False else _scorer(scorer, sentiment_model)
    if existing is not None:
        model = TopicModel.load(out / store.MODEL, embedder=embedder)
    else:
        model = topic_model or TopicModel(
            embedder,
            reducer_kind=opts.reducer,
            clusterer_kind=opts.clusterer,
            min_topic_size=opts.min_topic_size,
            seed=opts.seed,
            n_topics=opts.n_topics,
            seed_topics=opts.seed_topics,
        )
    if opts.aspects is not None or opts.brands is not None:
        run.aspect_scorer = _aspect_scorer(aspect_scorer, scorer, lang)
    with atomic_directory(out, overwrite=existing is not None or overwrite) as tmp:
        summary = run.into(tmp, existing, embedder, scorer, model, lang=lang, names=(model_name, sentiment_name))
    summary["timings"]["write"] = run.timer.seconds["write"]
    return AnalysisResult(out, summary, run.warnings)


class _Run:
    """One analysis, stage by stage, into a temporary directory that becomes ``out`` when all went well."""

    def __init__(self, source: Path, out: Path, opts: AnalyzeOptions, progress: Progress) -> None:
        self.source, self.out, self.opts, self.progress = source, out, opts, progress
        self.timer = _Timer()
        self.warnings: list[str] = []
        self.redactor = None
        self.aspect_scorer = None

    def into(self, tmp: Path, existing, embedder, scorer, model: TopicModel, *, lang: str, names) -> dict[str, Any]:
        opts, timer, work = self.opts, self.timer, tmp / "_work"
        work.mkdir()
        con = store.connect(work / "input.duckdb")
        got = None
        try:
            old, first_id, batch_no = self._old(con, existing)
            terms = model.term_counter()
            got = ingest(
                self.source,
                con,
                work,
                opts=opts,
                embedder=embedder,
                scorer=scorer,
                terms=terms,
                first_id=first_id,
                batch_no=batch_no,
                timer=timer,
                progress=self.progress,
                redactor=self.redactor,
            )
            with timer.stage("dates"):
                times = _times(got.times, got.rows, opts, self.warnings, self.source)
            with timer.stage("topics"):
                topics, X = self._topics(con, model, got, terms, existing is not None)
            with timer.stage("tables"):
                new = _light(got, times, topics, X, batch_no, first_id, opts)
                X_old = self._old_terms(con, model) if old is not None else None
                tables, results, facts = build_tables(new, X[got.ids], model, opts, old=old, X_old=X_old)
            if scorer is not False and opts.explain:
                with timer.stage("explain"):
                    previous = previous_explanations(con) if old is not None else None
                    tables["explanations"] = explain_representatives(
                        tables["topics"], scorer, previous=previous, batch_size=opts.batch_size
                    )
            tables.update(topic_structure(model))
            facts.update(_ingest_facts(got, new, times, self.warnings))
            if self.aspect_scorer is not None:
                with timer.stage("aspects"):
                    found, aspect_facts = self._aspects(con, embedder, results if facts["freq"] else None)
                tables.update(found)
                facts.update(aspect_facts)
            if facts["freq"]:
                total = opts.forecast_keys + 1 if opts.forecast else None
                with timer.stage("trends"), self.progress("trends and forecasts", total) as advance:
                    tables.update(topic_trends(tables, facts["freq"], **opts.trend_options(), advance=advance))
            summary = _summary(existing, self.source, opts, lang, *names, facts, model, timer, self.warnings)
            with timer.stage("write"), self.progress("writing", len(tables) + 1) as advance:
                store.write_documents(con, tmp, results, INPUT)
                advance(1)
                store.write_tables(tmp, tables)
                advance(len(tables))
                if existing is None:
                    model.save(tmp / store.MODEL, metadata={"embedding_model": names[0]})
                else:
                    _copy_model(self.out, tmp)
                if opts.report:
                    from megasense.analytics.report import write_report

                    with timer.stage("report"):
                        write_report(tmp / store.REPORT, tables, summary)
        finally:
            con.close()
            del got  # the embeddings, before their file goes
            shutil.rmtree(work, ignore_errors=True)
        inner = {"reduce": "reduce", "cluster": "cluster", "represent": "keywords"}
        parts = {f"topics.{name}": round(model.timings_[key], 4) for key, name in inner.items() if existing is None}
        summary["timings"] = {**timer.seconds, **parts}
        summary["throughput"] = _throughput(summary["timings"], facts["documents_added"])
        store.write_summary(tmp, summary)
        return summary

    def _old(self, con, existing) -> tuple[pd.DataFrame | None, int, int]:
        """(the old documents' small columns, the first new doc_id, the new batch number); copies the old rows."""
        if existing is None:
            return None, 0, 0
        con.execute(f"ATTACH {store.literal(self.out / store.DATABASE)} AS old (READ_ONLY)")
        computed = "time_utc, period, topic, topic_label, has_words"
        con.execute(f"CREATE TABLE {INPUT} AS SELECT * EXCLUDE ({computed}) FROM old.documents ORDER BY doc_id")
        group = f", {store.quote(self.opts.group_col)}" if self.opts.group_col else ""
        old = con.execute(
            "SELECT doc_id, batch, row, time_utc, sentiment, score, polarity, topic, has_words"
            f"{group} FROM old.documents ORDER BY doc_id"
        ).df()
        old["sentiment"] = old["sentiment"].astype("string")
        return old, int(old["doc_id"].max()) + 1, int(old["batch"].max()) + 1

    def _aspects(self, con, embedder, periods: pd.DataFrame | None):
        """The aspect and brand tables (``aspects.aspect_tables``) over every stored text, read in chunks."""
        from megasense.analytics.aspects import AspectSettings, aspect_tables
        from megasense.analytics.terms import read_terms

        opts = self.opts
        listed = opts.aspects is not None and str(opts.aspects) != "auto"
        settings = AspectSettings(
            aspects=read_terms(opts.aspects, "aspect") if listed else None,
            brands=read_terms(opts.brands, "brand") if opts.brands is not None else None,
            discover=opts.aspects is not None,
            batch_size=opts.batch_size,
        )

        def chunks():
            cursor = con.execute(f"SELECT doc_id, {store.quote(self._text_col())} FROM {INPUT} ORDER BY doc_id")
            while rows := cursor.fetchmany(opts.chunk_size):
                yield [r[0] for r in rows], ["" if r[1] is None else str(r[1]) for r in rows]

        return aspect_tables(
            chunks, settings, embedder=embedder, scorer=self.aspect_scorer, periods=periods, progress=self.progress
        )

    def _text_col(self) -> str:
        return self.opts.text_col if self.opts.text_col not in ADDED else f"input_{self.opts.text_col}"

    def _old_terms(self, con, model: TopicModel):
        """The old documents' term counts, read back chunk by chunk (for key phrases over all documents)."""
        terms = model.term_counter()
        cursor = con.execute(f"SELECT {store.quote(self._text_col())} FROM old.documents ORDER BY doc_id")
        while rows := cursor.fetchmany(self.opts.chunk_size):
            terms.add(["" if r[0] is None else str(r[0]) for r in rows])
        return terms.matrix()[0]

    def _topics(self, con, model: TopicModel, got, terms, appending: bool):
        """(topic of each distinct text, (distinct texts, terms) counts)."""
        X, vocabulary = terms.matrix()
        if appending:  # the saved model assigns; it never refits
            topics = np.full(len(got.vectors), -1, dtype=np.int64)
            wordy = terms.any_terms
            for start, block in blocks(got.vectors, np.arange(len(got.vectors))):
                topics[start : start + len(block)] = model.assign_vectors(block, wordy[start : start + len(block)])[0]
            return topics, X
        counts = np.bincount(got.ids, minlength=len(got.vectors))
        topics = model.fit_distinct(
            got.vectors, counts, X, vocabulary, lambda rows: self._texts(con, got, rows), self.progress
        )
        self.warnings += model.warnings_
        return topics, X

    def _texts(self, con, got, rows: np.ndarray) -> list[str]:
        """The texts of a few distinct texts (the representative posts), read back from the stored rows."""
        wanted = pd.DataFrame({"doc_id": got.first_doc[rows], "pos": np.arange(len(rows))})
        con.register("wanted_view", wanted)
        try:
            found = con.execute(
                f"SELECT w.pos, i.{store.quote(self._text_col())} FROM wanted_view w JOIN {INPUT} i USING (doc_id) "
                "ORDER BY w.pos"
            ).fetchall()
        finally:
            con.unregister("wanted_view")
        return ["" if t is None else str(t) for _, t in found]


def _name(embedder: Embedder | None, lang: str) -> str:
    if embedder is None:
        return EMBEDDING_MODELS[lang]
    return str(getattr(embedder, "name", None) or type(embedder).__name__)


def _inherit(opts: AnalyzeOptions, saved: dict[str, Any]) -> None:
    """When appending, the columns and periods of the analysis unless given anew."""
    for name in ("text_col", "time_col", "group_col", "freq", "redact_names", "aspects", "brands"):
        if getattr(opts, name) is None:
            setattr(opts, name, saved.get(name))
    opts.redact = opts.redact or bool(saved.get("redact"))  # a redacted analysis never takes raw texts


def _times(values: pd.Series | None, rows: np.ndarray, opts: AnalyzeOptions, warnings: list[str], source: Path):
    if not opts.time_col:
        return None
    parsed = parse_times(values, rows)
    problems = parsed.problems(opts.time_col)
    if problems and opts.strict:
        raise TableError(
            f"{source}: "
            + "; ".join(problems)
            + " (--strict refuses them; without it they are left out of the time series)"
        )
    warnings += [p + "; left out of the time series" for p in problems]
    if parsed.times.isna().all():
        raise TableError(f"{source}: column {opts.time_col!r} holds no usable dates; check --time-col")
    return parsed


def _language(opts: AnalyzeOptions, embedder: Embedder | None, source: Path) -> str:
    """The language that picks the embedding model: as given, or from an evenly spread sample of the texts."""
    if opts.lang != "auto":
        return opts.lang
    return detect_language(language_sample(source, opts.text_col, opts.chunk_size, opts.encoding))


def _light(got, times, topics: np.ndarray, X, batch_no: int, first_id: int, opts: AnalyzeOptions) -> pd.DataFrame:
    """The new documents' small columns (no text): what the tables are counted from."""
    labels, scores, polarity = got.sentiment
    n = len(got.ids)
    new = pd.DataFrame({"doc_id": np.arange(first_id, first_id + n, dtype=np.int64), "batch": np.int64(batch_no)})
    new["row"] = got.rows
    new["time_utc"] = times.times.dt.tz_convert("UTC").dt.tz_localize(None) if times is not None else pd.NaT
    new["sentiment"] = pd.Series(labels[got.ids], dtype="string")
    new["score"], new["polarity"] = scores[got.ids], polarity[got.ids]
    new["topic"] = topics[got.ids].astype(np.int64)
    new["has_words"] = (np.asarray(X.sum(axis=1)).ravel() > 0)[got.ids]
    if opts.group_col:
        new[opts.group_col] = got.groups.to_numpy()
    return new


def _ingest_facts(got, new: pd.DataFrame, times, warnings: list[str]) -> dict[str, Any]:
    n, distinct = len(got.ids), len(got.vectors)
    wordless = int((~new["has_words"]).sum())
    if wordless:
        warnings.append(f"{wordless} documents hold no words (only URLs, emoji, numbers or nothing); topic -1")
    if distinct < n:
        warnings.append(
            f"{n - distinct} of {n} rows repeat another row's text (same after normalising case, whitespace and "
            f"Unicode form): {distinct} distinct texts were scored and embedded, each result given to all its rows; "
            "every row is kept"
        )
    facts: dict[str, Any] = {
        "distinct_texts_added": distinct,
        "duplicates_added": n - distinct,
        "empty_texts_added": got.empty_texts,
        "wordless_added": wordless,
    }
    if times is not None:
        valid = times.times.dropna()
        facts["dates"] = {
            "parsed": int(times.times.notna().sum()),
            "not_dates": len(times.bad_rows),
            "ambiguous_time_zone": len(times.ambiguous_rows),
            "missing": times.missing,
            "first": str(valid.min().tz_convert("UTC").tz_localize(None)) if len(valid) else None,
            "last": str(valid.max().tz_convert("UTC").tz_localize(None)) if len(valid) else None,
        }
    return facts


def _scorer(scorer, name: str):
    scorer = scorer or _load_scorer(name)
    return scorer, getattr(scorer, "name", name)


def _load_scorer(name: str) -> SentimentScorer:
    from megasense.predictors.sentiment import load_predictor

    try:
        return load_predictor(name)
    except MegasenseInputError as exc:  # an unknown model name or path; a bug keeps its own type and traceback
        raise MegasenseInputError(f"{exc} (to analyse without sentiment, pass --no-sentiment / scorer=False)") from None


def _aspect_scorer(given, scorer, lang: str):
    """The scorer of aspect and brand mentions: as given, or aspect-sentiment-en (English sentences) and
    aspect-sentiment-multilingual on the clause naming the aspect (the others; loaded when the first comes)."""
    from megasense.analytics.aspects import AspectScorer

    sentence = scorer if scorer is not False else None
    if isinstance(given, AspectScorer):
        return given
    if given is not None:
        return AspectScorer(given, sentence)
    if scorer is False:
        return AspectScorer()
    from megasense.predictors.sentiment import load_predictor

    english = None if lang == "zh" else load_predictor("aspect-sentiment-en")
    return AspectScorer(english, sentence, zh_pair=lambda: load_predictor("aspect-sentiment-multilingual"))


def _load_embedder(name: str) -> Embedder:
    from megasense.predictors.embedding import SentenceEmbedder
    from megasense.zoo.load import load_model

    return SentenceEmbedder(load_model(name))


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
