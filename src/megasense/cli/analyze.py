"""``megasense analyze``: a file of posts -> topics, sentiment over time and per group -> a directory of results."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from megasense.cli.errors import err_console, user_errors
from megasense.cli.privacy_options import RedactNamesOpt, RedactOpt
from megasense.cli.ray_options import EngineOpt, RayAddressOpt, check_engine, ray_scorer, refuse_local_only
from megasense.errors import MissingExtraError
from megasense.files.progress import ProgressBars

console = Console()


def analyze(
    input: Annotated[Path, typer.Argument(help="A CSV, TSV, JSONL, Parquet or TXT file of posts.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the analysis (created).")],
    text_col: Annotated[str | None, typer.Option(help="Column holding the text [default: text].")] = None,
    time_col: Annotated[str | None, typer.Option(help="Column of dates: adds time series.")] = None,
    group_col: Annotated[str | None, typer.Option(help="Column to break down by (product, board, ticker).")] = None,
    lang: Annotated[str, typer.Option(help="auto, en, zh or mixed: picks the embedding model.")] = "auto",
    freq: Annotated[str | None, typer.Option(help="day, week or month [default: from the span of dates].")] = None,
    model: Annotated[str, typer.Option(help="Sentiment model.")] = "default",
    sentiment: Annotated[bool, typer.Option("--sentiment/--no-sentiment", help="Score sentiment.")] = True,
    embedding_model: Annotated[
        str | None, typer.Option(help="Encoder for topics [default: all-minilm-l6-v2, multilingual for Chinese].")
    ] = None,
    clusterer: Annotated[str, typer.Option(help="hdbscan (finds the number of topics) or kmeans.")] = "hdbscan",
    reducer: Annotated[str, typer.Option(help="auto (UMAP if installed, else PCA), umap or pca.")] = "auto",
    min_topic_size: Annotated[int | None, typer.Option(help="Smallest topic [default: from the corpus size].")] = None,
    strict: Annotated[bool, typer.Option(help="Refuse bad dates instead of skipping them with a count.")] = False,
    append: Annotated[bool, typer.Option(help="Add the documents to the analysis in --out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the analysis in --out.")] = False,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    chunk_size: Annotated[int, typer.Option(help="Rows read and held at a time (memory is bounded by it).")] = 8192,
    encoding: Annotated[
        str | None,
        typer.Option(help="The file's text encoding, e.g. gbk [default: UTF-8, or what a byte-order mark says]."),
    ] = None,
    redact: RedactOpt = False,
    redact_names: RedactNamesOpt = None,
    topics: Annotated[
        int | None, typer.Option("--topics", help="Merge the topics found hierarchically down to N.", min=1)
    ] = None,
    seed_topics: Annotated[
        Path | None,
        typer.Option(help="Seed words per topic: a .toml (name = [words]) or a text file, one topic's words a line."),
    ] = None,
    forecast: Annotated[
        bool, typer.Option("--forecast/--no-forecast", help="Forecast topic volume and sentiment (with --time-col).")
    ] = True,
    horizon: Annotated[
        int | None, typer.Option(help="Periods to forecast [default: 14 days, 8 weeks or 6 months].", min=1)
    ] = None,
    aspects: Annotated[
        str | None,
        typer.Option(
            help="auto (discover aspects: noun phrases merged by meaning) or an aspects.toml (name, synonyms, zh): "
            "mentions, sentiment toward each (aspect-sentiment-en), example sentences."
        ),
    ] = None,
    brands: Annotated[
        Path | None,
        typer.Option(
            help="A brands.toml (name, aliases, zh): mentions, share of voice over time, sentiment toward each "
            "brand, co-mentions."
        ),
    ] = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """Find topics, score sentiment and count both over time and per group; write SQL tables and a report.

    DIR gets analysis.duckdb (tables documents, topics, topic_terms, timeseries, groups), the same
    tables as Parquet under parquet/, summary.json (with per-stage timings), report.html (opens
    offline) and the fitted topic model (model/, safetensors + JSON) that --append uses. The input
    is streamed in chunks of --chunk-size rows; texts that differ only in case or whitespace are
    scored and embedded once. With --redact the texts are redacted as they are read, so the database,
    the report and the dashboard never hold the private data (appending to such an analysis redacts too).

    Examples:

      megasense analyze reviews.csv --time-col date --group-col product --out reviews-analysis

      megasense analyze more-reviews.csv --out reviews-analysis --append

      megasense analyze reviews.csv --time-col date --topics 8 --seed-topics seeds.txt --out reviews-analysis

    With --time-col, tables forecasts, forecast_backtest (each model's backtest error beside the naive
    and seasonal-naive baselines) and emerging (topics, and brands, whose share rose, by an exact
    test) are added; topic_tree holds the topic hierarchy that --topics cuts.

      megasense analyze tickets.csv --redact --redact-names staff.txt --out tickets-analysis

      megasense analyze reviews.csv --time-col date --aspects auto --brands brands.toml --out reviews-analysis

    With --aspects or --brands, tables aspects, aspect_mentions, brands, brand_mentions, brand_timeseries and
    brand_comentions are added (each mention scored with the aspect or brand as the aspect: "X is better than
    Y" is positive for X, negative for Y).

      duckdb reviews-analysis/analysis.duckdb "select label, documents, mean_polarity from topics"

    With --engine ray the sentiment scoring runs on Ray actors (one model copy each; --ray-address joins a cluster).
    """
    from megasense.analytics.analysis import analyze as run

    with user_errors(), ProgressBars(enabled=progress) as bars, contextlib.ExitStack() as stack:
        scorer = None if sentiment else False
        if check_engine(engine, ray_address) and sentiment:
            refuse_local_only(append=append)  # an appended analysis scores with the model saved in it
            scorer = stack.enter_context(ray_scorer(model, ray_address))
        try:
            result = run(
                input,
                out,
                scorer=scorer,
                embedding_model=embedding_model,
                sentiment_model=model,
                append=append,
                overwrite=overwrite,
                progress=bars,
                text_col=text_col,
                time_col=time_col,
                group_col=group_col,
                lang=lang,
                freq=freq,
                min_topic_size=min_topic_size,
                reducer=reducer,
                clusterer=clusterer,
                strict=strict,
                report=report,
                chunk_size=chunk_size,
                encoding=encoding,
                redact=redact,
                redact_names=None if redact_names is None else str(redact_names),
                n_topics=topics,
                seed_topics=seed_topics,
                forecast=forecast,
                horizon=horizon,
                aspects=aspects,
                brands=brands,
            )
        except ModuleNotFoundError as exc:  # an optional dependency that raised no MissingExtraError of its own
            if (exc.name or "megasense").split(".")[0] == "megasense":
                raise  # a module of megasense itself: a bug
            raise MissingExtraError(
                f"megasense analyze needs {exc.name}, which is not installed: pip install 'megasense[analytics]'"
            ) from None
    _print(result)


def _print(result) -> None:
    summary = result.summary
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    table = Table(title=f"{summary['topics']} topics in {summary['documents']:,} documents")
    for column, justify in (("topic", "left"), ("documents", "right"), ("mean polarity", "right")):
        table.add_column(column, justify=justify, overflow="fold")
    import duckdb

    with duckdb.connect(str(result.directory / "analysis.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT label, documents, mean_polarity FROM topics ORDER BY documents DESC LIMIT 15"
        ).fetchall()
    for label, documents, polarity in rows:
        table.add_row(label, f"{documents:,}", "" if polarity is None or polarity != polarity else f"{polarity:+.2f}")
    console.print(table)
    if "aspects" in summary:  # --aspects / --brands
        brands = summary.get("brands", {})
        console.print(
            f"{summary['aspects']['count']} aspects ({summary['aspects']['source']})"
            + (f", {brands['count']} brands in {brands['mentions']:,} mentions" if brands else "")
            + ": tables aspects, brands, brand_timeseries, brand_comentions; pages in report.html",
            highlight=False,
        )
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in summary["timings"].items())
    console.print(f"wrote {result.directory} (added {summary['documents_added']:,} documents; {timings})")
