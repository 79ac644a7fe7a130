"""``megasense explain``: which words drove a classifier's prediction, for a text or every text of a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from megasense.cli.errors import user_errors
from megasense.errors import MegasenseInputError
from megasense.files.progress import progress_bar

console = Console()
BATCH = 16
"""Texts explained per call, between progress updates."""


def explain(
    text: Annotated[str, typer.Argument(help="A text, or a CSV, TSV, JSONL, Parquet or TXT file of texts.")],
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="default (sentiment, routed by script), sentiment-en, intent-en, ... or a directory."
        ),
    ] = "default",
    method: Annotated[
        str,
        typer.Option(
            help="occlusion (each word deleted in turn; the default, the more faithful on tweets) or ig "
            "(integrated gradients on the input embeddings)."
        ),
    ] = "occlusion",
    top: Annotated[int, typer.Option(help="Words to show per text.", min=1)] = 5,
    steps: Annotated[int, typer.Option(help="Integrated gradients' interpolation steps.", min=2)] = 32,
    text_col: Annotated[str, typer.Option(help="Column that holds the text (files only).")] = "text",
    limit: Annotated[int | None, typer.Option(help="Explain only the first N texts of a file.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one object per text) for machines.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar for files.")] = True,
    encoding: Annotated[
        str | None,
        typer.Option(help="The file's text encoding, e.g. gbk [default: UTF-8, or what a byte-order mark says]."),
    ] = None,
) -> None:
    """Show which words drove the predicted label: the text with its top words highlighted (green raised the
    label's probability, red lowered it) and a table of attributions; for a file, one row per text.

    An attribution is how much the word raised the predicted label's probability: with occlusion, the drop
    when the word is deleted; with ig, its share of the probability by integrated gradients.

    Examples:

      megasense explain "The battery is great but the screen cracked after a week"

      megasense explain "房间很干净，但是前台态度太差了" --method ig --top 3

      megasense explain reviews.csv --text-col body --limit 100 --json > explanations.jsonl
    """
    from megasense.api import explain as run
    from megasense.predictors.explain import METHODS
    from megasense.predictors.sentiment import load_predictor

    with user_errors():
        if method not in METHODS:
            raise MegasenseInputError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
        texts = _texts_of_file(Path(text), text_col, limit, encoding) if _is_file(text) else [text]
        if not any(t.strip() for t in texts):
            raise MegasenseInputError("nothing to explain: the text is empty")
        predictor = load_predictor(model, precision="fp32")
        results = []
        with progress_bar("explaining", len(texts), enabled=progress and len(texts) > 1) as advance:
            for start in range(0, len(texts), BATCH):
                part = texts[start : start + BATCH]
                results += run(part, model=predictor, method=method, top=top, steps=steps)
                advance(len(part))
    if as_json:
        for result in results:
            console.out(json.dumps(result, ensure_ascii=False), highlight=False)
    elif len(results) == 1:
        _print_one(results[0], top)
    else:
        _print_rows(results, top)


def _is_file(argument: str) -> bool:
    try:
        return len(argument) < 4096 and "\n" not in argument and Path(argument).is_file()
    except OSError:  # a text too long or odd for a file name
        return False


def _texts_of_file(path: Path, column: str, limit: int | None, encoding: str | None) -> list[str]:
    from megasense.files.tables import read_chunks, require_column, text_column

    texts: list[str] = []
    for chunk in read_chunks(path, encoding=encoding):
        require_column(chunk.frame, column, path)
        texts += text_column(chunk.frame, column)
        if limit is not None and len(texts) >= limit:
            return texts[:limit]
    return texts


def highlighted(result: dict, top: int) -> Text:
    """The text with its ``top`` words on a background as strong as their attribution (green: raised the
    label, red: lowered it)."""
    words = result["words"]
    scale = max((abs(w["attribution"]) for w in words), default=0.0) or 1.0
    shown = {id(w) for w in sorted(words, key=lambda w: -abs(w["attribution"]))[:top]}
    out, last = Text(), 0
    for w in words:
        out.append(result["text"][last : w["start"]])
        if id(w) in shown and w["attribution"] != 0:
            strength = 0.35 + 0.65 * min(1.0, abs(w["attribution"]) / scale)
            level = int(90 + 120 * strength)
            colour = f"rgb(0,{level},60)" if w["attribution"] > 0 else f"rgb({level},30,30)"
            out.append(w["word"], style=f"bold white on {colour}")
        else:
            out.append(w["word"])
        last = w["end"]
    out.append(result["text"][last:])
    return out


def _print_one(result: dict, top: int) -> None:
    console.print(
        f"[bold]{result['label']}[/] ({result['score']:.3f}) by {result['method']}"
        + (" [yellow](long text: only its beginning is explained)[/]" if result["truncated"] else "")
    )
    console.print(highlighted(result, top))
    table = Table()
    for column, justify in (("word", "left"), ("attribution", "right")):
        table.add_column(column, justify=justify)
    for w in sorted(result["words"], key=lambda w: -abs(w["attribution"]))[:top]:
        table.add_row(w["word"], f"{w['attribution']:+.4f}")
    console.print(table)


def _print_rows(results: list[dict], top: int) -> None:
    table = Table(show_lines=False)
    for column in ("text", "label", "score", "top words"):
        table.add_column(column, overflow="fold", max_width=60 if column == "text" else None)
    for result in results:
        words = ", ".join(f"{w} " for w in result["top"][:top]).strip(", ") or "-"
        table.add_row(highlighted(result, top), result["label"], f"{result['score']:.3f}", words)
    console.print(table)
