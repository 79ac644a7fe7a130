"""Tokenizer adapters over Hugging Face ``tokenizers``: WordPiece, SentencePiece unigram, byte-level BPE."""

from megasense.tokenization.tokenizer import (
    Batch,
    SpecialTokens,
    Tokenizer,
    TokenizerError,
    byte_level_bpe_backend,
    wordpiece_backend,
)

__all__ = ["Batch", "SpecialTokens", "Tokenizer", "TokenizerError", "byte_level_bpe_backend", "wordpiece_backend"]
