"""Chinese word segmentation and part-of-speech tags: text in, words (and tags) out. No torch.

A text is cut in three passes, so nothing but Chinese ever reaches the engine:

1. whitespace separates words and is dropped;
2. user-dictionary words are cut out whole (longest match first, left to right);
3. Latin-script words, numbers, e-mail addresses and URLs (``iPhone``, ``COVID-19``, ``3.5%``, ``20万``)
   are cut out whole; what is left, Chinese and punctuation, goes to the engine (``engines.py``).

Joined without spaces, a text's words give back the text without its whitespace. Tags are native
(jieba's tagset, ``tagsets.py``) by default: finer than Universal POS where products and people are
concerned (``nr`` person, ``ns`` place, ``nt`` organisation, ``nz`` other proper noun) and the tagset
user dictionaries are written in; ``tagset="upos"`` maps them to Universal POS (NOUN, VERB, PROPN...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from megasense.errors import MegasenseInputError
from megasense.segmentation.dictionary import UserWord, read_user_dict, user_words
from megasense.segmentation.engines import Engine, JiebaTagger, load_engine, load_tagger, resolve_engine
from megasense.segmentation.tagsets import to_upos

TAGSETS = ("native", "upos")
_ALNUM = "A-Za-z0-9Ａ-Ｚａ-ｚ０-９"
# A number: digits with decimal or thousands separators, then % or a magnitude (万, 亿), maybe ordinal
# (第6). A URL runs to the first space or non-ASCII character. A word may hold . _ @ + ' - / : & between
# its letters and digits (an e-mail address, a version, a ratio).
_NUMBER = r"第?[0-9０-９]+(?:[.,．][0-9０-９]+)*(?:%|％|[万亿]+)?"
_KEPT = re.compile(
    rf"(?P<number>{_NUMBER}(?![{_ALNUM}._@+'’\-/:&]))"
    rf"|https?://[!-~]+"
    rf"|[{_ALNUM}]+(?:[._@+'’\-/:&][{_ALNUM}]+)*%?"
)


@dataclass(frozen=True)
class Segmentation:
    """One text's words and, when asked for, their tags (one per word)."""

    words: tuple[str, ...]
    tags: tuple[str, ...] | None = None

    def format(self) -> str:
        """``word word ...``, or ``word/TAG word/TAG ...`` when tagged: one line of ``megasense segment``."""
        if self.tags is None:
            return " ".join(self.words)
        return " ".join(f"{w}/{t}" for w, t in zip(self.words, self.tags, strict=True))

    def __str__(self) -> str:
        return self.format()


class Segmenter:
    """Words of Chinese (and mixed) texts with one engine, a user dictionary and a tagset.

    The engine is loaded on the first text that needs it (never at construction): English-only
    input never loads a model. Segmenters in one process share the loaded engines (``load_engine``).
    """

    def __init__(
        self,
        engine: str = "auto",
        *,
        user_dict: str | Path | Iterable[str | UserWord] | None = None,
        tagset: str = "native",
        home: Path | None = None,
    ) -> None:
        if tagset not in TAGSETS:
            raise MegasenseInputError(f"unknown tagset {tagset!r}; choose one of {', '.join(TAGSETS)}")
        self.engine_name = resolve_engine(engine)
        self.tagset = tagset
        self.home = home
        self.user_words = _load_user_words(user_dict)
        self._user_tags = {w.word: w.tag for w in self.user_words}
        self._longest = {}  # first character -> the longest user word that starts with it
        for word in self._user_tags:
            self._longest[word[0]] = max(self._longest.get(word[0], 0), len(word))
        self._engine: Engine | None = None
        self._tagger: JiebaTagger | None = None

    def segment(self, texts: Sequence[str], *, pos: bool = False) -> list[Segmentation]:
        """Each text's words, and their tags with ``pos=True``."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not one string (use Segmenter.cut for one)")
        out = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {i} is a {type(text).__name__}, expected a string")
            out.append(self.segment_one(text, pos=pos))
        return out

    def segment_one(self, text: str, *, pos: bool = False) -> Segmentation:
        pieces = list(self._pieces(text))
        words = tuple(word for word, _ in pieces)
        if not pos:
            return Segmentation(words)
        tags = tuple(self._tag(word, tag) for word, tag in pieces)
        if self.tagset == "upos":
            tags = tuple(to_upos(w, t) for w, t in zip(words, tags))
        return Segmentation(words, tags)

    def cut(self, text: str) -> list[str]:
        """The words of one text."""
        return [word for word, _ in self._pieces(text)]

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = load_engine(self.engine_name, home=self.home)
        return self._engine

    def _pieces(self, text: str) -> Iterable[tuple[str, str | None]]:
        """(word, tag known from how it was found, else None) in order."""
        for chunk in text.split():
            for piece, user_word in self._user_split(chunk):
                if user_word:
                    yield piece, self._user_tags[piece]
                    continue
                position = 0
                for match in _KEPT.finditer(piece):
                    yield from self._engine_words(piece[position : match.start()])
                    yield match.group(), "m" if match.group("number") else None
                    position = match.end()
                yield from self._engine_words(piece[position:])

    def _engine_words(self, run: str) -> Iterable[tuple[str, None]]:
        if run:
            for word in self.engine.cut(run):
                yield word, None

    def _user_split(self, chunk: str) -> Iterable[tuple[str, bool]]:
        """``chunk`` as (piece, is a user word): the longest user word at each position, left to right."""
        if not self._longest:
            yield chunk, False
            return
        start = i = 0
        while i < len(chunk):
            found = next(
                (
                    length
                    for length in range(min(self._longest.get(chunk[i], 0), len(chunk) - i), 0, -1)
                    if chunk[i : i + length] in self._user_tags
                ),
                0,
            )
            if not found:
                i += 1
                continue
            if start < i:
                yield chunk[start:i], False
            yield chunk[i : i + found], True
            i = start = i + found
        if start < len(chunk):
            yield chunk[start:], False

    def _tag(self, word: str, known: str | None) -> str:
        if known is not None:
            return known
        if self._tagger is None:
            self._tagger = load_tagger()
        if word in self._user_tags:  # a user word without a tag: jieba's, else a proper noun
            return self._tagger.known(word) or "nz"
        return self._tagger.tag(word)


def segment(
    texts: Sequence[str],
    *,
    pos: bool = False,
    user_dict: str | Path | Iterable[str | UserWord] | None = None,
    engine: str = "auto",
    tagset: str = "native",
) -> list[Segmentation]:
    """Each text's words (and tags with ``pos=True``): ``Segmenter(engine, ...).segment(texts, pos=pos)``."""
    return Segmenter(engine, user_dict=user_dict, tagset=tagset).segment(texts, pos=pos)


def _load_user_words(user_dict) -> list[UserWord]:
    if user_dict is None:
        return []
    if isinstance(user_dict, str | Path):
        return read_user_dict(user_dict)
    return user_words(user_dict)
