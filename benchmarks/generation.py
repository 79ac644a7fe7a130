"""Decoder generation with a KV cache on the SmolLM2-135M shape: megasense vs transformers' generate.

Same random weights in both (speed does not depend on their values), greedy decoding of a fixed
number of new tokens (end-of-sequence disabled), batch 1 and 8, fp32 on CPU. Prints tokens/s and the
ratio (goal: >= 1.5x). Decoding at small batch reads every weight once per token, so fp32 speed is
bound by memory bandwidth in both; a second megasense row runs the same model with bf16 weights
(half the bytes; AMX kernels where the CPU has them) and reports how many greedy tokens still agree.

    python benchmarks/generation.py [--new-tokens 64] [--prompt-tokens 32]
"""

from __future__ import annotations

import argparse
import time

import torch
import transformers

from megasense.config import GenerationConfig
from megasense.formats.hf import keys as hf
from megasense.inference.generation import GenerationEngine
from megasense.models import materialize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        intermediate_size=1536,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    ref = transformers.LlamaForCausalLM(config).eval()
    sd, hc = ref.state_dict(), config.to_dict()
    cfg = hf.model_config_from_hf(hc, sd)
    engine = GenerationEngine(
        materialize(cfg, hf.head_config_from_hf(hc, sd), hf.state_dict_from_hf(hc, sd, cfg)),
        eos_token_ids=[],
        pad_token_id=0,
    )
    half_model = materialize(cfg, hf.head_config_from_hf(hc, sd), hf.state_dict_from_hf(hc, sd, cfg))
    half = GenerationEngine(half_model.to(torch.bfloat16), eos_token_ids=[], pad_token_id=0)
    gen = GenerationConfig(max_new_tokens=args.new_tokens)
    print(
        f"SmolLM2-135M shape, prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, "
        f"threads {torch.get_num_threads()}"
    )
    for batch in args.batches:
        prompts = torch.randint(3, 49152, (batch, args.prompt_tokens))
        with torch.inference_mode():
            ref.generate(prompts, max_new_tokens=4, min_new_tokens=4, do_sample=False)  # warm-up
            start = time.perf_counter()
            a = ref.generate(prompts, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
            t_ref = time.perf_counter() - start
        engine.generate(prompts.tolist(), GenerationConfig(max_new_tokens=4))  # warm-up
        start = time.perf_counter()
        b = engine.generate(prompts.tolist(), gen)
        t_ours = time.perf_counter() - start
        same = all(a[i, args.prompt_tokens :].tolist() == b[i].tokens for i in range(batch))
        n = batch * args.new_tokens
        print(
            f"batch {batch}: transformers {n / t_ref:7.1f} tok/s | megasense {n / t_ours:7.1f} tok/s | "
            f"ratio {t_ref / t_ours:.2f}x | identical tokens: {same}"
        )
        half.generate(prompts.tolist(), GenerationConfig(max_new_tokens=4))  # warm-up
        start = time.perf_counter()
        c = half.generate(prompts.tolist(), gen)
        t_half = time.perf_counter() - start
        agree = sum(x == y for i in range(batch) for x, y in zip(b[i].tokens, c[i].tokens)) / n
        print(
            f"batch {batch}: megasense bf16 {n / t_half:7.1f} tok/s | ratio to transformers fp32 "
            f"{t_ref / t_half:.2f}x | greedy tokens equal to fp32: {agree:.0%}"
        )


if __name__ == "__main__":
    main()
