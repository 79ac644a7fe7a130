"""Pretraining end to end on real text: resume bit for bit, atomic checkpoints, TP=2 -> TP=1, export, bad input.

The corpus is the first 3,000 English tweets of ../shared/data, tokenized with a 512-token byte-level
BPE trained on them. Every run is a tiny GPT on one CPU thread (the machine's cores are shared).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from _shared import shared_texts
from megasense.config import ConfigError
from megasense.config.pretrain import PretrainConfig
from megasense.data.corpus import tokenize_corpus, train_tokenizer
from megasense.data.indexed import IndexedDatasetError
from megasense.errors import CheckpointError
from megasense.training import checkpoint as ckpt
from megasense.training.checkpoint import TrainingCheckpoints

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: more threads only contend
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("corpus")
    texts = shared_texts("tweets-sentiment-en/train.csv", 3000)
    tok = train_tokenizer(iter(texts), kind="bpe", vocab_size=512)
    (root / "tok").mkdir()
    tok.save(root / "tok")
    (root / "tweets.txt").write_text("\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
    tokenize_corpus([root / "tweets.txt"], tok, root / "tweets")
    return {"prefix": str(root / "tweets"), "tokenizer": str(root / "tok"), "root": str(root)}


def _config(corpus, tmp_path: Path, *, name: str = "run", **sections) -> PretrainConfig:
    data = {
        "model": {"preset": "gpt-tiny"},  # dropout on: resuming must restore the generators too
        "data": {"prefix": corpus["prefix"], "tokenizer": corpus["tokenizer"], "seq_length": 32},
        "train": {
            "max_steps": 8,
            "micro_batch_size": 4,
            "grad_accum": 2,
            "lr": 3e-3,
            "progress": False,
            "device": "cpu",
        },
        "checkpoint": {"dir": str(tmp_path / name / "ckpt"), "every": 3, "keep": 2},
        "export": {"dir": str(tmp_path / name / "model")},
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return PretrainConfig.from_dict(data, source=name)


class _Killed(RuntimeError):
    """Stands for the process dying: raised from a step callback."""


def _kill_after(step: int):
    def callback(trainer, record):
        if trainer.step == step:
            raise _Killed(f"killed after step {step}")

    return callback


def _weights(export_dir: str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(export_dir) / "model.safetensors"))


def test_resume_after_a_kill_continues_bit_for_bit(corpus, tmp_path):
    from megasense.training.pretrain import pretrain

    straight = pretrain(_config(corpus, tmp_path, name="straight"))
    assert straight.steps == 8 and len(straight.losses) == 8 and straight.resumed_from is None

    cfg = _config(corpus, tmp_path, name="killed")
    with pytest.raises(_Killed):
        pretrain(cfg, callbacks=(_kill_after(5),))  # steps 4 and 5 are lost with the process
    assert TrainingCheckpoints(cfg.checkpoint.dir).latest().name == "step-00000003"
    resumed = pretrain(cfg, resume=True)
    assert resumed.resumed_from == 3 and resumed.steps == 8
    assert resumed.losses == straight.losses[3:]  # exactly equal floats, not approximately
    a, b = _weights(straight.export_dir), _weights(resumed.export_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # keep=2: the steps 6 and 8 checkpoints remain, 3 was pruned; latest points at the last one.
    ckpt_dir = Path(cfg.checkpoint.dir)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["latest", "step-00000006", "step-00000008"]
    assert (ckpt_dir / "latest").read_text().strip() == "step-00000008"
    state = json.loads((ckpt_dir / "step-00000008" / "state.json").read_text())
    assert state["consumed_samples"] == 8 * 8 and state["trainer"]["scheduler"]["last_epoch"] == 8
    # A second run into the same directory without --resume is refused instead of clobbering it.
    with pytest.raises(CheckpointError, match=r"already holds checkpoints.*--resume"):
        pretrain(cfg)


def test_a_save_that_dies_midway_leaves_the_previous_checkpoint(corpus, tmp_path, monkeypatch):
    from megasense.training.pretrain import pretrain

    cfg = _config(corpus, tmp_path, train={"max_steps": 4, "grad_accum": 1}, checkpoint={"every": 2})
    real_save = ckpt._save_shards

    def disk_full_after_shards(state, directory):
        real_save(state, directory)  # the shards are on disk...
        if "step-00000004" in directory.name:
            raise OSError(28, "No space left on device")  # ...then the disk fills up

    monkeypatch.setattr(ckpt, "_save_shards", disk_full_after_shards)
    with pytest.raises(CheckpointError, match=r"No space left on device.*step-00000002 is intact"):
        pretrain(cfg)
    checkpoints = TrainingCheckpoints(cfg.checkpoint.dir)
    assert checkpoints.latest().name == "step-00000002"
    assert not list(Path(cfg.checkpoint.dir).glob(".*tmp"))  # the half-written save was removed
    monkeypatch.setattr(ckpt, "_save_shards", real_save)
    # A kill (no exception handler ran) leaves a temporary directory behind: it is ignored and replaced.
    junk = Path(cfg.checkpoint.dir) / ".step-00000004.tmp"
    junk.mkdir()
    (junk / "__0_0.distcp").write_bytes(b"half")
    resumed = pretrain(cfg, resume=True)
    assert resumed.resumed_from == 2 and resumed.steps == 4 and not junk.exists()
    assert checkpoints.latest().name == "step-00000004"


def test_pretrain_cli_end_to_end_on_real_text_and_generate(corpus, tmp_path, capsys):
    from megasense.cli.main import main
    from megasense.config import GenerationConfig
    from megasense.predictors.generation import TextGenerator
    from megasense.zoo.load import load_model

    run = tmp_path / "run"
    settings = {
        "data.prefix": corpus["prefix"],
        "data.tokenizer": corpus["tokenizer"],
        "train.metrics_path": str(run / "metrics.jsonl"),
        "train.progress": "false",
        "train.peak_flops": "1e11",
        "train.device": "cpu",
        "checkpoint.dir": str(run / "ckpt"),
        "export.dir": str(run / "model"),
    }
    argv = ["pretrain", str(CONFIGS / "gpt-tiny-cpu.toml")]
    for key, value in settings.items():
        argv += ["--set", f"{key}={value}"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "trained to step 300" in out and "tokens/s" in out and "exported model" in out

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train] == [1, *range(25, 301, 25)]  # the first step, then every log_every
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 and r["grad_norm"] > 0 for r in train)
    lrs = [r["lr"] for r in train]  # warm-up over 15 steps to 3e-3, then a cosine down to 0
    assert lrs[0] < lrs[1] and max(lrs) <= 3e-3 and lrs[-1] < 1e-6 < lrs[-2]
    first, last = train[0]["loss"], train[-1]["loss"]
    # ln(512) = 6.24 is where an untrained model starts; the run ends far below it.
    assert first > 6.0 and last < first - 1.0, (first, last)
    assert records[-1]["event"] == "end" and records[-1]["steps"] == 300

    loaded = load_model(run / "model")
    assert loaded.config.vocab_size == 512 and loaded.tokenizer is not None
    text, generation = TextGenerator(loaded).generate("I love", GenerationConfig(max_new_tokens=12))[0]
    assert len(generation.tokens) > 0 and text.strip()


LAYOUTS = {"tp2": {"tp": 2}, "fsdp2": {"dp": 2}}


@pytest.fixture(scope="module")
def sharded_runs(corpus, tmp_path_factory) -> dict[str, tuple[PretrainConfig, list[float]]]:
    """Six steps at TP=2 and at FSDP dp=2 (two gloo ranks, started once), checkpoints at steps 3 and 6."""
    from megasense.parallel.launch import run_distributed

    root = tmp_path_factory.mktemp("layouts")
    configs = {}
    for name, parallel in LAYOUTS.items():
        micro = 4 // parallel.get("dp", 1)  # a global batch of 4 at every layout
        configs[name] = _config(
            corpus,
            root,
            name=name,
            model={"hidden_dropout": 0.0, "attention_dropout": 0.0},  # the same numbers at any layout
            train={"max_steps": 6, "grad_accum": 1, "micro_batch_size": micro},
            parallel=parallel,
        )
    losses = run_distributed(_pretrain_ranks, world_size=2, args=(list(configs.values()),), timeout=240)[0]
    return {name: (cfg, curve) for (name, cfg), curve in zip(configs.items(), losses, strict=True)}


def _pretrain_ranks(rank: int, world_size: int, configs: list[PretrainConfig]) -> list[list[float]]:
    from megasense.training.pretrain import pretrain

    return [pretrain(cfg).losses for cfg in configs]


@pytest.mark.distributed
def test_every_layout_trains_the_same_model(sharded_runs):
    """train.init='single': TP=2 and FSDP dp=2 start from the one-device weights and follow one curve."""
    (_, tp2), (_, fsdp2) = sharded_runs["tp2"], sharded_runs["fsdp2"]
    assert tp2 == pytest.approx(fsdp2, abs=1e-5)
    a, b = (_weights(sharded_runs[name][0].export.dir) for name in ("tp2", "fsdp2"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


@pytest.mark.distributed
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_sharded_checkpoint_loads_on_one_device(sharded_runs, layout):
    from megasense.models import build_model
    from megasense.training.pretrain import pretrain

    cfg, sharded_losses = sharded_runs[layout]
    exported = _weights(cfg.export.dir)
    # The step-6 state of two ranks, loaded into one plain model and optimizer: the same parameters exactly.
    model = build_model(cfg.model.resolve(vocab_size=512))
    model.init_weights()
    optimizer = torch.optim.AdamW(model.parameters())
    state = TrainingCheckpoints(cfg.checkpoint.dir).load(model, optimizer)
    assert state["step"] == 6 and state["world_size"] == 2 and not state["rng_restored"]
    params = dict(model.named_parameters())
    assert all(torch.equal(params[k], v) for k, v in exported.items())
    moments = optimizer.state[params["layers.0.self_attention.linear_qkv.weight"]]["exp_avg"]
    assert moments.shape == (3 * 32, 32) and moments.abs().sum() > 0  # whole, not a shard

    # Resume the sharded run's step-3 checkpoint on one device: it continues the same loss curve.
    shutil.rmtree(Path(cfg.checkpoint.dir) / "step-00000006")
    (Path(cfg.checkpoint.dir) / "latest").write_text("step-00000003\n")
    single = replace(
        cfg,
        parallel=replace(cfg.parallel, tp=1, dp=1),
        train=replace(cfg.train, micro_batch_size=4),
        export=replace(cfg.export, dir=None),
    )
    resumed = pretrain(single, resume=True)
    assert resumed.resumed_from == 3 and resumed.steps == 6
    assert resumed.losses == pytest.approx(sharded_losses[3:], abs=1e-5)
    assert sharded_losses[-1] < sharded_losses[0]


def test_missing_corrupt_or_mismatched_corpus_files_are_named(corpus, tmp_path):
    from megasense.training.pretrain import pretrain

    with pytest.raises(IndexedDatasetError, match=r"nothing\.idx: no such file"):
        pretrain(_config(corpus, tmp_path, data={"prefix": str(tmp_path / "nothing")}))
    broken = tmp_path / "broken"
    for suffix in (".bin", ".idx"):
        shutil.copy(corpus["prefix"] + suffix, str(broken) + suffix)
    with open(str(broken) + ".bin", "r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(IndexedDatasetError, match=r"broken\.bin: 1000 bytes.*truncated"):
        pretrain(_config(corpus, tmp_path, data={"prefix": str(broken)}))
    (tmp_path / "garbage.idx").write_bytes(b"not an index")
    (tmp_path / "garbage.bin").write_bytes(b"")
    with pytest.raises(IndexedDatasetError, match=r"garbage\.idx: not a Megatron indexed-dataset index"):
        pretrain(_config(corpus, tmp_path, data={"prefix": str(tmp_path / "garbage")}))
    # A corpus tokenized with a larger vocabulary than the model's: named before any training.
    with pytest.raises(ConfigError, match=r"tweets\.bin: token id \d+ is outside the model's vocabulary"):
        pretrain(_config(corpus, tmp_path, data={"tokenizer": None}))
    with pytest.raises(ConfigError, match=r"--resume needs checkpoint\.dir"):
        pretrain(_config(corpus, tmp_path, checkpoint={"dir": None}), resume=True)


def test_bert_masked_lm_and_sentence_order_pretraining(tmp_path):
    from megasense.models import BertForPreTraining
    from megasense.training.pretrain import pretrain
    from megasense.zoo.load import load_model

    texts = [t for t in shared_texts("tweets-sentiment-en/train.csv", 3000) if t.count(". ") >= 1]
    tok = train_tokenizer(iter(texts), kind="wordpiece", vocab_size=1000, lowercase=True)
    (tmp_path / "wp").mkdir()
    tok.save(tmp_path / "wp")
    (tmp_path / "t.txt").write_text("\n".join(t.replace("\n", " ") for t in texts), encoding="utf-8")
    tokenize_corpus([tmp_path / "t.txt"], tok, tmp_path / "bert", split_sentences=True)
    cfg = PretrainConfig.load(
        CONFIGS / "bert-tiny-cpu.toml",
        [
            f"data.prefix={tmp_path / 'bert'}",
            f"data.tokenizer={tmp_path / 'wp'}",
            "train.max_steps=150",
            "train.device=cpu",
            "train.progress=false",
            "train.metrics_path=none",
            "checkpoint.dir=none",
            f"export.dir={tmp_path / 'model'}",
        ],
    )
    result = pretrain(cfg)
    start, end = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert start > 7.0 and end < start - 0.6, (start, end)  # ln(1000) + ln(2) = 7.6 untrained
    loaded = load_model(tmp_path / "model")
    assert isinstance(loaded.model, BertForPreTraining) and loaded.model.binary_head is not None
    assert loaded.head.task == "pretraining" and loaded.tokenizer.token_to_id("[MASK]") is not None


@pytest.mark.distributed
def test_torchrun_two_processes_tensor_parallel(corpus, tmp_path):
    """What a user types: torchrun starts two gloo ranks from the same tiny config, with --set."""
    run = tmp_path / "run"
    done = run_torchrun_pretrain(corpus, run, "parallel.tp=2", "parallel.sequence_parallel=true", max_steps=20)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained to step 20") == 1  # rank 0 reports, rank 1 stays quiet
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["config"]["parallel"]["tp"] == 2 and records[-1]["steps"] == 20
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["latest", "step-00000010", "step-00000020"]
    assert sorted(p.name for p in (run / "ckpt" / "step-00000020").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert (run / "model" / "model.safetensors").is_file()


def run_torchrun_pretrain(corpus, run: Path, *sets: str, max_steps: int):
    """``torchrun --nproc-per-node 2 megasense pretrain`` on the tiny GPT config with ``--set`` values ``sets``,
    checkpoints every 10 steps and an export, all under ``run``; returns the finished process."""
    import os
    import subprocess
    import sys

    argv = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "-m", "megasense.cli.main", "pretrain", str(CONFIGS / "gpt-tiny-cpu.toml"),
        "--set", f"data.prefix={corpus['prefix']}", "--set", f"data.tokenizer={corpus['tokenizer']}",
        *(arg for value in sets for arg in ("--set", value)),
        "--set", f"train.max_steps={max_steps}", "--set", "train.device=cpu",
        "--set", "train.progress=false", "--set", f"train.metrics_path={run / 'metrics.jsonl'}",
        "--set", f"checkpoint.dir={run / 'ckpt'}", "--set", "checkpoint.every=10",
        "--set", f"export.dir={run / 'model'}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180, cwd=run.parent)
