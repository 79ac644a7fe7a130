"""Forecasts of per-key series (topic, aspect or brand volume and sentiment), each model chosen by a backtest.

Every key's series is forecast by the candidate that did best in a rolling-origin backtest: the
series is cut at several origins near its end, each candidate is fitted on what came before the cut
and scored on the next ``horizon`` periods (MASE: errors over the in-sample one-step naive error;
sMAPE beside it). The candidates are the two baselines every forecast must beat, naive (the last
value) and seasonal naive (the value one season back), and statsmodels' exponential smoothing
(``ETSModel``, additive damped trend, plus additive seasonality where two seasons fit) and ARIMA
(``(1,1,1)``, or the airline model ``(0,1,1)(0,1,1)m`` where seasonal). A series too short for a
backtest falls back to naive and says so in its ``note``.

Intervals are the models' own: statsmodels' for ETS and ARIMA, and the textbook ones for the
baselines (residual standard deviation times sqrt(h), or sqrt(seasons ahead)), all at ``level``.

The input is a generic "series per key" table (``kind``, ``key``, ``label``, ``period``,
``documents``, ``mean_polarity``): ``topic_series`` builds it from the analysis's ``timeseries``
table, and an aspect or brand table in the same shape forecasts the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from megasense.errors import MissingExtraError

SEASONS = {"day": 7, "week": 52, "month": 12}
"""Season length per period: a week of days, a year of weeks or of months."""
PERIODS = {"day": "D", "week": "W-MON", "month": "MS"}
"""pandas frequencies of ``timeseries.period_start`` (weeks start on Monday, months on the 1st)."""
MODELS = ("naive", "seasonal_naive", "ets", "arima")
"""Candidates, simplest first: a tie in the backtest goes to the simpler model."""
MIN_BACKTEST = 8
"""Fewer points than this: no backtest, the naive forecast."""
METRICS = {"documents": "volume", "mean_polarity": "sentiment"}
SERIES_COLUMNS = ["kind", "key", "label", "period", "documents", "mean_polarity"]


@dataclass
class Prediction:
    """A forecast of ``horizon`` periods with its interval."""

    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass
class SeriesForecast:
    """One series' chosen model, its forecast and every candidate's backtest error."""

    model: str
    prediction: Prediction
    backtest: pd.DataFrame
    """One row per candidate: model, mase, smape, folds."""
    note: str = ""


def _statsmodels():
    try:
        import statsmodels.api  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            "forecasts need statsmodels (the 'analytics' extra): pip install 'megasense[analytics]'"
        ) from None


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def _naive(y: np.ndarray, horizon: int, level: float, season: int | None) -> Prediction:
    """Last value (or the value one season back); sd of the one-step (one-season) differences, widened with h."""
    lag = season or 1
    diffs = y[lag:] - y[:-lag]
    sigma = float(np.sqrt(np.mean(diffs**2))) if len(diffs) else 0.0
    h = np.arange(1, horizon + 1)
    if season:
        mean = np.array([y[len(y) - season + (i - 1) % season] for i in h], dtype=float)
        width = sigma * np.sqrt((h - 1) // season + 1)
    else:
        mean = np.full(horizon, float(y[-1]))
        width = sigma * np.sqrt(h)
    z = _z(level)
    return Prediction(mean, mean - z * width, mean + z * width)


def _ets(y: np.ndarray, horizon: int, level: float, season: int | None) -> Prediction:
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    model = ETSModel(
        pd.Series(y.astype(float)),  # a Series: statsmodels 0.15's prediction frame needs an index
        error="add",
        trend="add",
        damped_trend=True,
        seasonal="add" if season else None,
        seasonal_periods=season,
    )
    fitted = model.fit(disp=False, maxiter=200)
    frame = fitted.get_prediction(start=len(y), end=len(y) + horizon - 1).summary_frame(alpha=1 - level)
    return Prediction(frame["mean"].to_numpy(), frame["pi_lower"].to_numpy(), frame["pi_upper"].to_numpy())


def _arima(y: np.ndarray, horizon: int, level: float, season: int | None) -> Prediction:
    from statsmodels.tsa.arima.model import ARIMA

    if season:
        model = ARIMA(y.astype(float), order=(0, 1, 1), seasonal_order=(0, 1, 1, season))
    else:
        model = ARIMA(y.astype(float), order=(1, 1, 1))
    forecast = model.fit().get_forecast(horizon)
    bounds = np.asarray(forecast.conf_int(alpha=1 - level))
    return Prediction(np.asarray(forecast.predicted_mean), bounds[:, 0], bounds[:, 1])


FITTERS: dict[str, Callable[[np.ndarray, int, float, int | None], Prediction]] = {
    "naive": lambda y, h, level, season: _naive(y, h, level, None),
    "seasonal_naive": _naive,
    "ets": _ets,
    "arima": _arima,
}


def predict(name: str, y: np.ndarray, horizon: int, level: float, season: int | None) -> Prediction:
    """One model's forecast of ``y`` with its ``level`` interval (``name`` one of ``MODELS``); no backtest."""
    with warnings.catch_warnings():  # convergence chatter on short series; a failed fit raises and is skipped
        warnings.simplefilter("ignore")
        out = FITTERS[name](y, horizon, level, season)
    if not np.all(np.isfinite(out.mean)):
        raise ValueError(f"{name} gave a non-finite forecast")
    return out


def mase(actual: np.ndarray, predicted: np.ndarray, history: np.ndarray) -> float:
    """Mean absolute error over the in-sample mean absolute one-step naive error (Hyndman & Koehler 2006)."""
    scale = np.mean(np.abs(np.diff(history))) if len(history) > 1 else 0.0
    error = float(np.mean(np.abs(actual - predicted)))
    return error / scale if scale > 0 else (0.0 if error == 0 else float("inf"))


def smape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Symmetric MAPE in percent; a point where both are 0 counts as no error."""
    denominator = np.abs(actual) + np.abs(predicted)
    terms = np.where(denominator > 0, 2 * np.abs(actual - predicted) / np.where(denominator > 0, denominator, 1), 0.0)
    return float(100 * np.mean(terms))


def seasonal_fits(n: int, horizon: int, season: int | None) -> bool:
    """Whether two whole seasons (and a little) come before the first backtest cut."""
    return season is not None and n - horizon >= 2 * season + 2


def candidates(n: int, horizon: int, season: int | None, models: Sequence[str] = MODELS) -> list[str]:
    """The models a series of ``n`` points can be backtested with: seasonal ones need two seasons before a cut."""
    seasonal = seasonal_fits(n, horizon, season)
    out = []
    for name in models:
        if name == "seasonal_naive" and not seasonal:
            continue
        if name in ("ets", "arima") and n - horizon < 6:
            continue
        out.append(name)
    return out


def backtest(
    y: np.ndarray, horizon: int, *, season: int | None, folds: int = 4, models: Sequence[str] = MODELS
) -> pd.DataFrame:
    """Rolling-origin backtest: mean MASE and sMAPE of each model over ``folds`` cuts, the last ``horizon`` ahead.

    ``spread``: the out-of-sample squared errors over the variances the model's own 90% intervals
    implied; above 1 the model's intervals were too narrow (they leave out parameter uncertainty).
    """
    n = len(y)
    names = candidates(n, horizon, season, models)
    season = season if seasonal_fits(n, horizon, season) else None
    origins = [n - horizon - i for i in range(folds) if n - horizon - i >= 4]
    rows = []
    for name in names:
        errors, percents, squared, implied = [], [], 0.0, 0.0
        for origin in origins:
            train, test = y[:origin], y[origin : origin + horizon]
            try:
                got = predict(name, train, len(test), 0.9, season)
            except (ValueError, np.linalg.LinAlgError):
                continue
            errors.append(mase(test, got.mean, train))
            percents.append(smape(test, got.mean))
            squared += float(np.sum((test - got.mean) ** 2))
            implied += float(np.sum(((got.upper - got.lower) / (2 * _z(0.9))) ** 2))
        if errors:
            spread = squared / implied if implied > 0 else float("nan")
            rows.append(
                {"model": name, "mase": float(np.mean(errors)), "smape": float(np.mean(percents))}
                | {"folds": len(errors), "spread": spread}
            )
    return pd.DataFrame(rows, columns=["model", "mase", "smape", "folds", "spread"])


def forecast_series(
    y: Sequence[float],
    horizon: int,
    *,
    season: int | None = None,
    level: float = 0.9,
    folds: int = 4,
    models: Sequence[str] = MODELS,
) -> SeriesForecast:
    """Forecast ``y`` ``horizon`` periods ahead with the model of lowest backtest MASE (ties: the simpler one)."""
    if horizon < 1:
        raise ValueError(f"horizon={horizon} must be at least 1")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be between 0 and 1 (0.9 for 90% intervals)")
    y = np.asarray(y, dtype=float)
    if len(y) == 0:
        raise ValueError("an empty series has no forecast")
    if len(y) < MIN_BACKTEST:
        note = f"short series ({len(y)} periods < {MIN_BACKTEST}): naive forecast, no backtest"
        return SeriesForecast("naive", predict("naive", y, horizon, level, None), backtest(y[:0], 1, season=None), note)
    _statsmodels()
    test_horizon = min(horizon, max(1, len(y) // 4))
    table = backtest(y, test_horizon, season=season, folds=folds, models=models)
    seasonal = seasonal_fits(len(y), test_horizon, season)
    order = {name: i for i, name in enumerate(MODELS)}
    ranked = sorted(table.itertuples(), key=lambda r: (round(r.mase, 9), order[r.model]))
    note = "" if seasonal or not season else f"fewer than two seasons of {season} periods: no seasonal models"
    for row in ranked:  # the best model whose full fit works
        try:
            prediction = predict(row.model, y, horizon, level, season if seasonal else None)
        except (ValueError, np.linalg.LinAlgError):
            continue
        return SeriesForecast(row.model, _widen(prediction, row.spread), table, note)
    return SeriesForecast("naive", predict("naive", y, horizon, level, None), table, "every model failed: naive")


def _widen(prediction: Prediction, spread: float) -> Prediction:
    """The interval widened by sqrt(``spread``) (at most 3x) where the backtest's errors outgrew it; never narrowed.

    statsmodels' intervals take the fitted parameters as known; with a few dozen points the initial
    states and smoothing weights are uncertain too, and the intervals cover less than they say
    (measured: about 80% for a nominal 90% on seasonal series of 56 days). The backtest's
    out-of-sample errors measure the whole uncertainty, so they set the width where they exceed it.
    """
    if not np.isfinite(spread) or spread <= 1:
        return prediction
    factor = min(3.0, float(np.sqrt(spread)))
    half_low, half_up = prediction.mean - prediction.lower, prediction.upper - prediction.mean
    return Prediction(prediction.mean, prediction.mean - factor * half_low, prediction.mean + factor * half_up)


def topic_series(timeseries: pd.DataFrame, topics: pd.DataFrame) -> pd.DataFrame:
    """The generic series-per-key table of topic volume and sentiment (and ``all`` documents) per period."""
    rows = timeseries[timeseries["level"].isin(["all", "topic"])].copy()
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in SERIES_COLUMNS})
    rows = rows[(rows["level"] == "all") | (rows["topic"].fillna(-1) >= 0)]
    labels = dict(zip(topics["topic"].astype(int), topics["label"].astype(str)))
    is_all = rows["level"] == "all"
    rows["kind"] = np.where(is_all, "all", "topic")
    rows["key"] = np.where(is_all, "all", rows["topic"].astype("string").fillna(""))
    rows["label"] = [("all documents" if a else labels.get(int(t), str(t))) for a, t in zip(is_all, rows["topic"])]
    return rows[SERIES_COLUMNS].reset_index(drop=True)


def complete(series: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Every key over every period from the first to the last: a missing period has 0 documents."""
    if series.empty:
        return series
    periods = pd.date_range(series["period"].min(), series["period"].max(), freq=PERIODS[freq])
    parts = []
    for (kind, key), part in series.groupby(["kind", "key"], sort=False):
        part = part.set_index("period").reindex(periods)
        part.index.name = "period"
        part["kind"], part["key"], part["label"] = kind, key, part["label"].dropna().iloc[0]
        part["documents"] = part["documents"].fillna(0)
        parts.append(part.reset_index())
    return pd.concat(parts, ignore_index=True)[SERIES_COLUMNS]
