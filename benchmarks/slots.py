"""Slot filling on CAIS (Chinese smart-speaker requests): our token classifier on multilingual-e5-small
against a CRF on character features, both trained on cais train and scored on cais dev in the same run.

Both are scored alike: span-level micro F1 from seqeval in strict BIOES mode (a slot counts only with its
exact boundaries and name). The last line prints both and their difference and ratio.

    .venv/bin/python benchmarks/slots.py                        # LoRA rank 32, 6 epochs (~25 min on 1 thread)
    .venv/bin/python benchmarks/slots.py --full --epochs 2      # all weights
    .venv/bin/python benchmarks/slots.py --max-steps 30 --limit-train 500 --limit-dev 200   # a smoke run

Everything a run makes goes to ``runs/slots-<time>/`` (git-ignored): ``metrics.jsonl`` (the trainer's log,
one record per log step and per evaluation), ``model/`` (release + card, ``model/adapter`` with LoRA) and
``summary.json``. CM-Net (EMNLP 2019) reports slot F1 of about 0.86 on CAIS *test*; the target here is 0.86 on dev.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from _common import SHARED_DATA


def read_rows(path: Path, limit: int | None) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise SystemExit(f"{path} is missing: set MEGASENSE_TEST_DATA to the folder that holds the shared data sets")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    return [r["text"] for r in rows], [r["slots"].split() for r in rows]


def char_features(text: str, i: int) -> dict[str, object]:
    """A character's features: itself, its neighbours within two, the bigrams around it, its kind."""
    c = text[i]

    def at(k: int) -> str:
        return text[k] if 0 <= k < len(text) else ("<s>" if k < 0 else "</s>")

    return {
        "bias": 1.0,
        "c": c,
        "c-1": at(i - 1),
        "c+1": at(i + 1),
        "c-2": at(i - 2),
        "c+2": at(i + 2),
        "c-1c": at(i - 1) + c,
        "cc+1": c + at(i + 1),
        "c-1c+1": at(i - 1) + at(i + 1),
        "digit": c.isdigit(),
        "latin": c.isascii() and c.isalpha(),
        "punct": not c.isalnum(),
    }


def crf_baseline(train, dev, *, iterations: int) -> tuple[list[list[str]], float]:
    """sklearn-crfsuite's linear-chain CRF (L-BFGS, elastic net) on character features: dev predictions, seconds."""
    try:
        import sklearn_crfsuite
    except ImportError:
        raise SystemExit("the CRF baseline needs sklearn-crfsuite: pip install 'megasense[baselines]'") from None
    started = time.perf_counter()
    crf = sklearn_crfsuite.CRF(
        algorithm="lbfgs", c1=0.05, c2=0.05, max_iterations=iterations, all_possible_transitions=True
    )
    crf.fit([[char_features(t, i) for i in range(len(t))] for t in train[0]], train[1])
    predicted = crf.predict([[char_features(t, i) for i in range(len(t))] for t in dev[0]])
    return [list(p) for p in predicted], time.perf_counter() - started


def strict_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOBES

    from megasense.predictors.tagging import convert_tags

    return float(f1_score(gold, [convert_tags(p, "bioes") for p in predicted], mode="strict", scheme=IOBES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = SHARED_DATA / "cais-intent-zh"
    parser.add_argument("--train", type=Path, default=data / "train.csv")
    parser.add_argument("--dev", type=Path, default=data / "dev.csv")
    parser.add_argument("--base", default="multilingual-e5-small")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--lora", action=argparse.BooleanOptionalAction, default=True, help="--full: all weights")
    parser.add_argument("--full", dest="lora", action="store_false")
    parser.add_argument("--lora-rank", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="default: 1e-3 with LoRA, 5e-5 full")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=None, help="optimizer steps (default: each epoch)")
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--time-budget", type=float, default=None, help="seconds of training at most")
    parser.add_argument("--probe-epochs", type=int, default=10, help="passes of the head alone first (0: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--limit-dev", type=int, default=None)
    parser.add_argument("--crf-iterations", type=int, default=150)
    parser.add_argument("--no-crf", action="store_true")
    parser.add_argument("--runs", type=Path, default=Path(__file__).resolve().parents[1] / "runs")
    args = parser.parse_args()

    import torch

    from megasense.predictors.slots import SlotExamples
    from megasense.training.finetune import save_finetuned
    from megasense.training.slots import finetune_slots, slot_card, slot_config
    from megasense.zoo import load_model

    torch.set_num_threads(args.threads)
    run = args.runs / time.strftime("slots-%Y%m%d-%H%M%S")
    run.mkdir(parents=True)
    train, dev = read_rows(args.train, args.limit_train), read_rows(args.dev, args.limit_dev)
    print(f"run: {run}  train {len(train[0])} texts, dev {len(dev[0])} texts", flush=True)
    summary: dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()}}

    crf_f1 = None
    if not args.no_crf:
        predicted, seconds = crf_baseline(train, dev, iterations=args.crf_iterations)
        crf_f1 = strict_f1(dev[1], predicted)
        summary["crf"] = {"slot_f1": crf_f1, "seconds": seconds}
        print(f"CRF (character features): slot F1 {crf_f1:.4f} on dev ({seconds:.0f} s)", flush=True)

    options = {"epochs": args.epochs, "max_steps": args.max_steps, "lora": args.lora, "lora_rank": args.lora_rank}
    options |= {"lora_alpha": 2.0 * args.lora_rank, "batch_size": args.batch_size, "eval_every": args.eval_every}
    options |= {
        "patience": args.patience,
        "time_budget_s": args.time_budget,
        "metrics_path": str(run / "metrics.jsonl"),
    }
    options["lr"] = args.lr or (1e-3 if args.lora else 5e-5)
    config = slot_config(**options)
    base = load_model(args.base)
    train_ex = SlotExamples(texts=train[0], tags=train[1], source=str(args.train))
    dev_ex = SlotExamples(texts=dev[0], tags=dev[1], source=str(args.dev))
    result = finetune_slots(base, train_ex, dev_ex, config, name=str(run / "model"), probe_epochs=args.probe_epochs)
    command = " ".join(["python", *sys.argv])
    card = slot_card("cais-slots", args.base, result, train=train_ex, val=dev_ex, command=command)
    save_finetuned(result, run / "model", base_name=args.base, card=card, metadata={"command": command})
    ours = result.report["slot_f1"]
    summary["ours"] = {
        **{k: result.report[k] for k in ("slot_f1", "slot_precision", "slot_recall", "exact_match", "precision")},
        "steps": result.train.steps,
        "best_step": result.train.best_step,
        "samples_per_s": result.train.samples_per_s,
        "seconds": result.seconds,
        "history": result.train.history,
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(
        f"ours ({args.base}, {'LoRA r' + str(args.lora_rank) if args.lora else 'full'}): slot F1 {ours:.4f} "
        f"(P {result.report['slot_precision']:.4f}, R {result.report['slot_recall']:.4f}, "
        f"exact {result.report['exact_match']:.4f}), {result.train.steps} steps, {result.seconds:.0f} s",
        flush=True,
    )
    if crf_f1 is None:
        print(f"slot F1 on dev: ours {ours:.4f}")
    else:
        print(f"slot F1 on dev: ours {ours:.4f} vs CRF {crf_f1:.4f}: {ours - crf_f1:+.4f} ({ours / crf_f1:.3f}x)")


if __name__ == "__main__":
    main()
