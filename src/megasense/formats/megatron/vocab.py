"""Tokenizers from the vocabulary files Megatron-LM trains with: BERT's WordPiece ``vocab.txt``, GPT-2's
byte-level BPE ``vocab.json`` + ``merges.txt``. Megatron checkpoints hold no tokenizer of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from megasense.errors import CheckpointError
from megasense.formats.megatron.args import arg
from megasense.tokenization import SpecialTokens, Tokenizer, TokenizerError, byte_level_bpe_backend, wordpiece_backend

_LOWER = {"BertWordPieceLowerCase": True, "BertWordPieceCase": False}


def _is_json(path: Path) -> bool:
    with open(path, "rb") as handle:
        return path.suffix == ".json" or handle.read(64).lstrip().startswith(b"{")


def find_vocab_files(
    root: Path, vocab_file: str | Path | None, merges_file: str | Path | None
) -> tuple[Path | None, Path | None, list[str]]:
    """The vocabulary (and merges) to use: the ones given, else ``vocab.txt``/``vocab.json`` in ``root``."""
    notes = []
    if vocab_file is None and root.is_dir():
        for candidate in ("vocab.txt", "vocab.json"):
            if (root / candidate).is_file():
                vocab_file = root / candidate
                notes.append(f"used {candidate} found beside the checkpoint in {root}")
                break
    if vocab_file is None:
        return None, None, notes
    vocab = Path(vocab_file)
    if not vocab.is_file():
        raise CheckpointError(vocab, "does not exist (vocab_file)")
    merges = Path(merges_file) if merges_file is not None else None
    if merges is None and (vocab.parent / "merges.txt").is_file() and _is_json(vocab):
        merges = vocab.parent / "merges.txt"
    if merges is not None and not merges.is_file():
        raise CheckpointError(merges, "does not exist (merges_file)")
    return vocab, merges, notes


def _tokenizer(vocab: Path, merges: Path | None, lowercase: bool, max_length: int) -> Tokenizer:
    try:
        if not _is_json(vocab):
            backend = wordpiece_backend(vocab, lowercase=lowercase)
            present = {t for t in ("[PAD]", "[MASK]") if backend.token_to_id(t) is not None}
            special = SpecialTokens(
                pad="[PAD]" if "[PAD]" in present else None, unk="[UNK]", cls="[CLS]", sep="[SEP]",
                mask="[MASK]" if "[MASK]" in present else None,
            )  # fmt: skip
            return Tokenizer(backend, kind="wordpiece", special=special, model_max_length=max_length)
        if merges is None:
            raise CheckpointError(vocab, "is a GPT-2 vocab.json, which needs its merges.txt; pass merges_file=")
        backend = byte_level_bpe_backend(vocab, merges)
        eos = "<|endoftext|>" if backend.token_to_id("<|endoftext|>") is not None else None
        special = SpecialTokens(unk=eos, bos=eos, eos=eos)
        return Tokenizer(backend, kind="bpe", special=special, model_max_length=max_length)
    except TokenizerError as exc:
        raise CheckpointError(vocab, f"is not a usable vocabulary: {exc}") from None


def build_tokenizer(
    args: Any, vocab_file: Path | None, merges_file: Path | None
) -> tuple[Tokenizer | None, int | None, list[str]]:
    """(tokenizer, its vocabulary size, notes) from Megatron's vocab files; (None, None, note) without them."""
    if vocab_file is None:
        return None, None, ["no tokenizer: Megatron-LM checkpoints hold none; pass vocab_file= (and merges_file=)"]
    notes = []
    tokenizer_type = str(arg(args, "tokenizer_type", default=""))
    if tokenizer_type not in _LOWER and not _is_json(vocab_file):
        notes.append(f"args.tokenizer_type={tokenizer_type!r} does not say the case; lowercasing, as BERT-uncased")
    max_length = int(arg(args, "max_position_embeddings", "seq_length", default=512))
    tokenizer = _tokenizer(vocab_file, merges_file, _LOWER.get(tokenizer_type, True), max_length)
    return tokenizer, tokenizer.backend.get_vocab_size(with_added_tokens=True), notes
