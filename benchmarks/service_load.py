"""Load test of `megasense serve` on loopback: dynamic batching vs one request at a time vs offline.

64 concurrent clients for 30 s send forum-length texts (real posts from ../shared/data), 1 to 8 texts
per request. The service runs in a subprocess, once with dynamic batching and once without (each
request goes through the model alone); the same backend then runs offline in this process on the
same texts. Prints throughput (texts/s), p50/p95/p99 latency, errors and the server's peak memory,
and the ratios (goals: batching >= 4x without, at an equal or better p99; within 25% of offline).
Bounded in count and time; only 127.0.0.1 is contacted.

    python benchmarks/service_load.py [--endpoint sentiment|embeddings] [--model M] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from _common import free_port, read_texts, wait_ready

ROOT = Path(__file__).resolve().parents[1]


def forum_texts(n: int = 4000, seed: int = 0) -> list[str]:
    texts = read_texts("tweets-sentiment-en/val.csv") + read_texts("sst2/dev.csv")
    random.Random(seed).shuffle(texts)
    return (texts * (n // len(texts) + 1))[:n]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(args, batching: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "megasense.cli.main", "serve", "--port", str(port)]
    if args.endpoint == "sentiment":
        cmd += ["--model", args.model, "--embedding-model", ""]
    else:
        cmd += ["--model", "", "--embedding-model", args.model]
    cmd += ["--dynamic-batching" if batching else "--no-dynamic-batching", "--max-batch-size", str(args.max_batch_size)]
    env = {**os.environ, "MEGASENSE_MAX_QUEUE_TEXTS": "100000", "MEGASENSE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url, 180)
    return proc, url


async def load(url: str, endpoint: str, texts: list[str], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    done_texts = 0
    errors = 0
    stop_at = time.perf_counter() + seconds
    field = "texts" if endpoint == "sentiment" else "input"

    async def client(seed: int, http: httpx.AsyncClient) -> None:
        nonlocal done_texts, errors
        rng = random.Random(seed)
        while time.perf_counter() < stop_at:
            batch = rng.sample(texts, rng.randint(1, 8))
            start = time.perf_counter()
            try:
                r = await http.post(f"{url}/v1/{endpoint}", json={field: batch}, timeout=60)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - start)
            if ok:
                done_texts += len(batch)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {"texts_per_s": done_texts / elapsed, "p50": q[49], "p95": q[94], "p99": q[98], "errors": errors}


def offline(args, texts: list[str]) -> float:
    from megasense.service.backends import load_backends
    from megasense.service.settings import ServiceSettings

    if args.endpoint == "sentiment":
        settings = ServiceSettings(model=args.model, embedding_model="")
    else:
        settings = ServiceSettings(model="", embedding_model=args.model)
    backend = load_backends(settings)[0]
    backend.run(texts[:64])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(texts), 512):  # the way `megasense predict` streams a file
        backend.run(texts[i : i + 512])
    return len(texts) / (time.perf_counter() - start)


def batch_stats(url: str, endpoint: str, seconds: float) -> tuple[float, float]:
    """Mean texts per model call, and the share of the run the model was busy, from /metrics."""
    task = "sentiment" if endpoint == "sentiment" else "embedding"
    values = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        for name in ("megasense_batch_texts_sum", "megasense_batch_texts_count", "megasense_batch_seconds_sum"):
            if line.startswith(f'{name}{{task="{task}"}}'):
                values[name] = float(line.split()[-1])
    calls = values.get("megasense_batch_texts_count", 0) or 1
    return values.get("megasense_batch_texts_sum", 0) / calls, values.get("megasense_batch_seconds_sum", 0) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=["sentiment", "embeddings"], default="sentiment")
    parser.add_argument("--model", default="default")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--only-batching", action="store_true", help="Skip the one-request-at-a-time run.")
    args = parser.parse_args()
    texts = forum_texts()
    rows = {}
    for batching in (True,) if args.only_batching else (True, False):
        proc, url = start_server(args, batching)
        try:
            cpu = time.process_time()
            stats = asyncio.run(load(url, args.endpoint, texts, args.clients, args.seconds))
            stats["client_cpu"] = (time.process_time() - cpu) / args.seconds
            stats["mean_batch"], stats["model_share"] = batch_stats(url, args.endpoint, args.seconds)
            stats["peak_mb"] = peak_rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        rows["dynamic batching" if batching else "one request at a time"] = stats
    rate_offline = offline(args, texts[:2000])
    print(f"{args.clients} clients x {args.seconds:.0f} s, /v1/{args.endpoint}, model {args.model}")
    for name, s in rows.items():
        print(
            f"{name:>22}: {s['texts_per_s']:7.1f} texts/s | p50 {s['p50'] * 1000:6.0f} ms | p95 "
            f"{s['p95'] * 1000:6.0f} ms | p99 {s['p99'] * 1000:6.0f} ms | errors {s['errors']} | "
            f"server peak {s['peak_mb']:.0f} MB | load generator {s['client_cpu']:.2f} cores | "
            f"{s['mean_batch']:.1f} texts per model call, model busy {s['model_share']:.0%}"
        )
    print(f"{'offline (in process)':>22}: {rate_offline:7.1f} texts/s")
    on, off = rows["dynamic batching"], rows.get("one request at a time")
    if off is None:
        print(f"service/offline {on['texts_per_s'] / rate_offline:.2f}x")
        return
    print(f"p99 batching / one-at-a-time: {on['p99'] / off['p99']:.2f}x (goal: at most 1.00x)")
    print(  # the last line, in the form: batching over one at a time, then the service over offline
        f"batched/unbatched {on['texts_per_s'] / off['texts_per_s']:.2f}x "
        f"service/offline {on['texts_per_s'] / rate_offline:.2f}x"
    )


if __name__ == "__main__":
    main()
