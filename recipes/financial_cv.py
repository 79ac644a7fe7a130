"""5-fold cross-validation of ``megasense train`` on Financial PhraseBank (a user recipe, not a shipped model).

Financial PhraseBank is CC BY-NC-SA (non-commercial), so no model trained on it ships with megasense;
this measures how well a user's own fine-tune does. Each fold: stratified 4/5 for training (of which
10% is the early-stopping validation set), 1/5 for the test, measured with ``evaluate_file`` exactly
as ``megasense evaluate`` does.

    .venv/bin/python recipes/financial_cv.py [--folds 5] [--epochs 5] [--lr 1e-4] [--lora] [--threads 2]

Measured 2026-12-02 (2-core AMD EPYC, 2 threads, full fine-tuning of all-minilm-l6-v2, ~2.7 min per fold):
``--epochs 5 --lr 1e-4`` (the defaults): folds 0.8477 / 0.8682 / 0.8346 / 0.8372 / 0.8152, mean **0.8406**
(VADER 0.54); every fold's best validation step was its last. Fold 0 alone: 3 epochs at lr 5e-5 (the
``megasense train`` defaults) 0.8039, 5 epochs 0.8387, 4 epochs at 1e-4 0.8400; multilingual-e5-small, 3
epochs 0.8155. FinBERT reports 0.86 on all agreement levels; the issue's goal is 0.86.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "financial-phrasebank" / "train.csv"
sys.path.insert(0, str(ROOT / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from sklearn.model_selection import StratifiedKFold, train_test_split  # noqa: E402

from megasense.predictors.jobs import evaluate_file  # noqa: E402
from megasense.predictors.sentiment import SentimentClassifier  # noqa: E402
from megasense.training.finetune import FinetuneConfig, train_from_files  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--run-folds", type=int, default=None, help="stop after this many folds (time budget)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument(
        "--lr", type=float, default=None, help="peak learning rate (default 1e-4; with --lora, train's)"
    )
    parser.add_argument("--base", default="all-minilm-l6-v2")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame = pd.read_csv(DATA)[["text", "label"]]
    out = ROOT / "runs" / "financial-cv"
    out.mkdir(parents=True, exist_ok=True)
    folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=0)
    scores = []
    for k, (train_idx, test_idx) in enumerate(folds.split(frame.text, frame.label)):
        if args.run_folds is not None and k >= args.run_folds:
            break
        part = frame.iloc[train_idx]
        train, val = train_test_split(part, test_size=0.1, stratify=part.label, random_state=k)
        paths = {name: out / f"fold{k}-{name}.csv" for name in ("train", "val", "test")}
        train.to_csv(paths["train"], index=False)
        val.to_csv(paths["val"], index=False)
        frame.iloc[test_idx].to_csv(paths["test"], index=False)
        config = FinetuneConfig(
            epochs=args.epochs,
            lora=args.lora,
            lr=args.lr or (None if args.lora else 1e-4),
            max_length=96,
            monitor="accuracy",
            progress=False,
        )
        result = train_from_files(
            paths["train"], paths["val"], base=args.base, output=out / f"fold{k}-model", config=config, overwrite=True
        )
        report = evaluate_file(SentimentClassifier(result.loaded), paths["test"], baseline=True)
        scores.append(report["accuracy"])
        print(
            json.dumps(
                {
                    "fold": k,
                    "accuracy": round(report["accuracy"], 4),
                    "macro_f1": round(report["macro_f1"], 4),
                    "vader_accuracy": round(report["baseline"]["accuracy"], 4) if report.get("baseline") else None,
                    "steps": result.train.steps,
                    "seconds": round(result.seconds),
                }
            ),
            flush=True,
        )
    mean = sum(scores) / len(scores)
    print(json.dumps({"folds_run": len(scores), "mean_accuracy": round(mean, 4), "args": vars(args)}))


if __name__ == "__main__":
    main()
