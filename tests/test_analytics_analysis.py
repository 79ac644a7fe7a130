"""``analyze`` and ``megasense analyze`` end to end on fake models: tables, report, append, bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from _analytics_fakes import FakeEmbedder, FakeScorer, chinese_rows, english_rows, run_fake_analysis, write_csv
from _analytics_fakes import sql as _sql
from megasense.analytics.timeseries import build_timeseries, choose_freq, parse_times, period_start
from megasense.cli.main import main

PCA = {"reducer": "pca", "min_topic_size": 10}


def _run(source, out, **kwargs):
    return run_fake_analysis(source, out, PCA, **kwargs)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    source = write_csv(root / "reviews.csv", english_rows(150))
    result = _run(source, root / "out", time_col="date", group_col="product")
    return source, root / "out", result


def test_documents_table_keeps_input_columns_and_adds_results(analysed):
    source, out, _ = analysed
    docs = _sql(out, "SELECT * FROM documents ORDER BY doc_id")
    assert len(docs) == 150 and docs["row"].tolist() == list(range(2, 152))
    original = pd.read_csv(source)
    assert docs["text"].tolist() == original["text"].tolist()
    assert {"date", "product", "truth", "sentiment", "score", "polarity", "topic", "topic_label"} <= set(docs)
    assert docs.loc[docs["text"].str.contains("great"), "sentiment"].eq("positive").all()
    assert docs.loc[docs["text"].str.contains("bad"), "polarity"].lt(0).all()
    purity = docs.groupby("topic")["truth"].nunique()
    assert len(purity) == 3 and (purity == 1).all()


def test_topics_terms_and_timeseries_tables(analysed):
    _, out, result = analysed
    topics = _sql(out, "SELECT * FROM topics ORDER BY topic")
    assert topics["documents"].sum() == 150 and topics["topic"].tolist() == [0, 1, 2]
    assert (topics[["positive", "neutral", "negative"]].sum(axis=1) == topics["documents"]).all()
    assert all("great" in p for p in topics["positive_phrases"]) and all("bad" in n for n in topics["negative_phrases"])
    terms = _sql(out, "SELECT * FROM topic_terms WHERE rank = 1")
    assert len(terms) == 3 and (terms["weight"] > 0).all()
    series = _sql(out, "SELECT * FROM timeseries")
    assert set(series["level"]) == {"all", "topic", "group", "group_topic"}
    overall = series[series["level"] == "all"]
    assert overall["documents"].sum() == 150 and len(overall) == 28  # days 1..28 of January
    assert overall["low_count"].all()  # 5-6 documents a day: flagged, not to be over-read
    groups = _sql(out, "SELECT * FROM groups")
    assert sorted(groups["group"]) == ["A", "B"] and groups["documents"].sum() == 150
    assert result.summary["settings"]["freq"] == "day"


def test_parquet_summary_and_model_files(analysed):
    _, out, _ = analysed
    for name in ("documents", "topics", "topic_terms", "timeseries", "groups"):
        assert len(pd.read_parquet(out / "parquet" / f"{name}.parquet")) == len(_sql(out, f"SELECT * FROM {name}"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents"] == 150 and summary["topics"] == 3 and summary["embedding_model"] == "fake-embedder"
    for stage in ("read", "dates", "sentiment", "embed", "topics", "tables", "report"):
        assert summary["timings"][stage] >= 0 and stage in summary["throughput"]
    assert sorted(p.name for p in (out / "model").iterdir()) == ["topics.json", "topics.safetensors"]
    assert not list(out.rglob("*.pkl")) and not list(out.rglob("*.pickle"))


def test_report_is_self_contained_and_escapes_text(tmp_path):
    rows = english_rows(60)
    rows += [{**r, "date": "2024-01-05", "product": "C"} for r in chinese_rows(40)]
    rows[0]["date"] = "soon"
    rows = [{"<i>when</i>" if k == "date" else k: r.get(k, "") for k in rows[0]} for r in rows]
    source = write_csv(tmp_path / "mixed.csv", rows)
    _run(source, tmp_path / "out", time_col="<i>when</i>", group_col="product", min_topic_size=8)
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in html and "Noto Sans CJK SC" in html
    library = re.search(r'<script type="text/javascript">(.*?)</script>', html, re.S)
    assert library and len(library.group(1)) > 1_000_000  # plotly's bundled JavaScript, inline
    page = html.replace(library.group(1), "")
    assert not re.search(r"<(script|link|img)[^>]*(src|href)=", page)  # nothing to fetch: opens offline
    assert "<i>when</i>" not in html and "&#39;&lt;i&gt;when&lt;/i&gt;&#39; are not dates" in html  # escaped
    assert "外卖" in html or "酒店" in html  # Chinese keywords written as text, not mangled
    assert html.count('class="plotly-graph-div"') >= 4


def test_append_assigns_new_documents_and_keeps_old_ones(tmp_path):
    first = write_csv(tmp_path / "jan.csv", english_rows(150))
    out = tmp_path / "out"
    _run(first, out, time_col="date", group_col="product")
    before = _sql(out, "SELECT * FROM documents ORDER BY doc_id")
    embedder, scorer = FakeEmbedder(), FakeScorer()
    more = english_rows(30, seed=7, month=2)
    result = _run(write_csv(tmp_path / "feb.csv", more), out, append=True, embedder=embedder, scorer=scorer)
    assert sorted(set(embedder.seen)) == sorted({r["text"] for r in more})  # old documents not embedded again
    assert len(scorer.seen) == 30
    after = _sql(out, "SELECT * FROM documents ORDER BY doc_id")
    assert len(after) == 180 and after["doc_id"].is_unique and set(after["batch"]) == {0, 1}
    columns = ["doc_id", "text", "sentiment", "score", "topic", "time_utc"]
    pd.testing.assert_frame_equal(after[columns].iloc[:150].reset_index(drop=True), before[columns])
    new = after[after["batch"] == 1]
    truth_of_topic = before.groupby("topic")["truth"].first()
    assert (new["topic"].map(truth_of_topic) == new["truth"]).mean() > 0.9
    assert result.summary["settings"]["time_col"] == "date"  # inherited from the analysis
    assert len(result.summary["batches"]) == 2 and result.summary["documents"] == 180
    series = _sql(out, "SELECT * FROM timeseries WHERE level = 'all'")
    assert series["documents"].sum() == 180 and series["period"].max() >= pd.Timestamp("2024-02-01")


def test_refuses_to_replace_work_unless_asked(tmp_path):
    source = write_csv(tmp_path / "a.csv", english_rows(40))
    out = tmp_path / "out"
    _run(source, out)
    with pytest.raises(ValueError, match=r"already holds an analysis.*--append.*--overwrite"):
        _run(source, out)
    assert _run(source, out, overwrite=True).summary["documents"] == 40
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("precious")
    for flags in ({}, {"overwrite": True}, {"append": True}):
        with pytest.raises(ValueError, match="holds"):
            _run(source, other, **flags)
    assert (other / "notes.txt").read_text() == "precious"
    with pytest.raises(ValueError, match="holds no analysis yet"):
        _run(source, tmp_path / "new", append=True)


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "the file is empty"), ("text,date\n", "header but no rows")],
)
def test_empty_inputs_are_refused_clearly(tmp_path, content, message):
    path = tmp_path / "in.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        _run(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_columns_list_the_columns(tmp_path):
    source = write_csv(tmp_path / "in.csv", english_rows(20))
    with pytest.raises(ValueError, match=r"no column 'when' \(choose one with --time-col\).*'text', 'date'"):
        _run(source, tmp_path / "out", time_col="when")
    with pytest.raises(ValueError, match="no column 'body'"):
        _run(source, tmp_path / "out", text_col="body")


def test_bad_and_mixed_timezone_dates_are_reported_and_skipped(tmp_path):
    rows = english_rows(40)
    rows[3]["date"] = "next tuesday"
    rows[5]["date"] = "2024-01-03T10:00:00+08:00"
    source = write_csv(tmp_path / "in.csv", rows)
    result = _run(source, tmp_path / "out", time_col="date")
    text = " ".join(result.warnings)
    assert "1 values of column 'date' are not dates (rows 5), e.g. 'next tuesday'" in text
    assert "1 values of column 'date' mix dates with and without a time zone" in text and "(rows 7)" in text
    dates = result.summary["dates"]
    assert dates["not_dates"] == 1 and dates["ambiguous_time_zone"] == 1 and dates["parsed"] == 38
    assert result.summary["documents"] == 40  # nothing lost: the rows stay, only out of the time series
    zoned = [{**r, "date": r["date"] + "T12:00:00Z"} for r in english_rows(40)]
    zoned[2]["date"] = "2024-01-03 10:00"
    mostly_zoned = _run(write_csv(tmp_path / "z.csv", zoned), tmp_path / "z", time_col="date")
    assert "(rows 4)" in " ".join(mostly_zoned.warnings)
    with pytest.raises(ValueError, match=r"in.csv: .*not dates \(rows 5\).*--strict"):
        _run(source, tmp_path / "strict", time_col="date", strict=True)


def test_urls_emoji_duplicates_and_one_document(tmp_path):
    rows = english_rows(60) + [
        {"text": t, "date": "", "product": "A", "truth": "-"} for t in ("https://t.co/x", "🎉🎉")
    ]
    rows += [rows[0]] * 20  # duplicates
    result = _run(write_csv(tmp_path / "in.csv", rows), tmp_path / "out", min_topic_size=5)
    docs = _sql(tmp_path / "out", "SELECT text, topic, has_words FROM documents")
    assert docs.loc[docs["text"].isin(["https://t.co/x", "🎉🎉"]), "topic"].eq(-1).all()
    assert (~docs["has_words"]).sum() == 2 and result.summary["duplicates_added"] == 20
    assert any("hold no words" in w for w in result.warnings)
    one = _run(write_csv(tmp_path / "one.csv", rows[:1]), tmp_path / "one")
    assert one.summary["documents"] == 1 and one.summary["topics"] == 1
    same = _run(write_csv(tmp_path / "same.csv", [rows[0]] * 30), tmp_path / "same")
    assert same.summary["topics"] == 1 and same.summary["duplicates_added"] == 29


def test_timeseries_helpers():
    times = parse_times(pd.Series(["2024-01-01", "2024-03-20", None]), np.array([2, 3, 4])).times
    assert choose_freq(times) == "week" and times.isna().sum() == 1
    assert period_start(times.dropna(), "week").dt.day_name().tolist() == ["Monday", "Monday"]
    assert period_start(times.dropna(), "month").dt.day.tolist() == [1, 1]
    with pytest.raises(ValueError, match="expected one of day, week, month"):
        period_start(times, "year")
    docs = pd.DataFrame(
        {
            "period": pd.to_datetime(["2024-01-01"] * 12 + ["2024-01-02"]),
            "topic": [0] * 13,
            "sentiment": ["positive"] * 6 + ["negative"] * 6 + [None],
            "polarity": [1.0] * 6 + [-1.0] * 6 + [np.nan],
        }
    )
    series = build_timeseries(docs, "day").query("level == 'all'")
    assert series["documents"].tolist() == [12, 1] and series["low_count"].tolist() == [False, True]
    assert series["mean_polarity"].iloc[0] == 0.0 and series["polarity_se"].iloc[0] == pytest.approx(1 / np.sqrt(11))


def test_cli_analyze_end_to_end(tmp_path, monkeypatch, capsys):
    from megasense.analytics import analysis as pipeline

    monkeypatch.setattr(pipeline, "_load_embedder", lambda name: FakeEmbedder())
    monkeypatch.setattr(pipeline, "_load_scorer", lambda name: FakeScorer())
    source = write_csv(tmp_path / "in.csv", english_rows(90))
    args = ["analyze", str(source), "--out", str(tmp_path / "out"), "--time-col", "date", "--reducer", "pca"]
    with pytest.raises(SystemExit) as done:
        main([*args, "--min-topic-size", "10", "--no-progress"])
    assert done.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "3 topics in 90 documents" in printed
    with pytest.raises(SystemExit) as again:
        main([*args, "--no-progress"])
    assert again.value.code == 2
    assert "already holds an analysis" in capsys.readouterr().err
    with pytest.raises(SystemExit) as missing:
        main(["analyze", str(source), "--out", str(tmp_path / "x"), "--time-col", "when", "--no-progress"])
    assert missing.value.code == 2 and "the columns are" in capsys.readouterr().err
