"""Candidate aspects: the noun phrases of a text's sentences (English) or its nouns (Chinese). No torch.

English noun phrases come from TextBlob's pattern parser (``textblob.en.parsers.PatternParser``): a
Brill-style tagger and a rule chunker whose lexicon ships inside the textblob wheel, so nothing is
downloaded at run time (NLTK's taggers and spaCy's models are separate downloads). From each noun-phrase
chunk the run of nouns is kept ("the grilled fish" -> "fish", "battery life" stays whole): aspects are
things, and the adjectives around them are the opinion, not the aspect. Chinese nouns come from the
segmenter's jieba tags (``megasense.segmentation``): ``n``, ``nz``, ``vn`` (verbal nouns: 服务, 配送),
and brands and products the user dictionary tags ``nz``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from megasense.errors import MissingExtraError
from megasense.predictors.language import needs_multilingual

_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])\s*|\n+")
_NOUN_TAGS = ("NN", "NNS", "NNP", "NNPS")
_ZH_NOUN_TAGS = ("n", "nz", "vn", "nt")
# Nouns too general to be an aspect of anything (checked on the last word of a phrase).
_GENERIC = frozenset(
    [
        "thing",
        "things",
        "lot",
        "lots",
        "time",
        "times",
        "way",
        "ways",
        "day",
        "days",
        "people",
        "person",
        "one",
        "ones",
        "bit",
        "kind",
        "sort",
        "part",
        "fact",
        "everything",
        "something",
        "anything",
        "nothing",
        "someone",
        "anyone",
        "everyone",
        "year",
        "years",
        "week",
        "weeks",
        "today",
    ]
)
_ZH_GENERIC = frozenset(["东西", "时候", "问题", "感觉", "地方", "时间", "事情", "大家", "朋友", "一下", "有点"])


def split_sentences(text: str) -> list[str]:
    """A text's sentences: cut after . ! ? ; (and their Chinese forms) and at line breaks."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


class PhraseExtractor:
    """Texts -> candidate aspect phrases (lower-cased English noun phrases, Chinese nouns).

    The English parser and the Chinese segmenter are loaded on the first text that needs them."""

    def __init__(self, segmenter=None, *, max_words: int = 3) -> None:
        self._segmenter = segmenter
        self._parser = None
        self.max_words = max_words

    def __call__(self, text: str) -> list[str]:
        return list(dict.fromkeys(self._chinese(text) if needs_multilingual(text) else self._english(text)))

    def _english(self, text: str) -> Iterator[str]:
        if self._parser is None:
            self._parser = _pattern_parser()
        parsed = self._parser.parse(text)  # word/TAG/CHUNK/PNP tokens, sentences on lines
        for line in parsed.split("\n"):
            run: list[str] = []
            for token in line.split(" "):
                parts = token.rsplit("/", 3)
                if len(parts) < 4:
                    continue
                word, tag, chunk = parts[0], parts[1], parts[2]
                if chunk == "B-NP" or not chunk.endswith("NP"):  # a new phrase starts, or none goes on
                    yield from self._flush(run)
                    run = []
                if chunk.endswith("NP") and tag in _NOUN_TAGS and word.isalpha():
                    run.append(word.lower())
                elif run:  # a noun run ends inside the phrase ("battery life of"): keep the run
                    yield from self._flush(run)
                    run = []
            yield from self._flush(run)

    def _flush(self, run: list[str]) -> Iterator[str]:
        words = run[-self.max_words :]
        if words and words[-1] not in _GENERIC and len("".join(words)) > 1:
            yield " ".join(words)

    def _chinese(self, text: str) -> Iterator[str]:
        if self._segmenter is None:
            from megasense.segmentation import Segmenter

            self._segmenter = Segmenter("jieba")
        seg = self._segmenter.segment_one(text, pos=True)
        for word, tag in zip(seg.words, seg.tags or ()):
            if tag in _ZH_NOUN_TAGS and len(word) >= 2 and word not in _ZH_GENERIC:
                yield word
            elif tag == "eng" and word.isalpha() and len(word) >= 2 and word[0].isupper():
                yield word.lower()  # a Latin-script name in a Chinese text (iPhone, Wi-Fi)


def _pattern_parser():
    try:
        from textblob.en.parsers import PatternParser
    except ImportError:
        raise MissingExtraError(
            "English aspect discovery needs textblob (the 'analytics' extra): pip install 'megasense[analytics]'"
        ) from None
    return PatternParser()
