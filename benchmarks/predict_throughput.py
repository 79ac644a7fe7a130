"""Sentiment prediction throughput on CPU, end to end (read CSV, tokenize, predict, write CSV), per precision.

Baseline and ours in the same run, each row in its own subprocess so peak memory is measured separately:

- hf: transformers' ``pipeline("text-classification")`` with the same weights (sentiment-en exported to
  a transformers BertForSequenceClassification), batch size 32, texts in file order, fp32.
- fp32, bf16, int8, onnx, onnx-int8: ``megasense.predictors.sentiment.predict_file`` (length-sorted
  batches, long texts chunked) at that precision: torch fp32, bf16 autocast, torch per-channel dynamic
  int8, ONNX Runtime fp32 and ONNX Runtime per-channel dynamic int8 (the ONNX files are exported before
  the timed run and cached). ``auto`` (the default of ``megasense predict``) is bf16 on CPUs with AMX or
  AVX512-BF16 and fp32 elsewhere.

Each row also reports accuracy at its precision: tweets-sentiment-en val macro recall (2,000 rows) and
sst2 dev binary accuracy (872 rows); ``--multilingual`` adds sentiment-multilingual on chnsenticorp dev.

    .venv/bin/python benchmarks/predict_throughput.py --n 10000 --multilingual

Measured 2026-12-02 (second session) on a 2-core AMD EPYC with AVX512-BF16 and AVX512-VNNI (no AMX),
2 threads, quiet machine, ``--n 10000 --precisions fp32,bf16,int8,onnx-int8``::

    row         texts/s   vs hf   vs b8    RSS MB   tweets val macro recall  sst2 dev acc
    hf             66.4   1.00x   0.62x       591        -       -
    hf-b8         106.3   1.60x   1.00x       590        -       -
    fp32          173.0   2.61x   1.63x      1544   0.7199  0.8601
    bf16          328.3   4.94x   3.09x      1799   0.7204  0.8601
    int8          386.5   5.82x   3.63x      1491   0.7171  0.8624
    onnx-int8     453.6   6.83x   4.27x      1012   0.7219  0.8647

``hf`` is the pipeline called as its documentation shows (no ``batch_size``: one text per forward), ``hf-b8``
the same pipeline at its fastest batch size. onnx-int8 is 6.8x the first and 4.3x the second. On this CPU
ONNX Runtime's int8 spends 54% in ``DynamicQuantizeMatMul`` and ~27% in the unfused attention ops; an
export through transformers' eager BertModel (which ORT's BERT optimizer fuses into ``Attention``) ran
449 vs 402 texts/s model-only unoptimized, and slower (424) once fused and quantized, so it was not adopted.

Earlier the same day on the shared 2-core Intel Xeon (AMX-BF16, AMX-INT8, AVX512-BF16), against the
batch-32 pipeline only::

    row         texts/s   ratio    RSS MB   tweets val macro recall  sst2 dev acc
    hf            165.9   1.00x       868        -       -
    fp32          270.7   1.63x      1664   0.7199  0.8601
    bf16          723.5   4.36x      1856   0.7204  0.8589
    int8          431.3   2.60x      1555   0.7171  0.8624
    onnx-int8     450.3   2.71x      1068   0.7219  0.8647

On the Xeon, ``--n 3000 --skip-accuracy`` under load 2-3: hf 168.6, fp32 278.9, int8 400.1,
onnx 218.4, onnx-int8 355.7 texts/s (peak RSS 709 / 1413 / 1391 / 1066 / 940 MB). The model alone, rows
interleaved in one process (1 thread, a (32, 40) batch): fp32 0.211-0.218 s, torch int8 0.096 s, onnx
0.229 s, onnx-int8 0.093-0.099 s. sentiment-multilingual on chnsenticorp dev: fp32 0.8946, onnx-int8
0.8929.

Every precision stays within 0.5 point of fp32. ONNX Runtime's int8 moves fewer predictions (97.5% same
label as fp32 on 200 val tweets vs 94% for torch's; torch's dynamic Linear quantizes activations with
``reduce_range=True``, 7 bits, a likely cause). On the Xeon none reached 6x over the batch-32 pipeline;
there bf16 is the fastest (a bf16 profile: matmuls 34%, CPU flash attention 24%, autocast weight
casts 17%, GELU 12%; casting the linears to bf16 once gained ~5%, the math attention kernel lost ~25%,
larger batches did not help).
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


HF_BATCH = 8
"""The batched baseline's batch size: the pipeline's fastest of 1, 8, 32 and 64 on 2,000 tweets here (98, vs
64 at 1, 89 at 32 and 85 at 64 texts/s, 2 threads, AMD EPYC with AVX512-BF16)."""
PRECISIONS = ("fp32", "bf16", "int8", "onnx", "onnx-int8")
ACCURACY_SETS = (
    ("tweets val macro recall", "tweets-sentiment-en/val.csv", "macro_recall"),
    ("sst2 dev acc", "sst2/dev.csv", "accuracy"),
)


def run_ours(src: Path, out: Path, threads: int, precision: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    from megasense.predictors.jobs import predict_file
    from megasense.predictors.sentiment import load_predictor

    predictor = load_predictor("sentiment-en", precision=precision)  # onnx: exported (or read from cache) here
    predict_file(predictor, src, out.with_suffix(".warm.csv"), chunk_rows=64)  # warm-up on a copy
    start = time.perf_counter()
    summary = predict_file(predictor, src, out)
    return {"seconds": time.perf_counter() - start, "rows": summary.rows, "predictor": predictor}


def accuracy(predictor, sets=ACCURACY_SETS) -> dict:
    from megasense.predictors.jobs import evaluate_file

    # sst2 has only negative/positive gold labels, so evaluate_file restricts predictions to those two.
    return {name: evaluate_file(predictor, SHARED_DATA / rel, baseline=False)[key] for name, rel, key in sets}


def multilingual_accuracy(threads: int, precision: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    from megasense.predictors.sentiment import load_predictor

    predictor = load_predictor("sentiment-multilingual", precision=precision)
    return accuracy(predictor, (("chnsenticorp dev acc", "chnsenticorp/dev.csv", "accuracy"),))


def hf_pipeline(threads: int):
    import torch
    import transformers

    torch.set_num_threads(threads)
    from megasense.formats.hf.keys import model_config_to_hf, state_dict_to_hf
    from megasense.models import weights_for_saving
    from megasense.zoo.embedded import find_embedded, package_path
    from megasense.zoo.load import load_model

    loaded = load_model("sentiment-en")
    hf_config = transformers.BertConfig(**model_config_to_hf(loaded.config, loaded.head))
    model = transformers.BertForSequenceClassification(hf_config)
    sd = state_dict_to_hf(weights_for_saving(loaded.model), loaded.config, loaded.head)
    model.load_state_dict(sd, strict=False)  # the pooler (unused by our mean-pooled head) keeps its init
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(package_path(find_embedded("all-minilm-l6-v2"))))
    return transformers.pipeline("text-classification", model=model.eval(), tokenizer=tokenizer, device="cpu")


def run_hf(src: Path, out: Path, threads: int, batch_size: int | None) -> dict:
    """The pipeline called as its documentation shows (``batch_size`` None: one text per forward) or batched."""
    pipe = hf_pipeline(threads)
    batching = {} if batch_size is None else {"batch_size": batch_size}
    pipe(["warm up"] * 32, truncation=True, **batching)
    start = time.perf_counter()
    with open(src, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    results = pipe([r["text"] for r in rows], truncation=True, max_length=256, top_k=None, **batching)
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label", "score"])
        for row, res in zip(rows, results):
            best = max(res, key=lambda r: r["score"])
            writer.writerow([row["id"], row["text"], best["label"], best["score"]])
    return {"seconds": time.perf_counter() - start, "rows": len(rows)}


def child(args) -> None:
    src, out = Path(args.src), Path(args.out)
    if args.child == "multilingual":
        print(json.dumps(multilingual_accuracy(args.threads, args.precision)))
        return
    if args.child == "hf":
        result = run_hf(src, out, args.threads, args.hf_batch or None)
        result["peak_rss_mb"] = peak_rss_mb()
    else:
        result = run_ours(src, out, args.threads, args.precision)
        result["peak_rss_mb"] = peak_rss_mb()  # before the accuracy runs, which read other files
        predictor = result.pop("predictor")
        result["precision"] = predictor.precision
        if not args.skip_accuracy:
            result["accuracy"] = accuracy(predictor)
    print(json.dumps(result))


def _run_child(which: str, src: Path, tmp: str, args, precision: str = "fp32", hf_batch: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--src", str(src), "--out", str(Path(tmp) / f"{which}.csv")]
    cmd += ["--threads", str(args.threads), "--precision", precision, "--hf-batch", str(hf_batch)]
    if args.skip_accuracy:
        cmd.append("--skip-accuracy")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{which} {precision} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(name: str, r: dict, bases: tuple[float, float]) -> str:
    rate = r["rows"] / r["seconds"]
    acc = r.get("accuracy") or {}
    cells = "  ".join(f"{acc[n]:.4f}" if n in acc else "     -" for n, _, _ in ACCURACY_SETS)
    ratios = " ".join(f"{rate / base:6.2f}x" for base in bases)
    return f"{name:10s} {rate:8.1f} {ratios} {r['peak_rss_mb']:9.0f}   {cells}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated; hf always runs")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--multilingual", action="store_true", help="also chnsenticorp dev: fp32 vs onnx-int8")
    parser.add_argument("--child", choices=["ours", "hf", "multilingual"])
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--hf-batch", type=int, default=0, help="(child) pipeline batch_size; 0: the default")
    parser.add_argument("--src")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(
        f"{args.n} texts, {args.threads} threads; texts/s end to end, ratio to the pipeline called as documented "
        f"(hf: one text per forward) and batched (hf-b{HF_BATCH}), peak RSS (MB), accuracy"
    )
    header = "  ".join(name for name, _, _ in ACCURACY_SETS)
    print(
        f"{'row':10s} {'texts/s':>8s} {'vs hf':>7s} {'vs b' + str(HF_BATCH):>7s} {'RSS MB':>9s}   {header}", flush=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "posts.csv"
        make_input(src, args.n)
        hf = _run_child("hf", src, tmp, args)
        batched = _run_child("hf", src, tmp, args, hf_batch=HF_BATCH)
        bases = (hf["rows"] / hf["seconds"], batched["rows"] / batched["seconds"])
        print(_row("hf", hf, bases), flush=True)
        print(_row(f"hf-b{HF_BATCH}", batched, bases), flush=True)
        for precision in args.precisions.split(","):
            print(_row(precision, _run_child("ours", src, tmp, args, precision), bases), flush=True)
        if args.multilingual:
            for precision in ("fp32", "onnx-int8"):
                acc = _run_child("multilingual", src, tmp, args, precision)
                print(f"sentiment-multilingual {precision}: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))


if __name__ == "__main__":
    main()
