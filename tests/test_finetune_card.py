"""Fine-tuning evaluates through the predictors: the card's numbers are exactly what `megasense evaluate` prints."""

from __future__ import annotations

import json
import shlex

from typer.testing import CliRunner

from _sentiment_fixtures import (
    one_thread,  # noqa: F401 (an autouse fixture)
    save_base,
    toy_rows,
    write_csv,
)
from megasense.cli.main import _register, app
from megasense.predictors.jobs import evaluate_file
from megasense.predictors.sentiment import load_predictor
from megasense.training.finetune import FinetuneConfig, train_from_files

HEADLINE = ("accuracy", "macro_f1", "macro_recall", "ece")
"""The headline metrics, and the calibration error (equal only if every probability is)."""


def _cli(*args: str):
    if not any(c.name == "train" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, list(args))


def _metadata(model_dir) -> dict:
    return json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["metadata"]


def test_train_card_metrics_equal_what_evaluate_prints(tmp_path):
    base = save_base(tmp_path)
    train_csv = write_csv(tmp_path / "train.csv", toy_rows(160, 0))
    val_csv = write_csv(tmp_path / "val.csv", toy_rows(60, 1))
    out = tmp_path / "mine"
    args = ["train", str(train_csv), "--val", str(val_csv), "--base", str(base), "--output", str(out)]
    args += ["--epochs", "2", "--batch-size", "16", "--lr", "3e-3", "--no-bf16", "--class-weights", "none"]
    trained = _cli(*args)
    assert trained.exit_code == 0, trained.output

    meta = _metadata(out)
    card = (out / "README.md").read_text(encoding="utf-8")
    # The real command line and the config as the run used it, not a command rebuilt by hand.
    assert meta["command"] == shlex.join(["megasense", *args]) and meta["command"] in card
    config = FinetuneConfig(**meta["finetune"])
    assert config.epochs == 2 and config.lr == 3e-3 and not config.bf16 and config.monitor == "macro_recall"
    assert meta["report"]["precision"] == "fp32"
    expected = shlex.join(["megasense", "evaluate", str(val_csv), "--model", str(out), "--precision", "fp32"])
    assert meta["evaluate"] == expected and expected in card

    report = tmp_path / "report.json"
    evaluated = _cli(*shlex.split(expected)[1:], "--report", str(report), "--no-baseline", "--no-progress")
    assert evaluated.exit_code == 0, evaluated.output
    printed = json.loads(report.read_text(encoding="utf-8"))
    assert {k: meta["report"][k] for k in HEADLINE} == {k: printed[k] for k in HEADLINE}
    assert meta["report"]["confusion_matrix"] == printed["confusion_matrix"] and printed["model"] == str(out)
    for key in HEADLINE:
        assert f"| {key} | {printed[key]:.4f} |" in card


def test_lora_bf16_report_equals_evaluate_file_on_the_saved_model(tmp_path):
    """With LoRA the saved weights are merged; the final report is measured on those, at the run's precision."""
    base = save_base(tmp_path)
    train_csv = write_csv(tmp_path / "train.csv", toy_rows(96, 2))
    val_csv = write_csv(tmp_path / "val.csv", toy_rows(40, 3, labels=("negative", "positive")))
    config = FinetuneConfig(lora=True, lora_rank=4, epochs=2, batch_size=16, bf16=True, progress=False)
    result = train_from_files(train_csv, val_csv, base=str(base), output=tmp_path / "lora", config=config)
    assert result.report["precision"] == "bf16" and result.report["labels"] == ["negative", "positive"]
    assert len(result.train.history) == 2  # evaluated on the live (unmerged) module after each epoch

    printed = evaluate_file(load_predictor(tmp_path / "lora", precision="bf16"), val_csv, baseline=False)
    assert {k: result.report[k] for k in HEADLINE} == {k: printed[k] for k in HEADLINE}
    assert _metadata(tmp_path / "lora")["report"][HEADLINE[0]] == printed[HEADLINE[0]]
