"""Streaming chat under `megasense serve --chat-model`: time to first token and tokens/s at 1 and 8 streams.

The service runs in a subprocess on loopback with only the chat model. Fixed prompts that ask for long
answers, greedy, ``max_tokens`` new tokens each (64 by default; a reply may end sooner, and the counts
come from the service's own usage chunk). First one stream at a time (each prompt in turn), then all the
prompts at once as concurrent streams. The baseline is the same generation in this process, without HTTP
(``TextGenerator.stream_chat``), one prompt at a time. Per stream: time to first token (request sent ->
first piece of text) and decode tokens/s (tokens after the first / seconds after the first); in total:
tokens / wall seconds. ``--designs threads lock batch`` also runs the concurrent streams in this process the
ways the service could (its choice: a free thread per stream). Only 127.0.0.1 is contacted.

    python benchmarks/chat_stream.py [--model smollm2-135m-instruct] [--max-tokens 64] [--streams 8]
                                     [--designs threads lock batch]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from _common import free_port, wait_ready

TOPICS = ["the sea", "a lighthouse", "a city at night", "a long train ride", "a mountain village", "a robot gardener",
          "an old library", "a winter market", "a desert crossing", "a tiny island"]  # fmt: skip


def prompts(n: int) -> list[list[dict]]:
    topics = [TOPICS[i % len(TOPICS)] for i in range(n)]
    return [[{"role": "user", "content": f"Write a long, detailed story about {topic}."}] for topic in topics]


def start_server(model: str, device: str, streams: int, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "megasense.cli.main", "serve", "--port", str(port), "--model", "",
           "--embedding-model", "", "--chat-model", model, "--device", device]  # fmt: skip
    env = {**os.environ, "MEGASENSE_LOG_LEVEL": "warning", "MEGASENSE_CHAT_MAX_STREAMS": str(max(8, streams))}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads in the server
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url, 300)
    return proc, url


async def one_stream(http: httpx.AsyncClient, url: str, messages: list[dict], max_tokens: int) -> dict:
    body = {"messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    start = time.perf_counter()
    first = None
    tokens = 0
    async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter()
    end = time.perf_counter()
    first = first or end
    return {"ttft": first - start, "tokens": tokens, "start": start, "first": first, "end": end}


async def run_streams(url: str, conversations: list[list[dict]], max_tokens: int, concurrent: bool) -> list[dict]:
    async with httpx.AsyncClient(timeout=600) as http:
        if concurrent:
            return list(await asyncio.gather(*(one_stream(http, url, c, max_tokens) for c in conversations)))
        return [await one_stream(http, url, c, max_tokens) for c in conversations]


def in_process(generator, conversations: list[list[dict]], max_tokens: int, design: str) -> list[dict]:
    """The same generation in this process, no HTTP: ``serial`` (one prompt at a time: the baseline), or all at
    once as the service could run them: ``threads`` (one free thread each: the service's choice), ``lock`` (one
    thread each, a lock around every model step) or ``batch`` (one batch decoded together; the engine cannot add a
    stream to a batch already decoding, so the service cannot do this for streams that arrive at different times)."""
    from megasense.config import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_tokens)
    if design == "batch":
        ids = [generator.chat_ids(c, max_tokens).ids for c in conversations]
        start = time.perf_counter()
        rows = [{"ttft": 0.0, "tokens": 0, "start": start, "first": None, "end": None} for _ in ids]
        for step in generator.engine.stream(ids, config):
            now = time.perf_counter()
            for row, token in zip(rows, step):
                if token is not None and row["end"] is None:
                    row["tokens"] += 1
                    row["first"] = row["first"] or now
                elif row["end"] is None:
                    row["end"] = now
        for row in rows:
            row["end"] = row["end"] or time.perf_counter()
            row["first"] = row["first"] or row["end"]  # an empty reply: its end is its first token
            row["ttft"] = row["first"] - start
        return rows
    lock = threading.Lock() if design == "lock" else contextlib.nullcontext()

    def one(messages: list[dict]) -> dict:
        start = time.perf_counter()
        stream = generator.stream_chat(messages, config)
        first = None
        while True:
            with lock:
                piece = next(stream, None)
            if piece is None:
                break
            first = first or time.perf_counter()
        end = time.perf_counter()
        first = first or end
        return {"ttft": first - start, "tokens": stream.reply.completion_tokens, "start": start, "first": first,
                "end": end}  # fmt: skip

    if design == "serial":
        return [one(c) for c in conversations]
    with ThreadPoolExecutor(len(conversations)) as pool:
        return list(pool.map(one, conversations))


def summary(results: list[dict]) -> dict:
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    decode = [(r["tokens"] - 1) / (r["end"] - r["first"]) for r in results if r["tokens"] > 1 and r["end"] > r["first"]]
    return {
        "ttft_p50": statistics.median(r["ttft"] for r in results),
        "ttft_max": max(r["ttft"] for r in results),
        "stream_tps": statistics.mean(decode) if decode else float("nan"),
        "stream_tps_min": min(decode) if decode else float("nan"),
        "tokens": sum(r["tokens"] for r in results),
        "total_tps": sum(r["tokens"] for r in results) / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8, help="concurrent streams (and prompts) [default: 8]")
    parser.add_argument("--single", type=int, default=4, help="prompts run one at a time [default: 4]")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads, in the server and here [default: torch's]; on a CPU shared with other work, 1 "
        "keeps the threads of one model call from waiting for each other",
    )
    parser.add_argument(
        "--designs",
        nargs="*",
        default=[],
        choices=["threads", "lock", "batch"],
        help="also run the concurrent streams in this process as: threads (the service's choice), lock (a lock "
        "around each model step), batch (one batch decoded together)",
    )
    args = parser.parse_args()

    conversations = prompts(args.streams)
    proc, url = start_server(args.model, args.device, args.streams, args.threads)
    try:
        asyncio.run(run_streams(url, conversations[:1], 4, concurrent=False))  # warm up
        one = summary(asyncio.run(run_streams(url, conversations[: args.single], args.max_tokens, concurrent=False)))
        many = summary(asyncio.run(run_streams(url, conversations, args.max_tokens, concurrent=True)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    import torch

    from megasense.config import GenerationConfig
    from megasense.predictors.generation import TextGenerator
    from megasense.zoo.load import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    generator = TextGenerator(load_model(args.model, device=args.device))
    generator.chat(conversations[0], GenerationConfig(max_new_tokens=4))  # warm up
    base = summary(in_process(generator, conversations[: args.single], args.max_tokens, "serial"))
    designs = {d: summary(in_process(generator, conversations, args.max_tokens, d)) for d in args.designs}

    cores = f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads"
    print(f"\nmodel {args.model} on {args.device} ({cores}), {args.max_tokens} new tokens at most, greedy\n")
    header = ("run", "ttft p50", "ttft max", "tok/s/stream", "min", "tokens", "tok/s total")
    print("{:<36} {:>9} {:>9} {:>13} {:>6} {:>7} {:>12}".format(*header))
    rows = [
        ("in-process, 1 at a time (baseline)", base),
        ("service, 1 stream", one),
        (f"service, {args.streams} concurrent streams", many),
        *((f"in-process, {args.streams} {d}", result) for d, result in designs.items()),
    ]
    for name, s in rows:
        print(
            f"{name:<36} {s['ttft_p50']:>8.2f}s {s['ttft_max']:>8.2f}s {s['stream_tps']:>13.1f} "
            f"{s['stream_tps_min']:>6.1f} {s['tokens']:>7d} {s['total_tps']:>12.1f}"
        )
    print(f"\nservice / in-process tokens/s at 1 stream: {one['stream_tps'] / base['stream_tps']:.2f}x; "
          f"{args.streams} streams total / 1 stream: {many['total_tps'] / one['total_tps']:.2f}x")  # fmt: skip
    print(
        f"ttft p50 1 stream {one['ttft_p50']:.2f}s {args.streams} streams {many['ttft_p50']:.2f}s; "
        f"tokens/s 1 stream {one['stream_tps']:.1f} {args.streams} streams total {many['total_tps']:.1f}"
    )


if __name__ == "__main__":
    main()
