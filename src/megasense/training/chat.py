"""Fine-tune a decoder on a team's conversations: OpenAI ``messages`` lines in, a chat model out, loss on the
assistant's turns only.

Reading the conversation files and encoding them as token ids with assistant-only labels is ``chat_data``'s
job (its docstring says how turns are found in any chat template and how long conversations are shortened).

Training reuses the generic ``Trainer`` (AdamW, warm-up and decay, bf16 autocast, clipping, evaluation
every ``eval_every`` steps with early stopping on the held-out loss, best weights kept), length-bucketed
batches (``finetune.BucketedBatches``), and ``TrainingCheckpoints`` for resumable runs (only the
trainable parameters and their optimizer state are written, so a LoRA checkpoint is a few MB). The
held-out loss is the mean cross-entropy per assistant token, so its exponential is the perplexity that
``evaluate_chat_perplexity`` measures; the model card shows it before and after.

With LoRA (the default) the output is an adapter on the named base (``formats.adapter``: the LoRA
matrices alone, fp16, ~9 MB for smollm2-135m at rank 16); ``load_model(DIR)`` and ``megasense generate
--model DIR`` load the base and merge it. Full fine-tuning writes a release (all weights).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from megasense.config import HeadConfig
from megasense.config.train import TrainConfig
from megasense.data.collate import pad_right
from megasense.errors import CheckpointError, ConfigError, MegasenseInputError
from megasense.formats.adapter import save_adapter
from megasense.formats.release import LoadedModel, require_finite, save_release
from megasense.models import weights_for_saving
from megasense.models.lora import LoRASettings, apply_lora, trainable_state_dict
from megasense.tokenization import Tokenizer
from megasense.training.chat_data import (
    IGNORE,
    ChatData,
    ChatDataError,
    ChatExample,
    Conversation,
    EncodedChats,
    encode_conversations,
    read_conversations,
    read_pairs,
    split_holdout,
)
from megasense.training.checkpoint import STATE, TrainingCheckpoints
from megasense.training.finetune import BucketedBatches, config_and_reproduce_lines
from megasense.training.trainer import Trainer, TrainResult

DEFAULT_BASE = "smollm2-135m-instruct"
DEFAULT_MAX_LENGTH = 1024


# ----------------------------------------------------------------------------------------------
# Perplexity on assistant tokens
# ----------------------------------------------------------------------------------------------
@dataclass
class ChatPerplexity:
    perplexity: float
    """exp(loss): the perplexity over assistant tokens (with each turn's end token)."""
    loss: float
    """Mean cross-entropy per assistant token (nats)."""
    tokens: int
    conversations: int
    skipped: int = 0
    """Conversations without an assistant token that fits ``max_length``."""

    def __float__(self) -> float:
        return self.perplexity


@torch.no_grad()
def assistant_nll(
    model: nn.Module, examples: Sequence[ChatExample], *, vocab_size: int, bf16: bool = False, token_budget: int = 2048
) -> tuple[float, int]:
    """(summed cross-entropy, token count) over the assistant tokens of ``examples``, in length-sorted batches of at
    most ``token_budget`` tokens (the (B, T, vocab) logits dominate memory)."""
    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    total, count, start = 0.0, 0, 0
    while start < len(order):
        width = len(examples[order[start]].input_ids)
        end = start + 1
        while end < len(order) and (end - start + 1) * len(examples[order[end]].input_ids) <= max(token_budget, width):
            end += 1
        rows = [examples[i] for i in order[start:end]]
        ids, _ = pad_right([r.input_ids for r in rows], 0)  # (B, T); right padding is never attended: causal
        labels, _ = pad_right([r.labels for r in rows], IGNORE)  # (B, T)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(ids.to(device)).logits  # (B, T, padded vocab)
        logits = logits[..., :vocab_size].float()  # Megatron's padding columns are no tokens
        total += float(
            F.cross_entropy(logits.flatten(0, 1), labels.to(device).flatten(), ignore_index=IGNORE, reduction="sum")
        )
        count += int((labels != IGNORE).sum())
        start = end
    return total, count


def evaluate_chat_perplexity(
    model: LoadedModel,
    conversations: Sequence[Conversation | Sequence[dict[str, Any]]],
    *,
    max_length: int | None = None,
    precision: str = "fp32",
) -> ChatPerplexity:
    """Perplexity of ``model`` on the assistant turns of ``conversations``, truncated as training truncates to
    ``max_length`` tokens (default 1024, or the model's positions when fewer).

    >>> evaluate_chat_perplexity(load_model("smollm2-135m-instruct"), read_conversations("dev.jsonl").conversations)
    ... # doctest: +SKIP
    """
    if precision not in ("fp32", "bf16"):
        raise ConfigError(f"precision={precision!r} is not one of fp32, bf16")
    if model.tokenizer is None or model.config.arch != "gpt":
        raise MegasenseInputError(f"{model.path}: perplexity on conversations needs a decoder with a tokenizer")
    limit = min(max_length or DEFAULT_MAX_LENGTH, model.config.max_position_embeddings)
    encoded = encode_conversations(model.tokenizer, conversations, max_length=limit)
    if not encoded.examples:
        raise MegasenseInputError(f"none of the {len(conversations)} conversations has an assistant token to score")
    was_training = model.model.training
    model.model.eval()
    nll, n = assistant_nll(model.model, encoded.examples, vocab_size=model.config.vocab_size, bf16=precision == "bf16")
    model.model.train(was_training)
    return ChatPerplexity(math.exp(nll / n), nll / n, n, len(encoded.examples), len(encoded.too_long))


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
@dataclass(kw_only=True, frozen=True)
class ChatTrainConfig(TrainConfig):
    """``megasense train --task chat``'s options: a ``TrainConfig`` (what the Trainer runs) with this job's defaults,
    plus batching, LoRA, the held-out split and checkpoints."""

    # This job's defaults, where they differ from TrainConfig's (see megasense.config.train).
    lr: float | None = None
    """Peak learning rate; None: 1e-3 with LoRA, 2e-5 for full fine-tuning."""

    epochs: int | None = None
    """Passes over the training data; None: 2, or as many as ``max_steps`` needs when that is given."""

    bf16: bool = True
    """bf16 autocast for training and the held-out evaluation (weights stay fp32)."""

    monitor: str | None = "heldout_loss"
    mode: str = "min"
    patience: int | None = 2
    warmup_ratio: float = 0.05
    schedule: str = "cosine"

    # This job's own fields.
    batch_size: int = 4
    """Conversations per forward pass (``grad_accum`` of them make one optimizer step)."""

    max_length: int | None = None
    """Tokens per conversation at most: longer ones lose whole turns from the start (see ``encode_conversation``).
    None: 1024, or the base's positions when it has fewer."""

    lora: bool = True
    """Train LoRA adapters on every linear layer of attention and MLP, plus the norms (the rest frozen), instead of
    all weights."""

    lora_rank: int = 16
    lora_alpha: float | None = None
    """LoRA scale numerator; None: twice the rank."""

    holdout: float = 0.1
    """Without a validation file: the fraction of the conversations held out (at most ``max_holdout``; 0: none)."""

    max_holdout: int = 200

    checkpoint_dir: str | None = None
    """Where resumable training checkpoints go (None: none)."""

    checkpoint_every: int | None = None
    """Optimizer steps between checkpoints (None: at every evaluation, else once per epoch)."""

    def __post_init__(self) -> None:
        for key in ("checkpoint_dir", "metrics_path"):  # a Path from the command line: recorded as text
            if getattr(self, key) is not None:
                object.__setattr__(self, key, str(getattr(self, key)))
        if self.lr is None:
            object.__setattr__(self, "lr", 1e-3 if self.lora else 2e-5)
        epochs_for_max_steps = self.epochs is None and self.max_steps is not None
        if self.epochs is None:
            object.__setattr__(self, "epochs", 2 if self.max_steps is None else 1)  # 1: checked below, then unset
        if self.lora_alpha is None:
            object.__setattr__(self, "lora_alpha", 2.0 * self.lora_rank)
        super().__post_init__()
        if epochs_for_max_steps:
            object.__setattr__(self, "epochs", None)  # finetune_chat sets it once it knows the steps per epoch
        for key in ("batch_size", "lora_rank", "max_holdout"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}={getattr(self, key)} must be at least 1")
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError(
                f"train.max_length={self.max_length} must be at least 8 tokens (a template alone takes ~5)"
            )
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"train.holdout={self.holdout} must be a fraction in [0, 1)")
        if not (self.lora_alpha > 0 and math.isfinite(self.lora_alpha)):
            raise ConfigError(f"train.lora_alpha={self.lora_alpha} must be a positive number")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"train.checkpoint_every={self.checkpoint_every} must be at least 1 (or None)")
        if self.monitor not in (None, "heldout_loss"):
            raise ConfigError(f"train.monitor={self.monitor!r}: chat training watches heldout_loss (or None)")


@dataclass
class ChatTrainResult:
    model: nn.Module
    """The trained module (LoRA unmerged), on the best weights."""
    config: ChatTrainConfig
    train: TrainResult
    before: ChatPerplexity | None
    """Held-out perplexity of the base, at the config's precision."""
    after: ChatPerplexity | None
    """Held-out perplexity at the best step (the weights kept)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Counts: conversations trained and held out, lines skipped (and which), conversations shortened."""
    lora: LoRASettings | None = None
    resumed_from: int | None = None
    seconds: float = 0.0


class _Trainable(nn.Module):
    """The parameters training changes, under their model names with ``.`` as ``__``: what a checkpoint holds (the
    optimizer holds exactly these, so a LoRA checkpoint does not carry the frozen base)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        named = {n.replace(".", "__"): p for n, p in model.named_parameters() if p.requires_grad}
        self.params = nn.ParameterDict(named)


def finetune_chat(
    base: LoadedModel,
    train: Sequence[Conversation],
    heldout: Sequence[Conversation],
    config: ChatTrainConfig,
    *,
    resume: bool = False,
) -> ChatTrainResult:
    """Train ``base`` (a decoder with a chat template) on ``train``; with ``heldout``, evaluate the held-out loss every
    ``eval_every`` steps (or each epoch), stop early and keep the best weights. ``base.model`` is changed in place.

    With ``config.checkpoint_dir`` a checkpoint is written at each evaluation (or every ``checkpoint_every`` steps);
    ``resume`` continues from the latest one: same weights, optimizer, schedule, data position and random state.
    Early stopping's memory (the best weights so far) starts afresh on resume."""
    started = time.perf_counter()
    tokenizer = _chat_tokenizer(base)
    config = _resolve_length(base, config)
    torch.manual_seed(config.seed)
    encoded = encode_conversations(tokenizer, train, max_length=config.max_length)
    held = encode_conversations(tokenizer, heldout, max_length=config.max_length)
    if not encoded.examples:
        raise ChatDataError(f"no training conversation has an assistant token within max_length={config.max_length}")
    model = base.model
    model.train()
    lora = _make_trainable(model, config)
    rows = BucketedBatches(
        [e.input_ids for e in encoded.examples],
        list(range(len(encoded.examples))),
        batch_size=config.batch_size,
        pad_id=tokenizer.pad_id,
        seed=config.seed,
    )
    steps_per_epoch = math.ceil(len(rows) / config.grad_accum)  # the Trainer steps on a last partial accumulation
    has_heldout = bool(held.examples)
    run = config.replace(
        epochs=config.epochs or math.ceil(config.max_steps / steps_per_epoch),
        steps_per_epoch=steps_per_epoch,
        monitor=config.monitor if has_heldout else None,
        patience=config.patience if has_heldout else None,
    )
    evaluate = _heldout_evaluator(held.examples, base.config.vocab_size, config.bf16) if has_heldout else None
    checkpoints = _checkpoints(config, resume)
    before = _saved_before(checkpoints) if resume else None
    if before is None and has_heldout:
        model.eval()
        before = _perplexity(
            *assistant_nll(model, held.examples, vocab_size=base.config.vocab_size, bf16=config.bf16), held
        )
        model.train()
    trainer = Trainer(model, run, evaluate=evaluate)
    trainable = _Trainable(model)
    fingerprint = {"conversations": len(encoded.examples), "batch_size": config.batch_size, "seed": config.seed}
    resumed_from = _resume(checkpoints, trainer, trainable, fingerprint) if resume else None
    every = config.checkpoint_every or config.eval_every or steps_per_epoch

    def on_step(trainer: Trainer, record: dict[str, Any]) -> None:
        if checkpoints is not None and trainer.step % every == 0:
            state = {
                "trainer": trainer.state_dict(),
                "data": fingerprint,
                "before": None if before is None else asdict(before),
            }
            checkpoints.save(trainer.step, trainable, trainer.optimizer, state)

    trainer.on_step = on_step
    batches = _batches(rows, [e.labels for e in encoded.examples], trainer.step, steps_per_epoch, config.grad_accum)
    result = trainer.fit(batches) if trainer.step < run.total_steps else TrainResult(trainer.step, None, None, False)
    after = None
    if has_heldout and result.best_metric is not None:
        after = _perplexity(result.best_metric * held.assistant_tokens, held.assistant_tokens, held)
    data = {
        "train_conversations": len(encoded.examples),
        "heldout_conversations": len(held.examples),
        "train_assistant_tokens": encoded.assistant_tokens,
        "heldout_assistant_tokens": held.assistant_tokens,
        "shortened": encoded.shortened + held.shortened,
        "too_long": encoded.too_long + held.too_long,
    }
    out = ChatTrainResult(
        model=model.eval(), config=run, train=result, before=before, after=after, data=data, lora=lora
    )
    out.resumed_from = resumed_from
    out.seconds = time.perf_counter() - started
    return out


def _make_trainable(model: nn.Module, config: ChatTrainConfig) -> LoRASettings | None:
    """LoRA on every linear layer of attention and MLP, plus the norms; or every weight. The LoRA settings, if any."""
    if not config.lora:
        for param in model.parameters():
            param.requires_grad_(True)
        return None
    lora = LoRASettings(rank=config.lora_rank, alpha=config.lora_alpha)
    # the norms train too (a few thousand values, as classification's LoRA does); this also keeps the Trainer's
    # no-weight-decay parameter group non-empty, which loading a checkpoint's optimizer state needs
    apply_lora(model, lora, train_also=("*layernorm.*",))
    return lora


def _batches(rows: BucketedBatches, labels: list[list[int]], step: int, steps_per_epoch: int, grad_accum: int):
    """The Trainer's batch source: ``rows``' padded ids with their (B, T) labels; started at optimizer step ``step``
    (a resumed run), pass k is epoch ``step // steps_per_epoch + k`` and the batches trained on already are skipped."""
    first_epoch, done = divmod(step, steps_per_epoch)

    def batches(k: int):
        for batch in itertools.islice(rows(first_epoch + k), done * grad_accum if k == 0 else 0, None):
            picked = batch.pop("labels").tolist()
            batch["labels"], _ = pad_right([labels[i] for i in picked], IGNORE)  # (B, T)
            # right padding needs no attention mask in a causal model (no real token sees a later pad), and
            # without one SDPA takes its fused causal path
            batch.pop("attention_mask")
            yield batch

    return batches


def _resume(checkpoints: TrainingCheckpoints, trainer: Trainer, trainable: nn.Module, fingerprint: dict) -> int:
    """Load the latest checkpoint into the trainer (after it was built: its seeding must not undo the restored
    random state); the step it resumes from."""
    state = checkpoints.load(trainable, trainer.optimizer)
    if state.get("data") != fingerprint:
        raise CheckpointError(
            checkpoints.latest(),
            f"was written for other data or batching ({state.get('data')}); this run has {fingerprint}",
        )
    trainer.load_state_dict(state["trainer"])
    return trainer.step


def _chat_tokenizer(base: LoadedModel) -> Tokenizer:
    if base.config.arch != "gpt":
        raise MegasenseInputError(
            f"{base.path}: chat fine-tuning needs a decoder (arch gpt), not arch {base.config.arch}"
        )
    if base.tokenizer is None or not base.tokenizer.chat_template:
        raise MegasenseInputError(
            f"{base.path}: the base has no chat template to render conversations with; use an instruct model such as "
            f"{DEFAULT_BASE}"
        )
    return base.tokenizer


def _resolve_length(base: LoadedModel, config: ChatTrainConfig) -> ChatTrainConfig:
    limit = base.config.max_position_embeddings
    if config.max_length is None:
        return config.replace(max_length=min(DEFAULT_MAX_LENGTH, limit))
    if config.max_length > limit:
        raise ConfigError(f"train.max_length={config.max_length} exceeds the base's {limit} positions")
    return config


def _heldout_evaluator(examples: list[ChatExample], vocab_size: int, bf16: bool):
    def evaluate(model: nn.Module) -> dict[str, float]:
        nll, n = assistant_nll(model, examples, vocab_size=vocab_size, bf16=bf16)
        return {"heldout_loss": nll / n, "heldout_perplexity": math.exp(nll / n)}

    return evaluate


def _perplexity(nll: float, n: int, encoded: EncodedChats) -> ChatPerplexity:
    return ChatPerplexity(math.exp(nll / n), nll / n, n, len(encoded.examples), len(encoded.too_long))


def _checkpoints(config: ChatTrainConfig, resume: bool) -> TrainingCheckpoints | None:
    if config.checkpoint_dir is None:
        if resume:
            raise ConfigError("resume needs checkpoint_dir (--checkpoint-dir): where the run's checkpoints are")
        return None
    checkpoints = TrainingCheckpoints(config.checkpoint_dir)
    latest = checkpoints.latest()
    if resume and latest is None:
        raise CheckpointError(config.checkpoint_dir, "holds no training checkpoint to resume from")
    if latest is not None and not resume:
        raise CheckpointError(
            config.checkpoint_dir,
            f"already holds checkpoints (latest {latest.name}); pass --resume to continue that run, or choose another "
            "checkpoint directory",
        )
    return checkpoints


def _saved_before(checkpoints: TrainingCheckpoints | None) -> ChatPerplexity | None:
    """The base's held-out perplexity that the interrupted run measured (in its checkpoint's state)."""
    latest = checkpoints.latest() if checkpoints is not None else None
    if latest is None:
        return None
    saved = json.loads((latest / STATE).read_text(encoding="utf-8")).get("before")
    return ChatPerplexity(**saved) if saved else None


# ----------------------------------------------------------------------------------------------
# Files in, model directory out
# ----------------------------------------------------------------------------------------------
def train_chat(
    data: str | Path,
    val: str | Path | None = None,
    *,
    base: str | LoadedModel = DEFAULT_BASE,
    output: str | Path,
    overwrite: bool = False,
    resume: bool = False,
    command: str | None = None,
    task: str = "chat",
    **options: Any,
) -> ChatTrainResult:
    """``megasense train DIALOGS.jsonl --task chat``: fine-tune ``base`` on the conversations in ``data`` (held-out
    conversations from ``val``, else a ``holdout`` fraction of ``data``) and save the best model to ``output``: an
    adapter on ``base`` with LoRA, a release without. ``options`` are ``ChatTrainConfig`` fields (``lora``,
    ``lora_rank``, ``epochs``, ``max_steps``, ``lr``, ``batch_size``, ``max_length``, ``eval_every``, ...).
    ``task="generate"`` (``megasense train PAIRS.csv --task generate``): ``data`` and ``val`` are tables of
    prompt/response or text/summary pairs (``chat_data.read_pairs``), each one exchange, loss on the response.

    >>> train_chat("dialogs.jsonl", base="smollm2-135m", output="my-chat", max_steps=200)  # doctest: +SKIP
    """
    from megasense.files.atomic import check_output_dir
    from megasense.zoo.load import load_model

    options.setdefault("progress", False)
    config = ChatTrainConfig(**options)
    base_name = _base_name(base)
    if command is None:
        given = {"base": base_name, "output": str(output), "overwrite": overwrite, "resume": resume, **options}
        arguments = [repr(str(data)), repr(str(val) if val else None), *(f"{k}={v!r}" for k, v in given.items())]
        command = f"megasense.training.chat.train_chat({', '.join(arguments)})"
    check_output_dir(Path(output), overwrite=overwrite)  # fail before training, not after
    # --task generate: a table of prompt/response (or text/summary) pairs, each read as a one-exchange conversation
    read = read_pairs if task == "generate" else read_conversations
    train_data = read(data)
    val_data = read(val) if val else None
    if val_data is not None:
        train, heldout = train_data.conversations, val_data.conversations
    else:
        train, heldout = split_holdout(train_data.conversations, config)
    loaded = base if isinstance(base, LoadedModel) else load_model(base)
    result = finetune_chat(loaded, train, heldout, config, resume=resume)
    result.data |= {
        "no_assistant_lines": train_data.no_assistant,
        "val_no_assistant_lines": val_data.no_assistant if val_data else [],
    }
    card = chat_card(Path(output).name, base_name, result, data=train_data, val=val_data, command=command)
    metadata = {
        "task": task,
        "command": command,
        "train": result.config.to_dict(),
        "perplexity_before": None if result.before is None else asdict(result.before),
        "perplexity_after": None if result.after is None else asdict(result.after),
        "data": {k: v for k, v in result.data.items() if not k.endswith("lines") and k != "too_long"},
    }
    save_chat_model(result, loaded, output, base_name=base_name, card=card, metadata=metadata, overwrite=overwrite)
    return result


def _base_name(base: str | LoadedModel) -> str:
    """What the adapter records as its base: an embedded name as typed, a directory as an absolute path."""
    if isinstance(base, LoadedModel):
        return str(Path(base.path).resolve())
    path = Path(base).expanduser()
    return str(path.resolve()) if path.exists() else base


def save_chat_model(
    result: ChatTrainResult,
    base: LoadedModel,
    output: str | Path,
    *,
    base_name: str,
    card: str,
    metadata: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """LoRA: an adapter directory (the LoRA matrices in fp16, ``adapter.json`` naming ``base_name``, the card);
    full fine-tuning: a release directory (all weights). Either way written atomically."""
    output = Path(output)
    hint = f"training diverged: lower --lr (was {result.config.lr})"
    if result.lora is not None:
        tensors = require_finite(trainable_state_dict(result.model), output, hint)
        head = HeadConfig(task="causal_lm")
        save_adapter(
            output,
            tensors=tensors,
            base=base_name,
            head=head,
            lora=result.lora,
            card=card,
            metadata=metadata,
            overwrite=overwrite,
        )
    else:
        state = require_finite(weights_for_saving(result.model), output, hint)
        config = base.config.replace(name=output.name)
        save_release(
            output,
            config=config,
            head=base.head,
            state_dict=state,
            tokenizer=base.tokenizer,
            card=card,
            metadata=metadata,
            overwrite=overwrite,
        )
    return output


def chat_card(
    name: str, base: str, result: ChatTrainResult, *, data: ChatData, val: ChatData | None, command: str
) -> str:
    """A README.md for a chat model: data, held-out perplexity before and after, the settings and the command."""
    cfg, counts = result.config, result.data
    how = (
        f"LoRA (rank {cfg.lora_rank}, alpha {cfg.lora_alpha:g}, on every linear layer of attention and MLP; norms "
        f"trained too); stored as "
        f"an adapter on `{base}`, which `load_model` and `megasense generate --model {name}` load and merge"
        if result.lora is not None
        else "full fine-tuning (all weights), stored as a release"
    )
    skipped = data.no_assistant
    lines = [
        f"# {name}",
        "",
        f"Chat model fine-tuned by megasense from `{base}` with {how}. Loss on assistant turns only (each with its "
        "end-of-turn token, so the model learns to stop).",
        "",
        "## Data",
        "",
        f"- training: `{data.source}`, {counts['train_conversations']:,} conversations, "
        f"{counts['train_assistant_tokens']:,} assistant tokens"
        + (f"; {len(skipped)} lines without an assistant turn skipped (lines {_lines(skipped)})" if skipped else ""),
        f"- held out: {counts['heldout_conversations']:,} conversations, "
        f"{counts['heldout_assistant_tokens']:,} assistant tokens, "
        + (f"from `{val.source}`" if val is not None else f"a seeded {cfg.holdout:.0%} of the training file"),
        f"- max_length {cfg.max_length} tokens: {counts['shortened']:,} conversations lost turns from the start (or "
        f"their end) to fit; {len(counts['too_long'])} skipped as too long even so",
        "",
        "## Held-out perplexity on assistant tokens",
        "",
    ]
    if result.before is not None and result.after is not None:
        precision = "bf16 autocast" if cfg.bf16 else "fp32"
        lines += [
            "| model | perplexity | loss (nats/token) |",
            "| --- | --- | --- |",
            f"| `{base}` (before) | {result.before.perplexity:.3f} | {result.before.loss:.4f} |",
            f"| {name} (after, step {result.train.best_step}) | {result.after.perplexity:.3f} "
            f"| {result.after.loss:.4f} |",
            "",
            f"Over {result.after.tokens:,} assistant tokens of {result.after.conversations} held-out conversations, at "
            f"{precision}; `megasense.training.chat.evaluate_chat_perplexity(load_model(...), conversations, "
            f'max_length={cfg.max_length}, precision="{"bf16" if cfg.bf16 else "fp32"}")` measures the same.',
        ]
    else:
        lines.append("No held-out conversations: nothing was measured.")
    lines += [
        "",
        "## Training",
        "",
        f"- steps: {result.train.steps} (best at step {result.train.best_step}), {result.seconds:.0f} s"
        + (", stopped early" if result.train.stopped_early else "")
        + (f", resumed from step {result.resumed_from}" if result.resumed_from else ""),
        *config_and_reproduce_lines("ChatTrainConfig", cfg.to_dict(), command),
    ]
    return "\n".join(lines)


def _lines(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:10]))
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")
