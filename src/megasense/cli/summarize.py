"""``megasense summarize``: study notes, an abstract or bullet points of a text, a document, or every row of a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from megasense.cli.errors import user_errors
from megasense.cli.sentiment import EncodingOpt, TextCol
from megasense.files.progress import progress_bar

console = Console()
err = Console(stderr=True)


def summarize(
    input: Annotated[
        str,
        typer.Argument(
            help="A text, a document (.txt, .md, .html, .pdf) or a table with a text column (.csv, .tsv, .jsonl, "
            ".parquet)."
        ),
    ],
    style: Annotated[
        str,
        typer.Option(
            help="study (Markdown notes: summary, key points, key terms with definitions, review questions), brief "
            "(an abstract) or bullets (a list of key points)."
        ),
    ] = "study",
    max_words: Annotated[
        int | None,
        typer.Option(
            help="Most words (Chinese: characters) of the summary [default: study 200, brief 60, bullets 80]."
        ),
    ] = None,
    lang: Annotated[str, typer.Option(help="auto (by the text's script), en or zh.")] = "auto",
    strategy: Annotated[
        str, typer.Option(help="Decoding: greedy, beam (4 beams) or sample (temperature 0.7, top-p 0.9; see --seed).")
    ] = "greedy",
    method: Annotated[
        str,
        typer.Option(
            help="auto (what measures best for the language: generate for English, extract for Chinese), generate "
            "(the decoder writes from the central sentences; unsupported sentences dropped) or extract (the central "
            "sentences themselves)."
        ),
    ] = "auto",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (a table: same format as its suffix; else Markdown/text)."),
    ] = None,
    text_col: TextCol = "text",
    model: Annotated[
        str, typer.Option(help="The decoder: smollm2-135m-instruct or a fine-tuned directory (--task generate).")
    ] = "smollm2-135m-instruct",
    seed: Annotated[int | None, typer.Option(help="Seed for --strategy sample.")] = None,
    encoding: EncodingOpt = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (tables).")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace --output if it exists (a document's summary).")] = False,
) -> None:
    """Summarize a text, a document or a table's texts with the embedded models.

    The encoder picks the most central sentences, the decoder (smollm2-135m-instruct) writes from them, and
    sentences the source does not support are dropped. Long documents are summarized in parts, then the parts
    together; anything cut is said on stderr (and, for tables, in a summary_notes column).

    Examples:

      megasense summarize lecture.pdf --style study -o lecture-notes.md

      megasense summarize article.html --style brief --max-words 80

      megasense summarize "$(cat notes.txt)" --style bullets

      megasense summarize dialogues.csv --text-col dialogue --style brief --output summaries.csv
    """
    from megasense.summaries.jobs import classify_input, summarize_document
    from megasense.summaries.summarizer import METHODS, STRATEGIES, STYLES, load_summarizer
    from megasense.summaries.text import LANGS

    with user_errors():
        for name, value, allowed in (
            ("--style", style, STYLES),
            ("--lang", lang, LANGS),
            ("--strategy", strategy, STRATEGIES),
            ("--method", method, METHODS),
        ):
            if value not in allowed:
                raise typer.BadParameter(f"{name} {value!r}: choose one of {', '.join(allowed)}")
        if max_words is not None and max_words < 1:
            raise typer.BadParameter(f"--max-words {max_words}: must be at least 1")
        kind = classify_input(input)
        if kind != "text" and not Path(input).is_file():
            raise typer.BadParameter(f"{input}: no such file (to summarize a text, pass the text itself)")
        if output is not None and output.exists() and not overwrite and kind != "table":
            raise typer.BadParameter(f"{output} exists; pass --overwrite to replace it")
        options = {"style": style, "max_words": max_words, "lang": lang, "strategy": strategy, "method": method}
        options["seed"] = seed
        summarizer = load_summarizer(model if method != "extract" else None)
        if kind == "table":
            _table(summarizer, Path(input), output, text_col, encoding, progress, options)
            return
        summary, document = summarize_document(summarizer, input, **options)
        for note in summary.notes:
            err.print(f"note: {note}", highlight=False)
        if summary.dropped:
            err.print(f"note: {len(summary.dropped)} generated sentence(s) unsupported by the source were dropped")
        if output is None:
            console.out(summary.text, highlight=False)
            return
        from megasense.files.atomic import atomic_write_text

        atomic_write_text(output, summary.text + "\n")
        err.print(
            f"wrote the {style} summary of {document.source} ({summary.words} words) to {output}", highlight=False
        )


def _table(summarizer, source: Path, output: Path | None, text_col: str, encoding, progress: bool, options) -> None:
    from megasense.summaries.jobs import summarize_table

    def show(row: int, text: str, summary) -> None:
        if output is None and summary is not None:
            console.out(f"row {row}: {summary.text}", highlight=False)

    with progress_bar("summarizing", None, enabled=progress and output is not None) as advance:
        result = summarize_table(
            summarizer, source, output, text_col=text_col, encoding=encoding, progress=advance, on_row=show, **options
        )
    where = f" to {output}" if output is not None else ""
    err.print(
        f"summarized {result.rows - len(result.skipped_empty):,} rows{where} ({result.generated} generated, "
        f"{result.extracted} extracted; {len(result.skipped_empty)} empty rows skipped)"
        + ("; the input's summary column is kept as input_summary" if result.renamed else ""),
        highlight=False,
    )
