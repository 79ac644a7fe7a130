"""The Ray engine: file jobs on Ray Data equal the local engine's, survive a worker dying, commit atomically;
analyze's scorer on Ray actors; the service on Ray Serve. One local Ray instance serves the whole session."""

from __future__ import annotations

import functools
import json
import socket
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from megasense.predictors.jobs import embed_file, predict_file
from megasense.predictors.ray_engine import (
    FAIL_ONCE_ENV,
    MANIFEST,
    RaySettings,
    load_embedder,
    read_output,
    run_file_job,
)
from megasense.predictors.sentiment import load_predictor

TEXTS = [
    "I love this phone, the battery lasts forever",
    "Worst customer service I have ever had.",
    "The package arrived on Tuesday.",
    "",
    "Not bad at all, would buy again!",
    "meh",
    "The update broke everything and support never answered",
    "Great game last night #win",
] * 6
ONE = RaySettings(actors=1, cpus_per_actor=0.5, batch_size=8, progress=False)
"""One actor on half a CPU: the session's instance has two."""
SENTIMENT = functools.partial(load_predictor, "sentiment-en", precision="fp32")


@pytest.fixture(scope="module")
def ray_session(ray_session):
    """The session's Ray instance (conftest.py), with this module's test fakes sent to the workers by value
    (this module is not importable there)."""
    ray_session.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return ray_session


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Two CSV files in a folder: ids that look like numbers, a column named like a prediction (label)."""
    root = tmp_path_factory.mktemp("ray")
    folder = root / "posts"
    folder.mkdir()
    frame = pd.DataFrame({"id": [f"{i:03d}" for i in range(len(TEXTS))], "text": TEXTS, "label": "gold"})
    half = len(frame) // 2
    frame.iloc[:half].to_csv(folder / "a.csv", index=False)
    frame.iloc[half:].to_csv(folder / "b.csv", index=False)
    frame.to_csv(root / "all.csv", index=False)
    return folder, root / "all.csv"


@pytest.fixture(scope="module")
def local(table):
    """The local engine's output for the same rows."""
    _, whole = table
    out = whole.with_name("local.csv")
    predict_file(load_predictor("sentiment-en", precision="fp32"), whole, out)
    return pd.read_csv(out, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def folder_job(ray_session, table, tmp_path_factory):
    """The folder of two CSV files scored on Ray (one job, shared by the tests that read it)."""
    folder, _ = table
    out = tmp_path_factory.mktemp("job") / "out.parquet"
    return run_file_job(SENTIMENT, folder, out, settings=ONE, describe={"model": "x"}), out


def _check_equal(ours: pd.DataFrame, local: pd.DataFrame) -> None:
    assert list(ours.columns) == list(local.columns)
    assert ours["id"].tolist() == local["id"].tolist()  # every row once, in the input's order, "000" kept
    assert ours["label"].tolist() == local["label"].tolist()
    assert ours["input_label"].tolist() == ["gold"] * len(TEXTS)
    ours_scores = pd.to_numeric(ours["score"]).to_numpy(float)
    local_scores = pd.to_numeric(local["score"]).to_numpy(float)
    np.testing.assert_allclose(ours_scores, local_scores, atol=1e-5, equal_nan=True)


def test_predict_folder_on_ray_equals_local(folder_job, table, local):
    (summary, out), (folder, _) = folder_job, table
    manifest = json.loads((out / MANIFEST).read_text())
    assert summary.rows == manifest["rows"] == len(TEXTS)
    assert manifest["inputs"] == [str(folder / "a.csv"), str(folder / "b.csv")] and manifest["model"] == "x"
    assert sum(p["rows"] for p in manifest["parts"]) == len(TEXTS)
    ours = read_output(out)
    _check_equal(ours.astype(str).replace({"nan": ""}), local)
    assert ours.loc[3, "label"] == "" and ours.loc[3, "chunks"] == 0  # an empty text: no label, as locally


def test_cli_predict_on_ray_survives_a_worker_dying_mid_run(ray_session, table, local, tmp_path, monkeypatch):
    _, whole = table
    marker = tmp_path / "died"
    monkeypatch.setenv(FAIL_ONCE_ENV, str(marker))
    out = tmp_path / "out.csv"
    result = _cli(
        "predict",
        str(whole),
        "--engine",
        "ray",
        "-m",
        "sentiment-en",
        "--precision",
        "fp32",
        "--no-progress",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "48 rows" in result.output
    assert marker.exists()  # the first actor did exit after its first batch; Ray restarted it and retried
    ours = read_output(out).astype(str).replace({"nan": ""})
    ours["id"] = ours["id"].str.zfill(3)  # pandas reads the CSV parts' "000" back as 0
    _check_equal(ours, local)  # every row exactly once, in order
    refused = _cli("predict", str(whole), "--engine", "ray", "--strict", "-o", str(tmp_path / "x.parquet"))
    assert refused.exit_code == 2 and "--strict cannot be used with --engine ray" in refused.output


class _Exploding:
    """A predictor that fails on one text: the job must fail and leave no output."""

    def predict(self, texts, progress=None):
        if "meh" in texts:
            raise RuntimeError("boom")
        return load_predictor("sentiment-en", precision="fp32").predict(texts)


def test_a_failed_job_leaves_the_old_output_and_no_temporaries(folder_job, table):
    (_, out), (_, whole) = folder_job, table
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(Exception, match="boom"):
        run_file_job(_Exploding, whole, out, settings=ONE)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # the earlier result, untouched
    assert [p.name for p in out.parent.iterdir()] == ["out.parquet"]  # no half-written folder beside it


def test_embed_on_ray_equals_local(ray_session, table, tmp_path):
    _, whole = table
    run_file_job(
        functools.partial(load_embedder, "all-minilm-l6-v2"), whole, tmp_path / "emb", task="embed", settings=ONE
    )
    ours = np.stack(read_output(tmp_path / "emb")["embedding"].map(np.asarray).tolist())
    embed_file(load_embedder("all-minilm-l6-v2"), whole, tmp_path / "local.npy")
    np.testing.assert_allclose(ours, np.load(tmp_path / "local.npy"), atol=1e-5)


def test_analyze_scorer_on_ray_actors_equals_the_predictor(ray_session):
    from megasense.analytics.protocols import score_texts
    from megasense.predictors.ray_pool import RayScorer

    texts = [t for t in TEXTS if t]
    with RayScorer(SENTIMENT, name="sentiment-en", settings=ONE) as scorer:
        ours = score_texts(scorer, texts)
    local = score_texts(SENTIMENT(), texts)
    assert ours.labels == local.labels
    np.testing.assert_allclose(ours.polarity, local.polarity, atol=1e-5)


def test_serve_one_replica_on_ray_serve(ray_session):
    import httpx

    from megasense.service.ray_serve import ReplicaOptions, start, stop
    from megasense.service.settings import ServiceSettings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ServiceSettings(port=port, model="sentiment-en", embedding_model="", precision="fp32")
    start(settings, ReplicaOptions(replicas=1, cpus_per_replica=0.5))
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/sentiment", json={"texts": TEXTS[:3]}, timeout=60)
    finally:
        stop()
    assert answer.status_code == 200, answer.text
    local = SENTIMENT().predict(TEXTS[:3])
    assert [r["label"] for r in answer.json()["results"]] == local.labels


def _cli(*args):
    from megasense.cli.main import _register, app

    _register()
    return CliRunner().invoke(app, list(args))


def test_engine_ray_without_ray_says_how_to_install(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if it were not installed
    (tmp_path / "in.csv").write_text("text\nhello\n")
    result = _cli("predict", str(tmp_path / "in.csv"), "--engine", "ray", "-o", str(tmp_path / "out.parquet"))
    assert result.exit_code == 2
    assert "pip install 'megasense[ray]'" in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_ray_only_and_local_only_options_are_refused(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text\nhello\n")
    replicas = _cli("serve", "--replicas", "2")
    assert replicas.exit_code == 2 and "--replicas needs --engine ray" in replicas.output
    address = _cli("predict", str(source), "--ray-address", "auto", "-o", str(tmp_path / "o.csv"))
    assert address.exit_code == 2 and "--ray-address needs --engine ray" in address.output
    engine = _cli("predict", str(source), "--engine", "spark")
    assert engine.exit_code == 2 and "expected one of local, ray" in engine.output
