"""``--prices yfinance:...``: the spec is parsed and checked, yfinance's wide frame becomes the same long table a
price file gives, a run keeps the download as prices.csv, and failures say what went wrong.

yfinance itself is an optional extra that needs the internet, so a stand-in module answers ``download`` the way
yfinance 1.x does with ``group_by="ticker"`` and ``auto_adjust=False``: columns (ticker, field), a ``Date`` index,
all-NaN rows for days a ticker did not trade. The frame is built from the synthetic market's own prices."""

from __future__ import annotations

import sys
import types

import pandas as pd
import pytest

from _analytics_fakes import FakeScorer
from _market_fakes import synthetic_market
from megasense.errors import MegasenseInputError
from megasense.market.inputs import read_prices
from megasense.market.pipeline import MarketSettings, run_market
from megasense.market.yahoo import parse_spec

FIELDS = ["Open", "High", "Low", "Close", "Adj Close", "Volume"]


def _wide(prices_csv, tickers) -> pd.DataFrame:
    """The long synthetic price table in yfinance's ``group_by="ticker"`` shape."""
    long = pd.read_csv(prices_csv)
    parts = {}
    for ticker in tickers:
        part = long[long["Ticker"] == ticker].set_index(pd.DatetimeIndex(long.loc[long["Ticker"] == ticker, "Date"]))
        parts[ticker] = part[FIELDS]
    wide = pd.concat(parts, axis=1)
    wide.index.name = "Date"
    wide.columns.names = ["Ticker", "Price"]
    return wide


@pytest.fixture
def fake_yfinance(monkeypatch, tmp_path):
    texts, prices = synthetic_market(tmp_path, days=200)
    calls = []

    def download(tickers, **kwargs):
        calls.append((list(tickers), kwargs))
        known = [t for t in tickers if t in ("AAA", "BBB", "CCC", "DDD")]
        wide = _wide(prices, known)
        for ticker in tickers:  # yfinance gives an unknown ticker all-NaN columns (and prints an error)
            if ticker not in known:
                for field in FIELDS:
                    wide[(ticker, field)] = float("nan")
        wide.iloc[5] = float("nan")  # a day none traded: yfinance keeps such rows as NaN
        return wide

    monkeypatch.setitem(sys.modules, "yfinance", types.SimpleNamespace(download=download))
    return texts, prices, calls


def test_spec_parsing_and_its_errors():
    assert parse_spec("yfinance:aapl, MSFT") == (["AAPL", "MSFT"], None, None)
    assert parse_spec("yfinance:AAPL@2014-01-01..2016-01-01") == (["AAPL"], "2014-01-01", "2016-01-01")
    assert parse_spec("yfinance:^GSPC@2014-01-01..") == (["^GSPC"], "2014-01-01", None)
    for bad, why in [
        ("yfinance:", "expected yfinance:TICKER"),
        ("yfinance:AAPL@2016-01-01..2014-01-01", "is not before"),
        ("yfinance:AAPL@2016-13-01..", "is not a date"),
        ("yfinance:AA PL", "not Yahoo ticker symbols"),
    ]:
        with pytest.raises(MegasenseInputError, match=why):
            parse_spec(bad)


def test_download_becomes_the_same_table_as_the_file(fake_yfinance):
    _texts, prices, calls = fake_yfinance
    got = read_prices("yfinance:AAA,BBB@2015-01-01..2016-01-01")
    assert calls[0][0] == ["AAA", "BBB"]
    assert calls[0][1]["auto_adjust"] is False and calls[0][1]["start"] == "2015-01-01"
    want = read_prices(prices)
    want = want[want["ticker"].isin(["AAA", "BBB"])].reset_index(drop=True)
    want = want.drop(index=want.index[want["date"] == want["date"].unique()[5]]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_unknown_ticker_and_missing_package_are_clear(fake_yfinance, monkeypatch):
    with pytest.raises(MegasenseInputError, match="no prices for ZZZZ"):
        read_prices("yfinance:AAA,ZZZZ")
    monkeypatch.setitem(sys.modules, "yfinance", None)  # as if not installed
    with pytest.raises(MegasenseInputError, match=r"pip install 'megasense\[yfinance\]'"):
        read_prices("yfinance:AAA")


def test_a_run_keeps_the_downloaded_prices(fake_yfinance, tmp_path):
    texts, _, _ = fake_yfinance
    result = run_market(
        texts,
        "yfinance:AAA,BBB,CCC,DDD",
        tmp_path / "out",
        scorer=FakeScorer(),
        model_key="kw",
        settings=MarketSettings(val_start="2015-06-01", test_start="2015-08-01"),
        cache_path=tmp_path / "cache.duckdb",
    )
    kept = read_prices(tmp_path / "out" / "prices.csv")
    assert sorted(kept["ticker"].unique()) == ["AAA", "BBB", "CCC", "DDD"]
    assert result.metrics["data"]["tickers"] == 4
    pd.testing.assert_frame_equal(kept, read_prices("yfinance:AAA,BBB,CCC,DDD"), check_dtype=False)


def test_cli_takes_the_spec_and_errors_in_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from megasense.cli.main import _register, app

    texts, _ = synthetic_market(tmp_path, days=30)
    monkeypatch.setitem(sys.modules, "yfinance", None)
    _register()
    args = [
        "market",
        str(texts),
        "--prices",
        "yfinance:AAA",
        "--out",
        str(tmp_path / "o"),
        "--test-start",
        "2015-02-01",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "megasense[yfinance]" in result.output
    assert not (tmp_path / "o").exists()
