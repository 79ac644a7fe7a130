"""User dictionaries: words (product names, brands, jargon) that the segmenter must keep whole.

The file format is jieba's: one entry per line, ``word [frequency] [tag]`` separated by spaces or tabs,
UTF-8. Blank lines and lines starting with ``#`` are skipped. The frequency is a positive integer,
accepted so jieba's files load unchanged; megasense keeps every dictionary word whole whatever its
frequency. The tag is the part of speech the word gets (jieba's tagset, e.g. ``nz``); without one a word
gets the tag jieba's own dictionary gives it, else ``nz`` (a proper noun).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from megasense.errors import MegasenseInputError


@dataclass(frozen=True)
class UserWord:
    word: str
    """The word as it appears in texts (no spaces)."""
    frequency: int | None = None
    """jieba's frequency column, when given (kept for round trips; it does not change segmentation)."""
    tag: str | None = None
    """The part of speech the word gets, in the native (jieba) tagset; None: looked up."""


def read_user_dict(path: str | Path) -> list[UserWord]:
    """The entries of a user dictionary file; a malformed line raises an error naming the file and the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MegasenseInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    words = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            words.append(_parse_line(line, f"{path}, line {number}"))
    if not words:
        raise MegasenseInputError(f"{path}: no words in the user dictionary (one word per line: word [freq] [tag])")
    return words


def user_words(entries: Iterable[str | UserWord]) -> list[UserWord]:
    """Words given in Python: plain strings or :class:`UserWord`; each checked as a dictionary line is."""
    out = []
    for i, entry in enumerate(entries):
        word = entry if isinstance(entry, UserWord) else UserWord(entry)
        if not isinstance(word.word, str) or not word.word or any(c.isspace() for c in word.word):
            raise MegasenseInputError(f"user word {i}: {word.word!r} is not a word (non-empty, without spaces)")
        out.append(word)
    return out


def _parse_line(line: str, where: str) -> UserWord:
    fields = line.split()
    if len(fields) > 3:
        raise MegasenseInputError(
            f"{where}: {line.strip()!r} has {len(fields)} fields; expected 'word [frequency] [tag]' "
            "(a word cannot contain spaces)"
        )
    word, rest = fields[0], fields[1:]
    frequency = None
    if rest and _is_integer(rest[0]):
        frequency = int(rest.pop(0))
        if frequency <= 0:
            raise MegasenseInputError(f"{where}: frequency {frequency} of {word!r} must be a positive integer")
    tag = rest.pop(0) if rest else None
    if rest or (tag is not None and not tag.isascii()) or (tag is not None and not tag.isalnum()):
        raise MegasenseInputError(
            f"{where}: {line.strip()!r} is not 'word [frequency] [tag]': the frequency must be a positive "
            "integer and the tag letters (jieba's tags, such as nz)"
        )
    return UserWord(word, frequency, tag)


def _is_integer(field: str) -> bool:
    return field.lstrip("+-").isdigit()
