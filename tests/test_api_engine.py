"""``megasense.api``'s engine option: ``predict`` and ``analyze`` on Ray equal the local engine; clear errors when
the engine is unknown or Ray is missing. Ray tests share the session's one Ray instance (``ray_session``)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from _analytics_fakes import FakeEmbedder, english_rows, sql, write_csv
from megasense import api
from megasense.errors import ConfigError, MissingExtraError
from megasense.predictors.sentiment import load_predictor

TEXTS = ["I love this phone", "Worst customer service ever.", "The package arrived on Tuesday.", "", "meh"] * 4


def _table(tmp_path):
    path = tmp_path / "posts.csv"
    pd.DataFrame({"id": [f"{i:03d}" for i in range(len(TEXTS))], "text": TEXTS}).to_csv(path, index=False)
    return path


def test_unknown_engine_and_missing_ray_are_refused_before_any_model_loads(tmp_path, monkeypatch):
    source, out = _table(tmp_path), tmp_path / "scored"
    with pytest.raises(ConfigError, match=r"engine='spark': expected one of local, ray"):
        api.predict(source, out, engine="spark")
    with pytest.raises(ConfigError, match=r"ray_address='auto' needs engine='ray'"):
        api.analyze(source, tmp_path / "analysis", ray_address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(MissingExtraError, match=r"engine='ray' needs Ray: pip install 'megasense\[ray\]'"):
        api.predict(source, out, engine="ray")
    with pytest.raises(MissingExtraError, match=r"megasense\[ray\]"):
        api.analyze(source, tmp_path / "analysis", engine="ray")
    assert not out.exists() and not (tmp_path / "analysis").exists()


def test_predict_on_ray_equals_local(ray_session, tmp_path):
    from megasense.predictors.ray_engine import MANIFEST, read_output

    source = _table(tmp_path)
    options = {"model": "sentiment-en", "precision": "fp32"}
    local = api.predict(source, tmp_path / "local.csv", **options)
    remote = api.predict(source, tmp_path / "scored.parquet", engine="ray", **options)
    assert local["rows"] == remote["rows"] == len(TEXTS) and remote["engine"] == "ray"
    assert (tmp_path / "scored.parquet" / MANIFEST).is_file()
    a = pd.read_csv(tmp_path / "local.csv", dtype=str, keep_default_na=False)
    b = read_output(tmp_path / "scored.parquet")
    assert b["id"].astype(str).tolist() == a["id"].tolist()  # every row once, in order
    assert b["label"].fillna("").tolist() == a["label"].tolist()
    np.testing.assert_allclose(
        pd.to_numeric(b["score"]).to_numpy(dtype=float), pd.to_numeric(a["score"]).to_numpy(dtype=float), atol=1e-5
    )


def test_analyze_scores_sentiment_on_ray_actors(ray_session, tmp_path):
    rows = english_rows(40)
    source = write_csv(tmp_path / "in.csv", rows)
    options = {"reducer": "pca", "min_topic_size": 5, "report": False, "forecast": False, "explain": False}
    result = api.analyze(
        source, tmp_path / "out", engine="ray", embedder=FakeEmbedder(), sentiment_model="sentiment-en", **options
    )
    assert result.summary["sentiment_model"] == "sentiment-en" and result.summary["documents"] == 40
    docs = sql(tmp_path / "out", "SELECT text, sentiment FROM documents ORDER BY doc_id")
    expected = load_predictor("sentiment-en").predict(docs["text"].tolist()).labels
    assert docs["sentiment"].tolist() == list(expected)
