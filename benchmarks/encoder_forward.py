"""Encoder forward pass on the MiniLM shape: megasense vs transformers' BertModel, same weights and batch.

Batch of 32 forum-length texts (real posts from ../shared/data; median ~40 tokens, max 128), fp32 on
CPU, inference mode. Prints milliseconds per batch and the speed ratio (goal: >= 1.0x).

    python benchmarks/encoder_forward.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import random
import statistics

import torch
import transformers

from _common import read_texts, timed
from megasense.formats.hf import keys as hf
from megasense.models import materialize


def forum_batch(tokenizer, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    texts = (
        read_texts("tweets-sentiment-en/val.csv")
        + read_texts("sst2/dev.csv")
        + read_texts("financial-phrasebank/train.csv", limit=500)
    )
    random.Random(seed).shuffle(texts)
    # Join short posts pairwise so the batch has forum-like lengths (median ~40 tokens).
    joined = [f"{a} {b}" for a, b in zip(texts[0::2], texts[1::2])][:size]
    return tokenizer(joined, padding=True, truncation=True, max_length=128, return_tensors="pt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    ref = transformers.BertModel(config, add_pooling_layer=False).eval()
    sd, hc = ref.state_dict(), config.to_dict()
    cfg = hf.model_config_from_hf(hc, sd)
    ours = materialize(cfg, hf.head_config_from_hf(hc, sd), hf.state_dict_from_hf(hc, sd, cfg))
    from megasense.zoo.embedded import find_embedded, package_path

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(package_path(find_embedded("all-minilm-l6-v2"))))
    batch = forum_batch(tokenizer)
    lengths = batch["attention_mask"].sum(1).tolist()
    print(
        f"batch 32, padded length {batch['input_ids'].shape[1]}, median {statistics.median(lengths):.0f} tokens, "
        f"threads {torch.get_num_threads()}"
    )
    with torch.inference_mode():
        a = ref(**batch).last_hidden_state
        b = ours(
            batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
        ).last_hidden_state
        real = batch["attention_mask"].bool()
        print(f"max |difference| on real tokens: {(a - b)[real].abs().max().item():.2e}")
        t_ref = timed(lambda: ref(**batch), repeats=args.repeats, warmup=3)
        t_ours = timed(
            lambda: ours(
                batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
            ),
            repeats=args.repeats,
            warmup=3,
        )
    print(f"transformers BertModel: {t_ref * 1e3:7.2f} ms/batch")
    print(f"megasense BertModel:    {t_ours * 1e3:7.2f} ms/batch")
    print(f"speed ratio (megasense / transformers): {t_ref / t_ours:.2f}x")


if __name__ == "__main__":
    main()
