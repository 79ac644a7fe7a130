"""How far can ``megasense predict`` get beyond the batched pipeline on this CPU? The model's own time is the ceiling.

Issue 14 asks for ``megasense predict`` end to end at 6x transformers' pipeline at its best batch size, end to end,
on 10,000 forum-length texts (``benchmarks/predict_throughput.py`` measures both). Whatever else ours does
(process start, model load, reading, tokenizing, writing), its end-to-end time is at least the time the model
itself takes on the same texts. So

    ceiling = pipeline end to end (seconds) / our model time alone (seconds)

bounds the end-to-end ratio from above: if the ceiling is under 6x, 6x cannot be reached with this model on this
machine by any change to the code around the model.

- pipeline, end to end: a fresh process (``python predict_throughput.py --child hf``) timed from outside: start,
  imports, model build, a 32-text warm-up, read the CSV, score at batch 8, write. Its model build converts our
  weights to transformers' layout, which is about what ``from_pretrained`` costs.
- ours, model alone: ``SentimentClassifier.engine.batches`` over the 10,000 texts' token ids, tokenized before
  the clock starts: length-sorted batches, padding, the forward pass and the copy of the logits. Per precision
  (``auto``, ``int8``, ``onnx-int8``), best of ``--repeats`` runs, after a warm-up run; also in two processes of
  one thread each (each takes half the texts: no thread synchronisation inside the forward), since the 2 cores
  can be used either way.

    .venv/bin/python benchmarks/predict_ceiling.py --n 10000

The last line is ``ceiling N.NNx (goal 6x)``: the best of ours.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import read_texts
from predict_throughput import HF_BATCH, make_input

PRECISIONS = ("auto", "int8", "onnx-int8")


def model_seconds(n: int, precision: str, threads: int, repeats: int, part: int = 0, parts: int = 1) -> float:
    """Best time of the model alone on this process's share of the first ``n`` texts."""
    import torch

    torch.set_num_threads(threads)
    from megasense.predictors.sentiment import load_predictor

    texts = read_texts("tweets-sentiment-en/train.csv", limit=n)
    texts = [texts[i % len(texts)] for i in range(n)][part::parts]
    predictor = load_predictor("sentiment-en", precision=precision)
    sequences = predictor.task.encode(texts, None).sequences
    best = float("inf")
    for round_ in range(repeats + 1):
        start = time.perf_counter()
        for _ in predictor.engine.batches(sequences):
            pass
        if round_:  # the first round warms up
            best = min(best, time.perf_counter() - start)
    return best


def pipeline_seconds(n: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.csv"
        make_input(src, n)
        here = Path(__file__).resolve().parent / "predict_throughput.py"
        cmd = [sys.executable, str(here), "--child", "hf", "--src", str(src), "--out", str(Path(tmp) / "o.csv")]
        cmd += ["--threads", str(threads), "--hf-batch", str(HF_BATCH), "--skip-accuracy"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - start


def split_seconds(args, precision: str) -> float:
    """Two one-thread processes, each on half the texts, started together: the slower one's model time."""
    common = ["--n", str(args.n), "--repeats", str(args.repeats), "--precision", precision]
    procs = [
        subprocess.Popen([sys.executable, __file__, "--child", str(part), *common], stdout=subprocess.PIPE, text=True)
        for part in (0, 1)
    ]
    return max(json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # which half, in a one-thread child
    parser.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(model_seconds(args.n, args.precision, 1, args.repeats, args.child, 2)))
        return
    hf = pipeline_seconds(args.n, args.threads)
    print(f"pipeline (batch {HF_BATCH}) end to end: {hf:.1f} s, {args.n / hf:.1f} texts/s")
    print(f"{'ours, model alone':28s} {'seconds':>8s} {'texts/s':>8s} {'ceiling':>8s}")
    best = 0.0
    for precision in args.precisions.split(","):
        for how, seconds in (
            (f"{precision}, {args.threads} threads", model_seconds(args.n, precision, args.threads, args.repeats)),
            (f"{precision}, 2 x 1 thread", split_seconds(args, precision)),
        ):
            ceiling = hf / seconds
            best = max(best, ceiling)
            print(f"{how:28s} {seconds:8.2f} {args.n / seconds:8.1f} {ceiling:7.2f}x")
    print(f"ceiling {best:.2f}x (goal 6x)")


if __name__ == "__main__":
    main()
