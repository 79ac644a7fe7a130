"""``megasense pretrain``: pretrain a GPT or BERT model from a TOML config, on one process or under torchrun."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from megasense.cli.errors import user_errors

console = Console()


def pretrain(
    config: Annotated[Path, typer.Argument(help="The run's TOML config (see configs/ for examples).")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a value: section.key=value (repeatable), e.g. --set train.lr=3e-4."),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from the latest checkpoint in checkpoint.dir (if there is one).")
    ] = False,
) -> None:
    """Pretrain a GPT (causal LM) or BERT (masked LM + sentence order) model on a tokenized corpus.

    One process (CPU with gloo, or one GPU), or torchrun with parallel.dp x parallel.tp processes (NCCL on GPUs).

    Examples:

      megasense pretrain configs/gpt-tiny-cpu.toml --set train.max_steps=300

      torchrun --nproc-per-node 8 -m megasense.cli.main pretrain configs/megatron-gpt2-345m.toml --resume
    """
    from megasense.config.pretrain import PretrainConfig
    from megasense.training.pretrain import pretrain as run

    with user_errors():
        cfg = PretrainConfig.load(config, set_ or [])
        result = run(cfg, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    losses = result.losses
    where = f"resumed from step {result.resumed_from}, " if result.resumed_from is not None else ""
    console.print(f"{where}trained to step {result.steps}", highlight=False)
    if losses:
        mfu = f", MFU {100 * result.mfu:.1f}%" if result.mfu is not None else ""
        console.print(
            f"loss {losses[0]:.4f} -> {losses[-1]:.4f}, {result.tokens_per_s:,.0f} tokens/s{mfu}", highlight=False
        )
    if result.checkpoint:
        console.print(f"checkpoint: {result.checkpoint}", highlight=False)
    if result.export_dir:
        console.print(f"exported model: {result.export_dir}", highlight=False)
