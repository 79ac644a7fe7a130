"""EDA-style text augmentation (Wei and Zou, 2019): synonym replacement, random swap and deletion,
plus sentence reordering for multi-sentence posts.

Each call makes one new text from one old one, with a seeded ``random.Random`` so a run is
reproducible. Synonyms come from a lexicon (a dict word -> alternatives); a small English one for
sentiment-bearing words is built in, and callers may pass their own (e.g. one read from JSON).
Text without spaces (Chinese) is edited character by character for swap and deletion and never gets
synonyms from the English lexicon.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from megasense.errors import ConfigError

_GROUPS = (
    ("good", "great", "fine", "nice", "decent"),
    ("bad", "poor", "awful", "terrible", "lousy"),
    ("happy", "glad", "pleased", "delighted", "cheerful"),
    ("sad", "unhappy", "down", "gloomy", "miserable"),
    ("love", "adore", "enjoy", "like"),
    ("hate", "dislike", "detest", "loathe"),
    ("angry", "mad", "furious", "annoyed", "irritated"),
    ("excellent", "superb", "outstanding", "wonderful", "fantastic"),
    ("boring", "dull", "tedious", "bland"),
    ("funny", "hilarious", "amusing", "comic"),
    ("beautiful", "lovely", "gorgeous", "pretty"),
    ("ugly", "hideous", "unattractive"),
    ("movie", "film", "picture"),
    ("buy", "purchase", "get"),
    ("big", "large", "huge"),
    ("small", "little", "tiny"),
    ("fast", "quick", "rapid"),
    ("slow", "sluggish"),
    ("cheap", "inexpensive", "affordable"),
    ("expensive", "costly", "pricey"),
    ("rise", "increase", "climb", "gain"),
    ("fall", "drop", "decline", "slide"),
    ("profit", "earnings", "income"),
    ("loss", "deficit", "shortfall"),
    ("company", "firm", "business"),
    ("tomorrow", "tmrw"),
    ("really", "truly", "very"),
    ("think", "believe", "reckon"),
    ("start", "begin", "launch"),
    ("end", "finish", "conclude"),
    ("friend", "pal", "buddy"),
    ("problem", "issue", "trouble"),
    ("help", "assist", "support"),
    ("show", "display", "reveal"),
    ("rude", "impolite", "discourteous"),
    ("clean", "tidy", "spotless"),
    ("dirty", "filthy", "grimy"),
)
DEFAULT_LEXICON: dict[str, tuple[str, ...]] = {
    word: tuple(w for w in group if w != word) for group in _GROUPS for word in group
}

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


@dataclass(frozen=True)
class AugmentSettings:
    alpha: float = 0.1
    """Fraction of words each operation touches (EDA's alpha)."""
    copies: int = 1
    """Augmented copies made of each training text."""

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 0.5:
            raise ConfigError(f"augment alpha={self.alpha} must be in (0, 0.5]")
        if self.copies < 1:
            raise ConfigError(f"augment copies={self.copies} must be at least 1")


def _split(text: str) -> tuple[list[str], str]:
    if " " in text.strip():
        return text.split(), " "
    return list(text), ""


def synonym_replace(words: list[str], n: int, rng: random.Random, lexicon: Mapping[str, Sequence[str]]) -> list[str]:
    out = list(words)
    candidates = [i for i, w in enumerate(out) if w.lower() in lexicon]
    rng.shuffle(candidates)
    for i in candidates[:n]:
        choice = rng.choice(list(lexicon[out[i].lower()]))
        out[i] = choice.capitalize() if out[i][:1].isupper() else choice
    return out


def random_swap(words: list[str], n: int, rng: random.Random) -> list[str]:
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.randrange(len(out)), rng.randrange(len(out))
        out[i], out[j] = out[j], out[i]
    return out


def random_delete(words: list[str], p: float, rng: random.Random) -> list[str]:
    if len(words) < 2:
        return list(words)
    kept = [w for w in words if rng.random() > p]
    return kept or [rng.choice(words)]


def reorder_sentences(text: str, rng: random.Random) -> str:
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    if len(sentences) < 2:
        return text
    rng.shuffle(sentences)
    joiner = " " if " " in text else ""
    return joiner.join(sentences)


def augment(
    text: str,
    rng: random.Random,
    *,
    settings: AugmentSettings | None = None,
    lexicon: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """One augmented version of ``text``: one operation chosen at random (EDA applies one per copy)."""
    settings = settings or AugmentSettings()
    lexicon = DEFAULT_LEXICON if lexicon is None else lexicon
    words, joiner = _split(text)
    if not words:
        return text
    n = max(1, int(settings.alpha * len(words)))
    operations = ["swap", "delete"]
    if joiner and any(w.lower() in lexicon for w in words):
        operations.append("synonym")
    if len(_SENTENCE_END.split(text.strip())) > 1:
        operations.append("reorder")
    op = rng.choice(operations)
    if op == "reorder":
        return reorder_sentences(text, rng)
    if op == "synonym":
        words = synonym_replace(words, n, rng, lexicon)
    elif op == "swap":
        words = random_swap(words, n, rng)
    else:
        words = random_delete(words, settings.alpha, rng)
    return joiner.join(words)


def augment_dataset(
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    seed: int,
    settings: AugmentSettings | None = None,
    lexicon: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[str], list[int]]:
    """The originals followed by ``settings.copies`` augmented copies of each (same labels)."""
    settings = settings or AugmentSettings()
    rng = random.Random(seed)
    out_texts, out_labels = list(texts), list(labels)
    for _ in range(settings.copies):
        for text, label in zip(texts, labels):
            out_texts.append(augment(text, rng, settings=settings, lexicon=lexicon))
            out_labels.append(label)
    return out_texts, out_labels
