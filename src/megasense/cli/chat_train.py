"""``megasense train --task chat``: the command line's part of chat fine-tuning (``training.chat.train_chat``):
which of ``train``'s options apply, the call, and the summary printed."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from megasense.cli.train_options import LOOP_OPTIONS

err = Console(stderr=True)

CHAT_OPTIONS = (*LOOP_OPTIONS, "bf16", "seed", "checkpoint_dir")
"""``train`` options chat training takes; those not given keep chat training's own defaults (LoRA on, max_length
1024, epochs 2 or as many as --max-steps needs)."""

NOT_FOR_CHAT = (
    "text_col",
    "label_col",
    "class_weights",
    "multi_label",
    "oos_label",
    "augment",
    "augmenter",
    "method",
    "monitor",
)
"""``train`` options of classification and slot filling; given with ``--task chat`` they are refused, not ignored."""


def _given(ctx: typer.Context) -> set[str]:
    # typer ships its own click: compare the source by name, not by enum class
    return {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "") != "DEFAULT"}


def train_chat_command(
    ctx: typer.Context,
    train: Path,
    val: Path | None,
    base: str | None,
    output: Path,
    overwrite: bool,
    *,
    task: str = "chat",
) -> None:
    """``--task chat`` (conversations, JSONL) or ``--task generate`` (a table of prompt/response or text/summary pairs,
    read as one-exchange conversations): the same chat fine-tuning."""
    from megasense.cli.command_line import command_line
    from megasense.training.chat import DEFAULT_BASE, train_chat

    given = _given(ctx)
    for name in NOT_FOR_CHAT:
        if name in given:
            flag = "--" + name.replace("_", "-")
            raise typer.BadParameter(
                f"{flag} does not apply to --task {task} (the held-out loss on the responses decides the best model; "
                "--task generate finds its columns: prompt and response, or text and summary)"
            )
    if ctx.params.get("resume") and not ctx.params.get("checkpoint_dir"):
        raise typer.BadParameter("--resume needs --checkpoint-dir: where the interrupted run wrote its checkpoints")
    result = train_chat(
        train,
        val,
        base=base or DEFAULT_BASE,
        output=output,
        overwrite=overwrite,
        resume=bool(ctx.params.get("resume")),
        command=command_line(ctx),
        progress=True,
        task=task,
        **{k: ctx.params[k] for k in CHAT_OPTIONS if k in given},
    )
    data = result.data
    skipped = len(data["no_assistant_lines"])
    err.print(
        f"trained on {data['train_conversations']:,} conversations ({data['train_assistant_tokens']:,} assistant "
        f"tokens; {skipped} lines without an assistant turn skipped, {data['shortened']} shortened to "
        f"--max-length {result.config.max_length}, {len(data['too_long'])} too long)",
        highlight=False,
    )
    if result.before is not None and result.after is not None:
        err.print(
            f"held-out perplexity on assistant tokens: {result.before.perplexity:.3f} before, "
            f"{result.after.perplexity:.3f} after (best step {result.train.best_step}; {result.after.tokens:,} tokens "
            f"in {result.after.conversations} conversations)",
            highlight=False,
        )
    kind = "LoRA adapter" if result.lora is not None else "release"
    err.print(
        f"saved the chat model ({kind}) to {output} ({result.train.steps} steps, {result.seconds:.0f} s); try it: "
        f"megasense generate --model {output} 'hello'",
        highlight=False,
    )
