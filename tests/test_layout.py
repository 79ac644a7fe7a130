"""The 0.2 layout: old module paths still import (with a warning), and one sentiment answer has one naming."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

from megasense.predictors.results import SentimentBatch, SentimentResult


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("megasense.checkpoints.loading", "load_model", "megasense.zoo.load"),
        ("megasense.checkpoints.loading", "detect_format", "megasense.formats.convert"),
        ("megasense.checkpoints.sentiment_models", "load_adapter", "megasense.formats.adapter"),
        ("megasense.checkpoints.sentiment_models", "ROUTER", "megasense.zoo.shipped"),
        ("megasense.checkpoints.atomic", "atomic_file", "megasense.files.atomic"),
        ("megasense.data.tables", "read_chunks", "megasense.files.tables"),
        ("megasense.inference.sentiment", "load_predictor", "megasense.predictors.sentiment"),
        ("megasense.inference.sentiment", "predict_file", "megasense.predictors.jobs"),
        ("megasense.inference.sentiment", "sentiment", "megasense.api"),
        ("megasense.inference.pipelines", "TextGenerator", "megasense.predictors.generation"),
        ("megasense.tasks.labels", "normalize_labels", "megasense.predictors.labels"),
        ("megasense.parallel.tensor", "apply_tensor_parallel", "megasense.parallel.tensor_parallel"),
        ("megasense.analytics.pipeline", "analyze", "megasense.analytics.analysis"),
    ],
)
def test_old_module_paths_warn_and_give_the_new_objects(old, name, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_renamed_result_type_and_unknown_names():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from megasense.tasks.sentiment import SentimentResult as Old
        from megasense.tasks.sentiment import SentimentTask

    assert Old is SentimentBatch
    assert SentimentTask is importlib.import_module("megasense.predictors.windows").SentimentTask
    old = sys.modules["megasense.tasks.sentiment"]
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        old.nothing_here  # noqa: B018


def test_new_paths_do_not_warn():
    modules = ["megasense.zoo", "megasense.formats.convert", "megasense.predictors.jobs", "megasense.api"]
    code = (
        "import importlib, sys\n"
        + "".join(f"importlib.import_module({m!r})\n" for m in modules)
        + "from megasense._moved import MOVED\n"
        + "print(sorted(set(MOVED) & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"megasense itself imports old paths: {done.stdout}"


def _batch() -> SentimentBatch:
    probs = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    return SentimentBatch(
        labels=["positive", "negative"],
        scores=probs.max(axis=1),
        probs=probs,
        label_names=("negative", "neutral", "positive"),
        chunks=[1, 3],
    )


def test_one_result_shared_by_python_table_and_http():
    batch = _batch()
    one = batch[1]
    assert one == SentimentResult(
        label="negative", score=0.6, probs={"negative": 0.6, "neutral": 0.3, "positive": 0.1}, chunks=3
    )
    assert one.to_dict() == {"label": "negative", "score": 0.6, "probs": one.probs, "chunks": 3}
    columns = batch.columns()
    assert list(columns) == ["label", "score", "prob_negative", "prob_neutral", "prob_positive", "chunks"]
    assert columns["prob_negative"][1] == pytest.approx(one.probs["negative"]) and columns["chunks"] == [1, 3]
    assert [r.label for r in batch] == batch.labels and len(batch) == 2

    pytest.importorskip("fastapi")
    from megasense.service.schemas import SentimentResult as Body

    body = Body.of(one).model_dump()
    assert {k: body[k] for k in ("label", "score", "probs", "chunks")} == one.to_dict()
    assert body["scores"] == body["probs"]  # the deprecated name, kept for old clients


def test_empty_batch():
    empty = SentimentBatch.empty(("negative", "positive"))
    assert (
        len(empty) == 0
        and empty.probs.shape == (0, 2)
        and list(empty.columns())
        == [
            "label",
            "score",
            "prob_negative",
            "prob_positive",
            "chunks",
        ]
    )
