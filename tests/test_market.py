"""The market journey end to end on a synthetic market where sentiment leads prices (and prices alone do not):
models find the signal, baselines do not, the outputs are complete, a rerun rescores nothing, the dashboard
answers; the CLI as a user runs it."""

from __future__ import annotations

import json
import re

import duckdb
import pytest
from typer.testing import CliRunner

from _analytics_fakes import FakeScorer
from _market_fakes import stocknet_extract, synthetic_market
from _shared import shared_path
from megasense.errors import MegasenseInputError
from megasense.market.pipeline import MarketSettings, _quiet, run_market, score_texts

SETTINGS = {"val_start": "2015-07-01", "test_start": "2015-10-01"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    texts, prices = synthetic_market(root)
    scorer = FakeScorer()
    result = run_market(
        texts,
        prices,
        root / "out",
        scorer=scorer,
        model_key="kw",
        settings=MarketSettings(**SETTINGS),
        cache_path=root / "cache.duckdb",
    )
    return root, texts, prices, scorer, result


def test_models_find_the_sentiment_signal_and_baselines_do_not(run):
    *_, result = run
    test = result.metrics["test"]
    assert set(test) == {"always-up", "yesterday", "price-only", "sentiment-only", "logreg", "gbm"}
    for name in ("sentiment-only", "logreg", "gbm"):
        assert test[name]["accuracy"] > 0.75 and test[name]["mcc"] > 0.5, (name, test[name])
    for name in ("always-up", "yesterday", "price-only"):
        assert test[name]["accuracy"] < 0.65 and test[name]["mcc"] < 0.25, (name, test[name])
    assert result.metrics["selected"] in ("sentiment-only", "logreg", "gbm")
    assert test["always-up"]["auc"] == 0.5 and 0 <= test["logreg"]["ece"] < 0.3


def test_outputs_database_metrics_report(run):
    root, *_, result = run
    out = root / "out"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"] == result.metrics["test"] and saved["selected"] == result.metrics["selected"]
    with duckdb.connect(str(out / "market.duckdb"), read_only=True) as con:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        assert {
            "daily_index",
            "features",
            "predictions",
            "backtest",
            "event_study",
            "importance",
            "calibration",
            "metrics",
        } <= tables
        periods = con.execute(
            "SELECT period, min(target_date), max(target_date) FROM predictions "
            "WHERE model = 'logreg' GROUP BY period ORDER BY period"
        ).fetchall()
    assert [p[0] for p in periods] == ["test", "validation"]
    assert str(periods[0][1])[:10] >= "2015-10-01" and str(periods[1][2])[:10] < "2015-10-01"
    bt = result.metrics["backtest"]
    assert set(bt) == {"long-flat", "long-short", "buy-and-hold"}
    assert bt["long-short"]["sharpe"] > bt["buy-and-hold"]["sharpe"]  # the signal is real here, costs included
    html = (out / "report.html").read_text()
    assert not re.search(r'<script[^>]*\ssrc="https?:', html)  # self-contained: plotly inlined, no CDN
    for text in ("sentiment-only", "Event study", "Calibration", "Feature importance", "AAA: price and sentiment"):
        assert text in html


def test_event_study_separates_positive_and_negative_days(run):
    root, *_ = run
    with duckdb.connect(str(root / "out" / "market.duckdb"), read_only=True) as con:
        ev = con.execute("SELECT kind, car, low, high FROM event_study WHERE day = 1").df().set_index("kind")
    assert ev.loc["positive", "low"] > 0 > ev.loc["negative", "high"]


def test_rerun_with_new_prices_scores_nothing_again(run):
    from megasense.market.inputs import TextColumns, read_prices
    from megasense.market.scoring import ScoreCache

    root, texts, prices, _, first = run
    changed = read_prices(prices)
    changed["volume"] *= 2
    changed = changed[changed["date"] < "2015-12-01"]  # new prices: fewer days, other volumes
    scorer, cache = FakeScorer(), ScoreCache(root / "cache.duckdb", "kw")
    daily, counts = score_texts(
        texts,
        TextColumns(),
        changed,
        scorer,
        cache,
        MarketSettings(**SETTINGS),
        chunk_size=500,
        skip_unknown=False,
        encoding=None,
        progress=_quiet,
    )
    cache.close()
    assert scorer.seen == [] and counts["scored"] == 0
    assert counts["from_cache"] + counts["after_last_session"] == first.metrics["data"]["texts"]
    assert counts["after_last_session"] > 0 and not daily.sums().empty


def test_periods_out_of_order_are_refused_through_the_public_api(tmp_path):
    from megasense.api import market

    texts, prices = synthetic_market(tmp_path, days=60)
    with pytest.raises(MegasenseInputError, match="periods out of order"):
        market(
            texts,
            prices,
            tmp_path / "o",
            scorer=FakeScorer(),
            cache=False,
            val_start="2015-03-01",
            test_start="2015-02-01",
        )
    with pytest.raises(MegasenseInputError, match="--protocol 'nasdaq' is not known"):
        market(texts, prices, tmp_path / "o", protocol="nasdaq")
    assert not (tmp_path / "o").exists()


def test_dashboard_serves_the_market_pages(run):
    from fastapi.testclient import TestClient

    from megasense.market.dashboard import create_market_app

    root, *_ = run
    client = TestClient(create_market_app(root / "out", host_ok=lambda h: h.startswith("testserver")))
    overview = client.get("/api/overview").json()
    assert set(overview["figures"]) == {"strategies", "calibration", "events", "importance"}
    assert overview["tickers"] and overview["figures"]["strategies"]["data"]
    assert client.get("/api/ticker", params={"ticker": "AAA"}).json()["figure"]["data"]
    missing = client.get("/api/ticker", params={"ticker": "NOPE"})
    assert missing.status_code == 404 and "NOPE" in missing.json()["detail"]
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400


def _cli(args):
    from megasense.cli.main import _register, app

    _register()
    return CliRunner().invoke(app, args)


def test_cli_errors_are_one_line_and_exit_2(tmp_path):
    texts, prices = synthetic_market(tmp_path, days=30)
    result = _cli(["market", str(texts), "--prices", str(prices), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--test-start" in result.output
    result = _cli(["market", str(texts), "--prices", str(prices), "--out", str(tmp_path / "o"), "--protocol", "x"])
    assert result.exit_code == 2 and "--protocol 'x' is not known" in result.output
    result = _cli(
        [
            "market",
            str(texts),
            "--prices",
            str(prices),
            "--out",
            str(tmp_path / "o"),
            "--test-start",
            "2015-02-01",
            "--market-tz",
            "Mars/Olympus",
        ]
    )
    assert result.exit_code == 2 and "is not a time zone" in result.output


@pytest.mark.slow
def test_cli_json_on_recorded_stocknet_tweets_with_a_real_model(tmp_path):
    """StockNet's own layout (folders of JSON lines, word lists), scored by the shipped English model."""
    fixture, tweets = stocknet_extract(
        tmp_path / "stocknet", shared_path("stocknet/tweets_preprocessed.jsonl.gz").parent
    )
    out = tmp_path / "run"
    result = _cli(
        [
            "market",
            str(fixture / "tweet"),
            "--prices",
            str(fixture / "price"),
            "--out",
            str(out),
            "--model",
            "sentiment-en",
            "--train-end",
            "2015-09-01",
            "--test-start",
            "2015-10-01",
            "--up",
            "0.0055",
            "--down",
            "0.005",
            "--step",
            "10",
            "--cache",
            str(tmp_path / "c.duckdb"),
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    assert metrics["selected"] in metrics["test"] and {"accuracy", "mcc", "auc"} <= set(metrics["test"]["logreg"])
    assert metrics["data"]["texts"] == tweets == 663 and metrics["data"]["scored"] > 0
    assert json.loads((out / "metrics.json").read_text())["test"] == metrics["test"]


def test_dashboard_command_serves_market_pages_for_a_market_directory(run, monkeypatch):
    import uvicorn
    from fastapi.testclient import TestClient

    from megasense.cli.dashboard import dashboard

    root, *_ = run
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    dashboard(root / "out", host="127.0.0.1", port=8123)
    client = TestClient(served["app"], base_url="http://127.0.0.1:8123")
    assert served["port"] == 8123 and "strategies" in client.get("/api/overview").json()["figures"]
    assert client.get("/api/overview", headers={"host": "attacker.example"}).status_code == 400
