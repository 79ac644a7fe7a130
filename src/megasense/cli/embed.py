"""``megasense embed``: sentence embeddings for texts on the command line or in a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from megasense.cli.errors import user_errors
from megasense.cli.ray_options import EngineOpt, RayAddressOpt, check_engine, embed_on_ray, refuse_local_only
from megasense.errors import MegasenseInputError
from megasense.files.progress import progress_bar

console = Console()


def embed(
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to embed (or use --input).")] = None,
    input: Annotated[
        Path | None, typer.Option("--input", "-i", help="A CSV, TSV, JSONL, Parquet or TXT file of texts.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where to write: .npy (a matrix) or a table (adds an 'embedding' column)."),
    ] = None,
    model: Annotated[str, typer.Option(help="Embedded model name or model directory.")] = "all-minilm-l6-v2",
    text_col: Annotated[str, typer.Option(help="Column that holds the text (files only).")] = "text",
    max_length: Annotated[int, typer.Option(help="Truncate texts to this many tokens.")] = 256,
    progress: Annotated[bool, typer.Option(help="Show a progress bar for files.")] = True,
    encoding: Annotated[
        str | None,
        typer.Option(help="The file's text encoding, e.g. gbk [default: UTF-8, or what a byte-order mark says]."),
    ] = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """Turn texts into L2-normalised sentence embeddings (mean pooling over an encoder).

    Examples:

      megasense embed "The room was clean" "The staff were rude" "房间很干净"

      megasense embed -i posts.csv --text-col body -o posts.parquet

      megasense embed -i posts/ --engine ray -o posts.embedded.parquet   # a folder of parts, on Ray actors
    """
    from megasense.predictors.embedding import SentenceEmbedder
    from megasense.predictors.jobs import embed_file
    from megasense.zoo.load import load_model

    with user_errors():
        if bool(texts) == (input is not None):
            raise MegasenseInputError("give texts as arguments or a file with --input (one of the two)")
        if input is not None and output is None:
            raise MegasenseInputError("--input needs --output (a .npy matrix or a table file)")
        if check_engine(engine, ray_address):
            if input is None:
                raise MegasenseInputError("--engine ray embeds files: give --input")
            refuse_local_only(encoding=encoding)
            return embed_on_ray(
                input,
                output,
                model=model,
                text_col=text_col,
                max_length=max_length,
                address=ray_address,
                progress=progress,
            )
        embedder = SentenceEmbedder(load_model(model), max_length=max_length)
        if input is not None:
            with progress_bar("embedding", None, enabled=progress) as advance:  # total estimated as the file is read
                n = embed_file(embedder, input, output, text_col=text_col, progress=advance, encoding=encoding)
            console.print(f"wrote {n:,} embeddings of dimension {embedder.dim} to {output}")
            return
        vectors = embedder.embed(texts)
        if output is not None:
            import numpy as np

            from megasense.files.atomic import atomic_file

            with atomic_file(output) as handle:
                np.save(handle, vectors, allow_pickle=False)
            console.print(f"wrote {len(texts)} embeddings of dimension {embedder.dim} to {output}")
            return
        _print_similarities(texts, vectors, embedder.dim, model)


def _print_similarities(texts: list[str], vectors, dim: int, model: str) -> None:
    table = Table(title=f"{model}: {len(texts)} embeddings of dimension {dim}; cosine similarity")
    table.add_column("#", justify="right")
    table.add_column("text", overflow="fold", max_width=48)
    for j in range(len(texts)):
        table.add_column(str(j), justify="right")
    sims = vectors @ vectors.T
    for i, text in enumerate(texts):
        table.add_row(str(i), text, *(f"{sims[i, j]:.3f}" for j in range(len(texts))))
    console.print(table)
