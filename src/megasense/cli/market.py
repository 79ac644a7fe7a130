"""``megasense market``: posts with times and tickers + prices -> a daily sentiment index, next-day predictions
evaluated walk-forward beside baselines, a backtest, an event study, a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from megasense.cli.errors import err_console, user_errors
from megasense.files.progress import ProgressBars

console = Console()


def market(
    texts: Annotated[
        Path,
        typer.Argument(
            help="CSV/TSV/JSONL/Parquet of texts with time and ticker columns, or "
            "StockNet's folder of <TICKER>/<date> JSON-lines files."
        ),
    ],
    prices: Annotated[
        str,
        typer.Option(
            help="A folder of one CSV per ticker (AAPL.csv), or one long table with "
            "date, ticker, open, high, low, close, adj close, volume; or yfinance:AAPL,MSFT[@START..END] to "
            "download daily prices from Yahoo Finance (needs internet and the yfinance extra; the run keeps "
            "them as prices.csv)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the results (created).")],
    protocol: Annotated[
        str | None, typer.Option(help="stocknet: StockNet's labels and split (no dates needed).")
    ] = None,
    train_start: Annotated[str | None, typer.Option(help="First label date used [default: the first].")] = None,
    train_end: Annotated[
        str | None,
        typer.Option(
            help="End of training = start of validation [default: the last fifth before --test-start is validation]."
        ),
    ] = None,
    test_start: Annotated[str | None, typer.Option(help="Start of the test period (YYYY-MM-DD).")] = None,
    test_end: Annotated[str | None, typer.Option(help="End of the test period, exclusive [default: the end].")] = None,
    up: Annotated[float | None, typer.Option(help="Label up above this move (0.0055 = +0.55%) [default: 0].")] = None,
    down: Annotated[float | None, typer.Option(help="Label down below minus this move [default: 0].")] = None,
    model: Annotated[str, typer.Option(help="Sentiment model (name or path).")] = "sentiment-finance-en",
    text_col: Annotated[str | None, typer.Option(help="Text column [default: text, headline, title...].")] = None,
    time_col: Annotated[
        str | None, typer.Option(help="Time column [default: created_at, timestamp, time, date].")
    ] = None,
    ticker_col: Annotated[str | None, typer.Option(help="Ticker column [default: ticker, symbol].")] = None,
    time_format: Annotated[
        str | None,
        typer.Option(help="strftime pattern of the times [default: ISO 8601, YYYY-MM-DD or Twitter's created_at]."),
    ] = None,
    text_tz: Annotated[str | None, typer.Option(help="Zone of times written without one (e.g. UTC).")] = None,
    market_tz: Annotated[str, typer.Option(help="The exchange's time zone.")] = "America/New_York",
    close: Annotated[
        str,
        typer.Option(
            help="Closing time (HH:MM, market zone); later texts count for the next "
            "session. A date without a time counts for the next session."
        ),
    ] = "16:00",
    half_life: Annotated[float, typer.Option(help="Sessions for sentiment to lose half its weight.")] = 2.0,
    step: Annotated[int, typer.Option(help="Sessions per walk-forward step (refit before each).")] = 21,
    embargo: Annotated[int, typer.Option(help="Sessions between the last training label and a step.")] = 1,
    window: Annotated[
        int | None, typer.Option(help="Rolling training window in sessions [default: expanding].")
    ] = None,
    cost_bps: Annotated[float, typer.Option(help="Transaction cost per unit of position change (bps).")] = 10.0,
    cache: Annotated[
        Path | None, typer.Option(help="Score cache file [default: $MEGASENSE_HOME/market/scores.duckdb].")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Score in memory only.")] = False,
    skip_unknown_tickers: Annotated[bool, typer.Option(help="Skip texts whose ticker has no prices.")] = False,
    chunk_size: Annotated[int, typer.Option(help="Texts read and scored at a time (bounds memory).")] = 8192,
    encoding: Annotated[str | None, typer.Option(help="The texts' encoding [default: UTF-8].")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the results in --out.")] = False,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as one JSON object.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Does sentiment move these stocks, and does it help predict tomorrow? Scores every text (cached by model
    and text, so new prices never rescore), assigns it to the first session it can affect, builds a daily
    sentiment index per ticker, joins price features, and predicts the next session's direction walk-forward
    (purged, embargoed) with logistic regression and gradient boosting beside always-up, yesterday's direction,
    price-only and sentiment-only baselines. Settings are chosen on the validation period; the test period is
    scored once. DIR gets market.duckdb, metrics.json (the --json object) and report.html; then run
    `megasense dashboard DIR`.

    Examples:

      megasense market tweets.jsonl.gz --prices price-raw --protocol stocknet --out stocknet-run --json

      megasense market news.csv --prices prices.csv --train-end 2023-01-01 --test-start 2023-07-01 --out run

      megasense market posts.csv --prices yfinance:AAPL,MSFT@2022-01-01..2024-01-01 --train-end 2023-01-01 \\
          --test-start 2023-07-01 --out run
    """
    from megasense.market.inputs import TextColumns
    from megasense.market.pipeline import market as run
    from megasense.market.pipeline import market_settings

    with user_errors():
        options = {
            "train_start": train_start,
            "val_start": train_end,
            "test_start": test_start,
            "test_end": test_end,
            "up": up,
            "down": down,
            "market_tz": market_tz,
            "close": close,
            "half_life": half_life,
            "step": step,
            "embargo": embargo,
            "window": window,
            "cost_bps": cost_bps,
        }
        settings = market_settings(protocol, **options)
        if protocol == "stocknet":
            time_col = time_col or "created_at"
        columns = TextColumns(text=text_col, time=time_col, ticker=ticker_col, time_format=time_format, text_tz=text_tz)
        with ProgressBars(enabled=progress and not as_json) as bars:
            result = run(
                texts,
                prices,
                out,
                settings=settings,
                model=model,
                cache=False if no_cache else cache or True,
                columns=columns,
                chunk_size=chunk_size,
                skip_unknown_tickers=skip_unknown_tickers,
                encoding=encoding,
                overwrite=overwrite,
                report=report,
                progress=bars,
            )
    if as_json:
        print(json.dumps(result.metrics, default=str))
        return
    _print(result)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"


def _print(result) -> None:
    m = result.metrics
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    table = Table(
        title=f"test period {m['split']['test_start']}..{m['split']['test_end']} "
        f"({m['data']['labelled_test']:,} labelled ticker-days)"
    )
    for column in ("model", "accuracy %", "MCC", "AUC", "Brier", "ECE", "val MCC"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, values in m["test"].items():
        mark = " (selected)" if name == m["selected"] else ""
        table.add_row(
            name + mark,
            _pct(values.get("accuracy")),
            f"{values.get('mcc', 0):.3f}",
            f"{values.get('auc', 0):.3f}",
            f"{values.get('brier', 0):.3f}",
            f"{values.get('ece', 0):.3f}",
            f"{m['validation'][name].get('mcc', 0):.3f}",
        )
    for name, values in m["literature"].items():
        table.add_row(f"[dim]{name}, published[/]", _pct(values["accuracy"]), f"{values['mcc']:.3f}", "", "", "", "")
    console.print(table)
    bt = Table(title=f"backtest of {m['selected']} (test period, {m['settings']['cost_bps']:g} bps costs)")
    for column in ("strategy", "cumulative %", "annual %", "volatility %", "Sharpe", "max DD %", "hit %", "turnover"):
        bt.add_column(column, justify="left" if column == "strategy" else "right")
    for name, s in m["backtest"].items():
        bt.add_row(
            name,
            _pct(s["cumulative_return"]),
            _pct(s["annual_return"]),
            _pct(s["annual_volatility"]),
            f"{s['sharpe']:.2f}",
            _pct(s["max_drawdown"]),
            _pct(s["hit_rate"]),
            f"{s['turnover']:.2f}",
        )
    console.print(bt)
    d = m["data"]
    console.print(
        f"wrote {result.directory} ({d['texts']:,} texts, {d['scored']:,} scored, "
        f"{d['from_cache']:,} from the cache; then `megasense dashboard {result.directory}`)"
    )
