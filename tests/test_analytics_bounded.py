"""Bounded memory for large corpora: topics are found in a sample of the distinct documents, and every other
document is assigned to its nearest topic centre block by block (or left an outlier)."""

from __future__ import annotations

import pandas as pd

from _analytics_fakes import FakeEmbedder, english_rows, run_fake_analysis, sql, write_csv
from megasense.analytics import TopicModel


def _purity(frame: pd.DataFrame) -> pd.Series:
    return frame[frame["topic"] >= 0].groupby("topic")["truth"].agg(lambda s: s.value_counts().iloc[0] / len(s))


def test_topics_found_in_a_sample_and_the_rest_assigned_to_them():
    rows = english_rows(300)
    texts, truth = [r["text"] for r in rows], [r["truth"] for r in rows]
    # reduce_outliers=False: the clusterer's own outliers stay -1, yet the documents outside the sample are assigned
    model = TopicModel(FakeEmbedder(), reducer_kind="pca", min_topic_size=5, cluster_sample=80, reduce_outliers=False)
    topics = model.fit_transform(texts)
    assert model.clustered_on_ == 80
    left_out = model.unsampled_[model.document_index_]  # per document: was its distinct text outside the sample?
    assert left_out.sum() >= 150
    assert (topics[left_out] >= 0).mean() > 0.7  # assigned (those far from every centre stay -1)
    purity = _purity(pd.DataFrame({"topic": topics, "truth": truth}))
    assert len(purity) >= 3 and purity.mean() > 0.9


def test_no_sample_below_the_threshold():
    rows = english_rows(120)
    model = TopicModel(FakeEmbedder(), reducer_kind="pca", min_topic_size=5)
    model.fit_transform([r["text"] for r in rows])
    assert not hasattr(model, "clustered_on_") and not model.unsampled_.any()


def test_pipeline_clusters_a_sample_of_a_streamed_corpus(tmp_path):
    model = TopicModel(reducer_kind="pca", min_topic_size=5, cluster_sample=90)
    out = tmp_path / "out"
    defaults = {"reducer": "pca", "min_topic_size": 5, "report": False}
    run_fake_analysis(
        write_csv(tmp_path / "in.csv", english_rows(300)), out, defaults, topic_model=model, chunk_size=50
    )
    assert model.clustered_on_ == 90
    docs = sql(out, "SELECT topic, truth FROM documents")
    purity = _purity(docs)
    assert len(purity) >= 3 and purity.mean() > 0.9 and (docs["topic"] >= 0).sum() > 200
