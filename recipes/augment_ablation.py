"""Does EDA augmentation help? The same small fine-tune with and without it, measured on the tweets val split.

Low-resource setting (EDA's claim is about small training sets): ``--rows`` tweets from the
training file, LoRA on all-MiniLM-L6-v2, the same seed and number of epochs; the augmented run adds
``--copies`` EDA copies of every text. Early stopping uses a 300-row holdout of the training file.

    .venv/bin/python recipes/augment_ablation.py [--rows 4000] [--copies 1] [--seeds 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "recipes"))

import torch  # noqa: E402
from sentiment import DATA, clean_tweet  # noqa: E402

from megasense.training.finetune import (  # noqa: E402
    Examples,
    FinetuneConfig,
    evaluate_examples,
    finetune,
    read_examples,
)
from megasense.zoo import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_model("all-minilm-l6-v2")
    ex = read_examples(DATA / "tweets-sentiment-en" / "train.csv")
    val = read_examples(DATA / "tweets-sentiment-en" / "val.csv")
    pairs = list(zip((clean_tweet(t) for t in ex.texts), ex.labels))
    random.Random(0).shuffle(pairs)
    hold = Examples([t for t, _ in pairs[:300]], [y for _, y in pairs[:300]])
    train = Examples([t for t, _ in pairs[300 : 300 + args.rows]], [y for _, y in pairs[300 : 300 + args.rows]])
    for seed in args.seeds:
        for augment in (False, True):
            config = FinetuneConfig(
                lora=True, lr=8e-4, epochs=2, max_length=64, class_weights="sqrt", augment=augment,
                augment_copies=args.copies, seed=seed, progress=False, patience=None,
            )  # fmt: skip
            result = finetune(base, train, hold, config)
            # as `megasense evaluate val.csv --model MODEL --precision bf16` measures the saved model
            report = evaluate_examples(result.loaded, val, precision="bf16")
            record = {"seed": seed, "augment": augment, "rows": args.rows, "copies": args.copies}
            record |= {k: round(report[k], 4) for k in ("macro_recall", "accuracy", "macro_f1")}
            record["seconds"] = round(result.seconds)
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
