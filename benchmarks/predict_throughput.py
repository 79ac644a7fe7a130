"""Sentiment prediction throughput on CPU, end to end (read CSV, tokenize, predict, write CSV).

Baseline and ours in the same run, each in its own subprocess so peak memory is measured separately:

- hf: transformers' ``pipeline("text-classification")`` with the same weights (sentiment-en exported to
  a transformers BertForSequenceClassification), batch size 32, texts in file order, fp32.
- ours: ``megasense.inference.sentiment.predict_file`` (length-sorted batches, bf16 autocast where the
  CPU has native bf16, long texts chunked).

Also checks accuracy: sentiment-en in fp32 and in the fast path on the tweets validation split.

    .venv/bin/python benchmarks/predict_throughput.py --n 10000
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA, peak_rss_mb, read_texts


def make_input(path: Path, n: int) -> None:
    """Forum-length English posts: tweets, repeated in order until there are ``n``."""
    texts = read_texts("tweets-sentiment-en/train.csv", limit=n)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for i in range(n):
            writer.writerow([i, texts[i % len(texts)]])


def run_ours(src: Path, out: Path, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from megasense.inference.sentiment import load_predictor, predict_file

    predictor = load_predictor("sentiment-en")
    predict_file(predictor, src, out.with_suffix(".warm.csv"), chunk_rows=64)  # warm-up on a copy
    start = time.perf_counter()
    summary = predict_file(predictor, src, out)
    return {"seconds": time.perf_counter() - start, "rows": summary.rows, "bf16": predictor.bf16}


def hf_pipeline(threads: int):
    import torch
    import transformers

    torch.set_num_threads(threads)
    from megasense.checkpoints.hf import model_config_to_hf, state_dict_to_hf
    from megasense.checkpoints.loading import load_model
    from megasense.checkpoints.registry import find_embedded, package_path
    from megasense.models import weights_for_saving

    loaded = load_model("sentiment-en")
    hf_config = transformers.BertConfig(**model_config_to_hf(loaded.config, loaded.head))
    model = transformers.BertForSequenceClassification(hf_config)
    sd = state_dict_to_hf(weights_for_saving(loaded.model), loaded.config, loaded.head)
    model.load_state_dict(sd, strict=False)  # the pooler (unused by our mean-pooled head) keeps its init
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(package_path(find_embedded("all-minilm-l6-v2"))))
    return transformers.pipeline("text-classification", model=model.eval(), tokenizer=tokenizer, device="cpu")


def run_hf(src: Path, out: Path, threads: int) -> dict:
    pipe = hf_pipeline(threads)
    pipe(["warm up"] * 32, batch_size=32, truncation=True)
    start = time.perf_counter()
    with open(src, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    results = pipe([r["text"] for r in rows], batch_size=32, truncation=True, max_length=256, top_k=None)
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label", "score"])
        for row, res in zip(rows, results):
            best = max(res, key=lambda r: r["score"])
            writer.writerow([row["id"], row["text"], best["label"], best["score"]])
    return {"seconds": time.perf_counter() - start, "rows": len(rows)}


def accuracy(threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from megasense.checkpoints.loading import load_model
    from megasense.inference.sentiment import SentimentClassifier, evaluate_file

    loaded = load_model("sentiment-en")
    data = SHARED_DATA / "tweets-sentiment-en" / "val.csv"
    out = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        report = evaluate_file(SentimentClassifier(loaded, bf16=bf16), data, baseline=False)
        out[name] = {"accuracy": report["accuracy"], "macro_recall": report["macro_recall"]}
    return out


def child(args) -> None:
    src, out = Path(args.src), Path(args.out)
    result = {"ours": run_ours, "hf": run_hf}[args.child](src, out, args.threads)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--child", choices=["ours", "hf"])
    parser.add_argument("--src")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "posts.csv"
        make_input(src, args.n)
        results = {}
        for which in ("hf", "ours"):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                which,
                "--src",
                str(src),
                "--out",
                str(Path(tmp) / f"{which}.csv"),
            ]
            proc = subprocess.run([*cmd, "--threads", str(args.threads)], capture_output=True, text=True, check=True)
            results[which] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[which]
            print(f"{which:5s} {r['rows'] / r['seconds']:8.1f} texts/s  peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    ratio = (results["ours"]["rows"] / results["ours"]["seconds"]) / (results["hf"]["rows"] / results["hf"]["seconds"])
    print(f"ratio ours/hf: {ratio:.2f}x on {args.n} texts, {args.threads} threads")
    if not args.skip_accuracy:
        acc = accuracy(args.threads)
        gap = 100 * (acc["bf16"]["accuracy"] - acc["fp32"]["accuracy"])
        print(
            f"tweets val accuracy fp32 {acc['fp32']['accuracy']:.4f}, bf16 {acc['bf16']['accuracy']:.4f} "
            f"({gap:+.2f} points); macro recall fp32 {acc['fp32']['macro_recall']:.4f}, "
            f"bf16 {acc['bf16']['macro_recall']:.4f}"
        )


if __name__ == "__main__":
    main()
