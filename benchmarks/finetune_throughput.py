"""Fine-tuning throughput (samples/s) on CPU: megasense's Trainer vs a plain PyTorch loop on transformers.

Both start from all-MiniLM-L6-v2 with a fresh 3-class head and see the same tweets, batch 32:

- baseline: transformers' BertForSequenceClassification, fp32, texts in file order padded to the
  longest in each batch, AdamW, the loop everyone writes first.
- ours: ``megasense.training`` (length-bucketed batches, bf16 autocast, fp32 master weights), full
  fine-tuning and LoRA.

Each prints samples/s and the mean loss of the last steps (similar losses: the speed is not bought
with worse optimisation).

    .venv/bin/python benchmarks/finetune_throughput.py --steps 30
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, read_texts

LABELS = ("negative", "neutral", "positive")


def data(n: int):
    texts = read_texts("tweets-sentiment-en/train.csv", limit=n)
    labels = [LABELS.index(x) for x in read_texts("tweets-sentiment-en/train.csv", column="label", limit=n)]
    return texts, labels


def baseline(texts, labels, steps: int, batch: int) -> tuple[float, float]:
    import transformers

    from megasense.zoo.embedded import find_embedded, package_path

    path = str(package_path(find_embedded("all-minilm-l6-v2")))
    tok = transformers.AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification.from_pretrained(path, num_labels=3).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    losses, stamps = [], []
    for step in range(steps + 1):
        i = (step * batch) % (len(texts) - batch)
        enc = tok(texts[i : i + batch], padding=True, truncation=True, max_length=128, return_tensors="pt")
        out = model(**enc, labels=torch.tensor(labels[i : i + batch]))
        stamps.append(time.perf_counter())
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(out.loss.detach()))
    return steps * batch / (stamps[-1] - stamps[0]), sum(losses[-10:]) / 10


def ours(texts, labels, steps: int, batch: int, *, lora: bool) -> tuple[float, float]:
    from megasense.formats.adapter import classifier_on
    from megasense.training.finetune import BucketedBatches, FinetuneConfig, _add_lora
    from megasense.training.trainer import TrainConfig, Trainer
    from megasense.zoo.load import load_model

    base = load_model("all-minilm-l6-v2")
    model, _ = classifier_on(base, LABELS)
    if lora:
        _add_lora(model, FinetuneConfig(lora=True))
    ids = base.tokenizer.encode_batch(texts, max_length=128)
    batches = BucketedBatches(ids, labels, batch_size=batch, pad_id=base.tokenizer.pad_id, seed=0)
    losses, stamps = [], []

    def loss_fn(out):  # called once per batch, after its forward pass
        losses.append(float(out.loss.detach()))
        stamps.append(time.perf_counter())
        return out.loss

    cfg = TrainConfig(lr=5e-4 if lora else 5e-5, max_steps=steps + 1, bf16=True, progress=False, warmup_ratio=0.0)
    Trainer(model, cfg, loss_fn=loss_fn).fit(batches)
    # Between the first and the last forward pass lie `steps` full steps (the first one's one-off costs excluded).
    return steps * batch / (stamps[-1] - stamps[0]), sum(losses[-10:]) / 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts, labels = data(args.batch * (args.steps + 2) * 2)
    base_rate, base_loss = baseline(texts, labels, args.steps, args.batch)
    print(f"transformers fp32 loop : {base_rate:7.1f} samples/s  loss(last 10) {base_loss:.3f}", flush=True)
    for lora in (False, True):
        rate, loss = ours(texts, labels, args.steps, args.batch, lora=lora)
        name = "megasense bf16 LoRA" if lora else "megasense bf16 full"
        print(f"{name:23s}: {rate:7.1f} samples/s  loss(last 10) {loss:.3f}  ratio {rate / base_rate:.2f}x", flush=True)
    print(f"peak RSS {peak_rss_mb():.0f} MB, {args.threads} threads, batch {args.batch}, {args.steps} steps")


if __name__ == "__main__":
    main()
