"""``analyze``: a table of posts -> sentiment, topics, time series -> an analysis directory, in timed stages.

Stages: read (store per chunk, dates) -> distinct texts (sentiment, embed, terms) -> topics -> tables -> write.
Models come in as objects (an ``Embedder`` and a ``SentimentScorer``); when none is given they are
loaded here, lazily, from ``megasense.inference``. Each long stage reports progress through
``progress(description, total)``, a context manager yielding ``advance(n)`` (the CLI passes rich
progress bars). The input is streamed in chunks (``ingest``) into a work database (DuckDB, its memory
capped by ``store.WORK_MEMORY``) and nothing is kept in memory per row: the tables are counted in SQL,
and Python holds one chunk, or a few bytes per distinct text (``tests/test_analytics_memory.py``). With
``append=True`` the new documents get sentiment and topics from the models saved in the directory; old
documents keep theirs.
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

from megasense.analytics import ingest, store
from megasense.analytics.counts import row_blocks
from megasense.analytics.explanations import explain_representatives, previous_explanations
from megasense.analytics.guided import read_seed_topics
from megasense.analytics.ingest import first_chunk, language_sample
from megasense.analytics.protocols import Embedder, Progress, SentimentScorer, no_progress
from megasense.analytics.represent import PhraseCounts
from megasense.analytics.tables import ADDED, RESULTS, build_tables, results_view
from megasense.analytics.text import detect_language
from megasense.analytics.timeseries import FREQS
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
        con = store.connect_work(work / "input.duckdb")
        got = None
        try:
            first_id, batch_no = self._old(con, existing)
            read = ingest.read_rows(
                self.source,
                con,
                opts=opts,
                first_id=first_id,
                batch_no=batch_no,
                timer=timer,
                progress=self.progress,
                redactor=self.redactor,
            )
            with timer.stage("dates"):
                times, usable_time = self._dates(con, read.times)
            terms = model.term_counter(work)
            got = ingest.score_distinct(
                con,
                work,
                read,
                opts=opts,
                text_col=self._text_col(),
                embedder=embedder,
                scorer=scorer,
                terms=terms,
                timer=timer,
                progress=self.progress,
            )
            with timer.stage("topics"):
                topics, X = self._topics(con, model, got, terms, existing is not None)
            with timer.stage("tables"):
                ingest.create_rows(con)
                if existing is not None:
                    ingest.add_old_rows(con, opts.group_col)
                ingest.add_new_rows(con, batch_no, usable_time, topics)
                freq = results_view(con, ingest.ROWS, model, opts)
                phrases = self._phrases(con, model, X, got, topics, existing is not None)
                tables, facts = build_tables(con, model, opts, freq=freq, phrases=phrases, added=got.rows)
            if scorer is not False and opts.explain:
                with timer.stage("explain"):
                    previous = previous_explanations(con) if existing is not None else None
                    tables["explanations"] = explain_representatives(
                        tables["topics"], scorer, previous=previous, batch_size=opts.batch_size
                    )
            tables.update(topic_structure(model))
            facts.update(_ingest_facts(con, got, batch_no, times, self.warnings))
            if self.aspect_scorer is not None:
                with timer.stage("aspects"):
                    periods = con.execute(f"SELECT doc_id, period FROM {RESULTS}").df() if freq else None
                    found, aspect_facts = self._aspects(con, embedder, periods)
                tables.update(found)
                facts.update(aspect_facts)
            if facts["freq"]:
                total = opts.forecast_keys + 1 if opts.forecast else None
                with timer.stage("trends"), self.progress("trends and forecasts", total) as advance:
                    tables.update(topic_trends(tables, facts["freq"], **opts.trend_options(), advance=advance))
            summary = _summary(existing, self.source, opts, lang, *names, facts, model, timer, self.warnings)
            with timer.stage("write"), self.progress("writing", len(tables) + 1) as advance:
                store.write_documents(con, tmp, RESULTS, ingest.INPUT)
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

    def _old(self, con, existing) -> tuple[int, int]:
        """(the first new doc_id, the new batch number); copies the old rows' own columns into ``_input``."""
        if existing is None:
            return 0, 0
        con.execute(f"ATTACH {store.literal(self.out / store.DATABASE)} AS old (READ_ONLY)")
        computed = "time_utc, period, topic, topic_label, has_words, sentiment, score, polarity"
        con.execute(f"CREATE TABLE {ingest.INPUT} AS SELECT * EXCLUDE ({computed}) FROM old.documents ORDER BY doc_id")
        last_id, last_batch = con.execute("SELECT max(doc_id), max(batch) FROM old.documents").fetchone()
        return int(last_id) + 1, int(last_batch) + 1

    def _dates(self, con, parser) -> tuple[Any, str]:
        """The new rows' dates checked (bad ones reported, or refused with ``strict``): (facts, SQL of each row's
        usable time)."""
        opts, source = self.opts, self.source
        if parser is None:
            return None, "t"
        parsed, usable = ingest.finish_dates(con, parser)
        problems = parsed.problems(opts.time_col)
        if problems and opts.strict:
            raise TableError(
                f"{source}: "
                + "; ".join(problems)
                + " (--strict refuses them; without it they are left out of the time series)"
            )
        self.warnings += [p + "; left out of the time series" for p in problems]
        if not parsed.parsed:
            raise TableError(f"{source}: column {opts.time_col!r} holds no usable dates; check --time-col")
        return parsed, usable

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
            cursor = con.execute(f"SELECT doc_id, {store.quote(self._text_col())} FROM {ingest.INPUT} ORDER BY doc_id")
            while rows := cursor.fetchmany(opts.chunk_size):
                yield [r[0] for r in rows], ["" if r[1] is None else str(r[1]) for r in rows]

        return aspect_tables(
            chunks, settings, embedder=embedder, scorer=self.aspect_scorer, periods=periods, progress=self.progress
        )

    def _text_col(self) -> str:
        return self.opts.text_col if self.opts.text_col not in ADDED else f"input_{self.opts.text_col}"

    def _phrases(self, con, model: TopicModel, X, got, topics: np.ndarray, appending: bool):
        """Each topic's key phrases (``represent.PhraseCounts``) over every document: the new ones through their
        distinct texts' counts, a block at a time; the old ones (when appending) counted again, a chunk at a time."""
        vocabulary = model.vocabulary_
        if not len(vocabulary):
            return {}
        counts, labels = PhraseCounts(len(vocabulary)), np.array(got.labels, dtype=object)
        for start, block in row_blocks(X):
            rows = slice(start, start + block.shape[0])
            counts.add(block, topics[rows], labels[got.sentiment[rows]], got.counts[rows])
        if appending:
            text = store.quote(self._text_col())
            cursor = con.execute(f"SELECT {text}, topic, sentiment FROM old.documents ORDER BY doc_id")
            while rows := cursor.fetchmany(self.opts.chunk_size):
                terms = model.term_counter()
                terms.add(["" if r[0] is None else str(r[0]) for r in rows])
                old = np.array([r[2] for r in rows], dtype=object)
                counts.add(terms.matrix()[0], np.array([r[1] for r in rows], dtype=np.int64), old)
        return counts.phrases(vocabulary)

    def _topics(self, con, model: TopicModel, got, terms, appending: bool):
        """(topic of each distinct text, (distinct texts, terms) counts: a ``counts.TermFile``)."""
        X, vocabulary = terms.matrix()
        if appending:  # the saved model assigns; it never refits
            topics = np.full(len(got.vectors), -1, dtype=np.int64)
            wordy = terms.any_terms
            for start, block in blocks(got.vectors, np.arange(len(got.vectors))):
                topics[start : start + len(block)] = model.assign_vectors(block, wordy[start : start + len(block)])[0]
            return topics, X
        topics = model.fit_distinct(
            got.vectors, got.counts, X, vocabulary, lambda rows: self._texts(con, rows), self.progress
        )
        self.warnings += model.warnings_
        return topics, X

    def _texts(self, con, rows: np.ndarray) -> list[str]:
        """The texts of a few distinct texts (the representative posts), read back from the stored rows."""
        return [
            t
            for chunk in ingest.distinct_texts(con, self._text_col(), rows, chunk_rows=self.opts.chunk_size)
            for t in chunk
        ]


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


def _language(opts: AnalyzeOptions, embedder: Embedder | None, source: Path) -> str:
    """The language that picks the embedding model: as given, or from an evenly spread sample of the texts."""
    if opts.lang != "auto":
        return opts.lang
    return detect_language(language_sample(source, opts.text_col, opts.chunk_size, opts.encoding))


def _ingest_facts(con, got, batch_no: int, times, warnings: list[str]) -> dict[str, Any]:
    n, distinct = got.rows, got.distinct
    wordless = con.execute(
        f"SELECT count(*) FILTER (WHERE NOT has_words) FROM {ingest.ROWS} WHERE batch = ?", [batch_no]
    ).fetchone()
    wordless = int(wordless[0])
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
        facts["dates"] = {
            "parsed": times.parsed,
            "not_dates": times.not_dates,
            "ambiguous_time_zone": times.ambiguous,
            "missing": times.missing,
            "first": None if times.first is None else str(times.first),
            "last": None if times.last is None else str(times.last),
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
