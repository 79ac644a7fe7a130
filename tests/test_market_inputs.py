"""Market inputs: prices and texts read with errors a person can act on; sessions, the index, features without
look-ahead, and walk-forward splits that never train on what they score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _market_fakes import stocknet_layout
from megasense.errors import MegasenseInputError, TableError
from megasense.market.features import build_features
from megasense.market.index import DailyAccumulator
from megasense.market.inputs import TextColumns, check_tickers, read_prices, read_texts
from megasense.market.predict import walk_forward
from megasense.market.scoring import ScoreCache
from megasense.market.sessions import Sessions


def _prices(days=("2015-01-02", "2015-01-05", "2015-01-06", "2015-01-08"), ticker="AAA") -> pd.DataFrame:
    closes = 100 + np.arange(len(days), dtype=float)
    return pd.DataFrame(
        {
            "ticker": ticker,
            "date": pd.to_datetime(list(days)),
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "adj_close": closes,
            "volume": 1e6,
        }
    )


def _texts(tmp_path: Path, rows: list[dict], cols: TextColumns | None = None) -> pd.DataFrame:
    path = tmp_path / "t.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return pd.concat([c.frame for c in read_texts(path, cols or TextColumns(), market_tz="America/New_York")])


def test_prices_from_a_folder_and_from_a_long_table(tmp_path):
    folder = read_prices(stocknet_layout(tmp_path / "stocknet") / "price")
    assert set(folder["ticker"]) == {"GE", "DIS"} and folder["adj_close"].notna().all()
    long = folder.rename(columns={"adj_close": "Adj Close", "ticker": "Symbol"}).rename(columns={"Symbol": "ticker"})
    long.to_csv(tmp_path / "long.csv", index=False)
    again = read_prices(tmp_path / "long.csv")
    pd.testing.assert_frame_equal(again, folder)


def test_price_errors_name_the_file_row_and_column(tmp_path):
    (tmp_path / "p.csv").write_text("Date,Ticker,Close\n2015-01-02,AAA,1\nyesterday,AAA,2\n")
    with pytest.raises(TableError, match=r"p.csv: row 3, column 'date': 'yesterday' is not a date"):
        read_prices(tmp_path / "p.csv")
    (tmp_path / "q.csv").write_text("Day,Ticker,Close\n2015-01-02,AAA,1\n")
    with pytest.raises(TableError, match=r"missing price column\(s\) \['date'\]"):
        read_prices(tmp_path / "q.csv")
    (tmp_path / "r.csv").write_text("Date,Ticker,Close\n2015-01-02,AAA,1\n2015-01-05,AAA,null\n2015-01-06,AAA,x\n")
    with pytest.raises(TableError, match=r"row 4, column 'close': 'x' is not a number"):
        read_prices(tmp_path / "r.csv")  # 'null' (Yahoo's missing value) is read as missing, 'x' refused


def test_stocknet_folder_layout_reads_token_lists_as_text(tmp_path):
    frames = list(
        read_texts(
            stocknet_layout(tmp_path / "stocknet") / "tweet",
            TextColumns(time="created_at"),
            market_tz="America/New_York",
        )
    )
    frame = pd.concat([c.frame for c in frames])
    assert set(frame["ticker"]) == {"GE", "DIS"}
    assert frame["text"].str.contains(" ").all() and str(frame["time"].dtype) == "datetime64[ns, UTC]"


def test_time_errors_name_the_row_and_the_fix(tmp_path):
    with pytest.raises(TableError, match=r"row 3, column 'time': 'noon': cannot read it as a time; expected"):
        _texts(
            tmp_path,
            [
                {"time": "2015-01-02T10:00:00Z", "ticker": "A", "text": "x"},
                {"time": "noon", "ticker": "A", "text": "y"},
            ],
        )
    with pytest.raises(
        TableError, match=r"row 2, column 'time': '2015-01-02 10:00:00' has a time but no time zone.*--text-tz"
    ):
        _texts(tmp_path, [{"time": "2015-01-02 10:00:00", "ticker": "A", "text": "x"}])
    frame = _texts(tmp_path, [{"time": "2015-01-02 10:00:00", "ticker": "A", "text": "x"}], TextColumns(text_tz="UTC"))
    assert frame["time"].iloc[0] == pd.Timestamp("2015-01-02 10:00", tz="UTC")
    with pytest.raises(TableError, match=r"no time column: found \['when', 'ticker', 'text'\].*--time-col"):
        _texts(tmp_path, [{"when": "2015-01-02", "ticker": "A", "text": "x"}])


def test_unknown_tickers_are_refused_by_row_or_skipped(tmp_path):
    frame = _texts(
        tmp_path,
        [{"time": "2015-01-02", "ticker": "$aaa", "text": "x"}, {"time": "2015-01-02", "ticker": "ZZZ", "text": "y"}],
    )
    with pytest.raises(MegasenseInputError, match=r"row 3: ticker 'ZZZ' has no prices.*--skip-unknown-tickers"):
        check_tickers(frame, {"AAA"}, "t.csv", skip=False)
    assert check_tickers(frame, {"AAA"}, "t.csv", skip=True)["ticker"].tolist() == ["AAA"]


def test_sessions_follow_the_close_weekends_and_the_price_calendar(tmp_path):
    sessions = Sessions.from_prices(_prices())  # 2015-01-07 missing: a holiday in this data
    frame = _texts(
        tmp_path,
        [
            {"time": "2015-01-02T15:59:00-05:00", "ticker": "AAA", "text": "before Friday's close"},
            {"time": "2015-01-02T16:00:00-05:00", "ticker": "AAA", "text": "at the close: next session"},
            {"time": "2015-01-03T12:00:00Z", "ticker": "AAA", "text": "Saturday"},
            {"time": "2015-01-06T21:30:00Z", "ticker": "AAA", "text": "after Tuesday's close, before the holiday"},
            {"time": "2015-01-05", "ticker": "AAA", "text": "a date only: its hour is unknown"},
            {"time": "2015-01-09T12:00:00Z", "ticker": "AAA", "text": "after the last session"},
        ],
    )
    days = sessions.assign(frame["ticker"].to_numpy(), frame["time"])
    got = [None if np.isnat(d) else str(d)[:10] for d in days]
    assert got == ["2015-01-02", "2015-01-05", "2015-01-05", "2015-01-08", "2015-01-06", None]


def test_daily_index_counts_shares_and_decay():
    acc = DailyAccumulator()
    d = np.array(["2015-01-02", "2015-01-02", "2015-01-05"], dtype="datetime64[ns]")
    acc.add(np.array(["AAA"] * 3), d, np.array([1.0, -0.5, 0.5]), ["positive", "negative", "positive"])
    index = acc.finish(_prices(), half_life=1.0).set_index("date")
    assert index.loc["2015-01-02", "posts"] == 2 and index.loc["2015-01-02", "sent_mean"] == pytest.approx(0.25)
    assert index.loc["2015-01-02", "bullish_share"] == 0.5
    # the 5th: (0.5 + 0.5 * 0.5) / (1 + 0.5 * 2); the 6th has no posts but keeps the decayed mean
    assert index.loc["2015-01-05", "sent_decay"] == pytest.approx(0.75 / 2.0)
    assert index.loc["2015-01-06", "posts"] == 0 and index.loc["2015-01-06", "sent_decay"] == pytest.approx(0.375)
    assert np.isnan(index.loc["2015-01-06", "sent_mean"])


def test_features_at_t_do_not_change_when_later_prices_do():
    days = pd.bdate_range("2015-01-02", periods=40)
    prices = _prices(days=[d.date().isoformat() for d in days])
    prices["adj_close"] = 100 * np.cumprod(1 + np.random.default_rng(0).normal(0, 0.01, 40))
    daily = DailyAccumulator().finish(prices)
    before = build_features(prices, daily, up=0.0055, down=0.005)
    changed = prices.copy()
    changed.loc[30:, ["adj_close", "volume", "high"]] *= 1.5
    after = build_features(changed, daily, up=0.0055, down=0.005)
    cols = [c for c in before.columns if c not in ("next_ret", "label")]
    pd.testing.assert_frame_equal(before.loc[:29, cols], after.loc[:29, cols])  # row 29's label may change
    assert before.loc[29, "target_date"] == days[30]
    moved = before["next_ret"].abs()
    assert before.loc[(moved < 0.005) & before["next_ret"].notna(), "label"].isna().all()  # small moves dropped


def test_walk_forward_purges_and_embargoes():
    frame = pd.DataFrame({"target_date": np.repeat(pd.bdate_range("2015-01-02", periods=60), 2), "label": 1.0})
    steps = list(
        walk_forward(frame, pd.Timestamp("2015-02-20"), pd.Timestamp("2015-03-27"), step=10, embargo=2, window=None)
    )
    assert len(steps) == 3
    for train, test in steps:
        first_test = frame["target_date"].iloc[test].min()
        last_train = frame["target_date"].iloc[train].max()
        gap = len(pd.bdate_range(last_train, first_test)) - 2  # sessions strictly between them
        assert gap == 2
    rolling = list(
        walk_forward(frame, pd.Timestamp("2015-02-20"), pd.Timestamp("2015-03-27"), step=10, embargo=0, window=5)
    )
    assert all(frame["target_date"].iloc[tr].nunique() == 5 for tr, _ in rolling)


def test_score_cache_scores_each_text_once_across_runs(tmp_path):
    from _analytics_fakes import FakeScorer

    scorer = FakeScorer()
    cache = ScoreCache(tmp_path / "c.duckdb", "kw")
    first = cache.score(["great", "bad", "great"], scorer)
    assert first["label"].tolist() == ["positive", "negative", "positive"] and scorer.seen == ["bad", "great"]
    cache.close()
    again = ScoreCache(tmp_path / "c.duckdb", "kw")
    assert again.score(["bad", "meh"], scorer)["label"].tolist() == ["negative", "neutral"]
    assert scorer.seen == ["bad", "great", "meh"] and again.hits == 1
    other = ScoreCache(tmp_path / "c.duckdb", "another-model")
    other.score(["bad"], scorer)
    assert scorer.seen[-1] == "bad"  # keyed by model: another model scores again


def test_cache_key_follows_the_weights_not_the_spelling(tmp_path):
    import os
    import shutil

    from megasense.market.pipeline import model_key
    from megasense.zoo.shipped import shipped_adapter_dir

    assert model_key("sentiment-en") == model_key(shipped_adapter_dir("sentiment-en"))
    copy = tmp_path / "my-model"
    shutil.copytree(shipped_adapter_dir("sentiment-en"), copy)
    before = model_key(copy)
    weights = next(copy.glob("*.safetensors"))
    later = max(f.stat().st_mtime_ns for f in copy.iterdir()) + 10**9
    os.utime(weights, ns=(later, later))  # retrained
    assert model_key(copy) != before and model_key(copy).startswith(str(copy.resolve()))
