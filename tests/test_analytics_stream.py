"""``analyze`` streams its input: chunked runs equal one-chunk runs, memory is bounded, duplicates count once."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pandas as pd
import pytest

from _analytics_fakes import FakeEmbedder, FakeScorer, english_rows, run_fake_analysis, write_csv
from _analytics_fakes import sql as _sql
from megasense.analytics import TopicModel, ingest, store
from megasense.analytics.text import normalize_text

PCA = {"reducer": "pca", "min_topic_size": 5, "report": False}


def _run(source, out, **kwargs):
    return run_fake_analysis(source, out, PCA, **kwargs)


def _rows(n=63):
    rows = english_rows(n)
    rows[4]["date"] = "not a date"
    rows[9]["text"] = "  " + rows[3]["text"].upper() + "  "  # a normalised duplicate across chunks
    rows[30]["text"] = rows[3]["text"]
    rows[12]["text"] = "https://t.co/x"
    return rows


def test_many_small_chunks_give_the_same_analysis_as_one(tmp_path):
    source = write_csv(tmp_path / "in.csv", _rows())
    one = _run(source, tmp_path / "one", time_col="date", group_col="product")
    many = _run(source, tmp_path / "many", time_col="date", group_col="product", chunk_size=7, batch_size=3)
    docs = "SELECT * FROM documents ORDER BY doc_id"
    a, b = _sql(tmp_path / "one", docs), _sql(tmp_path / "many", docs)
    assert len(a) == 63 and list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a, b)
    assert a["topic"].nunique() >= 3 and a["sentiment"].notna().sum() == 63
    for table in ("topics", "topic_terms", "timeseries", "groups"):
        pd.testing.assert_frame_equal(
            _sql(tmp_path / "one", f"SELECT * FROM {table}"), _sql(tmp_path / "many", f"SELECT * FROM {table}")
        )
    for key in ("documents", "topics", "outliers", "duplicates_added", "distinct_texts_added", "dates", "sentiment"):
        assert one.summary[key] == many.summary[key]
    assert not (tmp_path / "many" / "_work").exists()  # the work files (embeddings, input rows) are gone


def test_rows_held_at_once_are_bounded_by_the_chunk(tmp_path, monkeypatch):
    """Every piece of text the pipeline holds comes through the reader, the scorer, the embedder or a write."""
    sizes: dict[str, list[int]] = {"read": [], "texts": [], "stored": [], "embed": [], "score": []}
    reader, texts_of, append_rows = ingest.read_chunks, ingest.texts_of, store.append_rows

    def read_chunks(path, **kw):
        for chunk in reader(path, **kw):
            sizes["read"].append(len(chunk.frame))
            yield chunk

    monkeypatch.setattr(ingest, "read_chunks", read_chunks)
    monkeypatch.setattr(ingest, "texts_of", lambda col: sizes["texts"].append(len(col)) or texts_of(col))
    monkeypatch.setattr(
        store, "append_rows", lambda con, t, f, **kw: sizes["stored"].append(len(f)) or append_rows(con, t, f, **kw)
    )

    class Embedder(FakeEmbedder):
        def embed(self, texts):
            sizes["embed"].append(len(texts))
            return super().embed(texts)

    class Scorer(FakeScorer):
        def predict(self, texts):
            sizes["score"].append(len(texts))
            return super().predict(texts)

    rows = english_rows(400)
    source = write_csv(tmp_path / "in.csv", rows)
    result = _run(source, tmp_path / "out", embedder=Embedder(), scorer=Scorer(), chunk_size=50, batch_size=16)
    assert result.summary["documents"] == 400
    assert sum(sizes["stored"]) == 400 and max(sizes["stored"]) == 50  # rows written chunk by chunk
    assert max(sizes["read"] + sizes["texts"]) <= 64 and sum(sizes["read"]) >= 400  # 64: the header check
    assert max(sizes["embed"] + sizes["score"]) <= 16
    assert sum(sizes["embed"]) == result.summary["distinct_texts_added"] < 400  # duplicates embedded once


def test_duplicates_after_normalising_are_scored_and_embedded_once(tmp_path):
    variants = ["The battery died, bad", "  the   BATTERY died,\tbad ", "Ｔｈｅ battery died, bad"]
    assert len({normalize_text(v) for v in variants}) == 1
    rows = english_rows(60) + [{"text": v, "date": "", "product": "A", "truth": "battery"} for v in variants]
    embedder, scorer = FakeEmbedder(), FakeScorer()
    result = _run(write_csv(tmp_path / "in.csv", rows), tmp_path / "out", embedder=embedder, scorer=scorer)
    assert sum(t in variants for t in embedder.seen) == 1 and sum(t in variants for t in scorer.seen) == 1
    docs = _sql(tmp_path / "out", "SELECT text, sentiment, score, topic FROM documents")
    mine = docs[docs["text"].isin(variants)]
    assert len(mine) == 3 and mine["sentiment"].eq("negative").all() and mine[["score", "topic"]].nunique().max() == 1
    assert result.summary["duplicates_added"] == len(rows) - len(set(embedder.seen))


@pytest.mark.parametrize(
    ("text", "topics", "outliers"), [("the courier lost my package", 1, 0), ("https://t.co/x", 0, 40)]
)
def test_all_duplicate_input_gives_one_topic_and_says_so(tmp_path, text, topics, outliers):
    rows = [{"text": text if i % 2 else text.upper(), "date": "2024-01-02"} for i in range(40)]
    result = _run(write_csv(tmp_path / "in.csv", rows), tmp_path / "out", time_col="date")
    assert result.summary["documents"] == 40 and result.summary["distinct_texts_added"] == 1
    assert result.summary["topics"] == topics and result.summary["outliers"] == outliers
    assert any("39 of 40 rows repeat another row's text" in w and "1 distinct texts" in w for w in result.warnings)
    assert len(_sql(tmp_path / "out", "SELECT * FROM documents")) == 40  # nothing lost


def test_progress_covers_every_long_stage_and_summary_has_rates(tmp_path):
    seen: dict[str, int] = {}

    @contextlib.contextmanager
    def progress(description, total):
        seen.setdefault(description, 0)
        yield lambda n: seen.__setitem__(description, seen[description] + n)

    source = write_csv(tmp_path / "in.csv", english_rows(150))
    _run(source, tmp_path / "out", progress=progress, chunk_size=40)
    assert set(seen) == {"reading", "sentiment", "embedding", "reduce", "cluster", "keywords", "writing"}
    tables = _sql(tmp_path / "out", "SELECT count(*) AS n FROM duckdb_tables() WHERE table_name <> 'documents'")
    assert seen["reading"] == 150 and seen["writing"] == 1 + tables["n"].iloc[0]  # documents, then every other table
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for stage in ("read", "sentiment", "embed", "terms", "store", "dates", "topics", "tables", "write"):
        assert summary["timings"][stage] >= 0
    for stage in ("read", "embed", "topics", "topics.reduce", "topics.cluster", "topics.keywords"):
        assert summary["throughput"][stage] > 0


def test_reducer_fitted_on_a_sample_when_the_corpus_is_large(tmp_path):
    rows = english_rows(300)
    texts, truth = [r["text"] for r in rows], [r["truth"] for r in rows]
    model = TopicModel(FakeEmbedder(), reducer_kind="pca", min_topic_size=5, reduce_sample=60)
    topics = model.fit_transform(texts)
    assert model.reduced_on_ == 60
    frame = pd.DataFrame({"topic": topics, "truth": truth})
    purity = frame[frame["topic"] >= 0].groupby("topic")["truth"].agg(lambda s: s.value_counts().iloc[0] / len(s))
    assert len(purity) >= 3 and purity.mean() > 0.9


def test_columns_that_appear_in_a_later_chunk_are_kept(tmp_path):
    lines = [json.dumps({"text": r["text"]}) for r in english_rows(30)]
    lines += [json.dumps({"text": r["text"], "extra": i}) for i, r in enumerate(english_rows(30, seed=1))]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    _run(source, tmp_path / "out", chunk_size=10)
    docs = _sql(tmp_path / "out", "SELECT extra FROM documents ORDER BY doc_id")
    assert docs["extra"].isna().sum() == 30 and docs["extra"].dropna().astype(int).tolist() == list(range(30))


def test_append_with_small_chunks_matches_one_chunk(tmp_path):
    first, more = english_rows(90), english_rows(40, seed=5, month=2)
    for chunk_size, name in ((8192, "one"), (9, "many")):
        out = tmp_path / name
        _run(write_csv(tmp_path / "a.csv", first), out, time_col="date", chunk_size=chunk_size)
        _run(write_csv(tmp_path / "b.csv", more), out, append=True, chunk_size=chunk_size)
    query = "SELECT * FROM documents ORDER BY doc_id"
    pd.testing.assert_frame_equal(_sql(tmp_path / "one", query), _sql(tmp_path / "many", query))
    assert np.array_equal(_sql(tmp_path / "one", "SELECT batch FROM documents")["batch"].unique(), [0, 1])


def test_pipeline_reduces_through_a_sample_read_back_in_blocks(tmp_path):
    rows = english_rows(300)
    model = TopicModel(reducer_kind="pca", min_topic_size=5, reduce_sample=60)
    _run(write_csv(tmp_path / "in.csv", rows), tmp_path / "out", topic_model=model, chunk_size=50)
    assert model.reduced_on_ == 60
    docs = _sql(tmp_path / "out", "SELECT topic, truth FROM documents WHERE topic >= 0")
    purity = docs.groupby("topic")["truth"].agg(lambda s: s.value_counts().iloc[0] / len(s))
    assert len(purity) >= 3 and purity.mean() > 0.9 and len(docs) > 250


def test_cli_shows_a_bar_per_stage(tmp_path, monkeypatch, capsys):
    from megasense.analytics import analysis as pipeline
    from megasense.cli.main import main

    monkeypatch.setattr(pipeline, "_load_embedder", lambda name: FakeEmbedder())
    monkeypatch.setattr(pipeline, "_load_scorer", lambda name: FakeScorer())
    source = write_csv(tmp_path / "in.csv", english_rows(120))
    with pytest.raises(SystemExit) as done:
        main(["analyze", str(source), "--out", str(tmp_path / "out"), "--reducer", "pca", "--chunk-size", "25"])
    assert done.value.code in (0, None)
    err = capsys.readouterr().err
    for stage in ("reading", "sentiment", "embedding", "reduce", "cluster", "keywords", "writing"):
        assert stage in err
    assert "120/120" in err
