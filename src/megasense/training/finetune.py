"""Fine-tune an encoder into a text classifier (sentiment, intents, emotions...): data in, best model out.

The steps: read labelled tables (labels normalised, bad rows reported by number), put a fresh head
on the base encoder, optionally add LoRA and augment the training texts, then train with the
generic ``Trainer`` in length-bucketed batches with class weights, evaluating on the validation set
and stopping early on its ``monitor`` metric. The result is saved as a release directory (merged
weights, loadable by ``load_model``) plus the adapter alone (what shipped models carry).

The labels come from the training column (``labels.infer_labels``: the three sentiment labels for a
sentiment column, else its distinct values). An out-of-scope label (``oos``) gets a confidence
threshold calibrated on the validation data; a multi-label model (``multi_label``) trains a sigmoid per
label and gets a threshold per label tuned on the validation data (``predictors.calibration``).

Validation goes through the predictors: a ``SentimentClassifier`` on the current weights and
``predictors.evaluation.evaluate_texts``, the path ``megasense evaluate`` takes, at precision bf16 or
fp32 as the config's ``bf16`` says. So the numbers in the model card are exactly what
``megasense evaluate VAL --model OUTPUT --precision P`` prints; the card names the command.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import shlex
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from megasense.config import HeadConfig
from megasense.config.train import TrainConfig, check_finetune_numbers
from megasense.data.collate import pad_right
from megasense.errors import ConfigError, LabelError
from megasense.files.tables import read_table, require_column, text_column
from megasense.formats.adapter import classifier_on, save_adapter
from megasense.formats.release import LoadedModel, require_finite, save_release
from megasense.models import weights_for_saving
from megasense.models.lora import LoRASettings, apply_lora, merge_lora, trainable_state_dict
from megasense.predictors.calibration import calibrate_oos_threshold, fit_temperature, tune_label_thresholds
from megasense.predictors.evaluation import evaluate_texts
from megasense.predictors.jobs import aspect_column
from megasense.predictors.labels import OOS_NAMES, SENTIMENT_LABELS, infer_labels, read_gold
from megasense.predictors.metrics import expected_calibration_error
from megasense.predictors.sentiment import SentimentClassifier
from megasense.predictors.windows import SentimentTask
from megasense.training.augment import AugmentSettings, augment_dataset
from megasense.training.fewshot import LOSSES, choose_method, embed_ids, fit_head, train_contrastive
from megasense.training.trainer import Trainer, TrainResult


@dataclass(kw_only=True, frozen=True)
class FinetuneConfig(TrainConfig):
    """``megasense train``'s options: a ``TrainConfig`` (what the Trainer runs, as it is) with fine-tuning's
    defaults, plus the labels, the batch size, the head, LoRA, class weights and augmentation."""

    # This job's defaults, where they differ from TrainConfig's (see megasense.config.train).
    lr: float | None = None
    """Peak learning rate; None: 5e-5 for full fine-tuning, 5e-4 with LoRA (resolved when the config is made)."""

    epochs: int = 3
    """Passes over the training data."""

    bf16: bool = True
    """bf16 autocast for training and validation; validation then runs at ``--precision bf16`` (else fp32)."""

    monitor: str | None = "macro_recall"
    """Validation metric to keep the best weights by (with a validation set only); macro_f1 for multi_label."""

    patience: int | None = 2
    """Evaluations without improvement of ``monitor`` before stopping (with a validation set only)."""

    # Fine-tuning's own fields.
    labels: tuple[str, ...] | None = None
    """Class names in logit order; None: from the training data (``labels.infer_labels``)."""

    multi_label: bool = False
    """Any number of labels per text (a comma-separated label column): a sigmoid per label, thresholds tuned
    on validation data."""

    oos_label: str | None = None
    """The label meaning "none of these" (out-of-scope); None: ``oos`` (or another name in ``labels.OOS_NAMES``)
    when the labels have it; "" for none. Its confidence threshold is calibrated on validation data."""

    batch_size: int = 32
    """Texts per forward pass (``grad_accum`` of them make one optimizer step)."""

    max_length: int = 128
    """Training texts are truncated to this many tokens (16 to the base model's positions; the default is cut
    to a base with fewer)."""

    lora: bool = False
    """Train LoRA adapters (plus the head and, with ``train_norms``, the layer norms) instead of all weights."""

    lora_rank: int = 16
    lora_alpha: float = 32.0
    train_norms: bool = True
    """With LoRA, also train the layer norms (a few thousand values) besides the head."""

    class_weights: str = "balanced"
    """``balanced`` (n / (classes x count)), ``sqrt`` (its square root) or ``none``."""

    augment: bool = False
    """Add augmented copies of the training texts (made by ``augmenter``)."""

    augment_copies: int = 1
    """Augmented copies per text (paraphrases: at most this many, the decoder's unusable answers dropped)."""

    augmenter: str = "eda"
    """``eda`` (word edits, ``training.augment``) or ``paraphrase`` (rewrites by the embedded decoder,
    ``training.paraphrase``; cached by text)."""

    pooling: str = "mean"
    dropout: float = 0.1

    method: str = "auto"
    """``classifier`` (a fresh head trained with the encoder by cross-entropy), ``contrastive`` (SetFit's way: the
    encoder fine-tuned on sentence pairs, then a logistic-regression head; ``training.fewshot``), or ``auto``:
    contrastive for few-shot data (``fewshot.choose_method``), else classifier. The run records the one it took."""

    contrastive_loss: str = "mnrl"
    """The contrastive method's loss: ``mnrl`` (MultipleNegativesRanking over same-label pairs, in-batch
    negatives) or ``cosine`` (SetFit's: cosine similarity to 1 / 0 over balanced pairs)."""

    pairs_per_example: int = 4
    """The contrastive method's pairs per training text (half same-label; ``mnrl`` uses those); one pass.
    ``epochs`` applies to the classifier method only."""

    probe_head: bool = False
    """Classifier method, one label per text: before fine-tuning, fit the head by logistic regression on the
    frozen encoder's embeddings (a linear probe, LP-FT: Kumar et al. 2022). For encoders whose states are
    small and alike (multilingual-e5) on skewed labels, where a fresh head otherwise learns only the
    majority class (CAIS intents: 86% one label)."""

    def __post_init__(self) -> None:
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))
        if self.lr is None:
            object.__setattr__(self, "lr", 5e-4 if self.lora else 5e-5)
        if self.multi_label and self.monitor == "macro_recall":
            # recall alone rewards predicting every label; a multi-label model is watched by macro F1
            object.__setattr__(self, "monitor", "macro_f1")
        super().__post_init__()
        if self.class_weights not in ("balanced", "sqrt", "none"):
            raise ConfigError(f"train.class_weights={self.class_weights!r} is not one of balanced, sqrt, none")
        if self.method not in ("auto", "classifier", "contrastive"):
            raise ConfigError(f"train.method={self.method!r} is not one of auto, classifier, contrastive")
        if self.contrastive_loss not in LOSSES:
            raise ConfigError(f"train.contrastive_loss={self.contrastive_loss!r} is not one of {', '.join(LOSSES)}")
        if self.augmenter not in ("eda", "paraphrase"):
            raise ConfigError(f"train.augmenter={self.augmenter!r} is not one of eda, paraphrase")
        for key in ("batch_size", "max_length", "lora_rank", "augment_copies", "pairs_per_example"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}={getattr(self, key)} must be at least 1")
        check_finetune_numbers(self)  # finite, in range, a known monitor (config.train)

    @property
    def peak_lr(self) -> float:
        return self.lr

    @property
    def precision(self) -> str:
        """The precision validation runs at, as ``megasense evaluate --precision`` names it."""
        return "bf16" if self.bf16 else "fp32"


@dataclass
class Examples:
    texts: list[str]
    labels: list[int] | list[tuple[int, ...]]
    """Per text, its label's index (tuples of indices for multi-label data) into ``label_names``."""
    source: str = ""
    skipped_empty: int = 0
    label_names: tuple[str, ...] = SENTIMENT_LABELS
    """The labels the indices refer to."""
    label_mask: list[tuple[bool, ...]] | None = None
    """Per row, which of the model's labels the row may have (None: all, for every row). Rows of a binary
    source (negative/positive) are trained on those two only and evaluated restricted to them."""
    aspects: list[str] | None = None
    """Per text, the aspect a pair model reads beside it (aspect sentiment); None: texts alone."""

    def allowed_labels(self, names: Sequence[str]) -> tuple[str, ...] | None:
        """The labels any row allows (what evaluation restricts predictions to), or None when that is all."""
        if self.label_mask is None:
            return None
        allowed = tuple(n for i, n in enumerate(names) if any(m[i] for m in self.label_mask))
        return None if len(allowed) == len(names) else allowed


def restrict_labels(examples: Examples, allowed: Sequence[str], names: Sequence[str] = SENTIMENT_LABELS) -> Examples:
    """``examples`` with every row allowed only ``allowed`` (a binary source: ``("negative", "positive")``)."""
    unknown = sorted(set(allowed) - set(names))
    if unknown:
        raise ValueError(f"{examples.source}: labels {unknown} are not among the model's labels {list(names)}")
    mask = tuple(n in allowed for n in names)
    outside = sorted({names[y] for y in examples.labels if not mask[y]})
    if outside:
        raise ValueError(f"{examples.source}: rows labelled {outside}, but the source allows only {list(allowed)}")
    return dataclasses.replace(examples, label_mask=[mask] * len(examples.texts))


def concat_examples(parts: Sequence[Examples], source: str = "") -> Examples:
    """One set from several; rows of parts without a mask allow every label."""
    texts = [t for p in parts for t in p.texts]
    labels = [y for p in parts for y in p.labels]
    names = {p.label_names for p in parts}
    if len(names) > 1:
        raise ValueError(f"cannot join examples with different labels: {sorted(names)}")
    mask = None
    if any(p.label_mask is not None for p in parts):
        width = len(next(p.label_mask for p in parts if p.label_mask is not None)[0])
        mask = [m for p in parts for m in (p.label_mask or [(True,) * width] * len(p.texts))]
    paired = {p.aspects is not None for p in parts}
    if len(paired) > 1:
        raise ValueError("cannot join examples with aspects and examples without: give every part an aspect column")
    aspects = [a for p in parts for a in p.aspects] if paired == {True} else None
    return Examples(
        texts=texts, labels=labels, source=source, label_mask=mask, label_names=next(iter(names)), aspects=aspects
    )


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
    method_reason: str = ""
    """Why ``config.method`` ran (``auto``'s rule, or the option given)."""


def read_examples(
    path: str | Path,
    *,
    text_col: str = "text",
    label_col: str = "label",
    labels: Sequence[str] | None = None,
    multi_label: bool = False,
    aspect_col: str | None = None,
) -> Examples:
    """Texts and label indices from a table; empty texts are skipped (counted); bad labels raise with row numbers.

    ``labels`` are the model's (the indices refer to them); None: from this column (``infer_labels``).
    ``aspect_col``: each row's aspect, for a pair model (a row with a text but no aspect raises)."""
    frame = read_table(path)
    require_column(frame, text_col, path)
    aspect_values = aspect_column(frame, aspect_col, text_column(frame, text_col), 2, Path(path))
    require_column(frame, label_col, path, option="--label-col")
    values = frame[label_col].tolist()
    if labels is None:
        labels = infer_labels(values, multi_label=multi_label, column=label_col)
    labels = tuple(labels)
    try:
        gold = read_gold(values, labels, multi_label=multi_label, column=label_col)
    except LabelError as exc:
        raise LabelError(f"{path}: {exc}") from None
    index = {name: i for i, name in enumerate(labels)}
    texts, ids, aspects, empty = [], [], [], 0
    for row, (text, label) in enumerate(zip(frame[text_col].tolist(), gold)):
        text = "" if text is None or text != text else str(text)
        if not text.strip():
            empty += 1
            continue
        texts.append(text)
        ids.append(tuple(index[g] for g in label) if multi_label else index[label])
        if aspect_values is not None:
            aspects.append(aspect_values[row])
    if not texts:
        raise ValueError(f"{path}: no non-empty texts in column {text_col!r}")
    return Examples(
        texts=texts,
        labels=ids,
        source=str(path),
        skipped_empty=empty,
        label_names=labels,
        aspects=aspects if aspect_values is not None else None,
    )


def class_weight_tensor(
    labels: Sequence, num_labels: int, mode: str, *, multi_label: bool = False
) -> torch.Tensor | None:
    """Per-class loss weights: ``balanced`` n / (classes x count), ``sqrt`` its square root, ``none``.

    Multi-label: the weight of each label's positives (``pos_weight``), sqrt(negatives / positives) for
    ``balanced`` and ``sqrt`` alike, capped at 10 (the full ratio of a rare label, hundreds, makes it fire
    everywhere; its threshold is tuned afterwards anyway)."""
    if mode == "none":
        return None
    if multi_label:
        positives = np.zeros(num_labels)
        for row in labels:
            positives[list(row)] += 1
        ratio = (len(labels) - positives) / np.maximum(positives, 1)
        return torch.tensor(np.clip(np.sqrt(ratio), 1.0, 10.0), dtype=torch.float32)
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
        label_mask: list[tuple[bool, ...]] | None = None,
        num_labels: int | None = None,
    ) -> None:
        """``num_labels`` given: the labels are tuples of indices (multi-label), batched as 0/1 rows."""
        self.ids, self.labels = ids, labels
        self.num_labels = num_labels
        self.batch_size, self.pad_id, self.seed = batch_size, pad_id, seed
        self.class_weights = class_weights
        self.label_mask = label_mask

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
                "labels": self._targets(batch),
            }
            if self.class_weights is not None:
                out["class_weights"] = self.class_weights
            if self.label_mask is not None:
                out["label_mask"] = torch.tensor([self.label_mask[i] for i in batch], dtype=torch.bool)  # (B, L)
            yield out

    def _targets(self, batch: list[int]) -> torch.Tensor:
        if self.num_labels is None:
            return torch.tensor([self.labels[i] for i in batch])
        targets = torch.zeros((len(batch), self.num_labels))
        for row, i in enumerate(batch):
            targets[row, list(self.labels[i])] = 1.0
        return targets


def evaluate_examples(
    loaded: LoadedModel,
    examples: Examples,
    *,
    precision: str = "fp32",
    max_length: int = 256,
    name: str | None = None,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The report ``megasense evaluate`` gives for ``examples`` (labels as indices into the model's labels)
    with ``loaded`` at ``precision``, VADER left out; ``report["precision"]`` says which precision.

    ``labels`` restricts the predictions as ``megasense evaluate --labels`` does; by default a set whose rows
    allow fewer labels (a binary source) is restricted to those."""
    classifier = SentimentClassifier(loaded, max_length=max_length, precision=precision, name=name)
    names = loaded.head.labels
    if loaded.head.multi_label:
        gold = [tuple(names[i] for i in row) for row in examples.labels]
    else:
        gold = [names[i] for i in examples.labels]
    labels = labels if labels is not None else examples.allowed_labels(loaded.head.labels)
    report = evaluate_texts(
        classifier,
        examples.texts,
        gold,
        labels=labels,
        baseline=False,
        source=examples.source,
        aspects=examples.aspects,
    )
    report["precision"] = classifier.precision
    return report


def evaluate_model(
    model: nn.Module, task: SentimentTask, examples: Examples, labels: Sequence[str], *, bf16: bool
) -> dict[str, Any]:
    """Deprecated: use ``evaluate_examples`` with a ``LoadedModel`` (``FinetuneResult.loaded``)."""
    warnings.warn(
        "megasense.training.finetune.evaluate_model is deprecated; use evaluate_examples(result.loaded, examples, "
        "precision=...), which evaluates as `megasense evaluate` does",
        DeprecationWarning,
        stacklevel=2,
    )
    head = HeadConfig(task="classification", labels=tuple(labels), text_prefix=task.prefix)
    loaded = LoadedModel(
        model=model, config=model.config, head=head, tokenizer=task.tokenizer, path=Path("model"), metadata={}
    )
    report = evaluate_examples(loaded, examples, precision="bf16" if bf16 else "fp32", max_length=task.max_length)
    report["labels_used"] = report["labels"]
    return report


def _add_lora(model: nn.Module, config: FinetuneConfig) -> LoRASettings:
    settings = LoRASettings(rank=config.lora_rank, alpha=config.lora_alpha)
    train_also = ("classifier.*",) + (("*layernorm.*",) if config.train_norms else ())
    apply_lora(model, settings, train_also=train_also)
    return settings


Validation = Examples | Mapping[str, Examples]
"""One validation set, or several by name: then each is evaluated alone and the monitor is the worst of them."""

_HIGHER_BETTER = ("accuracy", "macro_f1", "macro_recall", "weighted_f1")


def finetune(
    base: LoadedModel,
    train: Examples,
    val: Validation | None,
    config: FinetuneConfig,
    *,
    max_length_eval: int = 256,
    name: str | None = None,
) -> FinetuneResult:
    """Train a classifier on ``base``; with ``val``, keep the weights that scored best on ``config.monitor``.

    Validation runs as ``megasense evaluate`` does (``evaluate_examples``) with windows of ``max_length_eval``
    tokens; ``name`` is the model's name in the report (where it will be saved). With several validation
    sets (a mapping), each is evaluated alone (a binary one restricted to its labels) and every metric is
    the worst over the sets (``accuracy`` their minimum, ``ece`` their maximum), so the best weights are
    those that sacrifice no source; the per-set numbers are logged as ``<set>/<metric>``.

    Rows with a ``label_mask`` (``Examples.label_mask``) are trained on the labels they allow only.

    The labels are ``config.labels``, else the training examples'. With an out-of-scope label or
    ``config.multi_label``, the final weights' thresholds are calibrated on ``val`` (all its sets together)
    and stored in the head (``FinetuneResult.loaded.head``)."""
    if base.tokenizer is None:
        raise ValueError(f"{base.path}: the base model has no tokenizer; it cannot read text")
    positions = base.config.max_position_embeddings
    if config.max_length > positions:  # else an IndexError mid-training
        if config.max_length != FinetuneConfig.__dataclass_fields__["max_length"].default:
            raise ConfigError(
                f"train.max_length={config.max_length} is more than the {positions} positions of the base model "
                f"{base.path}; give --max-length {positions} or less"
            )
        config = config.replace(max_length=positions)  # the default, cut to a small base's positions
    started = time.perf_counter()
    config = _resolve_labels(config, train)
    config, method_reason = _resolve_method(config, train)
    torch.manual_seed(config.seed)
    model, head = classifier_on(base, config.labels, pooling=config.pooling, dropout=config.dropout)
    head = dataclasses.replace(
        head, multi_label=config.multi_label, oos_label=config.oos_label, pair="aspect" if train.aspects else ""
    )
    if config.multi_label:
        _prior_bias(model, train.labels, len(config.labels))
    lora = _add_lora(model, config) if config.lora else None
    texts, labels = train.texts, train.labels
    if config.augment and (train.label_mask is not None or config.multi_label):
        raise ConfigError("train.augment does not support multi-label examples or ones with a label_mask")
    if config.augment and train.aspects is not None:
        raise ConfigError("train.augment does not support (text, aspect) pairs")
    if config.augment:
        texts, labels = _augment(texts, labels, config)
    tokenizer = base.tokenizer
    if train.aspects is not None:  # pairs: the predictor's own encoding, one window per text (its start)
        plan = SentimentTask(tokenizer, head.labels, prefix=head.text_prefix, max_length=config.max_length, overlap=0)
        plan = plan.encode(texts, train.aspects)
        starts = np.cumsum([0, *plan.windows[:-1]])
        ids = [plan.sequences[i] for i in starts]
    else:
        ids = tokenizer.encode_batch([head.text_prefix + t for t in texts], max_length=config.max_length)
    if config.method == "contrastive":
        result = _train_contrastive(model, ids, labels, config, pad_id=tokenizer.pad_id)
    else:
        result = _train_classifier(model, ids, labels, train, val, base, head, config, started, max_length_eval)
    return _finish(model, lora, base, head, val, config, result, started, method_reason, max_length_eval, name)


def _train_classifier(
    model: nn.Module,
    ids: list[list[int]],
    labels: list,
    train: Examples,
    val: Validation | None,
    base: LoadedModel,
    head: HeadConfig,
    config: FinetuneConfig,
    started: float,
    max_length_eval: int,
) -> TrainResult:
    """The classifier method: the head and the encoder trained together by (class-weighted) cross-entropy."""
    tokenizer = base.tokenizer
    if config.probe_head and not config.multi_label and train.label_mask is None:
        embeddings = embed_ids(model, ids, pad_id=tokenizer.pad_id, bf16=config.bf16)
        fit_head(model, embeddings, labels, len(config.labels))
        model.train()
    weights = class_weight_tensor(labels, len(config.labels), config.class_weights, multi_label=config.multi_label)
    batches = BucketedBatches(
        ids,
        labels,
        batch_size=config.batch_size,
        pad_id=tokenizer.pad_id,
        seed=config.seed,
        class_weights=weights,
        label_mask=train.label_mask,
        num_labels=len(config.labels) if config.multi_label else None,
    )
    evaluate = None
    if val is not None:
        evaluate = _timed_evaluate(base, head, val, config, started, max_length=max_length_eval)
    # The config is the Trainer's as it is; only what the data decides is filled in.
    spent = time.perf_counter() - started
    run = config.replace(
        steps_per_epoch=config.steps_per_epoch or max(1, len(batches) // config.grad_accum),
        monitor=config.monitor if val is not None else None,
        patience=config.patience if val is not None else None,
        time_budget_s=None if config.time_budget_s is None else max(0.0, config.time_budget_s - spent),
    )
    return Trainer(model, run, evaluate=evaluate).fit(batches)


def _train_contrastive(
    model: nn.Module, ids: list[list[int]], labels: list, config: FinetuneConfig, *, pad_id: int
) -> TrainResult:
    """The contrastive method (``training.fewshot``): the encoder on pairs, then the head by logistic regression."""
    result = train_contrastive(
        model,
        ids,
        labels,
        config,
        pad_id=pad_id,
        batch_size=config.batch_size,
        pairs_per_example=config.pairs_per_example,
        loss=config.contrastive_loss,
    )
    embeddings = embed_ids(model, ids, pad_id=pad_id, bf16=config.bf16)
    result.history.append({"step": result.steps, **fit_head(model, embeddings, labels, len(config.labels))})
    return result


def _resolve_method(config: FinetuneConfig, train: Examples) -> tuple[FinetuneConfig, str]:
    """The config with ``auto`` resolved, and why that method runs."""
    masked = train.label_mask is not None
    if config.method == "contrastive" and (config.multi_label or masked):
        raise ConfigError("train.method='contrastive' needs one label per text: no multi_label, no label masks")
    if config.method != "auto":
        return config, f"method {config.method} as given"
    method, reason = choose_method(train.labels, multi_label=config.multi_label, label_mask=masked)
    return config.replace(method=method), f"auto: {reason}"


def _augment(texts: list[str], labels: list, config: FinetuneConfig) -> tuple[list[str], list]:
    if config.augmenter == "paraphrase":
        from megasense.training.paraphrase import ParaphraseSettings, paraphrase_dataset

        # One answer per copy wanted: generation is the cost (about 20 min for 1,000 texts on a CPU core).
        settings = ParaphraseSettings(copies=config.augment_copies, samples=config.augment_copies, seed=config.seed)
        return paraphrase_dataset(texts, labels, settings=settings)
    return augment_dataset(texts, labels, seed=config.seed, settings=AugmentSettings(copies=config.augment_copies))


def _finish(
    model: nn.Module,
    lora: LoRASettings | None,
    base: LoadedModel,
    head: HeadConfig,
    val: Validation | None,
    config: FinetuneConfig,
    result: TrainResult,
    started: float,
    method_reason: str,
    max_length_eval: int,
    name: str | None,
) -> FinetuneResult:
    """The trained model as a ``FinetuneResult``: LoRA merged, thresholds calibrated and the validation report."""
    tokenizer = base.tokenizer
    adapter = trainable_state_dict(model) if lora is not None else {}
    model.eval()
    # The released weights (LoRA folded in), and the final report measured on exactly those.
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
    report = None
    calibration: dict[str, Any] = {}
    if val is not None:
        loaded.head, calibration = _calibrate(loaded, val, config.precision, max_length=max_length_eval)
    if val is not None:
        report = _validation_report(loaded, val, config.precision, max_length=max_length_eval, name=name)
        if calibration:
            report["calibration"] = calibration
    out = FinetuneResult(model=model, loaded=loaded, train=result, report=report, config=config, adapter=adapter)
    out.seconds = time.perf_counter() - started
    out.method_reason = method_reason
    return out


def _prior_bias(model: nn.Module, labels: Sequence[tuple[int, ...]], num_labels: int) -> None:
    """Start a multi-label head at each label's log prior odds (Lin et al. 2017), so training spends no steps
    learning that most labels are rare and the loss starts at the prior's instead of log 2 per label."""
    positives = np.zeros(num_labels)
    for row in labels:
        positives[list(row)] += 1
    prior = np.clip(positives / max(len(labels), 1), 1e-4, 1 - 1e-4)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.as_tensor(np.log(prior / (1 - prior)), dtype=model.classifier.bias.dtype))


def _resolve_labels(config: FinetuneConfig, train: Examples) -> FinetuneConfig:
    """The config with its labels (the training data's unless given) and out-of-scope label decided."""
    labels = tuple(config.labels) if config.labels is not None else tuple(train.label_names)
    if config.labels is not None and tuple(train.label_names) != labels:
        raise ConfigError(
            f"train.labels {list(labels)} differ from the labels the training examples index {list(train.label_names)}"
        )
    oos = config.oos_label
    if oos is None:
        oos = next((name for name in labels if name.lower() in OOS_NAMES), "") if not config.multi_label else ""
    if oos and oos not in labels:
        raise ConfigError(f"train.oos_label={oos!r} is not one of the labels {list(labels)[:20]}")
    if oos and config.multi_label:
        raise ConfigError("train.oos_label does not apply to a multi-label model")
    return config.replace(labels=labels, oos_label=oos)


def _calibrate(
    loaded: LoadedModel, val: Validation, precision: str, *, max_length: int
) -> tuple[HeadConfig, dict[str, Any]]:
    """The head calibrated on the validation data (every set together): per-label thresholds for a
    multi-label model; for a single-label model the softmax temperature (``fit_temperature``) and, with an
    out-of-scope label, the threshold on the in-scope score (refusing
    ``predictors.calibration.OOS_IN_SCOPE_BUDGET`` of the in-scope validation texts)."""
    examples = val if isinstance(val, Examples) else concat_examples(list(val.values()))
    classifier = SentimentClassifier(loaded, max_length=max_length, precision=precision)
    batch = classifier.predict(examples.texts, **({} if examples.aspects is None else {"aspects": examples.aspects}))
    probs = batch.probs
    head = loaded.head
    if head.multi_label:
        gold = np.zeros(probs.shape, dtype=bool)
        for row, labels in enumerate(examples.labels):
            gold[row, list(labels)] = True
        thresholds = tune_label_thresholds(probs, gold)
        return dataclasses.replace(head, thresholds=thresholds), {"thresholds": dict(zip(head.labels, thresholds))}
    mask = None if examples.label_mask is None else np.asarray(examples.label_mask, dtype=bool)
    fitted = fit_temperature(probs, examples.labels, mask=mask)
    # the probabilities were made at the head's temperature: log p = logits / T_head + c, so the fit composes
    temperature = head.temperature * fitted
    info: dict[str, Any] = {"temperature": temperature, "ece_before": _ece(probs, examples.labels, mask)}
    head = dataclasses.replace(head, temperature=temperature)
    info["ece_after"] = _ece(_rescale(probs, fitted, mask), examples.labels, mask)
    if not head.oos_label:
        return head, {**info, "on": examples.source or "validation"}
    oos = head.labels.index(head.oos_label)
    threshold, measured = calibrate_oos_threshold(batch.in_scope_scores, probs, examples.labels, oos)
    info.update({"oos_threshold": threshold, "on": examples.source or "validation", **measured})
    return dataclasses.replace(head, oos_threshold=threshold), info


def _rescale(probs: np.ndarray, temperature: float, mask: np.ndarray | None) -> np.ndarray:
    """``probs`` as the softmax of ``log(probs) / temperature`` over each row's allowed labels."""
    z = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    if mask is not None:
        z = np.where(mask, z, -np.inf)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _ece(probs: np.ndarray, gold: Sequence[int], mask: np.ndarray | None) -> float:
    """Expected calibration error of the top label, each row over its allowed labels."""
    p = _rescale(probs, 1.0, mask)
    correct = (p.argmax(axis=1) == np.asarray(gold)).astype(float)
    return expected_calibration_error(p.max(axis=1), correct)


def _timed_evaluate(
    base: LoadedModel, head: HeadConfig, val: Validation, config: FinetuneConfig, started: float, *, max_length: int
):
    """The Trainer's ``evaluate``: the report of the live module (LoRA unmerged: its forward adds the adapters)."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        live = LoadedModel(
            model=model, config=base.config, head=head, tokenizer=base.tokenizer, path=Path(str(base.path)), metadata={}
        )
        report = _validation_report(live, val, config.precision, max_length=max_length)
        keys = (*_HIGHER_BETTER, "ece", *(k for k in ("micro_f1", "in_scope_accuracy", "oos_recall") if k in report))
        per_set = {f"{s}/{k}": r[k] for s, r in report.get("sets", {}).items() for k in ("macro_recall", "accuracy")}
        return {**{k: report[k] for k in keys}, **per_set, "elapsed_s": time.perf_counter() - started}

    return evaluate


def _validation_report(
    loaded: LoadedModel, val: Validation, precision: str, *, max_length: int, name: str | None = None
) -> dict[str, Any]:
    """One set's report; for several, the worst of each metric over the sets plus ``sets`` (name -> report)."""
    if isinstance(val, Examples):
        return evaluate_examples(loaded, val, precision=precision, max_length=max_length, name=name)
    if not val:
        raise ValueError("no validation sets given (an empty mapping)")
    sets = {
        s: evaluate_examples(loaded, ex, precision=precision, max_length=max_length, name=name) for s, ex in val.items()
    }
    worst = {k: min(r[k] for r in sets.values()) for k in _HIGHER_BETTER}
    return {
        **worst,
        "ece": max(r["ece"] for r in sets.values()),
        "n": sum(r["n"] for r in sets.values()),
        "precision": precision,
        "sets": sets,
    }


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
    meta = {"base": base_name, "finetune": result.config.to_dict(), "report": result.report, **(metadata or {})}
    save_release(
        directory,
        config=loaded.config,
        head=loaded.head,
        state_dict=require_finite(
            weights_for_saving(loaded.model), directory, f"training diverged: lower --lr (was {result.config.lr})"
        ),
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


_AUGMENTERS = {"eda": "EDA-augmented (word edits)", "paraphrase": "paraphrased (smollm2-135m-instruct)"}

_CARD_METRICS = (
    "accuracy",
    "macro_f1",
    "micro_f1",
    "weighted_f1",
    "macro_recall",
    "in_scope_accuracy",
    "oos_recall",
    "oos_precision",
    "ece",
)


_METHODS = {
    "classifier": "classifier (head and encoder trained together by cross-entropy)",
    "contrastive": "contrastive (SetFit-style: the encoder tuned on sentence pairs, then a logistic-regression head)",
}


def model_card(
    name: str,
    base: str,
    result: FinetuneResult,
    *,
    train: Examples,
    val: Examples | None,
    command: str,
    evaluate: str | None = None,
) -> str:
    """A README.md for a fine-tuned model: data, validation metrics (and the ``megasense evaluate`` command
    that prints them), the config as the run used it, and the command that made the model."""
    cfg = result.config
    labels = (
        ", ".join(cfg.labels)
        if len(cfg.labels) <= 12
        else f"{len(cfg.labels)} labels: {', '.join(cfg.labels[:8])}, ..."
    )
    kind = "Multi-label text classifier" if cfg.multi_label else "Text classifier"
    lines = [
        f"# {name}",
        "",
        f"{kind} ({labels}) fine-tuned by megasense from `{base}`"
        f"{' with LoRA (rank ' + str(cfg.lora_rank) + ')' if cfg.lora else ''}.",
        "",
        f"Method: {_METHODS.get(cfg.method, cfg.method)}"
        + (f"; {result.method_reason}." if result.method_reason else "."),
        "",
        "## Data",
        "",
        f"- training: `{train.source}`, {len(train.texts):,} texts"
        + (f" ({train.skipped_empty} empty skipped)" if train.skipped_empty else "")
        + (
            f", plus up to {cfg.augment_copies} {_AUGMENTERS.get(cfg.augmenter, cfg.augmenter)} copies per text"
            if cfg.augment
            else ""
        ),
    ]
    if val is not None:
        lines.append(f"- validation: `{val.source}`, {len(val.texts):,} texts")
    lines += ["", "## Validation metrics (best checkpoint)", ""]
    if result.report is not None:
        r = result.report
        lines += [
            "| metric | value |",
            "| --- | --- |",
            *[f"| {k} | {r[k]:.4f} |" for k in _CARD_METRICS if isinstance(r.get(k), float)],
            f"| n | {r['n']} |",
            "",
            f"Measured as `megasense evaluate` measures, at precision {r['precision']}"
            + (f"; this prints the same numbers:\n\n    {evaluate}" if evaluate else "."),
        ]
        calibration = r.get("calibration", {})
        if calibration.get("oos_threshold") is not None:
            lines += [
                "",
                f"Out-of-scope answer (`{result.loaded.head.oos_label}`): besides its own logit, when the in-scope "
                f"score (log-sum-exp of the other labels' logits) is below {calibration['oos_threshold']:.3f}, the "
                f"value that refuses {calibration['budget']:.0%} of the in-scope validation texts; these numbers "
                "are on the data the threshold was chosen on.",
            ]
        if calibration.get("temperature") is not None:
            lines += [
                "",
                f"Scores are temperature-scaled: logits divided by {calibration['temperature']:.3f} before the "
                "softmax, fitted on the validation data (Guo et al. 2017; labels unchanged). Expected calibration "
                f"error on that data: {calibration['ece_before']:.4f} before, {calibration['ece_after']:.4f} after.",
            ]
        if "thresholds" in calibration:
            lines += [
                "",
                "Per-label thresholds tuned on the validation data (best F1 per label), so these numbers are on the "
                "data the thresholds were chosen on: "
                + ", ".join(f"{k} {v:.3f}" for k, v in calibration["thresholds"].items()),
            ]
    else:
        lines.append("No validation set was given.")
    lines += card_training_lines(result, command)
    return "\n".join(lines)


def card_training_lines(result: FinetuneResult, command: str) -> list[str]:
    """A model card's "Training" (steps, speed, the config as the run used it) and "Reproduce" sections."""
    return [
        "",
        "## Training",
        "",
        f"- steps: {result.train.steps} (best at step {result.train.best_step}), "
        f"{result.train.samples_per_s:.1f} samples/s, {result.seconds:.0f} s"
        + (", stopped early" if result.train.stopped_early else ""),
        *config_and_reproduce_lines("FinetuneConfig", result.config.to_dict(), command),
    ]


def config_and_reproduce_lines(kind: str, config: dict, command: str) -> list[str]:
    """A model card's training config as JSON and its "Reproduce" section (the command that made it)."""
    return [
        f"- config (`{kind}`):",
        "",
        "```json",
        json.dumps(config, indent=2, ensure_ascii=False),
        "```",
        "",
        "## Reproduce",
        "",
        f"    {command}",
        "",
    ]


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
    aspect_col: str | None = None,
) -> FinetuneResult:
    """``megasense train``: read the tables, fine-tune ``base``, save the best model (release + card) to ``output``.

    ``command`` is what made the model (the command line as typed, or the Python call); the card and the
    release metadata record it beside the config. ``aspect_col``: a pair model on (text, aspect) rows."""
    from megasense.files.atomic import check_output_dir
    from megasense.zoo.load import load_model

    config = config or FinetuneConfig()
    check_output_dir(Path(output), overwrite=overwrite)  # fail before training, not after
    multi = config.multi_label
    columns = {"text_col": text_col, "label_col": label_col, "multi_label": multi, "aspect_col": aspect_col}
    train = read_examples(train_path, labels=config.labels, **columns)
    val = None
    if val_path:
        val = read_examples(val_path, labels=train.label_names, **columns)
    loaded = base if isinstance(base, LoadedModel) else load_model(base)
    base_name = str(base.path) if isinstance(base, LoadedModel) else str(base)
    result = finetune(loaded, train, val, config, name=str(output))
    command = command or "megasense train"
    evaluate = None
    if val is not None:
        columns = [*(["--text-col", text_col] if text_col != "text" else [])]
        columns += ["--label-col", label_col] if label_col != "label" else []
        columns += ["--aspect-col", aspect_col] if aspect_col else []
        evaluate = shlex.join(
            ["megasense", "evaluate", str(val_path), "--model", str(output), "--precision", config.precision, *columns]
        )
    card = model_card(Path(output).name, base_name, result, train=train, val=val, command=command, evaluate=evaluate)
    metadata = {"command": command, "evaluate": evaluate}
    save_finetuned(result, output, base_name=base_name, card=card, metadata=metadata, overwrite=overwrite)
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
    command: str | None = None,
    aspect_col: str | None = None,
    **options: Any,
) -> FinetuneResult:
    """Fine-tune ``base`` on a labelled table; ``options`` are FinetuneConfig fields (lora, epochs, lr, ...).

    ``command`` is what the card records as the way to reproduce the run (``megasense train`` passes the
    command line as typed); by default, this call itself.

    >>> megasense.train("train.csv", "val.csv", base="minilm-l6", output="my-model", lora=True)  # doctest: +SKIP
    """
    options.setdefault("progress", False)
    config = FinetuneConfig(**options)
    if command is None:
        given = {"base": base, "output": str(output), "text_col": text_col, "label_col": label_col}
        given |= {"overwrite": overwrite, **({"aspect_col": aspect_col} if aspect_col else {}), **options}
        arguments = [repr(str(train)), repr(str(val) if val else None), *(f"{k}={v!r}" for k, v in given.items())]
        command = f"megasense.train({', '.join(arguments)})"
    return train_from_files(
        train,
        val,
        base=base,
        output=output,
        config=config,
        text_col=text_col,
        label_col=label_col,
        overwrite=overwrite,
        command=command,
        aspect_col=aspect_col,
    )
