"""Fine-tune an encoder into a slot filler: texts with character tags in, a token-classification model out.

The steps mirror ``training.finetune`` (and reuse its ``FinetuneConfig``, batching and saving): read the
tagged tables (``predictors.slots.read_slot_examples``: one tag per character, rows that do not fit
named), put a fresh token classifier on the base encoder (``formats.adapter.head_on``), optionally add
LoRA, label every sub-token from the character tags (``predictors.tagging``: all sub-tokens of a slot
get B/I/E/S by position), train with the generic ``Trainer``, evaluate on the validation set through
``predictors.slots.evaluate_slots`` (the same ``SlotFiller`` and seqeval numbers a user gets) and keep
the weights with the best slot F1. The result is a release directory (merged weights + card) and,
with LoRA, ``adapter/`` (what can ship: a few MB on a named base).

``FinetuneConfig`` fields that do not apply to tagging: ``class_weights`` and ``pooling`` are ignored;
``augment`` is refused (EDA would move characters away from their tags). ``labels`` is filled in with
the tag set from the training data (every B/I(/E/S) tag of each slot name seen, plus ``O``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from megasense.config import HeadConfig
from megasense.data.collate import pad_right
from megasense.errors import ConfigError
from megasense.formats.adapter import head_on
from megasense.formats.release import LoadedModel
from megasense.models.lora import LoRASettings, apply_lora, merge_lora, trainable_state_dict
from megasense.predictors.slots import SlotExamples, SlotFiller, evaluate_slots, read_slot_examples
from megasense.predictors.tagging import (
    IGNORE,
    SCHEMES,
    Scheme,
    TaggedTokens,
    convert_tags,
    slot_names,
    tag_scheme,
    tag_set,
    tag_tokens,
    token_labels,
    unreachable_slots,
)
from megasense.training.finetune import (
    BucketedBatches,
    FinetuneConfig,
    FinetuneResult,
    card_training_lines,
    save_finetuned,
)
from megasense.training.trainer import BatchSource, Trainer

SLOT_DEFAULTS: dict[str, Any] = {
    "monitor": "slot_f1",
    "epochs": 6,
    "lora_rank": 32,
    "lora_alpha": 64.0,
    "labels": ("O", "B-slot", "I-slot"),
}
"""``FinetuneConfig`` defaults for slot filling: those of ``benchmarks/slots.py`` (slot F1 0.892 on CAIS dev
with LoRA, 1,500 steps); ``labels`` is a placeholder until the data gives the tag set. The learning rate
defaults to 1e-3 with LoRA (5e-5 without)."""

SLOT_METRICS = ("slot_f1", "slot_precision", "slot_recall", "exact_match")


def slot_config(**options: Any) -> FinetuneConfig:
    """A ``FinetuneConfig`` with slot filling's defaults (monitor ``slot_f1``) under ``options``."""
    options.setdefault("progress", False)
    if options.get("lr") is None:
        options["lr"] = 1e-3 if options.get("lora") else 5e-5
    config = FinetuneConfig(**{**SLOT_DEFAULTS, **options})
    if config.augment:
        raise ConfigError("train.augment is not supported for slots: EDA moves characters away from their tags")
    if config.monitor is not None and config.monitor not in SLOT_METRICS:
        raise ConfigError(f"train.monitor={config.monitor!r} is not a slot metric; choose one of {list(SLOT_METRICS)}")
    return config


def slot_tags(train: SlotExamples, scheme: Scheme | None = None) -> tuple[str, ...]:
    """The model's tag set: ``O`` and every tag of ``scheme`` (default: the data's) for each slot name in ``train``."""
    scheme = scheme or train.scheme
    if scheme not in SCHEMES:
        raise ConfigError(f"scheme={scheme!r} is not one of {', '.join(SCHEMES)}")
    names = slot_names(t for row in train.tags for t in row)
    if not names:
        raise ConfigError(f"{train.source}: no slots in the training data (every tag is O)")
    return tag_set(names, scheme)


def tagged_batches(
    model_tags: tuple[str, ...], tokens: list[TaggedTokens], train: SlotExamples, config: FinetuneConfig, pad_id: int
) -> tuple[BucketedBatches, BatchSource]:
    """Length-bucketed batches (``finetune.BucketedBatches``, its labels standing for row numbers) whose
    ``labels`` are (B, T) token tags padded with -100."""
    scheme = tag_scheme(model_tags)
    index = {tag: i for i, tag in enumerate(model_tags)}
    unknown = sorted({t for row in train.tags for t in convert_tags(row, scheme)} - set(index))
    if unknown:
        raise ConfigError(f"{train.source}: tags {unknown[:10]} are not among the model's tags {list(model_tags)}")
    labels = [token_labels(tok, convert_tags(row, scheme), index, scheme) for tok, row in zip(tokens, train.tags)]
    rows = BucketedBatches(
        [t.ids for t in tokens], list(range(len(tokens))), batch_size=config.batch_size, pad_id=pad_id, seed=config.seed
    )

    def batches(epoch: int):
        for batch in rows(epoch):
            picked = batch.pop("labels").tolist()
            batch["labels"], _ = pad_right([labels[i] for i in picked], IGNORE)  # (B, T)
            yield batch

    return rows, batches


def finetune_slots(
    base: LoadedModel,
    train: SlotExamples,
    val: SlotExamples | None,
    config: FinetuneConfig,
    *,
    scheme: Scheme | None = None,
    name: str | None = None,
    probe_epochs: int = 10,
) -> FinetuneResult:
    """Train a slot filler on ``base``; with ``val``, keep the weights with the best ``config.monitor``
    (``slot_f1``), measured by ``evaluate_slots`` at ``config.precision``. ``config.labels`` is replaced by
    the tag set of ``train`` (in ``scheme``, default the data's).

    The head is first fitted alone on the frozen encoder's token states for ``probe_epochs`` passes (0: not at
    all; see ``probe_head``), then everything trainable is fine-tuned together."""
    if base.tokenizer is None:
        raise ConfigError(f"{base.path}: the base model has no tokenizer; it cannot read text")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    config = config.replace(labels=slot_tags(train, scheme))
    head = HeadConfig(
        task="token_classification", labels=config.labels, dropout=config.dropout, text_prefix=base.head.text_prefix
    )
    model = head_on(base, head)
    lora = _add_lora(model, config) if config.lora else None
    tokens = tag_tokens(base.tokenizer, train.texts, prefix=head.text_prefix, max_length=config.max_length)
    lost = sum(unreachable_slots(t, row) for t, row in zip(tokens, train.tags))
    rows, batches = tagged_batches(config.labels, tokens, train, config, base.tokenizer.pad_id)
    probe_loss = probe_head(model, batches, epochs=probe_epochs, bf16=config.bf16, seed=config.seed)
    evaluate = None
    if val is not None:
        evaluate = _evaluate_live(base, head, val, config, started)
    spent = time.perf_counter() - started
    run = config.replace(
        steps_per_epoch=config.steps_per_epoch or max(1, len(rows) // config.grad_accum),
        monitor=config.monitor if val is not None else None,
        patience=config.patience if val is not None else None,
        time_budget_s=None if config.time_budget_s is None else max(0.0, config.time_budget_s - spent),
    )
    result = Trainer(model, run, evaluate=evaluate).fit(batches)
    adapter = trainable_state_dict(model) if lora is not None else {}
    model.eval()
    merged = merge_lora(copy.deepcopy(model)) if lora is not None else model
    for param in merged.parameters():
        param.requires_grad_(False)
    metadata = {"base": str(base.path), "lora": None if lora is None else asdict(lora), "unreachable_slots": lost}
    metadata |= {"probe_epochs": probe_epochs, "probe_loss": probe_loss}
    loaded = LoadedModel(
        model=merged.eval(),
        config=base.config,
        head=head,
        tokenizer=base.tokenizer,
        path=Path(str(base.path)),
        metadata=metadata,
    )
    report = None
    if val is not None:
        report = evaluate_slots(
            SlotFiller(loaded, precision=config.precision, name=name), val.texts, val.tags, source=val.source
        )
    out = FinetuneResult(model=model, loaded=loaded, train=result, report=report, config=config, adapter=adapter)
    out.seconds = time.perf_counter() - started
    return out


def probe_head(
    model: nn.Module, batches: BatchSource, *, epochs: int, bf16: bool, seed: int, lr: float = 1e-2
) -> float | None:
    """Fit ``model.classifier`` alone on the frozen encoder's states of the scored tokens (a linear probe; LP-FT,
    Kumar et al. 2022), and return its last loss (None with ``epochs`` 0).

    Why: the states of sentence encoders such as e5 are small (std ~0.26) and nearly parallel (cosine ~0.8
    between unrelated tokens), so a fresh head at a fine-tuning learning rate (1e-3 and below) learns only the
    tag frequencies for hundreds of steps, and the encoder meanwhile gets gradients that carry no slot
    information. A probe over cached states costs one forward pass over the data (plus seconds)."""
    if epochs < 1:
        return None
    features, labels = [], []
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for batch in batches(0):
            batch = {k: v.to(device) for k, v in batch.items()}
            hidden = model.encode(batch["input_ids"], batch["attention_mask"]).last_hidden_state  # (B, T, H)
            scored = batch["labels"] != IGNORE
            features.append(hidden[scored].float())
            labels.append(batch["labels"][scored])
    x, y = torch.cat(features), torch.cat(labels)  # (N scored tokens, H), (N,)
    head = model.classifier
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    loss = torch.zeros(())
    for _ in range(epochs):
        for picked in torch.randperm(len(x), generator=generator).split(4096):
            picked = picked.to(device)
            loss = F.cross_entropy(head(x[picked]), y[picked])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return float(loss.detach())


def _add_lora(model: nn.Module, config: FinetuneConfig) -> LoRASettings:
    """LoRA on every linear layer of the transformer layers; the head (and, with ``train_norms``, the norms) trained."""
    settings = LoRASettings(rank=config.lora_rank, alpha=config.lora_alpha)
    apply_lora(model, settings, train_also=("classifier.*",) + (("*layernorm.*",) if config.train_norms else ()))
    return settings


def _evaluate_live(base: LoadedModel, head: HeadConfig, val: SlotExamples, config: FinetuneConfig, started: float):
    """The Trainer's ``evaluate``: ``evaluate_slots`` on the live module (LoRA unmerged)."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        live = LoadedModel(
            model=model, config=base.config, head=head, tokenizer=base.tokenizer, path=Path(str(base.path)), metadata={}
        )
        report = evaluate_slots(SlotFiller(live, precision=config.precision), val.texts, val.tags, source=val.source)
        return {**{k: report[k] for k in SLOT_METRICS}, "elapsed_s": time.perf_counter() - started}

    return evaluate


def slot_card(
    name: str, base: str, result: FinetuneResult, *, train: SlotExamples, val: SlotExamples | None, command: str
) -> str:
    """A README.md for a slot filler: data, validation slot F1 (overall and per slot), config, command."""
    cfg = result.config
    names = sorted({t.split("-", 1)[1] for t in cfg.labels if t != "O"})
    lines = [
        f"# {name}",
        "",
        f"Slot filler (token classification, {len(names)} slots, {len(cfg.labels)} tags) fine-tuned by megasense "
        f"from `{base}`{' with LoRA (rank ' + str(cfg.lora_rank) + ')' if cfg.lora else ''}.",
        "",
        "## Data",
        "",
        f"- training: `{train.source}`, {len(train.texts):,} texts"
        + (f" ({train.skipped_empty} empty skipped)" if train.skipped_empty else ""),
        f"- slots: {', '.join(names)}",
    ]
    if result.loaded.metadata.get("unreachable_slots"):
        lines.append(f"- slots no sub-token starts in (not learnable): {result.loaded.metadata['unreachable_slots']}")
    if val is not None:
        lines.append(f"- validation: `{val.source}`, {len(val.texts):,} texts")
    lines += ["", "## Validation (best checkpoint)", ""]
    if result.report is not None:
        r = result.report
        lines += [
            "| metric | value |",
            "| --- | --- |",
            *[f"| {k} | {r[k]:.4f} |" for k in SLOT_METRICS],
            f"| texts | {r['n']} |",
            f"| gold slots | {r['slots']} |",
            "",
            f"Span-level micro scores (seqeval, strict {r['scheme'].upper()}), at precision {r['precision']}.",
            "",
            "| slot | precision | recall | f1 | support |",
            "| --- | --- | --- | --- | --- |",
            *[
                f"| {s} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1-score']:.3f} | {v['support']} |"
                for s, v in sorted(r["per_slot"].items())
            ],
        ]
    else:
        lines.append("No validation set was given.")
    lines += card_training_lines(result, command)
    return "\n".join(lines)


def train_slots(
    train_path: str | Path,
    val_path: str | Path | None = None,
    *,
    base: str | LoadedModel = "multilingual-e5-small",
    output: str | Path,
    text_col: str = "text",
    tags_col: str = "slots",
    scheme: Scheme | None = None,
    probe_epochs: int = 10,
    overwrite: bool = False,
    command: str | None = None,
    **options: Any,
) -> FinetuneResult:
    """``megasense train --task slots``: read the tagged tables, fine-tune ``base`` into a slot filler, save the
    best model (release + card, and ``adapter/`` with LoRA) to ``output``. ``options`` are ``FinetuneConfig``
    fields (``epochs``, ``lr``, ``lora``, ``lora_rank``, ``batch_size``, ``max_steps``, ``metrics_path``, ...).

    >>> train_slots("train.csv", "dev.csv", base="e5-small", output="slots-zh", lora=True)  # doctest: +SKIP
    """
    from megasense.files.atomic import check_output_dir
    from megasense.zoo.load import load_model

    config = slot_config(**options)
    if command is None:
        given = {"base": base if isinstance(base, str) else str(base.path), "output": str(output)}
        given |= {"text_col": text_col, "tags_col": tags_col, "scheme": scheme, "probe_epochs": probe_epochs}
        given |= {"overwrite": overwrite, **options}
        arguments = [repr(str(train_path)), repr(str(val_path) if val_path else None)]
        arguments += [f"{k}={v!r}" for k, v in given.items()]
        command = f"megasense.training.slots.train_slots({', '.join(arguments)})"
    check_output_dir(Path(output), overwrite=overwrite)  # fail before training, not after
    train = read_slot_examples(train_path, text_col=text_col, tags_col=tags_col)
    val = read_slot_examples(val_path, text_col=text_col, tags_col=tags_col) if val_path else None
    loaded = base if isinstance(base, LoadedModel) else load_model(base)
    base_name = str(base.path) if isinstance(base, LoadedModel) else str(base)
    result = finetune_slots(loaded, train, val, config, scheme=scheme, name=str(output), probe_epochs=probe_epochs)
    card = slot_card(Path(output).name, base_name, result, train=train, val=val, command=command)
    metadata = {"command": command, "task": "slots"}
    metadata |= {k: result.loaded.metadata[k] for k in ("unreachable_slots", "probe_epochs", "probe_loss")}
    save_finetuned(result, output, base_name=base_name, card=card, metadata=metadata, overwrite=overwrite)
    return result
