"""Chat fine-tuning on task-oriented dialogues: held-out perplexity on assistant turns before and after LoRA.

For each data set (MultiWOZ 2.1, English; CrossWOZ, Chinese; both in ../shared/data as OpenAI ``messages``
lines) smollm2-135m-instruct is fine-tuned with LoRA on ``train.jsonl.gz`` through the same function
``megasense train --task chat`` calls (``training.chat.train_chat``), and measured on held-out
conversations from ``dev.jsonl.gz`` (a seeded sample, written to the run folder): the perplexity over
assistant tokens (each turn's ``<|im_end|>`` included) of the base, then of the fine-tuned model at its
best evaluation. Both numbers come from one run, on the same tokens, at the same precision.

    .venv/bin/python benchmarks/chat_finetune.py                      # ~20 min of CPU on 1 thread
    .venv/bin/python benchmarks/chat_finetune.py --max-steps 300 --heldout 200 --max-length 1024   # a fuller run
    .venv/bin/python benchmarks/chat_finetune.py --sets multiwoz-en --max-steps 4 --heldout 8      # a smoke run

Everything a run makes goes to ``runs/chat-<time>/`` (git-ignored): per data set the held-out sample
(``<set>-heldout.jsonl``), the trainer's log (``<set>-metrics.jsonl``), the model (``<set>-model/``: an adapter
and its card); and ``summary.json``. The last line prints before and after for each set.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path

from _common import SHARED_DATA

SETS = ("multiwoz-en", "crosswoz-zh")


def heldout_sample(source: Path, target: Path, n: int, seed: int) -> int:
    """Write a seeded sample of ``n`` lines of ``source`` (gzip JSONL) to ``target``; the number written."""
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip()]
    picked = sorted(random.Random(seed).sample(range(len(lines)), min(n, len(lines))))
    target.write_text("".join(lines[i] for i in picked), encoding="utf-8")
    return len(picked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256, help="tokens per conversation (earlier turns dropped)")
    parser.add_argument("--heldout", type=int, default=64, help="dev conversations held out per set")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--fp32", action="store_true", help="train and measure in fp32 (default: bf16 autocast)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=Path, default=Path(__file__).resolve().parents[1] / "runs")
    args = parser.parse_args()

    import torch

    from megasense.training.chat import train_chat

    torch.set_num_threads(args.threads)
    run = args.runs / time.strftime("chat-%Y%m%d-%H%M%S")
    run.mkdir(parents=True)
    summary: dict[str, dict] = {"args": {k: str(v) for k, v in vars(args).items()}, "sets": {}}
    for name in args.sets:
        folder = SHARED_DATA / name
        if not (folder / "train.jsonl.gz").is_file():
            raise SystemExit(f"{folder} is missing: set MEGASENSE_TEST_DATA to the folder that holds the shared data")
        heldout = run / f"{name}-heldout.jsonl"
        heldout_sample(folder / "dev.jsonl.gz", heldout, args.heldout, args.seed)
        started = time.perf_counter()
        result = train_chat(
            folder / "train.jsonl.gz",
            heldout,
            base=args.base,
            output=run / f"{name}-model",
            max_steps=args.max_steps,
            eval_every=args.eval_every,
            batch_size=args.batch_size,
            max_length=args.max_length,
            lora_rank=args.lora_rank,
            lr=args.lr,
            bf16=not args.fp32,
            seed=args.seed,
            patience=None,
            metrics_path=str(run / f"{name}-metrics.jsonl"),
            progress=True,
        )
        record = {
            "before": result.before.perplexity,
            "after": result.after.perplexity,
            "loss_before": result.before.loss,
            "loss_after": result.after.loss,
            "heldout_tokens": result.after.tokens,
            "heldout_conversations": result.after.conversations,
            "best_step": result.train.best_step,
            "steps": result.train.steps,
            "history": result.train.history,
            "data": {k: v for k, v in result.data.items() if not isinstance(v, list)},
            "seconds": time.perf_counter() - started,
        }
        summary["sets"][name] = record
        print(
            f"{name}: held-out perplexity {record['before']:.3f} -> {record['after']:.3f} "
            f"({record['heldout_tokens']:,} assistant tokens in {record['heldout_conversations']} conversations; "
            f"{record['steps']} steps, best {record['best_step']}, {record['seconds']:.0f} s)",
            flush=True,
        )
    (run / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    precision = "fp32" if args.fp32 else "bf16"
    print(
        f"run: {run}; held-out perplexity on assistant tokens before -> after LoRA "
        f"({args.max_steps} steps, {precision}): "
        + "; ".join(
            f"{k} {v['before']:.2f} -> {v['after']:.2f} (x{v['after'] / v['before']:.2f})"
            for k, v in summary["sets"].items()
        )
    )


if __name__ == "__main__":
    main()
