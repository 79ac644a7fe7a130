"""Fine-tune an encoder into a sentiment (or any text) classifier: data in, best model out.

The steps: read labelled tables (labels normalised, bad rows reported by number), put a fresh head
on the base encoder, optionally add LoRA and augment the training texts, then train with the
generic ``Trainer`` in length-bucketed batches with class weights, evaluating on the validation set
and stopping early on its ``monitor`` metric. The result is saved as a release directory (merged
weights, loadable by ``load_model``) plus the adapter alone (what shipped models carry).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from megasense.data.collate import pad_right
from megasense.files.tables import read_table, require_column
from megasense.formats.adapter import classifier_on, save_adapter
from megasense.formats.release import LoadedModel, save_release
from megasense.models import weights_for_saving
from megasense.models.lora import LoRASettings, apply_lora, merge_lora, trainable_state_dict
from megasense.predictors.labels import SENTIMENT_LABELS, normalize_labels
from megasense.predictors.metrics import classification_report
from megasense.predictors.windows import SentimentTask
from megasense.training.augment import AugmentSettings, augment_dataset
from megasense.training.trainer import TrainConfig, Trainer, TrainResult


@dataclass(kw_only=True)
class FinetuneConfig:
    labels: tuple[str, ...] = SENTIMENT_LABELS
    """Class names in logit order."""
    epochs: int = 3
    batch_size: int = 32
    lr: float | None = None
    """Peak learning rate (default: 5e-5 for full fine-tuning, 5e-4 with LoRA)."""
    max_length: int = 128
    """Training texts are truncated to this many tokens."""
    lora: bool = False
    lora_rank: int = 16
    lora_alpha: float = 32.0
    train_norms: bool = True
    """With LoRA, also train the layer norms (a few thousand values) besides the head."""
    class_weights: str = "balanced"
    """``balanced`` (n / (classes x count)), ``sqrt`` (its square root) or ``none``."""
    augment: bool = False
    augment_copies: int = 1
    pooling: str = "mean"
    dropout: float = 0.1
    warmup_ratio: float = 0.06
    schedule: str = "linear"
    weight_decay: float = 0.01
    grad_accum: int = 1
    bf16: bool = True
    seed: int = 0
    eval_every: int | None = None
    """Evaluate every this many steps (default: once per epoch)."""
    monitor: str = "macro_recall"
    patience: int | None = 2
    max_steps: int | None = None
    time_budget_s: float | None = None
    """Stop training (keeping the best evaluated weights) once this many seconds have passed."""
    metrics_path: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.class_weights not in ("balanced", "sqrt", "none"):
            raise ValueError(f"class_weights={self.class_weights!r} is not one of balanced, sqrt, none")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be at least 1")
        self.labels = tuple(self.labels)

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else (5e-4 if self.lora else 5e-5)


@dataclass
class Examples:
    texts: list[str]
    labels: list[int]
    source: str = ""
    skipped_empty: int = 0


@dataclass
class FinetuneResult:
    model: nn.Module
    """The trained classifier (LoRA still separate, when used)."""
    loaded: LoadedModel
    """The trained model as ``load_model`` would return it (LoRA merged), for predicting."""
    train: TrainResult
    report: dict[str, Any] | None
    """Validation report of the best weights."""
    config: FinetuneConfig
    adapter: dict[str, torch.Tensor] = field(default_factory=dict)
    seconds: float = 0.0


def read_examples(
    path: str | Path, *, text_col: str = "text", label_col: str = "label", labels: Sequence[str] = SENTIMENT_LABELS
) -> Examples:
    """Texts and label indices from a table; empty texts are skipped (counted); bad labels raise with row numbers."""
    frame = read_table(path)
    require_column(frame, text_col, path)
    require_column(frame, label_col, path, option="--label-col")
    mapping = normalize_labels(frame[label_col].tolist(), column=label_col)
    index = {name: i for i, name in enumerate(labels)}
    outside = sorted({label for label in mapping.labels if label not in index})
    if outside:
        raise ValueError(f"{path}: labels {outside} are not among the model's labels {list(labels)}")
    texts, ids, empty = [], [], 0
    for text, label in zip(frame[text_col].tolist(), mapping.labels):
        text = "" if text is None or text != text else str(text)
        if not text.strip():
            empty += 1
            continue
        texts.append(text)
        ids.append(index[label])
    if not texts:
        raise ValueError(f"{path}: no non-empty texts in column {text_col!r}")
    return Examples(texts=texts, labels=ids, source=str(path), skipped_empty=empty)


def class_weight_tensor(labels: Sequence[int], num_labels: int, mode: str) -> torch.Tensor | None:
    if mode == "none":
        return None
    counts = np.bincount(np.asarray(labels), minlength=num_labels).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_labels * np.maximum(counts, 1)), 1.0)
    if mode == "sqrt":
        weights = np.sqrt(weights)
    return torch.tensor(weights, dtype=torch.float32)


class BucketedBatches:
    """Seeded batches of similar lengths: shuffle, sort within pools of 50 batches, shuffle the batches.

    Padding stays low (like sorting) while each epoch still sees a fresh random order.
    """

    def __init__(
        self,
        ids: list[list[int]],
        labels: list[int],
        *,
        batch_size: int,
        pad_id: int,
        seed: int,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        self.ids, self.labels = ids, labels
        self.batch_size, self.pad_id, self.seed = batch_size, pad_id, seed
        self.class_weights = class_weights

    def __len__(self) -> int:
        return (len(self.ids) + self.batch_size - 1) // self.batch_size

    def __call__(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        rng = random.Random(self.seed * 1000 + epoch)
        order = list(range(len(self.ids)))
        rng.shuffle(order)
        pool = self.batch_size * 50
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: len(self.ids[i]))
            batches.extend(chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        rng.shuffle(batches)
        for batch in batches:
            input_ids, mask = pad_right([self.ids[i] for i in batch], self.pad_id)
            out = {
                "input_ids": input_ids,
                "attention_mask": mask,
                "labels": torch.tensor([self.labels[i] for i in batch]),
            }
            if self.class_weights is not None:
                out["class_weights"] = self.class_weights
            yield out


@torch.no_grad()
def predict_logits(
    model: nn.Module, sequences: Sequence[Sequence[int]], *, pad_id: int, bf16: bool, max_batch_tokens: int = 8192
) -> torch.Tensor:
    """(N, labels) logits in the order of ``sequences``, computed in length-sorted batches."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out: torch.Tensor | None = None
    device = next(model.parameters()).device
    start = 0
    while start < len(order):
        longest = len(sequences[order[min(len(order) - 1, start + 127)]])
        size = max(1, min(128, max_batch_tokens // max(1, longest)))
        index = order[start : start + size]
        ids, mask = pad_right([sequences[i] for i in index], pad_id)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
        if out is None:
            out = logits.new_empty((len(sequences), logits.shape[1]))
        out[torch.as_tensor(index)] = logits
        start += size
    return out


def evaluate_model(
    model: nn.Module, task: SentimentTask, examples: Examples, labels: Sequence[str], *, bf16: bool
) -> dict[str, Any]:
    """Classification report on ``examples``, predictions restricted to the labels the data has."""
    gold = [labels[i] for i in examples.labels]
    present = [label for label in labels if label in set(gold)]
    restricted = task.restricted(present) if len(present) < len(labels) and len(present) >= 2 else task
    plan = restricted.encode(examples.texts)
    logits = predict_logits(model, plan.sequences, pad_id=task.tokenizer.pad_id, bf16=bf16)
    result = restricted.aggregate(logits, plan)
    report = classification_report(gold, result.labels, restricted.allowed, confidence=result.scores)
    report["labels_used"] = list(restricted.allowed)
    return report


def _add_lora(model: nn.Module, config: FinetuneConfig) -> LoRASettings:
    settings = LoRASettings(rank=config.lora_rank, alpha=config.lora_alpha)
    train_also = ("classifier.*",) + (("*layernorm.*",) if config.train_norms else ())
    apply_lora(model, settings, train_also=train_also)
    return settings


def finetune(
    base: LoadedModel, train: Examples, val: Examples | None, config: FinetuneConfig, *, max_length_eval: int = 256
) -> FinetuneResult:
    """Train a classifier on ``base``; with ``val``, keep the weights that scored best on ``config.monitor``."""
    if base.tokenizer is None:
        raise ValueError(f"{base.path}: the base model has no tokenizer; it cannot read text")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    model, head = classifier_on(base, config.labels, pooling=config.pooling, dropout=config.dropout)
    lora = _add_lora(model, config) if config.lora else None
    texts, labels = train.texts, train.labels
    if config.augment:
        texts, labels = augment_dataset(
            texts, labels, seed=config.seed, settings=AugmentSettings(copies=config.augment_copies)
        )
    tokenizer = base.tokenizer
    ids = tokenizer.encode_batch([head.text_prefix + t for t in texts], max_length=config.max_length)
    weights = class_weight_tensor(labels, len(config.labels), config.class_weights)
    batches = BucketedBatches(
        ids, labels, batch_size=config.batch_size, pad_id=tokenizer.pad_id, seed=config.seed, class_weights=weights
    )
    window = min(max_length_eval, base.config.max_position_embeddings)
    task = SentimentTask(tokenizer, config.labels, prefix=head.text_prefix, max_length=window, overlap=window // 4)
    evaluate = None
    if val is not None:
        evaluate = _timed_evaluate(task, val, config, started)
    train_config = TrainConfig(
        lr=config.peak_lr,
        epochs=config.epochs,
        max_steps=config.max_steps,
        steps_per_epoch=max(1, len(batches) // config.grad_accum),
        warmup_ratio=config.warmup_ratio,
        schedule=config.schedule,
        weight_decay=config.weight_decay,
        grad_accum=config.grad_accum,
        bf16=config.bf16,
        seed=config.seed,
        eval_every=config.eval_every,
        monitor=config.monitor if val is not None else None,
        patience=config.patience if val is not None else None,
        metrics_path=config.metrics_path,
        progress=config.progress,
        time_budget_s=None if config.time_budget_s is None else config.time_budget_s - (time.perf_counter() - started),
    )
    trainer = Trainer(model, train_config, evaluate=evaluate)
    result = trainer.fit(batches)
    adapter = trainable_state_dict(model) if lora is not None else {}
    model.eval()
    report = evaluate_model(model, task, val, config.labels, bf16=config.bf16) if val is not None else None
    merged = merge_lora(copy.deepcopy(model)) if lora is not None else model
    for param in merged.parameters():
        param.requires_grad_(False)
    loaded = LoadedModel(
        model=merged.eval(),
        config=base.config,
        head=head,
        tokenizer=tokenizer,
        path=Path(str(base.path)),
        metadata={"base": str(base.path), "lora": None if lora is None else asdict(lora)},
    )
    out = FinetuneResult(model=model, loaded=loaded, train=result, report=report, config=config, adapter=adapter)
    out.seconds = time.perf_counter() - started
    return out


def _timed_evaluate(task: SentimentTask, val: Examples, config: FinetuneConfig, started: float):
    def evaluate(model: nn.Module) -> dict[str, float]:
        report = evaluate_model(model, task, val, config.labels, bf16=config.bf16)
        keys = ("accuracy", "macro_f1", "macro_recall", "weighted_f1", "ece")
        return {**{k: report[k] for k in keys}, "elapsed_s": time.perf_counter() - started}

    return evaluate


def save_finetuned(
    result: FinetuneResult,
    directory: str | Path,
    *,
    base_name: str,
    card: str,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """A release directory (merged weights) and, for LoRA runs, ``adapter/`` with the adapter alone."""
    directory = Path(directory)
    loaded = result.loaded
    meta = {"base": base_name, "finetune": _config_dict(result.config), "report": result.report, **(metadata or {})}
    save_release(
        directory,
        config=loaded.config,
        head=loaded.head,
        state_dict=weights_for_saving(loaded.model),
        tokenizer=loaded.tokenizer,
        card=card,
        metadata=meta,
        overwrite=overwrite,
    )
    if result.adapter:
        save_adapter(
            directory / "adapter",
            tensors=result.adapter,
            base=base_name,
            head=loaded.head,
            lora=LoRASettings(rank=result.config.lora_rank, alpha=result.config.lora_alpha),
            card=card,
            metadata=meta,
            overwrite=True,
        )
    return directory


def _config_dict(config: FinetuneConfig) -> dict[str, Any]:
    d = asdict(config)
    d["labels"] = list(config.labels)
    d["lr"] = config.peak_lr
    return d


def model_card(
    name: str, base: str, result: FinetuneResult, *, train: Examples, val: Examples | None, command: str
) -> str:
    """A README.md for a fine-tuned model: data, settings, validation metrics and the command."""
    cfg = result.config
    lines = [
        f"# {name}",
        "",
        f"Text classifier ({', '.join(cfg.labels)}) fine-tuned by megasense from `{base}`"
        f"{' with LoRA (rank ' + str(cfg.lora_rank) + ')' if cfg.lora else ''}.",
        "",
        "## Data",
        "",
        f"- training: `{train.source}`, {len(train.texts):,} texts"
        + (f" ({train.skipped_empty} empty skipped)" if train.skipped_empty else "")
        + (f", plus {cfg.augment_copies} EDA-augmented copy per text" if cfg.augment else ""),
    ]
    if val is not None:
        lines.append(f"- validation: `{val.source}`, {len(val.texts):,} texts")
    lines += ["", "## Validation metrics (best checkpoint)", ""]
    if result.report is not None:
        r = result.report
        lines += [
            "| metric | value |",
            "| --- | --- |",
            *[f"| {k} | {r[k]:.4f} |" for k in ("accuracy", "macro_f1", "weighted_f1", "macro_recall", "ece")],
            f"| n | {r['n']} |",
        ]
    else:
        lines.append("No validation set was given.")
    lines += [
        "",
        "## Training",
        "",
        f"- steps: {result.train.steps} (best at step {result.train.best_step}), "
        f"{result.train.samples_per_s:.1f} samples/s, {result.seconds:.0f} s"
        + (", stopped early" if result.train.stopped_early else ""),
        f"- settings: epochs {cfg.epochs}, batch {cfg.batch_size}, lr {cfg.peak_lr:g}, max_length {cfg.max_length}, "
        f"class weights {cfg.class_weights}, bf16 {cfg.bf16}, seed {cfg.seed}",
        "",
        "## Reproduce",
        "",
        f"    {command}",
        "",
    ]
    return "\n".join(lines)


def train_from_files(
    train_path: str | Path,
    val_path: str | Path | None,
    *,
    base: str | LoadedModel,
    output: str | Path,
    config: FinetuneConfig | None = None,
    text_col: str = "text",
    label_col: str = "label",
    overwrite: bool = False,
    command: str = "",
) -> FinetuneResult:
    """``megasense train``: read the tables, fine-tune ``base``, save the best model (release + card) to ``output``."""
    from megasense.files.atomic import check_output_dir
    from megasense.zoo.load import load_model

    config = config or FinetuneConfig()
    check_output_dir(Path(output), overwrite=overwrite)  # fail before training, not after
    train = read_examples(train_path, text_col=text_col, label_col=label_col, labels=config.labels)
    val = read_examples(val_path, text_col=text_col, label_col=label_col, labels=config.labels) if val_path else None
    loaded = base if isinstance(base, LoadedModel) else load_model(base)
    base_name = str(base.path) if isinstance(base, LoadedModel) else str(base)
    result = finetune(loaded, train, val, config)
    card = model_card(Path(output).name, base_name, result, train=train, val=val, command=command or "megasense train")
    save_finetuned(result, output, base_name=base_name, card=card, overwrite=overwrite)
    return result


def train(
    train: str | Path,
    val: str | Path | None = None,
    *,
    base: str = "all-minilm-l6-v2",
    output: str | Path,
    text_col: str = "text",
    label_col: str = "label",
    overwrite: bool = False,
    **options: Any,
) -> FinetuneResult:
    """Fine-tune ``base`` on a labelled table; ``options`` are FinetuneConfig fields (lora, epochs, lr, ...).

    >>> megasense.train("train.csv", "val.csv", base="minilm-l6", output="my-model", lora=True)  # doctest: +SKIP
    """
    options.setdefault("progress", False)
    return train_from_files(
        train,
        val,
        base=base,
        output=output,
        config=FinetuneConfig(**options),
        text_col=text_col,
        label_col=label_col,
        overwrite=overwrite,
        command=f"megasense.train({str(train)!r}, {str(val) if val else None!r}, base={base!r}, ...)",
    )
