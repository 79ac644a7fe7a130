"""Recalibrate a shipped classifier on its recipe's holdout without retraining:
``python recipes/recalibrate.py intent-en``, then ``python recipes/classifier.py intent-en --measure``
(sentiment models: ``python recipes/recalibrate.py sentiment-en``, on the early-stopping holdouts of
``recipes/sentiment.py``, then ``python recipes/sentiment.py sentiment-en --measure``).

Runs the calibration ``finetune`` runs after training (``training.finetune._calibrate``) on the shipped
weights and the recipe's holdout (the same seeded split), and rewrites the head in ``adapter.json``.
For when the calibration rule changes after a model was trained.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))
sys.path.insert(0, str(ROOT / "src"))

from classifier import DATA, split_holdout  # noqa: E402

from megasense.training.finetune import _calibrate, read_examples  # noqa: E402
from megasense.zoo import load_model  # noqa: E402
from megasense.zoo.shipped import ASSETS  # noqa: E402


def main() -> None:
    name = sys.argv[1]
    recipe = tomllib.loads((ROOT / "recipes" / f"{name}.toml").read_text(encoding="utf-8"))
    if "train" in recipe:  # a sentiment recipe: several sources, one holdout each
        from sentiment import prepare

        _, holdout, _ = prepare(recipe)
    else:
        data = recipe["data"]
        multi = recipe["finetune"].get("multi_label", False)
        examples = read_examples(DATA / data["path"], label_col=data["label_col"], multi_label=multi)
        _, holdout = split_holdout(examples, data, recipe["finetune"].get("seed", 0))
    loaded = load_model(name)
    head, calibration = _calibrate(
        loaded, holdout, "bf16" if recipe["finetune"].get("bf16", True) else "fp32", max_length=256
    )
    path = ASSETS / name / "adapter.json"
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload["head"] = head.to_dict()
    payload["metadata"].setdefault("train", {})["calibration"] = calibration
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    info = ROOT / "runs" / name / "train_info.json"
    if info.is_file():
        saved = json.loads(info.read_text(encoding="utf-8"))
        saved["calibration"] = calibration
        info.write_text(json.dumps(saved, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps(calibration, ensure_ascii=False))


if __name__ == "__main__":
    main()
