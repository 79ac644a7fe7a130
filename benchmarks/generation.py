"""Greedy decoding speed of SmolLM2-135M-Instruct: transformers, megasense at each precision, llama.cpp.

All run in one process on the same weights (the embedded Q4_1 GGUF, dequantised; transformers gets them
copied across) and the same chat prompts, batch 1 and batch 8, with the same torch thread count. Each side
generates exactly ``--new-tokens`` tokens (``min_new_tokens`` = ``max_new_tokens``, the same rule on both
sides), and the runs alternate (transformers, then each megasense precision, ``--repeats`` rounds) so that
load from other processes on a shared machine hits all alike. Ratios are the median over rounds of
transformers' time over ours, by wall clock and by CPU time (on a machine shared by many processes the CPU
time a run consumed is the steadier measure of its work); tok/s is the best round's.

Per precision it prints tokens/s, the ratio to transformers and how many of its greedy sequences equal
transformers' fp32 ones (with the share of tokens before the first difference): the quality delta of the
quantised paths. llama.cpp (PyPI ``llama-cpp-python``, optional) runs the GGUF itself, batch 1 only (its
Python API decodes one sequence at a time), and is skipped with a note where it is not installed.

The last line is ``b1 N.NNx b8 N.NNx``: megasense's default precision (``auto``) over transformers, in tokens/s.

    python benchmarks/generation.py [--new-tokens 32] [--threads 2] [--repeats 2]

Measured on a shared 2-core AVX-512 (avx512_bf16, no AMX) CPU, ``--threads 2 --repeats 3 --new-tokens 16``, four
runs at load 0.4-1.5: transformers fp32 14-17 tok/s at batch 1 and 52-67 at batch 8; megasense ``auto`` (int4)
4.74-5.15x at batch 1 and 3.13-3.44x at batch 8 (median 5.06x / 3.24x), bf16 2.6-2.7x / 3.0-3.3x. Greedy
sequences equal to transformers: int4 1/1 and 7/8 at batch 8 (3/8 over 32 tokens), bf16 1/1 and 6/8. Before the
int4 matrices kept a dense bf16 copy for prefills and wide batches, the same runs alternated with the old code gave
int4 4.0-4.1x / 1.9-2.2x and 5/8 (3/8 over 32 tokens). With other processes loading the machine to 3-5, batch 8
measured 3.0x (old code 2.1-2.7x); small-op decoding suffers most from a busy CPU, so compare runs at equal load.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

from megasense.config import GenerationConfig
from megasense.formats.hf.directory import write_hf_dir
from megasense.inference.generation import GenerationEngine, resolve_generation_precision
from megasense.zoo.load import load_model

QUESTIONS = [
    "What is the capital of France?",
    "Explain photosynthesis in one sentence.",
    "Write a haiku about the sea.",
    "Why is the sky blue?",
    "Give three tips for studying for an exam.",
    "What does a CPU do?",
    "Summarize the plot of Romeo and Juliet.",
    "How do vaccines work?",
]
PRECISIONS = ("fp32", "fp32-packed", "bf16", "int8", "int4")


def hf_reference(loaded) -> transformers.PreTrainedModel:
    """transformers' Llama with the very weights megasense loaded (exported, then read by from_pretrained)."""
    with tempfile.TemporaryDirectory() as tmp:
        state = loaded.model.state_dict()
        write_hf_dir(Path(tmp) / "hf", config=loaded.config, head=loaded.head, state_dict=state)
        model = transformers.AutoModelForCausalLM.from_pretrained(Path(tmp) / "hf", dtype=torch.float32).eval()
    ids = torch.tensor([loaded.tokenizer.encode("The quick brown fox jumps over the lazy dog")])
    with torch.inference_mode():  # the copy must compute what megasense computes
        ours = loaded.model(ids).logits[..., : loaded.config.vocab_size]
        torch.testing.assert_close(model(ids).logits, ours, atol=1e-4, rtol=0)
    return model


def run_hf(model, prompts: list[list[int]], new: int, pad: int, eos: int) -> tuple[tuple[float, float], list]:
    P = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (P - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts])
    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=eos,  # the end token min_new_tokens holds back, as on megasense's side
        )
    return (time.perf_counter() - start, time.process_time() - cpu), out[:, P:].tolist()


def run_ours(engine: GenerationEngine, prompts: list[list[int]], new: int) -> tuple[tuple[float, float], list]:
    start, cpu = time.perf_counter(), time.process_time()
    out = engine.generate(prompts, GenerationConfig(max_new_tokens=new, min_new_tokens=new))
    return (time.perf_counter() - start, time.process_time() - cpu), [g.tokens for g in out]


def agreement(ours: list[list[int]], theirs: list[list[int]]) -> tuple[int, float]:
    """Sequences equal, and the share of tokens before each sequence's first difference."""
    prefix = 0
    for a, b in zip(ours, theirs):
        prefix += next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return sum(a == b for a, b in zip(ours, theirs)), prefix / max(1, sum(len(b) for b in theirs))


def llama_cpp_row(path, prompt: list[int], new: int, threads: int) -> str:
    try:
        from llama_cpp import Llama
    except ImportError:
        return (
            "llama.cpp: skipped (llama-cpp-python is not installed: PyPI has no wheel for this platform and a "
            "source build did not finish in 5 minutes here)"
        )
    llm = Llama(model_path=str(path), n_ctx=len(prompt) + new + 8, n_threads=threads, verbose=False)
    llm.generate(prompt, top_k=1, temp=0.0)  # warm-up: load the weights
    llm.reset()
    start, out = time.perf_counter(), []
    for token in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
        out.append(token)
        if len(out) == new:
            break
    return f"llama.cpp Q4_1 (batch 1): {new / (time.perf_counter() - start):7.1f} tok/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model("smollm2-135m-instruct")
    tok = loaded.tokenizer
    ref = hf_reference(loaded)
    engines = {
        p: GenerationEngine(loaded.model, eos_token_ids=[tok.eos_id], pad_token_id=tok.pad_id, precision=p)
        for p in args.precisions
    }
    for engine in engines.values():
        _ = engine.decoder  # pack the weights before timing
    default = resolve_generation_precision("auto", "cpu", loaded.model)
    prompts = [tok.encode(tok.apply_chat_template([{"role": "user", "content": q}])) for q in QUESTIONS]
    print(
        f"SmolLM2-135M-Instruct, {args.new_tokens} new tokens, threads {args.threads}, best of {args.repeats} "
        f"alternating rounds; default precision auto = {default}"
    )
    for p, engine in engines.items():
        if engine.decoder is not None:
            d = engine.decoder
            print(
                f"  {p}: {d.nbytes() / 1e6:.0f} MB of weights read per token at batch 1, "
                f"{d.held_nbytes() / 1e6:.0f} MB held (bf16 copies for prefills and wide batches included)"
            )
    ratios = {}
    for batch in args.batches:
        chosen = prompts[:batch]
        run_hf(ref, chosen, 2, tok.pad_id, tok.eos_id)  # warm-up
        for engine in engines.values():
            run_ours(engine, chosen, 2)
        times: dict[str, list[tuple[float, float]]] = {"transformers": []}
        outputs: dict[str, list[list[int]]] = {}
        for _ in range(args.repeats):
            seconds, outputs["transformers"] = run_hf(ref, chosen, args.new_tokens, tok.pad_id, tok.eos_id)
            times["transformers"].append(seconds)
            for p, engine in engines.items():
                seconds, outputs[p] = run_ours(engine, chosen, args.new_tokens)
                times.setdefault(p, []).append(seconds)
        n = batch * args.new_tokens
        base = times["transformers"]
        print(f"batch {batch}: transformers fp32 {n / min(t[0] for t in base):7.1f} tok/s")
        for p in engines:
            # per round: transformers' time over ours, wall clock and CPU time; the median round counts
            wall = statistics.median(b[0] / o[0] for b, o in zip(base, times[p]))
            cpu = statistics.median(b[1] / o[1] for b, o in zip(base, times[p]))
            same, prefix = agreement(outputs[p], outputs["transformers"])
            print(
                f"batch {batch}: megasense {p:<11} {n / min(t[0] for t in times[p]):7.1f} tok/s | {wall:5.2f}x "
                f"(CPU time {cpu:5.2f}x) | greedy sequences equal to transformers: {same}/{batch} "
                f"({prefix:.0%} of tokens before the first difference)"
            )
            ratios[(batch, p)] = wall
    from megasense.zoo.embedded import find_embedded, package_path

    gguf = package_path(find_embedded("smollm2-135m-instruct"))
    print(llama_cpp_row(gguf, prompts[0], args.new_tokens, args.threads))
    print(" ".join(f"b{b} {ratios.get((b, default), float('nan')):.2f}x" for b in args.batches))


if __name__ == "__main__":
    main()
