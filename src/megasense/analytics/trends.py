"""The trend tables of an analysis: ``forecasts``, ``forecast_backtest`` and ``emerging``, from a series per key.

``trend_tables`` takes the generic series-per-key table (``forecast.SERIES_COLUMNS``; topics give it
through ``forecast.topic_series``, and aspects or brands can hand in theirs), fills the missing
periods, forecasts the volume and mean polarity of the ``max_keys`` largest keys (and of all
documents), and tests every key for a rise in share (``emerging.emerging_keys``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from megasense.analytics.emerging import emerging_keys
from megasense.analytics.forecast import (
    METRICS,
    PERIODS,
    SEASONS,
    SERIES_COLUMNS,
    complete,
    forecast_series,
    topic_series,
)
from megasense.analytics.hierarchy import TREE_COLUMNS, topic_map

HORIZONS = {"day": 14, "week": 8, "month": 6}
"""Default periods ahead: two weeks of days, two months of weeks, half a year of months."""
MAX_GAPS = 0.25
"""A sentiment series with more than this share of periods without documents is not forecast."""
FORECAST_COLUMNS = ["kind", "key", "label", "metric", "period", "actual", "forecast", "lower", "upper", "model"]
BACKTEST_COLUMNS = ["kind", "key", "label", "metric", "model", "mase", "smape", "folds", "chosen", "note"]


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def trend_tables(
    series: pd.DataFrame,
    freq: str,
    *,
    horizon: int | None = None,
    level: float = 0.9,
    max_keys: int = 10,
    alpha: float = 0.05,
    forecast: bool = True,
    advance: Callable[[int], None] = lambda n: None,
) -> dict[str, pd.DataFrame]:
    """``{"forecasts", "forecast_backtest", "emerging"}`` for a series-per-key table at ``freq``."""
    full = complete(series, freq)
    tables = {"emerging": emerging_keys(full, alpha=alpha) if not full.empty else emerging_keys(series)}
    forecasts, backtests = [], []
    if forecast and not full.empty:
        horizon = horizon or HORIZONS[freq]
        for part in chosen_series(full, max_keys):
            for metric in METRICS:
                got = _one(part, metric, horizon, SEASONS[freq], level, freq)
                if got is not None:
                    forecasts.append(got[0])
                    backtests.append(got[1])
            advance(1)
    tables["forecasts"] = pd.concat(forecasts, ignore_index=True) if forecasts else _empty(FORECAST_COLUMNS)
    tables["forecast_backtest"] = pd.concat(backtests, ignore_index=True) if backtests else _empty(BACKTEST_COLUMNS)
    return tables


KEYED_SERIES = {"aspect_timeseries": ("aspect", "aspect"), "brand_timeseries": ("brand", "brand")}
"""Per-period tables of the aspects room (period, <key column>, mentions, net_sentiment) that ``topic_trends``
forecasts and tests beside the topics when an analysis holds them: table -> (kind, key column)."""


def keyed_series(table: pd.DataFrame, kind: str, column: str) -> pd.DataFrame:
    """A per-period table of mentions and net sentiment per ``column`` as the generic series-per-key table."""
    return pd.DataFrame(
        {
            "kind": kind,
            "key": table[column].astype(str),
            "label": table[column].astype(str),
            "period": table["period"],
            "documents": table["mentions"],
            "mean_polarity": table["net_sentiment"],
        },
        columns=SERIES_COLUMNS,
    )


def topic_trends(tables: dict[str, pd.DataFrame], freq: str, **options) -> dict[str, pd.DataFrame]:
    """``trend_tables`` of the topics in an analysis's ``timeseries`` and ``topics`` tables, and of the aspects'
    and brands' per-period tables (``KEYED_SERIES``) where the analysis holds them."""
    extra = [keyed_series(tables[name], *how) for name, how in KEYED_SERIES.items() if name in tables]
    series = pd.concat([topic_series(tables["timeseries"], tables["topics"]), *extra], ignore_index=True)
    return trend_tables(series, freq, **options)


def topic_structure(model) -> dict[str, pd.DataFrame]:
    """``topic_tree`` (the fitted hierarchy, ``hierarchy.tree_table``) and ``topic_map`` (the intertopic distance
    map) of a fitted ``TopicModel``; empty tables for a model without them (one loaded from an older analysis)."""
    tree = getattr(model, "hierarchy_", None)
    tree = tree.copy() if tree is not None else _empty(TREE_COLUMNS)
    sizes = {t.id: t.size for t in model.topics_}
    labels = {t.id: t.label for t in model.topics_}
    ids = np.asarray(model.topic_ids_, dtype=np.int64)
    mapped = topic_map(
        np.asarray(model.centroids_),
        ids,
        np.array([sizes.get(t, 0) for t in ids.tolist()], dtype=np.int64),
        [labels.get(t, str(t)) for t in ids.tolist()],
    )
    return {"topic_tree": tree, "topic_map": mapped}


def chosen_series(full: pd.DataFrame, max_keys: int) -> list[pd.DataFrame]:
    """``all`` first, then of each kind (topic, aspect, brand) the ``max_keys`` keys with most documents."""
    totals = full.groupby(["kind", "key"], sort=False)["documents"].sum().reset_index()
    totals = totals.sort_values(["documents"], ascending=False, kind="stable")
    keep = pd.concat([totals[totals["kind"] == "all"], totals[totals["kind"] != "all"].groupby("kind").head(max_keys)])
    groups = dict(tuple(full.groupby(["kind", "key"], sort=False)))
    return [groups[(k, key)].sort_values("period") for k, key in zip(keep["kind"], keep["key"], strict=True)]


def _one(part: pd.DataFrame, metric: str, horizon: int, season: int, level: float, freq: str):
    """(forecast rows, backtest rows) of one key's metric, or None for a sentiment series too full of gaps."""
    values = part[metric].astype(float)
    if metric == "mean_polarity":
        values = values.where(part["documents"] > 0)
        if values.isna().mean() > MAX_GAPS or values.notna().sum() < 2:
            return None
        values = values.interpolate(limit_direction="both")  # a few empty periods: the line between neighbours
    got = forecast_series(values.to_numpy(), horizon, season=season, level=level, folds=3)
    if metric == "documents":  # counts are never negative
        got.prediction.lower = np.maximum(got.prediction.lower, 0)
        got.prediction.mean = np.maximum(got.prediction.mean, 0)
    last = part["period"].max()
    future = pd.date_range(last, periods=horizon + 1, freq=PERIODS[freq])[1:]
    kind, key, label = part["kind"].iloc[0], part["key"].iloc[0], part["label"].iloc[0]
    history = pd.DataFrame({"period": part["period"].to_numpy(), "actual": part[metric].to_numpy(dtype=float)})
    ahead = pd.DataFrame(
        {
            "period": future,
            "forecast": got.prediction.mean,
            "lower": got.prediction.lower,
            "upper": got.prediction.upper,
        }
    )
    rows = pd.concat([history, ahead], ignore_index=True)
    rows = rows.assign(kind=kind, key=key, label=label, metric=METRICS[metric], model=got.model)
    backtest = got.backtest.assign(kind=kind, key=key, label=label, metric=METRICS[metric], note=got.note)
    backtest["chosen"] = backtest["model"] == got.model
    if backtest.empty:
        backtest = pd.DataFrame([{**dict.fromkeys(BACKTEST_COLUMNS), "kind": kind, "key": key, "label": label}])
        backtest = backtest.assign(metric=METRICS[metric], model=got.model, chosen=True, note=got.note, folds=0)
    return rows[FORECAST_COLUMNS], backtest[BACKTEST_COLUMNS]
