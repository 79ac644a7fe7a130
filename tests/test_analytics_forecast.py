"""Forecasts chosen by backtest, their intervals, and the emerging-topic test, on series of known structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("statsmodels")

from _analytics_fakes import english_rows, run_fake_analysis, sql, write_csv
from megasense.analytics.emerging import emerging_keys
from megasense.analytics.forecast import complete, forecast_series, mase, predict, smape
from megasense.analytics.trends import trend_tables


def seasonal(n: int, rng, noise: float = 2.0) -> np.ndarray:
    t = np.arange(n)
    return 50 + 12 * np.sin(2 * np.pi * t / 7) + rng.normal(0, noise, n)


def test_a_seasonal_series_picks_a_seasonal_model_that_beats_both_baselines():
    got = forecast_series(seasonal(70, np.random.default_rng(1)), 7, season=7)
    errors = got.backtest.set_index("model")["mase"]
    assert set(errors.index) == {"naive", "seasonal_naive", "ets", "arima"}
    assert got.model in ("seasonal_naive", "ets", "arima") and got.note == ""
    assert errors[got.model] == errors.min() and errors[got.model] < errors["naive"] / 2
    assert len(got.prediction.mean) == 7
    assert np.all(got.prediction.lower <= got.prediction.mean) and np.all(got.prediction.mean <= got.prediction.upper)
    # the forecast follows the cycle: its peak day is the cycle's peak day
    assert int(np.argmax(got.prediction.mean)) == int(np.argmax(np.sin(2 * np.pi * np.arange(70, 77) / 7)))


def test_a_short_series_falls_back_to_naive_and_says_so():
    got = forecast_series([3, 5, 4, 6], 3, season=7)
    assert got.model == "naive" and "short series" in got.note and got.backtest.empty
    assert got.prediction.mean.tolist() == [6, 6, 6]
    widths = got.prediction.upper - got.prediction.lower
    assert np.all(np.diff(widths) > 0)  # uncertainty grows with the horizon
    without_two_seasons = forecast_series(seasonal(16, np.random.default_rng(0)), 3, season=7)
    assert "seasonal_naive" not in set(without_two_seasons.backtest["model"])
    assert "no seasonal models" in without_two_seasons.note


def test_errors_are_the_textbook_ones():
    history = np.array([1.0, 3.0, 2.0, 4.0])  # mean absolute one-step change: 5/3
    assert mase(np.array([5.0, 5.0]), np.array([4.0, 6.0]), history) == pytest.approx(1 / (5 / 3))
    assert smape(np.array([100.0, 0.0]), np.array([50.0, 0.0])) == pytest.approx(100 * (2 * 50 / 150) / 2)
    with pytest.raises(ValueError, match="horizon"):
        forecast_series([1, 2, 3], 0)


def _coverage(model: str, make, sims: int, horizon: int, season=None) -> float:
    """Share of held-out points inside the 90% interval: the model's own (naive) or as ``forecast_series`` gives it."""
    hits, total = 0, 0
    rng = np.random.default_rng(7)
    for _ in range(sims):
        y = make(rng)
        train, test = y[:-horizon], y[-horizon:]
        if model == "naive":
            got = predict(model, train, horizon, 0.9, season)
        else:
            got = forecast_series(train, horizon, season=season, models=(model,), folds=3).prediction
        hits += int(np.sum((got.lower <= test) & (test <= got.upper)))
        total += horizon
    return hits / total


@pytest.mark.slow
def test_intervals_cover_the_truth_at_about_their_nominal_rate():
    walk = _coverage("naive", lambda rng: np.cumsum(rng.normal(0, 1, 80)), 300, 5)
    assert 0.85 <= walk <= 0.95, walk
    ets = _coverage("ets", lambda rng: seasonal(63, rng), 20, 7, season=7)
    assert 0.83 <= ets <= 0.97, ets


@pytest.mark.slow
def test_arima_intervals_cover_the_truth_at_about_their_nominal_rate():
    def arma(rng):  # ARIMA(1,1,1): the model's own process
        e = rng.normal(0, 1, 121)
        d = np.zeros(120)
        for t in range(1, 120):
            d[t] = 0.5 * d[t - 1] + e[t + 1] + 0.3 * e[t]
        return np.cumsum(d)

    got = _coverage("arima", arma, 30, 5)
    assert 0.8 <= got <= 0.97, got


def _multinomial_series(rng, shares, periods: int, per_period: int, boost=None) -> pd.DataFrame:
    rows = []
    for p in range(periods):
        probs = np.array(shares, dtype=float)
        if boost is not None and p >= periods - boost[1]:
            probs[boost[0]] *= boost[2]
        counts = rng.multinomial(per_period, probs / probs.sum())
        day = pd.Timestamp("2024-01-01") + pd.Timedelta(days=p)
        rows.append({"kind": "all", "key": "all", "label": "all", "period": day, "documents": per_period})
        for k, c in enumerate(counts):
            rows.append({"kind": "topic", "key": str(k), "label": f"t{k}", "period": day, "documents": int(c)})
    frame = pd.DataFrame(rows)
    frame["mean_polarity"] = 0.0
    return frame


def test_the_growth_test_holds_its_level_on_stationary_series():
    rng = np.random.default_rng(3)
    shares = [0.3, 0.2, 0.15, 0.1, 0.1, 0.05, 0.05, 0.05]
    p_values, any_flagged = [], 0
    for _ in range(100):
        got = emerging_keys(_multinomial_series(rng, shares, 20, 150))
        p_values += got["p_value"].tolist()
        any_flagged += int(got["emerging"].any())
    rate = np.mean(np.array(p_values) < 0.05)
    assert 0.02 <= rate <= 0.065, rate  # per test: near alpha (a little under: the exact test is discrete)
    assert any_flagged / 100 <= 0.09  # per corpus: Benjamini-Hochberg keeps false alarms near alpha


def test_the_growth_test_flags_a_planted_emerging_topic_with_its_statistic():
    rng = np.random.default_rng(4)
    frame = _multinomial_series(rng, [0.3, 0.3, 0.2, 0.1, 0.1], 20, 150, boost=(4, 5, 3.0))
    got = emerging_keys(frame)
    top = got.iloc[0]
    assert top["key"] == "4" and top["emerging"] and top["q_value"] < 1e-4
    assert top["growth"] > 2 and top["recent_documents"] > top["expected_recent"]
    assert top["recent_periods"] == 5 and "binomial" in top["test"]
    assert got["emerging"].sum() == 1


def test_trend_tables_forecast_every_series_with_intervals():
    rng = np.random.default_rng(5)
    frame = _multinomial_series(rng, [0.5, 0.3, 0.2], 30, 60)
    frame = frame[~((frame["key"] == "2") & (frame["period"] == frame["period"].iloc[0]))]  # a missing period
    frame.loc[frame["key"] == "1", "mean_polarity"] = np.nan  # a key without sentiment: volume only
    tables = trend_tables(frame, "day", horizon=5, max_keys=2)
    forecasts, backtest = tables["forecasts"], tables["forecast_backtest"]
    series = {("all", "volume"), ("all", "sentiment"), ("0", "volume"), ("0", "sentiment"), ("1", "volume")}
    assert set(zip(forecasts["key"], forecasts["metric"], strict=True)) == series
    ahead = forecasts[forecasts["forecast"].notna() & (forecasts["metric"] == "volume")]
    assert len(ahead) == 3 * 5 and (ahead["lower"] >= 0).all()
    assert (ahead["lower"] <= ahead["forecast"]).all() and (ahead["forecast"] <= ahead["upper"]).all()
    assert backtest.groupby(["key", "metric"])["chosen"].sum().eq(1).all()
    assert len(complete(frame, "day").query("key == '2'")) == 30  # the gap is filled with 0 documents


def test_analysis_stores_forecasts_backtest_and_emerging_topics(tmp_path):
    rows = english_rows(240)
    for i, row in enumerate(rows):  # screen posts crowd the last week
        if row["truth"] == "screen" and i % 2:
            row["date"] = f"2024-01-{22 + i % 7:02d}"
    source = write_csv(tmp_path / "in.csv", rows)
    defaults = {"time_col": "date", "reducer": "pca", "min_topic_size": 10}
    run_fake_analysis(source, tmp_path / "out", defaults, forecast=True, horizon=4)
    emerging = sql(tmp_path / "out", "SELECT label, emerging, p_value FROM emerging WHERE emerging")
    assert len(emerging) == 1 and "screen" in emerging["label"].iloc[0]
    chosen = sql(tmp_path / "out", "SELECT * FROM forecast_backtest WHERE chosen")
    assert {"all", "0", "1", "2"} <= set(chosen["key"])
    ahead = sql(tmp_path / "out", "SELECT * FROM forecasts WHERE forecast IS NOT NULL AND metric = 'volume'")
    assert ahead.groupby("key").size().eq(4).all()
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    for section in ("Forecasts", "Forecast backtest", "Emerging topics", "Intertopic distance map", "Topic hierarchy"):
        assert f"<h2>{section}</h2>" in html
    from fastapi.testclient import TestClient

    from megasense.analytics.dashboard import create_dashboard_app

    with TestClient(create_dashboard_app(tmp_path / "out")) as client:
        got = client.get("/api/trends").json()
        assert client.get("/trends.js").status_code == 200 and 'id="t-forecast"' in client.get("/").text
    assert all(got["figures"][name]["data"] for name in ("forecast", "map", "tree"))
    assert len(got["backtest"]) == len(chosen) and {"mase_naive", "mase_seasonal_naive"} <= set(got["backtest"][0])
    assert [r["emerging"] for r in got["emerging"]].count(True) == 1


def test_brand_series_from_the_aspects_room_are_tested_beside_topics():
    from megasense.analytics.timeseries import build_timeseries
    from megasense.analytics.trends import topic_trends

    rng = np.random.default_rng(6)
    days = pd.date_range("2024-01-01", periods=20, freq="D")
    docs = pd.DataFrame({"period": np.repeat(days, 30), "topic": rng.integers(0, 2, 600)})
    docs = docs.assign(sentiment="neutral", polarity=0.0)
    tables = {
        "timeseries": build_timeseries(docs, "day"),
        "topics": pd.DataFrame({"topic": [0, 1], "label": ["0: a", "1: b"]}),
        "brand_timeseries": pd.DataFrame(
            {"period": days, "brand": "Acme", "mentions": [2] * 15 + [12] * 5, "net_sentiment": 0.1}
        ),
    }
    got = topic_trends(tables, "day", forecast=False)
    emerging = got["emerging"].set_index("key")
    assert emerging.loc["Acme", "kind"] == "brand" and emerging.loc["Acme", "emerging"]
    assert not emerging.loc[["0", "1"], "emerging"].any() and got["forecasts"].empty
