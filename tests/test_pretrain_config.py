"""Pretraining configs: TOML sections, --set overrides, and errors that name the key, the value and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from megasense.config import ConfigError
from megasense.config.pretrain import PretrainConfig, apply_overrides, parse_value

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MINIMAL = """
[model]
preset = "gpt-tiny"

[data]
prefix = "corpus/x"
seq_length = 32
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_load_and_fit_their_models(path):
    cfg = PretrainConfig.load(path)
    model = cfg.model.resolve()
    cfg.check_model(model)
    assert cfg.data.objective == ("gpt" if model.is_decoder else "bert")
    if "tiny" in path.name:
        assert cfg.train.device == "auto" and cfg.parallel.world_size == 1 and model.num_parameters() < 100_000
    else:
        assert model.num_parameters() > 300e6 and cfg.train.bf16 and cfg.train.device == "cuda"


def test_example_configs_cover_the_four_runs():
    names = {p.name for p in CONFIGS.glob("*.toml")}
    assert {"gpt-tiny-cpu.toml", "bert-tiny-cpu.toml", "megatron-gpt2-345m.toml", "megatron-bert-345m.toml"} <= names


def test_sections_defaults_and_overrides(tmp_path):
    path = _write(tmp_path, MINIMAL + "\n[train]\nlr = 1\nbetas = [0.9, 0.99]\n")
    cfg = PretrainConfig.load(
        path, ["train.max_steps=7", "model.hidden_dropout=0", "parallel.tp=2", "train.grad_clip=none"]
    )
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.betas == (0.9, 0.99) and cfg.train.max_steps == 7 and cfg.train.grad_clip is None
    assert cfg.parallel.tp == 2 and cfg.checkpoint.dir is None
    model = cfg.model.resolve(vocab_size=500)
    assert model.hidden_dropout == 0.0 and model.vocab_size == 500 and model.name == "gpt-tiny"
    assert cfg.model.resolve().vocab_size == 99  # the preset's own without a tokenizer
    assert cfg.global_batch_size == cfg.train.micro_batch_size
    again = PretrainConfig.from_dict(cfg.to_dict())
    assert again == cfg


def test_set_values_are_read_as_toml_then_as_strings():
    assert parse_value("3e-4") == 3e-4 and parse_value("true") is True and parse_value("[1, 2]") == [1, 2]
    assert parse_value("data/corpus") == "data/corpus" and parse_value("none") is None
    assert apply_overrides({"data": {"prefix": "a"}}, ["data.prefix=b"]) == {"data": {"prefix": "b"}}
    with pytest.raises(ConfigError, match=r"expected section\.key=value"):
        apply_overrides({}, ["lr=3"])
    with pytest.raises(ConfigError, match="unknown section 'optim'"):
        apply_overrides({}, ["optim.lr=3"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[train]\nlearning_rate = 1e-3\n", r"run\.toml: unknown train key\(s\) \['learning_rate'\]"),
        ("[model]\nhiden_size = 64\n", r"unknown model key\(s\) \['hiden_size'\]"),
        ("[optimizer]\nlr = 1\n", r"unknown section\(s\) \['optimizer'\]"),
        ("[train]\nlr = 'fast'\n", r"train\.lr='fast' must be a number"),
        ("[train]\nmax_steps = 2.5\n", r"train\.max_steps=2\.5 must be an integer"),
        ("[train]\nmax_steps = 0\n", r"train\.max_steps=0 must be at least 1"),
        ("[train]\nschedule = 'step'\n", r"train\.schedule='step' is not one of cosine, linear, constant"),
        ("[train]\nbetas = [0.9]\n", r"train\.betas=\[0\.9\] must be a list of 2 values"),
        ("[parallel]\ntp = 0\n", r"tp=0 must be a positive integer"),
        ("[parallel]\ntp = 3\nsequence_parallel = true\n", r"sequence length 32 is not divisible by tp=3"),
        ("[checkpoint]\nkeep = 0\n", r"checkpoint\.keep=0 must be at least 1"),
    ],
)
def test_bad_values_name_the_key_and_the_file(tmp_path, extra, message):
    text = (
        MINIMAL.replace("[model]\n", "[model]\n" + extra.split("\n", 1)[1])
        if extra.startswith("[model]")
        else MINIMAL + extra
    )
    with pytest.raises(ConfigError, match=message):
        PretrainConfig.load(_write(tmp_path, text))


def test_inconsistent_runs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"\[data\] section is required"):
        PretrainConfig.load(_write(tmp_path, "[model]\npreset = 'gpt-tiny'\n"))
    with pytest.raises(ConfigError, match=r"model\.preset='gpt-huge' is not a preset"):
        PretrainConfig.load(_write(tmp_path, MINIMAL), ["model.preset=gpt-huge"])
    with pytest.raises(ConfigError, match="objective='bert' needs an arch='bert' model"):
        PretrainConfig.load(_write(tmp_path, MINIMAL), ["data.objective=bert"])
    with pytest.raises(ConfigError, match="not valid TOML"):
        PretrainConfig.load(_write(tmp_path, "[data\nprefix=1"))
    with pytest.raises(ConfigError, match="no such config file"):
        PretrainConfig.load(tmp_path / "missing.toml")
    # Sizes that do not divide: checked against the resolved model before any process starts.
    cfg = PretrainConfig.load(_write(tmp_path, MINIMAL), ["parallel.tp=3"])
    with pytest.raises(ConfigError, match=r"num_attention_heads=4.*not divisible by tp=3"):
        cfg.check_model(cfg.model.resolve())
    long = PretrainConfig.load(_write(tmp_path, MINIMAL), ["data.seq_length=128"])
    with pytest.raises(ConfigError, match="seq_length=128 exceeds the model's max_position_embeddings=64"):
        long.check_model(long.model.resolve())


def test_config_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, megasense.config.pretrain; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_reports_config_errors_cleanly(tmp_path, capsys):
    from megasense.cli.main import main

    path = _write(tmp_path, MINIMAL + "[train]\nlrate = 1\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", str(path)])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "error:" in err and "run.toml" in err and "'lrate'" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", str(_write(tmp_path, MINIMAL)), "--set", "parallel.tp=3"])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "num_attention_heads=4" in err and "not divisible by tp=3" in err
