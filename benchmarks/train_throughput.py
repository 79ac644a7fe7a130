"""Training throughput (tokens/s) on CPU: megasense's Trainer vs transformers with a plain PyTorch loop.

Two shapes, each trained from the same initial weights on the same batches of English tweets
(tokenized with all-MiniLM-L6-v2's WordPiece vocabulary, packed into full windows):

- ``minilm``: a MiniLM-L6-shaped encoder (hidden 384, 6 layers, 12 heads, ffn 1536, vocab 30522,
  seq 128), masked LM (15% of the tokens, all replaced by [MASK]); transformers' ``BertForMaskedLM``.
- ``gpt``: a small GPT-2-shaped decoder (hidden 512, 4 layers, 8 heads, ffn 2048, vocab 30522,
  seq 256), causal LM; transformers' ``GPT2LMHeadModel``.

Baseline: the transformers model, ``torch.optim.AdamW`` (its default implementation),
``clip_grad_norm_`` and the loop everyone writes first (with ``torch.autocast`` for the bf16 rows).
Ours: ``megasense.training.Trainer`` (the loop ``megasense pretrain`` runs; fused AdamW) on the
megasense model, whose masked-LM head scores only the masked positions (transformers scores all
of them; the loss is the same). Both: AdamW (lr 3e-4, betas 0.9/0.999, no weight decay, so the two
optimizers make the same update up to rounding), clipping at 1.0, no dropout, the vocabulary
unpadded (``make_vocab_size_divisible_by = 1``, so both compute the same logits). The last lines
compare megasense in bf16 with transformers in fp32.
The ours model's weights are copied into the transformers model, so the loss curves should agree:
``max|dloss|`` is the largest difference between the two curves over all steps.

Tokens/s come from the median time of an optimizer step (the first step's one-off costs are left
out; the median resists other processes on a shared machine). With ``--repeats 2`` (the default)
each side runs twice in the order theirs, ours, ours, theirs and keeps its faster run, so neither
profits from going first or last. Tokens per CPU-second (``process_time``) are printed beside them:
on a shared machine they move much less than wall-clock rates.

bf16 autocast pays off on CPUs with AMX or AVX-512-BF16 (and on GPUs); on AVX2-only CPUs it is
several times slower than fp32.

    .venv/bin/python benchmarks/train_throughput.py --threads 1
    .venv/bin/python benchmarks/train_throughput.py --model gpt --precision bf16 --steps 4
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, read_texts

SHAPES = {
    "minilm": dict(preset="minilm-l6", seq=128, batch=8, overrides={}),
    "gpt": dict(
        preset="gpt-tiny",
        seq=256,
        batch=4,
        overrides=dict(
            hidden_size=512, num_layers=4, num_attention_heads=8, ffn_hidden_size=2048, max_position_embeddings=1024
        ),
    ),
}
LR, CLIP = 3e-4, 1.0


def model_config(name: str, vocab_size: int):
    from megasense.config.presets import preset

    shape = SHAPES[name]
    return preset(shape["preset"]).replace(
        **shape["overrides"],
        vocab_size=vocab_size,
        make_vocab_size_divisible_by=1,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        **({"add_pooler": False, "binary_head": False} if name == "minilm" else {}),
    )


def make_batches(name: str, tokenizer, *, steps: int, batch: int, seq: int) -> list[dict[str, torch.Tensor]]:
    """``steps`` batches of full windows cut from the tokenized tweets (fixed seed, the same for both)."""
    need = steps * batch * (seq + 1)
    texts, ids = read_texts("tweets-sentiment-en/train.csv"), []
    for start in range(0, len(texts), 512):
        for row in tokenizer.encode_batch(texts[start : start + 512], add_special_tokens=False):
            ids.extend(row)
        if len(ids) >= need:
            break
    if len(ids) < need:
        raise SystemExit(f"the tweets give {len(ids)} tokens; {need} are needed (fewer --steps or --batch)")
    g = torch.Generator().manual_seed(0)
    windows = torch.tensor(ids[:need]).view(steps, batch, seq + 1)
    out = []
    for w in windows:
        if name == "gpt":
            out.append({"input_ids": w[:, :-1].contiguous(), "labels": w[:, 1:].contiguous()})
            continue
        inputs = w[:, :seq].clone()
        inputs[:, 0], inputs[:, -1] = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        chosen = torch.rand(inputs.shape, generator=g) < 0.15
        chosen[:, 0] = chosen[:, -1] = False
        labels = torch.where(chosen, inputs, -100)
        inputs = torch.where(chosen, tokenizer.token_to_id("[MASK]"), inputs)
        out.append({"input_ids": inputs, "attention_mask": torch.ones_like(inputs), "labels": labels})
    return out


def build_pair(name: str, cfg):
    """The megasense model (seeded init) and a transformers model holding the same weights."""
    import transformers

    from megasense.config import HeadConfig
    from megasense.formats.hf.keys import model_config_to_hf, state_dict_to_hf
    from megasense.models import build_model

    head = HeadConfig(task="causal_lm" if name == "gpt" else "pretraining")
    torch.manual_seed(0)
    ours = build_model(cfg, head)
    ours.init_weights()
    hf_cfg = model_config_to_hf(cfg, head)
    kind = transformers.GPT2Config if name == "gpt" else transformers.BertConfig
    cls = transformers.GPT2LMHeadModel if name == "gpt" else transformers.BertForMaskedLM
    hf_cfg = {k: v for k, v in hf_cfg.items() if k not in ("model_type", "architectures")}
    if name == "gpt":  # GPT-2's own ids (50256) lie outside this vocabulary; no generation here
        hf_cfg |= {"bos_token_id": None, "eos_token_id": None}
    hf_config = kind(**hf_cfg)
    hf_config._attn_implementation = "sdpa"
    theirs = cls(hf_config)
    weights = {k: v.clone() for k, v in state_dict_to_hf(ours.state_dict(), cfg, head).items()}
    missing, unexpected = theirs.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith(("decoder.weight", "lm_head.weight", "position_ids"))]
    if missing or unexpected:
        raise SystemExit(f"weights do not match the transformers model: missing {missing}, unexpected {unexpected}")
    theirs.tie_weights()
    return ours, theirs


def run_baseline(model, batches, *, gpt: bool, bf16: bool) -> tuple[list[float], list[float]]:
    """The plain loop; (loss per step, time at the end of each step)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.999), weight_decay=0.0)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    losses, stamps = [], []
    for batch in batches:
        with autocast:
            if gpt:  # the same targets as ours: the next token at every position
                logits = model(input_ids=batch["input_ids"]).logits
                loss = F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten())
            else:
                loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        stamps.append(_now())
    return losses, stamps


def run_ours(model, batches, *, bf16: bool) -> tuple[list[float], list[float]]:
    """megasense's Trainer; (loss per step, time at the end of each step)."""
    from megasense.training.trainer import TrainConfig, Trainer

    cfg = TrainConfig(
        lr=LR,
        max_steps=len(batches),
        warmup_ratio=0.0,
        schedule="constant",
        weight_decay=0.0,
        betas=(0.9, 0.999),
        grad_clip=CLIP,
        bf16=bf16,
        progress=False,
    )
    losses, stamps = [], []

    def on_step(trainer, record):
        stamps.append(_now())
        losses.append(record["loss"])

    Trainer(model, cfg, on_step=on_step).fit(batches)
    return losses, stamps


def _now() -> tuple[float, float]:
    """Wall-clock and this process's CPU time (all its threads)."""
    return time.perf_counter(), time.process_time()


def tokens_per_s(stamps: list[tuple[float, float]], tokens_per_step: int) -> tuple[float, float]:
    """Tokens per second and per CPU-second, from the median step (the first step's one-off costs left out).

    Per CPU-second barely moves when other processes share the cores (wall-clock does); with one
    thread the two agree on an idle machine.
    """
    wall = statistics.median(b[0] - a[0] for a, b in itertools.pairwise(stamps))
    cpu = statistics.median(b[1] - a[1] for a, b in itertools.pairwise(stamps))
    return tokens_per_step / wall, tokens_per_step / cpu


def bench(
    name: str, tokenizer, precision: str, *, steps: int, batch: int | None, seq: int | None, repeats: int
) -> dict[str, tuple[float, float]]:
    """Prints one row; returns {side: (tokens/s, tokens/cpu-s)}."""
    shape = SHAPES[name]
    batch, seq = batch or shape["batch"], seq or shape["seq"]
    cfg = model_config(name, tokenizer.vocab_size)
    if seq > cfg.max_position_embeddings:
        raise SystemExit(
            f"--seq {seq} exceeds the {name} model's max_position_embeddings={cfg.max_position_embeddings}"
        )
    batches = make_batches(name, tokenizer, steps=steps + 1, batch=batch, seq=seq)
    bf16, tokens = precision == "bf16", batch * seq
    rates: dict[str, list[tuple[float, float]]] = {"theirs": [], "ours": []}
    curves: dict[str, list[float]] = {}
    order = ("theirs", "ours", "ours", "theirs") if repeats == 2 else ("theirs", "ours")
    for side in order:
        ours, theirs = build_pair(name, cfg)  # fresh weights each run: the curves start the same
        if side == "theirs":
            losses, stamps = run_baseline(theirs, batches, gpt=name == "gpt", bf16=bf16)
        else:
            losses, stamps = run_ours(ours, batches, bf16=bf16)
        rates[side].append(tokens_per_s(stamps, tokens))
        curves.setdefault(side, losses)
    base, base_cpu = (max(r[i] for r in rates["theirs"]) for i in (0, 1))
    mine, mine_cpu = (max(r[i] for r in rates["ours"]) for i in (0, 1))
    base_losses, our_losses = curves["theirs"], curves["ours"]
    gap = max(abs(a - b) for a, b in zip(base_losses, our_losses, strict=True))
    label = f"{name} {precision} b{batch} t{seq}"
    print(
        f"{label:22s} transformers {base:6.0f} tok/s {base_cpu:6.0f} tok/cpu-s  megasense {mine:6.0f} tok/s "
        f"{mine_cpu:6.0f} tok/cpu-s  ratio {mine / base:4.2f}x ({mine_cpu / base_cpu:4.2f}x per cpu-s)  "
        f"loss {base_losses[0]:.3f} -> {base_losses[-1]:.3f} (theirs) / {our_losses[-1]:.3f} (ours)  "
        f"max|dloss| {gap:.2e}",
        flush=True,
    )
    return {"theirs": (base, base_cpu), "ours": (mine, mine_cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["minilm", "gpt", "both"], default="both")
    parser.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps (after one warm-up step)")
    parser.add_argument("--repeats", type=int, choices=[1, 2], default=2, help="runs per side (2: ABBA order)")
    parser.add_argument("--batch", type=int, default=None, help="default: 8 (minilm), 4 (gpt)")
    parser.add_argument("--seq", type=int, default=None, help="default: 128 (minilm), 256 (gpt)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    if not precisions or set(precisions) - {"fp32", "bf16"}:
        parser.error(f"--precision {args.precision!r}: expected fp32, bf16 or fp32,bf16")
    torch.set_num_threads(args.threads)
    from megasense.zoo.load import load_model

    tokenizer = load_model("all-minilm-l6-v2").tokenizer
    summary = []
    for name in ("minilm", "gpt") if args.model == "both" else (args.model,):
        rows = {}
        for precision in precisions:
            rows[precision] = bench(
                name, tokenizer, precision, steps=args.steps, batch=args.batch, seq=args.seq, repeats=args.repeats
            )
        if {"fp32", "bf16"} <= set(rows):  # the goal: bf16 mixed precision against the fp32 baseline
            (wall, cpu), (base_wall, base_cpu) = rows["bf16"]["ours"], rows["fp32"]["theirs"]
            summary.append(
                f"{name}: megasense bf16 / transformers fp32 = {wall / base_wall:.2f}x "
                f"({cpu / base_cpu:.2f}x per cpu-s)"
            )
    for line in summary:
        print(line)
    print(f"peak RSS {peak_rss_mb():.0f} MB, {args.threads} threads, torch {torch.__version__}")


if __name__ == "__main__":
    main()
