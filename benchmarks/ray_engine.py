"""Texts/s of ``megasense predict --engine ray`` against the local engine, on one machine, same input and model.

The input is the first ``--n`` tweets of tweets-sentiment-en train.csv (../shared/data), written to a CSV.
Both engines read that CSV, score it with ``--model`` at ``--precision`` and write Parquet:

- local: ``predictors.jobs.predict_file`` in this process, torch on all the machine's cores;
- ray: ``predictors.ray_engine.run_file_job`` on a local Ray instance with this machine's CPUs (one
  actor per CPU, one torch thread each), timed from the job's start (actors started and models loaded
  inside the timing; starting Ray itself is reported apart, as a cluster is started once).

The ray job runs twice and the faster run counts. The last line is the overhead ratio, local texts/s over
ray texts/s (above 1: Ray is slower on one machine; its gain is more machines, not this one).

    .venv/bin/python benchmarks/ray_engine.py --n 3000

Measured 2026-12-07 on the shared 2-core machine under a load average of ~20 (eight sessions' jobs), so
only the labels check and the order of magnitude hold: local 3.2 texts/s, ray 7.3 texts/s (2 actors of
one thread; ray.init 23 s), labels identical 1.0000, overhead ratio 0.44 (two processes drew more of the
contended CPUs than one process with two threads). Rerun on a quiet machine for a real ratio.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, read_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="tweets to score")
    parser.add_argument("--model", default="sentiment-en")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--runs", type=int, default=2, help="ray jobs (the fastest counts)")
    args = parser.parse_args()

    import ray

    from megasense.predictors.jobs import predict_file
    from megasense.predictors.ray_engine import RaySettings, read_output, run_file_job
    from megasense.predictors.sentiment import load_predictor

    texts = read_texts("tweets-sentiment-en/train.csv", limit=args.n)
    work = Path(tempfile.mkdtemp(prefix="megasense-ray-bench-"))
    source = work / "tweets.csv"
    pd.DataFrame({"text": texts}).to_csv(source, index=False)
    cores = torch.get_num_threads()

    started = time.perf_counter()
    predictor = load_predictor(args.model, precision=args.precision)
    predict_file(predictor, source, work / "local.parquet")
    local_s = time.perf_counter() - started
    local = pd.read_parquet(work / "local.parquet")

    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - started
    load = functools.partial(load_predictor, args.model, precision=args.precision)
    ray_runs = []
    for run in range(args.runs):
        started = time.perf_counter()
        run_file_job(load, source, work / f"ray-{run}.parquet", settings=RaySettings(progress=False))
        ray_runs.append(time.perf_counter() - started)
    ray_s = min(ray_runs)
    ours = read_output(work / "ray-0.parquet")
    same = float((ours["label"].to_numpy() == local["label"].to_numpy()).mean())
    cpus = ray.cluster_resources().get("CPU")
    ray.shutdown()

    n = len(texts)
    print(f"{n:,} tweets, {args.model} at {args.precision}, {cores} torch threads locally, Ray with {cpus:g} CPUs")
    print(f"local  {n / local_s:8.1f} texts/s  ({local_s:.1f} s, model load included)")
    runs = ", ".join(f"{s:.1f}" for s in ray_runs)
    print(f"ray    {n / ray_s:8.1f} texts/s  (best of {runs} s; ray.init {init_s:.1f} s)")
    print(f"labels identical to local: {same:.4f}; driver peak RSS {peak_rss_mb():.0f} MB")
    print(f"overhead ratio (local texts/s / ray texts/s): {ray_s / local_s:.2f}")


if __name__ == "__main__":
    main()
