"""``megasense predict``, ``evaluate`` and ``train``: text classification (sentiment, intents, emotions) on
files, against gold labels, and fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from megasense.cli.errors import user_errors
from megasense.cli.privacy_options import RedactNamesOpt, RedactOpt, redactor_from
from megasense.cli.ray_options import EngineOpt, RayAddressOpt, check_engine, predict_on_ray, refuse_local_only
from megasense.cli.train_options import LOOP_OPTIONS
from megasense.files.progress import progress_bar

console = Console()
err = Console(stderr=True)
PREVIEW = 200
"""Rows printed when predict has no --output."""

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="default (sentiment, routed by script), sentiment-en, sentiment-multilingual, intent-en, emotion-en, "
        "or a model directory.",
    ),
]
TextCol = Annotated[str, typer.Option(help="Column that holds the text.")]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        help="auto (the fastest at fp32's accuracy on this machine), fp32, bf16 (autocast), int8 (CPU, per-channel), "
        "onnx or onnx-int8 (ONNX Runtime on the CPU, per-channel int8; needs megasense[onnx])."
    ),
]
LabelsOpt = Annotated[
    str | None, typer.Option(help="Restrict predictions to these labels, e.g. negative,positive for binary data.")
]
AspectCol = Annotated[
    str | None,
    typer.Option(
        help="Column with each row's aspect (a word or phrase of the text: battery, the service); the model reads "
        "(text, aspect) as a sentence pair and answers the sentiment toward that aspect (aspect-sentiment-en)."
    ),
]
EncodingOpt = Annotated[
    str | None,
    typer.Option(
        help="The input's text encoding, e.g. gbk, gb18030, big5, latin-1 [default: UTF-8, or what a byte-order "
        "mark says]."
    ),
]


def _load_predictor(model: str, **options):
    from megasense.predictors.sentiment import load_predictor  # imported late: `megasense --help` stays fast

    return load_predictor(model, **options)


def _load_any(model: str, *, labels=None, **options):
    """(classifier, None) for a classification model or the sentiment router; (None, slot filler) for a
    token-classification (slots) model."""
    from megasense.predictors.slots import SlotFiller
    from megasense.zoo import load_model
    from megasense.zoo.shipped import ROUTER

    if model == ROUTER:
        return _load_predictor(model, labels=labels, **options), None
    loaded = load_model(model)
    if loaded.head.task == "token_classification":
        if labels:
            raise typer.BadParameter("--labels does not apply to a slot model")
        return None, SlotFiller(loaded, name=model, **options)
    return _load_predictor(loaded, labels=labels, name=model, **options), None


def predict(
    input: Annotated[Path, typer.Argument(help="CSV, TSV, JSONL, Parquet or TXT file of texts.")],
    model: ModelOpt = "default",
    text_col: TextCol = "text",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write (format from the suffix); else print.")
    ] = None,
    labels: LabelsOpt = None,
    strict: Annotated[bool, typer.Option(help="Fail on empty texts instead of skipping them.")] = False,
    max_length: Annotated[int, typer.Option(help="Tokens per window; longer texts are chunked with overlap.")] = 256,
    precision: PrecisionOpt = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    encoding: EncodingOpt = None,
    slots_model: Annotated[
        str | None,
        typer.Option(help="Also fill slots with this token-classification model (a `slots` column of JSON)."),
    ] = None,
    redact: RedactOpt = False,
    redact_names: RedactNamesOpt = None,
    aspect_col: AspectCol = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """Add label, score and prob_<label> columns to every row of a file.

    With a slot model (made by `megasense train --task slots`) as --model, or beside an intent model as
    --slots-model, a `slots` column lists each text's slots as JSON: slot, value, start, end, score.

    A model with many labels (intent-en) writes a `top` column (the five most probable labels) instead of
    one prob_<label> column per label; a multi-label model (emotion-en) writes every label above its
    threshold in `label`, comma-separated.

    With --redact the text column is redacted before the model sees it, so every column written (slots'
    values and offsets too) comes from the redacted text and no private data reaches the output (the
    placeholders can move a label: 88% of lines with private data keep theirs, benchmarks/redaction.py).

    Examples:

      megasense predict reviews.csv --text-col body -o reviews.scored.parquet

      megasense predict tickets.csv --redact --redact-names staff.txt -o tickets.scored.csv

      megasense predict posts.jsonl --model sentiment-multilingual

      megasense predict utterances.txt --model intent-en

      megasense predict requests.csv --model my-intents --slots-model my-slots

      megasense predict review_aspects.csv --model aspect-sentiment-en --aspect-col aspect

      megasense predict posts/ --engine ray --ray-address auto -o posts.scored.parquet   # a folder of parts
    """
    from megasense.files.tables import check_readable
    from megasense.predictors.jobs import predict_file
    from megasense.predictors.labels import parse_label_subset

    with user_errors():
        if check_engine(engine, ray_address):
            refuse_local_only(strict=strict, encoding=encoding, slots_model=slots_model, redact=redact)
            if aspect_col is not None:
                raise typer.BadParameter("--aspect-col runs with --engine local only")
            options = {"labels": parse_label_subset(labels), "max_length": max_length, "precision": precision}
            return predict_on_ray(
                input, output, model=model, text_col=text_col, address=ray_address, progress=progress, **options
            )
        check_readable(input)
        redactor = redactor_from(redact, redact_names)
        predictor, filler = _load_any(
            model, labels=parse_label_subset(labels), max_length=max_length, precision=precision
        )
        if slots_model is not None:
            if filler is not None:
                raise typer.BadParameter("--model is already a slot model; give --slots-model beside a classifier")
            _, filler = _load_any(slots_model, max_length=max_length, precision=precision)
            if filler is None:
                raise typer.BadParameter(f"--slots-model {slots_model!r} is a classifier, not a slot model")
        # the total is estimated from the share of the file read so far: the input is read once
        with progress_bar("predicting", None, enabled=progress) as advance:
            summary = predict_file(
                predictor,
                input,
                output,
                text_col=text_col,
                strict=strict,
                progress=advance,
                preview_rows=PREVIEW,
                encoding=encoding,
                slots=filler,
                redactor=redactor,
                aspect_col=aspect_col,
            )
        notes = _notes(summary) + (f"; {redactor.summary()}" if redactor is not None else "")
        if output is not None:
            err.print(f"wrote {summary.rows:,} rows to {output}{notes}", highlight=False)
            return
        _print_predictions(summary.frames, text_col, summary.rows)
        if notes:
            err.print(notes.lstrip("; "), highlight=False)


def _notes(summary) -> str:
    parts = []
    if summary.skipped_empty:
        parts.append(f"{summary.skipped_empty:,} empty texts skipped (no label)")
    if summary.chunked:
        parts.append(f"{summary.chunked:,} long texts predicted in overlapping chunks (column 'chunks')")
    if summary.renamed:
        kept = ", ".join(f"{c!r} as 'input_{c}'" for c in summary.renamed)
        parts.append(f"the input's own columns kept: {kept}")
    return "".join(f"; {p}" for p in parts)


def _print_predictions(frames, text_col: str, total: int) -> None:
    import pandas as pd

    frame = pd.concat(frames, ignore_index=True)
    table = Table(show_lines=False)
    probs = [c for c in frame.columns if c.startswith("prob_") or c == "top"]
    columns = [c for c in (text_col, "label", "score", *probs, "chunks", "slots") if c in frame.columns]
    for c in columns:
        table.add_column(c, overflow="fold", max_width=60 if c == text_col else None)
    for _, row in frame.iterrows():
        table.add_row(*(_fmt(row[c]) for c in columns))
    console.print(table)
    if total > len(frame):
        console.print(f"... {total - len(frame):,} more rows; use --output to write them all")


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.3f}"
    return str(value)


def evaluate(
    input: Annotated[Path, typer.Argument(help="A labelled CSV, TSV, JSONL or Parquet file.")],
    label_col: Annotated[str, typer.Option(help="Column with the gold labels.")] = "label",
    text_col: TextCol = "text",
    model: ModelOpt = "default",
    labels: LabelsOpt = None,
    report: Annotated[Path | None, typer.Option(help="Write the full report as JSON here.")] = None,
    baseline: Annotated[bool, typer.Option(help="Report VADER beside the model for English data.")] = True,
    strict: Annotated[bool, typer.Option(help="Fail on empty texts instead of skipping them.")] = False,
    precision: PrecisionOpt = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    encoding: EncodingOpt = None,
    aspect_col: AspectCol = None,
) -> None:
    """Measure a model on labelled data: accuracy, F1, macro recall, per class, confusion matrix, calibration.

    A model with an out-of-scope label (intent-en: oos) also reports in-scope accuracy and out-of-scope
    recall and precision; a multi-label model (emotion-en) reads comma-separated gold labels and reports
    micro and macro F1 per label.

    Examples:

      megasense evaluate tweets.csv --label-col label --report report.json

      megasense evaluate clinc150/val.csv --model intent-en --label-col intent

      megasense evaluate absa.csv --model aspect-sentiment-en --aspect-col aspect --label-col label
    """
    from megasense.files.atomic import atomic_file
    from megasense.files.tables import check_readable
    from megasense.predictors.jobs import evaluate_file
    from megasense.predictors.labels import parse_label_subset

    with user_errors():
        check_readable(input)
        predictor, filler = _load_any(model, precision=precision)
        if filler is not None:  # a slot model: --label-col names the column of per-character tags
            from megasense.predictors.jobs import evaluate_slots_file

            tags_col = "slots" if label_col == "label" else label_col
            with progress_bar("evaluating", None, enabled=progress) as advance:
                result = evaluate_slots_file(filler, input, tags_col=tags_col, text_col=text_col, progress=advance)
            print_slot_report(result)
            if report is not None:
                with atomic_file(report, mode="w") as handle:
                    json.dump(result, handle, indent=2, ensure_ascii=False)
            return
        with progress_bar("evaluating", None, enabled=progress) as advance:
            result = evaluate_file(
                predictor,
                input,
                label_col=label_col,
                text_col=text_col,
                labels=parse_label_subset(labels),
                baseline=baseline,
                strict=strict,
                progress=advance,
                encoding=encoding,
                aspect_col=aspect_col,
            )
        print_report(result)
        if report is not None:
            with atomic_file(report, mode="w") as handle:
                json.dump(result, handle, indent=2, ensure_ascii=False)
            err.print(f"wrote the report to {report}", highlight=False)


SLOT_OPTIONS = (*LOOP_OPTIONS, "monitor", "bf16", "seed")
"""``train`` options that slot training takes; those left at their default keep slot training's own defaults."""


def _train_slots(ctx: typer.Context, train, val, base, output, text_col, label_col, overwrite) -> None:
    from megasense.cli.command_line import command_line
    from megasense.training.slots import train_slots

    # typer ships its own click: compare the source by name, not by enum class
    given = {k: ctx.params[k] for k in SLOT_OPTIONS if getattr(ctx.get_parameter_source(k), "name", "") != "DEFAULT"}
    result = train_slots(
        train,
        val,
        base=base,
        output=output,
        text_col=text_col,
        tags_col="slots" if label_col == "label" else label_col,
        overwrite=overwrite,
        command=command_line(ctx),
        progress=True,
        **given,
    )
    if result.report is not None:
        print_slot_report({**result.report, "model": str(output), "source": str(val)})
    err.print(f"saved the slot model to {output} ({result.train.steps} steps, {result.seconds:.0f} s)", highlight=False)


def print_slot_report(result: dict) -> None:
    console.print(
        f"[bold]{result['model']}[/] on {result['source']}: n={result['n']:,} texts, {result['slots']:,} slots  "
        f"slot F1 {result['slot_f1']:.4f}  precision {result['slot_precision']:.4f}  recall "
        f"{result['slot_recall']:.4f}  all slots of a text right {result['exact_match']:.4f}",
        highlight=False,
    )
    table = Table(title="per slot")
    for c in ("slot", "precision", "recall", "f1", "support"):
        table.add_column(c, justify="left" if c == "slot" else "right")
    for name, m in sorted(result["per_slot"].items(), key=lambda kv: -kv[1]["support"])[:MAX_CLASS_ROWS]:
        table.add_row(name, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1-score']:.4f}", str(m["support"]))
    console.print(table)


MAX_CLASS_ROWS = 15
"""Per-class rows printed; a report with more classes prints the weakest (the JSON report has them all)."""


def print_report(result: dict) -> None:
    micro = f"micro F1 {result['micro_f1']:.4f}  " if "micro_f1" in result else ""
    console.print(
        f"[bold]{result['model']}[/] on {result['data']}: n={result['n']:,}  accuracy {result['accuracy']:.4f}  "
        f"macro F1 {result['macro_f1']:.4f}  {micro}weighted F1 {result['weighted_f1']:.4f}  "
        f"macro recall {result['macro_recall']:.4f}  ECE {result.get('ece', float('nan')):.4f}",
        highlight=False,
    )
    if "in_scope_accuracy" in result:
        console.print(
            f"out of scope ({result['oos_label']}): in-scope accuracy {result['in_scope_accuracy']:.4f} "
            f"(n={result['n_in_scope']:,})  oos recall {result['oos_recall']:.4f}  oos precision "
            f"{result['oos_precision']:.4f} (n={result['n_oos']:,})",
            highlight=False,
        )
    if result.get("note"):
        console.print(f"note: {result['note']}", highlight=False)
    if result.get("skipped_empty"):
        console.print(f"note: {result['skipped_empty']:,} empty texts skipped", highlight=False)
    per_class = result["per_class"]
    title = "per class"
    if len(per_class) > MAX_CLASS_ROWS:
        weakest = sorted(per_class, key=lambda label: (per_class[label]["f1"], label))[:MAX_CLASS_ROWS]
        per_class = {label: per_class[label] for label in weakest}
        title = f"the {MAX_CLASS_ROWS} weakest of {len(result['per_class'])} classes by F1 (--report writes all)"
    table = Table(title=title)
    for c in ("label", "precision", "recall", "f1", "support"):
        table.add_column(c, justify="left" if c == "label" else "right")
    for label, m in per_class.items():
        table.add_row(label, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", str(m["support"]))
    console.print(table)
    cm = result.get("confusion_matrix")
    if cm and len(cm["labels"]) <= MAX_CLASS_ROWS:
        matrix = Table(title="confusion matrix (rows gold, columns predicted)")
        matrix.add_column("")
        for label in cm["labels"]:
            matrix.add_column(label, justify="right")
        for label, row in zip(cm["labels"], cm["matrix"]):
            matrix.add_row(label, *map(str, row))
        console.print(matrix)
    base = result.get("baseline")
    if base and "accuracy" in base:
        console.print(
            f"baseline VADER: accuracy {base['accuracy']:.4f}  macro F1 {base['macro_f1']:.4f}  "
            f"macro recall {base['macro_recall']:.4f}",
            highlight=False,
        )
    elif base:
        console.print(f"baseline VADER unavailable: {base['unavailable']}", highlight=False)


def train(
    ctx: typer.Context,
    train: Annotated[
        Path,
        typer.Argument(
            help="Labelled training table (text and label columns); with --task chat, conversations (JSONL); with "
            "--task generate, a table of prompt/response or text/summary pairs."
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the fine-tuned model.")],
    base: Annotated[
        str | None,
        typer.Option(
            help="Model to fine-tune. classify and slots: an encoder (minilm-l6, e5-small, a checkpoint or a path; "
            "required). chat: a decoder with a chat template, smollm2-135m-instruct by default (smollm2-135m names "
            "the same instruct model), or a model directory."
        ),
    ] = None,
    val: Annotated[
        Path | None,
        typer.Option(
            help="Validation table for early stopping and the report (chat: held-out conversations; default: 10% of "
            "TRAIN, at most 200, held out)."
        ),
    ] = None,
    text_col: TextCol = "text",
    label_col: Annotated[
        str, typer.Option(help="Column with the labels (with --task slots: one tag per character; default slots).")
    ] = "label",
    aspect_col: AspectCol = None,
    task: Annotated[
        str,
        typer.Option(
            help="classify (a label per text: sentiment, intents, emotions with --multi-label), slots (a BIO/BIOES "
            "tag per character: what to act on, e.g. singer_name in 播放周杰伦的歌) or chat (a decoder fine-tuned "
            "on your conversations, loss on the assistant's turns only) or generate (a decoder fine-tuned on a table "
            "of prompt/response or text/summary pairs, loss on the response only)."
        ),
    ] = "classify",
    lora: Annotated[
        bool,
        typer.Option(
            help="Train LoRA adapters (plus head and norms) instead of all weights. chat: on unless --no-lora; "
            "LoRA on every linear layer of attention and MLP, saved as a small adapter on --base."
        ),
    ] = False,
    lora_rank: Annotated[
        int, typer.Option(help="LoRA rank with --lora (64 on every linear layer: a ~4.7 MB adapter for MiniLM).")
    ] = 16,
    epochs: Annotated[
        int, typer.Option(help="Passes over the training data (chat: 2, or as many as --max-steps needs).")
    ] = 3,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many optimizer steps (also the schedule's length).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default 5e-5, or 5e-4 with --lora).")] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per step (chat: conversations per step, default 4).")] = 32,
    max_length: Annotated[
        int,
        typer.Option(
            help="Truncate training texts to this many tokens (chat: default 1024; longer conversations lose whole "
            "turns from the start)."
        ),
    ] = 128,
    class_weights: Annotated[str, typer.Option(help="balanced, sqrt or none.")] = "balanced",
    multi_label: Annotated[
        bool,
        typer.Option(
            help="Texts may have several labels, comma-separated in the label column (emotions); thresholds per "
            "label are tuned on --val."
        ),
    ] = False,
    oos_label: Annotated[
        str | None,
        typer.Option(
            help="The label meaning out-of-scope (default: oos or out_of_scope when the data has it; '' for none); "
            "its confidence threshold is calibrated on --val."
        ),
    ] = None,
    augment: Annotated[bool, typer.Option(help="Add one augmented copy of every text (see --augmenter).")] = False,
    augmenter: Annotated[
        str,
        typer.Option(
            help="What --augment adds: eda (word edits) or paraphrase (rewrites by the embedded decoder "
            "smollm2-135m-instruct; slow on a CPU, cached by text)."
        ),
    ] = "eda",
    method: Annotated[
        str,
        typer.Option(
            help="auto (contrastive for few-shot data: at most 16 texts in the median class; else classifier), "
            "classifier (head and encoder trained by cross-entropy) or contrastive (SetFit-style sentence pairs, "
            "then a logistic-regression head)."
        ),
    ] = "auto",
    patience: Annotated[int, typer.Option(help="Evaluations without improvement before stopping.")] = 2,
    eval_every: Annotated[int | None, typer.Option(help="Evaluate every N steps (default: each epoch).")] = None,
    monitor: Annotated[str, typer.Option(help="Validation metric to keep the best model by.")] = "macro_recall",
    bf16: Annotated[bool, typer.Option(help="bf16 autocast (fast on CPUs with AMX / AVX512-BF16).")] = True,
    seed: Annotated[int, typer.Option(help="Random seed (data order, dropout, initialisation).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")] = False,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="chat: write resumable training checkpoints here (at each evaluation).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="chat: continue the interrupted run whose checkpoints are in --checkpoint-dir.")
    ] = False,
) -> None:
    """Fine-tune an encoder on your labels, or a decoder on your conversations; saves the best model with a model card.

    The labels are the label column's: sentiment in any usual spelling (negative/neutral/positive), or any
    class names (intents, topics, emotions with --multi-label). The card records this command line, the
    config, and the `megasense evaluate` command that prints its metrics.

    With --task chat, TRAIN (and --val) hold one conversation per line, JSONL or .jsonl.gz, in OpenAI's messages
    format: {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
    {"role": "assistant", "content": "..."}, ...]}. Roles are system, user and assistant; other keys are ignored;
    an assistant message with "weight": 0 is context, not learned. Each conversation is rendered with the base
    model's chat template and the loss is on the assistant turns only, each with its end-of-turn token. Lines
    without an assistant turn are skipped and counted. The card shows the held-out perplexity on assistant tokens
    before and after; the output loads with `megasense generate --model OUTPUT`.

    Examples:

      megasense train train.csv --val val.csv --base minilm-l6 --output my-model --lora --epochs 3

      megasense train clinc150/train.csv --val clinc150/val.csv --label-col intent --base minilm-l6 --output my-intents

      megasense train dialogs.jsonl --task chat --base smollm2-135m --lora --max-steps 300 --output my-chat

      megasense train pairs.csv --task generate --base smollm2-135m --lora --max-steps 300 --output my-summarizer

      megasense train absa.csv --aspect-col aspect --base minilm-l6 --lora --output my-aspects   # (text, aspect) pairs
    """
    from megasense.cli.command_line import command_line
    from megasense.training.finetune import train as fine_tune

    with user_errors():
        if task not in ("classify", "slots", "chat", "generate"):
            raise typer.BadParameter(
                f"--task {task!r}: choose classify or slots (texts), chat (conversations) or generate (pairs)"
            )
        if task in ("chat", "generate"):
            from megasense.cli.chat_train import train_chat_command

            train_chat_command(ctx, train, val, base, output, overwrite, task=task)
            return
        if base is None:
            raise typer.BadParameter(
                f"--task {task} needs --base: the encoder to fine-tune (minilm-l6, e5-small, a path)"
            )
        if checkpoint_dir is not None or resume:
            raise typer.BadParameter("--checkpoint-dir and --resume are for --task chat")
        if aspect_col is not None and task != "classify":
            raise typer.BadParameter(f"--aspect-col trains a (text, aspect) classifier; not for --task {task}")
        if task == "slots":
            _train_slots(ctx, train, val, base, output, text_col, label_col, overwrite)
            return
        result = fine_tune(
            train,
            val,
            base=base,
            output=output,
            text_col=text_col,
            label_col=label_col,
            aspect_col=aspect_col,
            overwrite=overwrite,
            command=command_line(ctx),
            progress=True,
            epochs=epochs,
            max_steps=max_steps,
            lr=lr,
            batch_size=batch_size,
            max_length=max_length,
            lora=lora,
            lora_rank=lora_rank,
            lora_alpha=2.0 * lora_rank,
            class_weights=class_weights,
            multi_label=multi_label,
            oos_label=oos_label,
            augment=augment,
            augmenter=augmenter,
            method=method,
            patience=patience,
            eval_every=eval_every,
            monitor=monitor,
            bf16=bf16,
            seed=seed,
        )
        if result.report is not None:
            print_report({**result.report, "model": str(output), "data": str(val)})
        err.print(f"saved the model to {output} ({result.train.steps} steps, {result.seconds:.0f} s)", highlight=False)
