"""The independent review's findings on the CLI, files, dashboard and training (issue 20), each with its
regression test: 4 (dashboard query validation and Host check), 5 (paths quoted in SQL), 6 (byte-order
marks and --encoding), 7 (training numbers validated up front, no non-finite weights saved, no NaN scores),
8 (generate's NaN and beam width, serve's unknown model) and 9's CLI items (help text, stale temporaries).
Tiny models and tiny files; no model is downloaded."""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from _analytics_fakes import FakeEmbedder, FakeScorer, english_rows, run_fake_analysis, small_analysis
from _sentiment_fixtures import save_base, tiny_base, toy_rows, write_csv
from megasense.cli.main import _register, app
from megasense.config import GenerationConfig
from megasense.config.train import TrainConfig
from megasense.errors import CheckpointError, ConfigError, TableError
from megasense.files.atomic import AtomicPath, atomic_write_text, remove_stale_temporaries
from megasense.files.tables import read_table

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str):
    if not any(c.name == "predict" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, list(args))


def _one_line_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------------------
# Finding 4: the dashboard validates its query and answers only its own Host


@pytest.fixture(scope="module")
def analysis(tmp_path_factory) -> Path:
    pytest.importorskip("fastapi")
    return small_analysis(tmp_path_factory.mktemp("dash"), english_rows(60))


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"start": "2026-02-30"}, "start='2026-02-30'"),
        ({"end": "2026-13-45"}, "end='2026-13-45'"),
        ({"offset": str(10**20)}, "offset"),
        ({"topic": str(10**20)}, "topic"),
        ({"start": "not-a-day"}, "start"),
    ],
)
def test_dashboard_query_refuses_bad_dates_and_numbers_with_422(analysis, params, fragment):
    from fastapi.testclient import TestClient

    from megasense.analytics.dashboard import create_dashboard_app

    client = TestClient(create_dashboard_app(analysis), raise_server_exceptions=False)
    r = client.get("/api/query", params=params)
    assert r.status_code == 422, r.text
    assert fragment in r.text
    ok = client.get("/api/query", params={"start": "2024-01-02", "end": "2024-02-29", "offset": 10})
    assert ok.status_code == 200 and ok.json()["total"] > 0


def test_dashboard_on_loopback_answers_only_loopback_hosts(analysis):
    from fastapi.testclient import TestClient

    from megasense.analytics.dashboard import create_dashboard_app

    client = TestClient(create_dashboard_app(analysis, host="127.0.0.1"))
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST", "127.0.0.1"):
        assert client.get("/api/meta", headers={"host": host}).status_code == 200, host
    for host in ("evil.example:8000", "127.0.0.1.evil.example", "attacker.com", ""):
        r = client.get("/api/meta", headers={"host": host})
        assert r.status_code == 400 and "not served here" in r.json()["detail"], host
    named = TestClient(create_dashboard_app(analysis, host="dash.internal"))
    assert named.get("/health", headers={"host": "dash.internal:8000"}).status_code == 200
    assert named.get("/health", headers={"host": "evil.example"}).status_code == 400
    anywhere = TestClient(create_dashboard_app(analysis, host="0.0.0.0"))  # all interfaces: names unknown
    assert anywhere.get("/health", headers={"host": "some.name"}).status_code == 200


# ---------------------------------------------------------------------------------------------------------
# Finding 5: a path with a quote is never pasted into SQL


def test_analyze_out_with_a_quote(tmp_path, monkeypatch, capsys):
    from megasense.analytics import analysis as pipeline
    from megasense.cli.main import main

    monkeypatch.setattr(pipeline, "_load_embedder", lambda name: FakeEmbedder())
    monkeypatch.setattr(pipeline, "_load_scorer", lambda name: FakeScorer())
    source = tmp_path / "in.csv"
    pd.DataFrame(english_rows(60)).to_csv(source, index=False)
    out = tmp_path / "ana'q"
    args = ["analyze", str(source), "--out", str(out), "--reducer", "pca", "--min-topic-size", "10", "--no-progress"]
    with pytest.raises(SystemExit) as done:
        main(args)
    assert done.value.code in (0, None), capsys.readouterr().err
    assert (out / "parquet" / "topics.parquet").is_file() and (out / "parquet" / "documents.parquet").is_file()
    assert len(pd.read_parquet(out / "parquet" / "documents.parquet")) == 60


# ---------------------------------------------------------------------------------------------------------
# Finding 6: byte-order marks and --encoding

ROWS = [("很好的产品, great", "positive"), ("太差了 bad", "negative"), ("普通 table", "neutral")]


def _csv_text(rows=ROWS) -> str:
    return "text,label\n" + "".join(f'"{t}",{y}\n' for t, y in rows)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"])
@pytest.mark.parametrize("suffix", [".csv", ".txt", ".jsonl"])
def test_files_with_a_byte_order_mark_read_as_their_text(tmp_path, encoding, suffix):
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-be": codecs.BOM_UTF32_BE}
    if suffix == ".csv":
        text = _csv_text()
    elif suffix == ".txt":
        text = "".join(f"{t}\n" for t, _ in ROWS)
    else:
        text = "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in ROWS)
    path = tmp_path / f"in{suffix}"
    path.write_bytes(bom.get(encoding, b"") + text.encode(encoding))  # the -le/-be codecs write no mark
    frame = read_table(path)
    assert frame["text"].tolist() == [t for t, _ in ROWS]
    if suffix != ".txt":
        assert list(frame.columns) == ["text", "label"]


def test_utf16_without_a_mark_is_refused_not_misread(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes("good\nbad\n".encode("utf-16-le"))
    with pytest.raises(TableError, match=r"NUL bytes.*--encoding utf-16-le"):
        read_table(path)
    assert read_table(path, encoding="utf-16-le")["text"].tolist() == ["good", "bad"]


def test_legacy_encodings_by_name(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(_csv_text().encode("gbk"))
    with pytest.raises(TableError, match=r"invalid UTF-8 bytes.*--encoding gbk"):
        read_table(path)
    assert read_table(path, encoding="gbk")["text"].tolist() == [t for t, _ in ROWS]
    with pytest.raises(TableError, match="unknown encoding 'klingon'"):
        read_table(path, encoding="klingon")
    big5 = tmp_path / "big5.txt"
    big5.write_bytes("很好\n".encode("big5"))
    with pytest.raises(TableError, match="not valid gbk"):
        read_table(big5, encoding="gbk")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """The tiny base (an encoder, for embed) and an untrained classifier on it, as release directories."""
    from megasense.formats.adapter import classifier_on
    from megasense.formats.release import save_release
    from megasense.models import weights_for_saving

    tmp = tmp_path_factory.mktemp("tiny-models")
    base = tiny_base(tmp)
    model, head = classifier_on(base, ("negative", "neutral", "positive"))
    state = weights_for_saving(model)
    classifier = save_release(tmp / "clf", config=base.config, head=head, state_dict=state, tokenizer=base.tokenizer)
    broken = {k: torch.full_like(v, math.nan) if k.startswith("classifier.") else v for k, v in state.items()}
    nan = save_release(tmp / "nan-clf", config=base.config, head=head, state_dict=broken, tokenizer=base.tokenizer)
    return {"base": save_base(tmp), "classifier": classifier, "nan": nan}


def test_predict_evaluate_embed_read_gbk_with_encoding(tmp_path, tiny_models):
    source = tmp_path / "gbk.csv"
    source.write_bytes(_csv_text().encode("gbk"))
    model = str(tiny_models["classifier"])
    common = ["--model", model, "--no-progress", "--precision", "fp32"]
    _one_line_error(_cli("predict", str(source), *common, "-o", str(tmp_path / "x.csv")), "--encoding gbk")
    result = _cli("predict", str(source), *common, "-o", str(tmp_path / "out.csv"), "--encoding", "gbk")
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "out.csv")["text"].tolist() == [t for t, _ in ROWS]
    result = _cli("evaluate", str(source), *common, "--encoding", "gbk", "--no-baseline")
    assert result.exit_code == 0, result.output
    assert "n=3" in result.output
    out = tmp_path / "vectors.npy"
    args = ["embed", "-i", str(source), "-o", str(out), "--model", str(tiny_models["base"]), "--no-progress"]
    result = _cli(*args, "--encoding", "gbk")
    assert result.exit_code == 0, result.output
    import numpy as np

    assert np.load(out).shape[0] == 3
    _one_line_error(_cli(*args, "--encoding", "nope"), "unknown encoding 'nope'")


def test_analyze_reads_gbk_with_encoding(tmp_path):
    rows = english_rows(60)
    for row in rows:
        row["text"] += " 很好"
    source = tmp_path / "gbk.csv"
    pd.DataFrame(rows).to_csv(source, index=False, encoding="gbk")
    result = run_fake_analysis(source, tmp_path / "out", {"reducer": "pca", "min_topic_size": 10}, encoding="gbk")
    assert result.summary["documents"] == 60
    docs = pd.read_parquet(tmp_path / "out" / "parquet" / "documents.parquet")
    assert docs["text"].str.endswith("很好").all()


# ---------------------------------------------------------------------------------------------------------
# Finding 7: training numbers checked up front; no non-finite weights saved; no NaN scores


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"lr": math.inf}, "train.lr=inf must be a finite number"),
        ({"lr": math.nan}, "train.lr=nan must be a finite number"),
        ({"max_length": 0}, "train.max_length=0"),
        ({"max_length": 8}, "train.max_length=8 must be at least 16"),
        ({"patience": -1}, "train.patience=-1"),
        ({"eval_every": 0}, "train.eval_every=0"),
        ({"monitor": "bogus"}, "train.monitor='bogus' is not a metric"),
        ({"weight_decay": math.inf}, "train.weight_decay=inf"),
        ({"grad_clip": math.nan}, "train.grad_clip=nan"),
        ({"dropout": 1.5}, "train.dropout=1.5"),
    ],
)
def test_finetune_config_refuses_bad_numbers(options, fragment):
    from megasense.training.finetune import FinetuneConfig

    with pytest.raises(ConfigError, match=re.escape(fragment)):
        FinetuneConfig(**options)


def test_train_config_refuses_non_finite_numbers():
    with pytest.raises(ConfigError, match=r"train\.lr=inf"):
        TrainConfig(lr=math.inf)
    with pytest.raises(ConfigError, match=r"train\.time_budget_s=nan"):
        TrainConfig(time_budget_s=math.nan)
    TrainConfig(monitor="score", patience=2)  # the generic loop watches any metric its evaluate returns


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("labelled") / "train.csv", toy_rows(40, seed=0))


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--lr", "inf"], "train.lr=inf must be a finite number"),
        (["--monitor", "bogus"], "train.monitor='bogus'"),
        (["--max-length", "0"], "train.max_length=0"),
        (["--patience", "-1"], "train.patience=-1"),
        (["--eval-every", "0"], "train.eval_every=0"),
        (["--max-length", "100"], "more than the 64 positions"),
    ],
)
def test_train_refuses_bad_numbers_before_training(tmp_path, labelled, tiny_models, flags, fragment):
    out = tmp_path / "model"
    args = ["train", str(labelled), "--base", str(tiny_models["base"]), "--output", str(out), "--no-bf16", *flags]
    _one_line_error(_cli(*args), fragment)
    assert not out.exists()


def test_non_finite_weights_are_never_saved(tmp_path):
    from megasense.formats.adapter import classifier_on
    from megasense.formats.release import LoadedModel
    from megasense.training.finetune import FinetuneConfig, FinetuneResult, save_finetuned

    base = tiny_base(tmp_path)
    model, head = classifier_on(base, ("negative", "neutral", "positive"))
    with torch.no_grad():
        next(model.parameters()).fill_(math.nan)
    loaded = LoadedModel(model=model, config=base.config, head=head, tokenizer=base.tokenizer, path="x", metadata={})
    result = FinetuneResult(model=model, loaded=loaded, train=None, report=None, config=FinetuneConfig(lr=1e3))
    with pytest.raises(CheckpointError, match=r"not saved: the weights hold NaN.*lower --lr \(was 1000.0\)"):
        save_finetuned(result, tmp_path / "diverged", base_name="tiny", card="")
    assert not (tmp_path / "diverged").exists()


def test_predict_never_prints_nan_scores(tmp_path, tiny_models):
    source = write_csv(tmp_path / "in.csv", toy_rows(4, seed=1))
    result = _cli("predict", str(source), "--model", str(tiny_models["nan"]), "--no-progress", "--precision", "fp32")
    line = _one_line_error(result, "gives NaN or infinite scores", "4 of 4 texts", "lower --lr")
    assert "nan-clf" in line and "nan " not in result.stdout


# ---------------------------------------------------------------------------------------------------------
# Finding 8: generate's NaN and beam width; serve's unknown model


@pytest.mark.parametrize("key", ["temperature", "top_p", "repetition_penalty", "length_penalty"])
def test_generation_config_refuses_nan(key):
    with pytest.raises(ConfigError, match=f"{key}=nan must be a finite number"):
        GenerationConfig(**{key: math.nan})


def test_generate_temperature_nan_is_one_line():
    _one_line_error(_cli("generate", "hello", "--sample", "--temperature", "nan"), "temperature=nan")


def test_beam_search_is_bounded_by_free_memory(monkeypatch):
    import megasense.inference.generation as generation
    from megasense.config.presets import gpt_tiny
    from megasense.models import build_model

    model = build_model(gpt_tiny())
    model.init_weights()
    engine = generation.GenerationEngine(model, eos_token_ids=[2])
    per_beam = engine.beam_bytes(1, 5, 10)
    assert engine.beam_bytes(100, 5, 10) == 100 * per_beam
    monkeypatch.setattr(generation, "_free_bytes", lambda device: int(per_beam * 10 / 0.8))
    with pytest.raises(ConfigError, match=r"num_beams=100000 needs about .* use at most 10 beams"):
        engine.generate([[5, 6, 7, 8, 9]], GenerationConfig(num_beams=100_000, max_new_tokens=10))
    out = engine.generate([[5, 6, 7, 8, 9]], GenerationConfig(num_beams=4, max_new_tokens=10))
    assert len(out) == 1 and out[0].score is not None


def test_serve_with_an_unknown_model_is_one_line_exit_2():
    pytest.importorskip("uvicorn")
    result = _cli("serve", "--model", "no-such-model", "--embedding-model", "", "--port", "1")
    _one_line_error(result, "model='no-such-model'", "not a model name megasense knows")
    result = _cli("serve", "--embedding-model", "no-such-embedder", "--port", "1")
    _one_line_error(result, "embedding_model='no-such-embedder'")


# ---------------------------------------------------------------------------------------------------------
# Finding 9: help text as written; temporaries of killed runs are cleaned up


def test_help_keeps_defaults_and_brackets():
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT / "src")}
    for command, fragments in (
        ("serve", ["[default: 127.0.0.1]", "[default: 8000]"]),
        ("predict", ["megasense[onnx]", "[default: UTF-8"]),
    ):
        shown = subprocess.run(
            [sys.executable, "-m", "megasense.cli.main", command, "--help"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        for fragment in fragments:
            assert fragment in shown, (command, fragment)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_killed_runs_are_removed_by_the_next_write(tmp_path):
    import megasense.files.atomic as atomic

    target = tmp_path / "scored.csv"
    host = atomic._host()
    stale_file = tmp_path / f".scored.csv.tmp-{host}-{_dead_pid()}-abc123"
    stale_file.write_text("half written", encoding="utf-8")
    stale_dir = tmp_path / f".scored.csv.tmp-{host}-{_dead_pid()}-def456"
    stale_dir.mkdir()
    (stale_dir / "part").write_text("x", encoding="utf-8")
    running = tmp_path / f".scored.csv.tmp-{host}-{os.getpid()}-live"  # a writer still at work
    other_host = tmp_path / f".scored.csv.tmp-otherhost-{_dead_pid()}-x"  # another machine's: never ours to judge
    old_style = tmp_path / ".scored.csv.tmp-k2j3h4"  # no process id: cannot tell
    other_target = tmp_path / f".other.csv.tmp-{host}-{_dead_pid()}-x"
    for path in (running, other_host, old_style, other_target):
        path.write_text("", encoding="utf-8")
    atomic_write_text(target, "text\nfine\n")
    assert target.read_text(encoding="utf-8") == "text\nfine\n"
    assert not stale_file.exists() and not stale_dir.exists()
    assert running.exists() and other_host.exists() and old_style.exists() and other_target.exists()
    with AtomicPath(tmp_path / "other.csv") as tmp:
        assert tmp.name.startswith(f".other.csv.tmp-{host}-{os.getpid()}-")
        tmp.write_text("y", encoding="utf-8")
    assert not other_target.exists()
    assert remove_stale_temporaries(target) == []
