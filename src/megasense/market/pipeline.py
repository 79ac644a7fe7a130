"""``run_market``: texts and prices in, a directory of results out (the whole market journey, in order)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from megasense.errors import MegasenseInputError
from megasense.files.atomic import atomic_directory, check_output_dir
from megasense.files.progress import estimate_total
from megasense.market import store
from megasense.market.backtest import event_study, strategy_returns, summarize
from megasense.market.features import FEATURES, build_features
from megasense.market.index import DailyAccumulator
from megasense.market.inputs import TextColumns, check_tickers, read_prices, read_texts
from megasense.market.predict import Split, evaluate, feature_importance
from megasense.market.scoring import ScoreCache, SentimentScorer
from megasense.market.sessions import Sessions, check_zone
from megasense.market.yahoo import is_yfinance

LITERATURE = {
    "StockNet (Xu & Cohen 2018)": {"accuracy": 0.5823, "mcc": 0.081},
    "Adv-ALSTM (Feng et al. 2019)": {"accuracy": 0.5720, "mcc": 0.148},
    "MAN-SF (Sawhney et al. 2020)": {"accuracy": 0.6080, "mcc": 0.195},
}
"""Published test results on StockNet's split (accuracy, MCC), printed beside ours under --protocol stocknet."""


@dataclass(kw_only=True)
class MarketSettings:
    train_start: str | None = None
    """First label date used [default: the first in the data]."""
    val_start: str | None = None
    """End of training, start of validation (``--train-end``)."""
    test_start: str
    """End of validation, start of the test period."""
    test_end: str | None = None
    """End of the test period, exclusive [default: after the last label]."""
    up: float = 0.0
    """A move above +up is labelled up (StockNet: 0.0055)."""
    down: float = 0.0
    """A move below -down is labelled down (StockNet: 0.005); moves in between are dropped."""
    market_tz: str = "America/New_York"
    """The exchange's time zone: closes are at ``close`` in it."""
    close: str = "16:00"
    """The session's closing time (HH:MM); texts at or after it count for the next session."""
    half_life: float = 2.0
    """Sessions over which a day's sentiment loses half its weight in ``sent_decay``."""
    step: int = 21
    """Sessions predicted per walk-forward step (the model is refitted before each)."""
    embargo: int = 1
    """Sessions left out between the last training label and the first predicted one."""
    window: int | None = None
    """Rolling training window in sessions; None: expanding from ``train_start``."""
    cost_bps: float = 10.0
    """Transaction cost per unit of position change, in basis points."""
    protocol: str | None = None

    def __post_init__(self) -> None:
        check_zone(self.market_tz)
        for name in ("step", "embargo"):
            if getattr(self, name) < (1 if name == "step" else 0):
                raise MegasenseInputError(f"--{name} {getattr(self, name)} is too small")
        if self.half_life <= 0:
            raise MegasenseInputError(f"--half-life {self.half_life} must be positive (sessions)")
        if self.up < 0 or self.down < 0:
            raise MegasenseInputError(f"--up {self.up} and --down {self.down} must be >= 0 (fractions, 0.0055 = 0.55%)")


def stocknet_settings(**overrides: Any) -> MarketSettings:
    """StockNet's protocol: labels above +0.55% / below -0.5%; train 2014-01-01..2015-08-01, validation to
    2015-10-01, test to 2016-01-01 (by the date of the move predicted)."""
    base = {
        "train_start": "2014-01-01",
        "val_start": "2015-08-01",
        "test_start": "2015-10-01",
        "test_end": "2016-01-01",
        "up": 0.0055,
        "down": 0.005,
        "protocol": "stocknet",
    }
    return MarketSettings(**{**base, **{k: v for k, v in overrides.items() if v is not None}})


def market_settings(protocol: str | None = None, **options: Any) -> MarketSettings:
    """Settings for ``protocol`` (``stocknet``) with ``options`` on top, or from ``options`` alone (which then
    need ``test_start``); options set to None are left at their defaults."""
    if protocol == "stocknet":
        return stocknet_settings(**options)
    if protocol is not None:
        raise MegasenseInputError(f"--protocol {protocol!r} is not known; expected stocknet")
    if options.get("test_start") is None:
        raise MegasenseInputError("give --test-start DATE (and --train-end DATE), or --protocol stocknet")
    return MarketSettings(**{k: v for k, v in options.items() if v is not None})


@dataclass
class MarketResult:
    directory: Path
    metrics: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _quiet(description: str, total: int | None = None):
    yield lambda n=0, **kw: None


def _date(value: str | None, option: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(value).normalize()
    except ValueError:
        raise MegasenseInputError(f"{option} {value!r} is not a date; expected YYYY-MM-DD") from None


def split_of(settings: MarketSettings, features: pd.DataFrame) -> Split:
    dates = features.loc[features["label"].notna(), "target_date"]
    if dates.empty:
        raise MegasenseInputError("no labelled days: the prices hold fewer than two sessions per ticker")
    test_start = _date(settings.test_start, "--test-start")
    val_start = _date(settings.val_start, "--train-end")
    train_start = _date(settings.train_start, "--train-start") or dates.min()
    if val_start is None:  # validation: the last fifth of what comes before the test
        val_start = train_start + (test_start - train_start) * 0.8
    test_end = _date(settings.test_end, "--test-end") or dates.max() + pd.Timedelta(days=1)
    return Split(train_start, val_start.normalize(), test_start, test_end)


def score_texts(
    texts,
    cols: TextColumns,
    prices: pd.DataFrame,
    scorer: SentimentScorer,
    cache: ScoreCache,
    settings: MarketSettings,
    *,
    chunk_size: int,
    skip_unknown: bool,
    encoding: str | None,
    progress,
) -> tuple[DailyAccumulator, dict[str, int]]:
    """Stream the texts: check, assign sessions, score (cached), add to the daily sums; nothing else is kept."""
    sessions = Sessions.from_prices(prices, market_tz=settings.market_tz, close=settings.close)
    known = set(prices["ticker"].unique())
    daily = DailyAccumulator()
    counts = {"texts": 0, "unknown_ticker": 0, "after_last_session": 0, "empty": 0}
    with progress("scoring texts", None) as bar:
        for chunk in read_texts(texts, cols, market_tz=settings.market_tz, chunk_rows=chunk_size, encoding=encoding):
            frame = chunk.frame
            counts["texts"] += len(frame)
            kept = check_tickers(frame, known, chunk.source, skip=skip_unknown)
            counts["unknown_ticker"] += len(frame) - len(kept)
            empty = kept["text"].str.strip() == ""
            counts["empty"] += int(empty.sum())
            kept = kept[~empty]
            day = sessions.assign(kept["ticker"].to_numpy(), kept["time"])
            counts["after_last_session"] += int(np.isnat(day).sum())
            kept, day = kept[~np.isnat(day)], day[~np.isnat(day)]
            if len(kept):
                scored = cache.score(kept["text"].tolist(), scorer)
                daily.add(kept["ticker"].to_numpy(), day, scored["polarity"].to_numpy(), scored["label"].tolist())
            bar(len(frame))
            estimate_total(bar, counts["texts"], chunk.done)
    counts["scored"] = cache.scored  # distinct texts run through the model
    counts["from_cache"] = cache.hits  # texts whose score was already cached (by an earlier chunk or run)
    return daily, counts


def run_market(
    texts: str | Path,
    prices: str | Path,
    out: str | Path,
    *,
    scorer: SentimentScorer,
    model_key: str,
    settings: MarketSettings,
    columns: TextColumns | None = None,
    cache_path: str | Path | None = None,
    chunk_size: int = 8192,
    skip_unknown_tickers: bool = False,
    encoding: str | None = None,
    overwrite: bool = False,
    report: bool = True,
    progress: Callable | None = None,
) -> MarketResult:
    """Score, index, join, predict, backtest; write market.duckdb, metrics.json and report.html into ``out``."""
    progress = progress or _quiet
    out = Path(out)
    check_output_dir(out, overwrite=overwrite)  # before the long work, not after it
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    price_table = read_prices(prices)
    cache = ScoreCache(cache_path, model_key)
    try:
        daily, counts = score_texts(
            texts,
            columns or TextColumns(),
            price_table,
            scorer,
            cache,
            settings,
            chunk_size=chunk_size,
            skip_unknown=skip_unknown_tickers,
            encoding=encoding,
            progress=progress,
        )
    finally:
        cache.close()
    timings["score"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = daily.finish(price_table, half_life=settings.half_life)
    features = build_features(price_table, index, up=settings.up, down=settings.down)
    split = split_of(settings, features)
    with progress("walk-forward models", 6) as bar:
        evaluation = evaluate(
            features,
            split,
            step=settings.step,
            embargo=settings.embargo,
            window=settings.window,
            progress=lambda name: bar(1),
        )
    timings["predict"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_pred = evaluation.predictions
    selected_test = test_pred[(test_pred["period"] == "test") & (test_pred["model"] == evaluation.selected)]
    returns = strategy_returns(selected_test, cost_bps=settings.cost_bps)
    events = event_study(features)
    importance = feature_importance(features, split, evaluation.settings)
    timings["backtest"] = time.perf_counter() - t0
    metrics = _metrics(evaluation, returns, counts, price_table, split, settings, model_key, timings)
    tables = {
        "daily_index": index,
        "features": features[
            ["ticker", "date", "target_date", "label", "adj_close", "ret", "next_ret", *FEATURES, "posts"]
        ],
        "predictions": evaluation.predictions,
        "backtest": returns.rename_axis("date").reset_index(),
        "event_study": events,
        "importance": importance,
    }
    with atomic_directory(out, overwrite=overwrite) as tmp:  # all files appear together, or none
        store.write(tmp, tables, metrics)
        if is_yfinance(prices):  # what was downloaded, so the run can be repeated offline
            price_table.assign(date=price_table["date"].dt.strftime("%Y-%m-%d")).to_csv(tmp / "prices.csv", index=False)
        (tmp / store.METRICS).write_text(json.dumps(metrics, indent=2, default=str), encoding="utf-8")
        if report:
            from megasense.market.report import write_report

            write_report(tmp)
    return MarketResult(out, metrics, metrics["warnings"])


def _metrics(evaluation, returns, counts, prices, split, settings, model_key, timings) -> dict[str, Any]:
    """The ``--json`` object: test and validation metrics, the selection, the backtest, the data and settings."""
    warnings = []
    if counts["after_last_session"]:
        warnings.append(f"{counts['after_last_session']:,} texts came after the last price date of their ticker")
    if counts["unknown_ticker"]:
        warnings.append(f"{counts['unknown_ticker']:,} texts had a ticker without prices and were skipped")
    return {
        "test": evaluation.test,
        "validation": evaluation.validation,
        "selected": evaluation.selected,
        "model_settings": evaluation.settings,
        "backtest": summarize(returns),
        "literature": LITERATURE if settings.protocol == "stocknet" else {},
        "data": {
            **counts,
            "tickers": int(prices["ticker"].nunique()),
            "labelled_test": int(evaluation.test["always-up"].get("n", 0)),
        },
        "split": {k: str(v.date()) for k, v in asdict(split).items()},
        "settings": {**asdict(settings), "model": model_key},
        "timings": timings,
        "warnings": warnings,
    }


DEFAULT_MODEL = "sentiment-finance-en"


def model_key(model: str | Path) -> str:
    """What the score cache is keyed by: the model's weights folder and their latest modification time, so a
    retrained (re-shipped) model never reads the old one's scores; a shipped name resolves to its folder, so
    the name and the path share scores. Other names (embedded encoders) key by name."""
    path = Path(model)
    if not path.exists():
        from megasense.zoo.shipped import find_shipped_model, shipped_adapter_dir

        if find_shipped_model(str(model)) is None:
            return str(model)
        path = shipped_adapter_dir(str(model))
    stamp = max((f.stat().st_mtime_ns for f in path.rglob("*") if f.is_file()), default=path.stat().st_mtime_ns)
    return f"{path.resolve()}@{stamp}"


def default_cache() -> Path:
    from megasense.zoo.embedded import megasense_home

    return megasense_home() / "market" / "scores.duckdb"


def market(
    texts: str | Path,
    prices: str | Path,
    out: str | Path,
    *,
    settings: MarketSettings,
    model: str | Path | None = None,
    scorer: SentimentScorer | None = None,
    cache: str | Path | bool | None = True,
    **options: Any,
) -> MarketResult:
    """``run_market`` with the sentiment model loaded by name (unless a ``scorer`` is given) and the score cache
    in ``$MEGASENSE_HOME/market`` (``cache=True``), a given file, or memory only (``cache=False``). ``model``
    defaults to sentiment-finance-en; with a ``scorer`` it only names the scores in the cache."""
    if scorer is None:
        from megasense.predictors.sentiment import load_predictor

        model = model or DEFAULT_MODEL
        scorer = load_predictor(model)
    key = model_key(model) if model is not None else getattr(scorer, "name", type(scorer).__name__)
    path = default_cache() if cache is True else (None if cache is False or cache is None else Path(cache))
    return run_market(texts, prices, out, scorer=scorer, model_key=key, settings=settings, cache_path=path, **options)
