"""``megasense tokenize`` and ``megasense train-tokenizer``: prepare pretraining corpora."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from megasense.cli.errors import user_errors
from megasense.errors import MegasenseInputError
from megasense.files.progress import progress_bar

console = Console()


def tokenize(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Corpus files or globs: .txt (a document per line), .jsonl, .csv, .tsv, .parquet."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output prefix: writes PREFIX.bin and PREFIX.idx.")],
    tokenizer: Annotated[
        str, typer.Option(help="A model (embedded name or directory) or a tokenizer directory.")
    ] = "smollm2-135m-instruct",
    text_col: Annotated[str, typer.Option(help="Column or JSON field that holds the text.")] = "text",
    append_eod: Annotated[bool, typer.Option(help="End every document with the end-of-document token.")] = True,
    split_sentences: Annotated[
        bool, typer.Option(help="One sequence per sentence (for BERT's sentence-order objective).")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace PREFIX.bin / PREFIX.idx if they exist.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Tokenize a corpus once into a memory-mapped token file with a document index.

    The files are Megatron-LM's indexed-dataset format, so they also train in Megatron-LM. Memory
    stays bounded whatever the corpus size. Example:

      megasense tokenize 'corpus/*.jsonl' -o data/corpus --tokenizer smollm2-135m-instruct
    """
    from megasense.data.corpus import count_documents, expand_inputs, tokenize_corpus

    with user_errors():
        paths = expand_inputs(inputs)
        tok = _load_tokenizer(tokenizer)
        total = count_documents(paths) if progress else None
        with progress_bar("tokenizing", total, enabled=progress) as advance:
            result = tokenize_corpus(
                paths,
                tok,
                output,
                text_col=text_col,
                append_eod=append_eod,
                split_sentences=split_sentences,
                overwrite=overwrite,
                progress=advance,
            )
        console.print(
            f"wrote {result.documents:,} documents, {result.tokens:,} tokens to {result.bin_path} and {result.idx_path}"
        )


def train_tokenizer(
    inputs: Annotated[list[str], typer.Argument(help="Corpus files or globs (as for tokenize).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Directory for tokenizer.json + tokenizer_config.json.")
    ],
    kind: Annotated[
        str, typer.Option(help="bpe (GPT-2 style), wordpiece (BERT style) or unigram (SentencePiece).")
    ] = "bpe",
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size, special tokens included.")] = 32000,
    text_col: Annotated[str, typer.Option(help="Column or JSON field that holds the text.")] = "text",
    lowercase: Annotated[bool, typer.Option(help="Lowercase text (wordpiece and unigram).")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the output directory.")] = False,
) -> None:
    """Train a new tokenizer on a corpus with Hugging Face tokenizers.

    Example: megasense train-tokenizer 'corpus/*.txt' -o my-tokenizer --kind wordpiece --vocab-size 30522
    """
    from megasense.data.corpus import expand_inputs, iter_documents
    from megasense.data.corpus import train_tokenizer as train
    from megasense.files.atomic import atomic_directory

    with user_errors():
        if vocab_size < 64:
            raise MegasenseInputError(f"--vocab-size {vocab_size} is too small; use at least 64")
        paths = expand_inputs(inputs)
        tok = train(iter_documents(paths, text_col=text_col), kind=kind, vocab_size=vocab_size, lowercase=lowercase)
        with atomic_directory(output, overwrite=overwrite) as tmp:
            tok.save(tmp)
        console.print(f"wrote a {kind} tokenizer with {tok.vocab_size:,} tokens to {output}")


def _load_tokenizer(name: str):
    """A tokenizer directory, or the tokenizer of a model (embedded name or path)."""
    from megasense.tokenization import Tokenizer

    path = Path(name)
    if path.is_dir() and (path / "tokenizer.json").is_file() and not (path / "model.safetensors").is_file():
        return Tokenizer.load(path)
    from megasense.zoo.load import load_model

    loaded = load_model(name)
    if loaded.tokenizer is None:
        raise MegasenseInputError(f"{name}: the model has no tokenizer files (tokenizer.json)")
    return loaded.tokenizer
