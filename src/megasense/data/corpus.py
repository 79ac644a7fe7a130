"""Pretraining corpora: text files (globs) -> documents -> token ids in an indexed dataset, streamed.

A corpus is any mix of plain text (one document per line), JSONL, CSV/TSV and Parquet files, read
chunk by chunk (``data.tables``), so memory stays bounded by the chunk size whatever the corpus size.
The same documents feed tokenizer training (Hugging Face ``tokenizers`` trainers).
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from megasense.data.indexed import IndexedDatasetWriter, dtype_for_vocab
from megasense.errors import MegasenseError, MegasenseInputError
from megasense.files.tables import TableError, read_chunks, require_column
from megasense.tokenization import SpecialTokens, Tokenizer

Progress = Callable[[int], None]
"""Called with the number of documents just read."""


def expand_inputs(patterns: Sequence[str | Path]) -> list[Path]:
    """Files named by paths and globs, in order, without repeats; an unmatched pattern is an error."""
    found: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
        if not matches:
            raise TableError(f"{text}: no file matches this pattern")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                raise TableError(f"{path}: is a directory; give files or a glob such as '{path}/*.jsonl'")
            if path not in found:
                found.append(path)
    return found


def iter_documents(
    paths: Sequence[Path], *, text_col: str = "text", chunk_rows: int = 4096, progress: Progress | None = None
) -> Iterator[str]:
    """Every non-empty document of every file, in order."""
    for path in paths:
        for chunk in read_chunks(path, chunk_rows=chunk_rows):
            require_column(chunk.frame, text_col, path)
            texts = [v for v in chunk.frame[text_col].tolist() if isinstance(v, str) and v.strip()]
            if progress is not None:
                progress(len(chunk.frame))
            yield from texts


def count_documents(paths: Sequence[Path]) -> int:
    """Rows in all files (one cheap pass), for a progress bar with a total."""
    return sum(len(c.frame) for path in paths for c in read_chunks(path, chunk_rows=65536))


@dataclass
class TokenizeResult:
    documents: int
    tokens: int
    bin_path: Path
    idx_path: Path


def tokenize_corpus(
    paths: Sequence[Path],
    tokenizer: Tokenizer,
    output_prefix: str | Path,
    *,
    text_col: str = "text",
    append_eod: bool = True,
    split_sentences: bool = False,
    batch_size: int = 1024,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> TokenizeResult:
    """Tokenize every document into ``PREFIX.bin`` / ``PREFIX.idx`` (Megatron's format).

    Documents are encoded without special tokens; with ``append_eod`` each ends with the
    tokenizer's end-of-document token (``eos``, else ``sep``), which GPT-style packing needs to
    keep documents apart. With ``split_sentences`` every sentence is a sequence of its own inside
    its document (what BERT's sentence-order objective samples from); the end-of-document token then
    closes the last sentence.
    """
    eod = tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.token_to_id(tokenizer.special.sep or "")
    if append_eod and eod is None:
        raise MegasenseInputError("the tokenizer has no end-of-document token (eos or sep); pass --no-append-eod")
    writer = IndexedDatasetWriter(output_prefix, dtype=dtype_for_vocab(tokenizer.vocab_size), overwrite=overwrite)
    with writer:
        batch: list[str] = []
        for text in iter_documents(paths, text_col=text_col, progress=progress):
            batch.append(text)
            if len(batch) >= batch_size:
                _write(writer, tokenizer, batch, eod if append_eod else None, split_sentences)
                batch = []
        if batch:
            _write(writer, tokenizer, batch, eod if append_eod else None, split_sentences)
    if writer.documents == 0:
        writer.bin_path.unlink(missing_ok=True)
        writer.idx_path.unlink(missing_ok=True)
        raise TableError(f"{', '.join(map(str, paths))}: no non-empty documents in column {text_col!r}")
    return TokenizeResult(writer.documents, writer.tokens, writer.bin_path, writer.idx_path)


_SENTENCE_END = re.compile(r"(?<=[。！？!?])|(?<=[.;；])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of English or Chinese text: after 。！？!? (no space needed) or after . ; followed by space."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _write(writer: IndexedDatasetWriter, tokenizer: Tokenizer, texts: list[str], eod: int | None, split: bool) -> None:
    if not split:
        for ids in tokenizer.encode_batch(texts, add_special_tokens=False):
            writer.add_document([[*ids, eod] if eod is not None else ids])
        return
    for text in texts:
        sentences = tokenizer.encode_batch(split_sentences(text), add_special_tokens=False)
        if sentences and eod is not None:
            sentences[-1] = [*sentences[-1], eod]
        writer.add_document(sentences)


# ----------------------------------------------------------------------------------------------
# Tokenizer training
# ----------------------------------------------------------------------------------------------
KIND_SPECIALS = {
    "bpe": SpecialTokens(bos="<|endoftext|>", eos="<|endoftext|>", pad="<|endoftext|>"),
    "wordpiece": SpecialTokens(pad="[PAD]", unk="[UNK]", cls="[CLS]", sep="[SEP]", mask="[MASK]"),
    "unigram": SpecialTokens(pad="<pad>", unk="<unk>", bos="<s>", eos="</s>", cls="<s>", sep="</s>", mask="<mask>"),
}


def train_tokenizer(
    documents: Iterator[str],
    *,
    kind: str,
    vocab_size: int,
    lowercase: bool = False,
    min_frequency: int = 2,
) -> Tokenizer:
    """A new byte-level BPE (GPT-2 style), WordPiece (BERT style) or unigram (SentencePiece style) tokenizer."""
    if kind not in KIND_SPECIALS:
        raise MegasenseInputError(f"tokenizer kind {kind!r} (--kind): expected bpe, wordpiece or unigram")
    special = KIND_SPECIALS[kind]
    names = list(dict.fromkeys(t for t in vars(special).values() if t))
    if kind == "bpe":
        backend = tokenizers.Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=names,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    elif kind == "wordpiece":
        backend = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
        backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase, handle_chinese_chars=True)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=names, show_progress=False
        )
    else:
        backend = tokenizers.Tokenizer(models.Unigram())
        backend.normalizer = normalizers.Sequence(
            [normalizers.NFKC(), *([normalizers.Lowercase()] if lowercase else [])]
        )
        backend.pre_tokenizer = pre_tokenizers.Metaspace()
        backend.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=names, unk_token="<unk>", show_progress=False
        )
    try:
        backend.train_from_iterator(documents, trainer)
    except Exception as exc:  # tokenizers raises bare Exceptions (e.g. a vocabulary smaller than the alphabet)
        if isinstance(exc, (MegasenseError, OSError)):
            raise
        raise MegasenseInputError(f"training the {kind} tokenizer failed: {exc}; try a larger --vocab-size") from None
    if kind == "wordpiece":
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[(t, backend.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
        )
    elif kind == "unigram":
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> </s> $B </s>",
            special_tokens=[(t, backend.token_to_id(t)) for t in ("<s>", "</s>")],
        )
    return Tokenizer(backend, kind=kind, special=special)
