"""Tags on characters, sub-tokens and spans: BIO / BIOES schemes, decoding with repair, and alignment.

Slot data gives one tag per *character* (``O``, ``B-song_name``, ``I-``, ``E-``, ``S-``); the model
tags *sub-tokens*. The way between them goes through spans, so both schemes and any tokenizer work
the same way:

- characters -> tokens: each token is anchored at the first non-space character it covers (the
  tokenizer's offsets); a token whose anchor lies inside a slot's character span belongs to that
  slot, and the slot's tokens get ``B``/``I``/``E``/``S`` (or ``B``/``I``) by their position in it. So
  *every* sub-token of a slot is labelled (``tfboys`` = ``t f boy s``: B I I E), and the model learns
  where a slot ends, not only where it starts. Tokens that cover no character of the text (``<s>``,
  the ``query: `` prefix, a bare ``▁``) are labelled -100 (not scored).
- tokens -> characters: the predicted token tags (decoded with only valid transitions, ``viterbi``)
  become token spans, and a token span becomes the characters from its first token's anchor to its
  last token's end.
- SentencePiece tokenizers merge Chinese characters (``子的``, ``播放``), and 2.4% of CAIS's slots
  start or end inside such a merged token. ``split_cjk`` (the default) breaks a token that holds
  Chinese, Japanese or Korean characters into one token per character wherever the vocabulary has
  each of them, which makes every CJK character boundary a token boundary. WordPiece (BERT)
  tokenizers split CJK characters already.

``tags_to_spans`` reads any tag sequence, repairing invalid ones the way conlleval does (an ``I-x``
or ``E-x`` that continues nothing starts a new slot; a slot whose type changes mid-way is cut).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from megasense.tokenization import Tokenizer

Scheme = Literal["bio", "bioes"]
SCHEMES = ("bio", "bioes")
PREFIXES = {"bio": ("B", "I"), "bioes": ("B", "I", "E", "S")}
IGNORE = -100
"""The label of a token that is not scored (special tokens, the text prefix, padding)."""


@dataclass(frozen=True)
class Span:
    """A slot over ``[start, end)`` of a sequence (characters or tokens)."""

    label: str
    start: int
    end: int


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-song_name"`` -> ``("B", "song_name")``; ``"O"`` -> ``("O", "")``; ValueError for anything else."""
    if tag == "O":
        return "O", ""
    prefix, sep, label = tag.partition("-")
    if not sep or prefix not in ("B", "I", "E", "S") or not label:
        raise ValueError(f"tag {tag!r} is not O or B-/I-/E-/S- followed by a slot name")
    return prefix, label


def tag_scheme(tags: Iterable[str]) -> Scheme:
    """``bioes`` when any tag starts with ``E-`` or ``S-``, else ``bio``."""
    return "bioes" if any(split_tag(t)[0] in ("E", "S") for t in tags) else "bio"


def slot_names(tags: Iterable[str]) -> list[str]:
    """The slot names in ``tags``, sorted."""
    return sorted({split_tag(t)[1] for t in tags} - {""})


def tag_set(names: Iterable[str], scheme: Scheme) -> tuple[str, ...]:
    """Every tag of ``scheme`` for ``names``: ``O`` then, per name (sorted), ``B-``, ``I-`` (``E-``, ``S-``)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not one of {', '.join(SCHEMES)}")
    return ("O", *(f"{p}-{name}" for name in sorted(set(names)) for p in PREFIXES[scheme]))


def tags_to_spans(tags: Sequence[str]) -> list[Span]:
    """The slots that ``tags`` (BIO, BIOES, or a mix, valid or not) mark, repairing invalid transitions."""
    spans: list[Span] = []
    label, start = "", -1  # the open span, if ``label``

    def close(end: int) -> None:
        nonlocal label
        if label:
            spans.append(Span(label, start, end))
        label = ""

    for i, tag in enumerate(tags):
        prefix, name = split_tag(tag)
        continues = label == name and prefix in ("I", "E")
        if not continues:
            close(i)
            if prefix != "O":
                label, start = name, i
        if prefix in ("E", "S"):
            close(i + 1)
    close(len(tags))
    return spans


def spans_to_tags(spans: Iterable[Span], length: int, scheme: Scheme) -> list[str]:
    """One tag per position for non-overlapping ``spans`` (positions outside every span are ``O``)."""
    tags = ["O"] * length
    for span in spans:
        if span.end <= span.start:
            continue
        if scheme == "bioes" and span.end - span.start == 1:
            tags[span.start] = f"S-{span.label}"
            continue
        tags[span.start] = f"B-{span.label}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.label}"
        if scheme == "bioes":
            tags[span.end - 1] = f"E-{span.label}"
    return tags


def convert_tags(tags: Sequence[str], scheme: Scheme) -> list[str]:
    """``tags`` in ``scheme`` (BIO <-> BIOES), invalid transitions repaired."""
    return spans_to_tags(tags_to_spans(tags), len(tags), scheme)


# ------------------------------------------------------------------------------------------------
# Decoding the model's scores with only valid transitions
# ------------------------------------------------------------------------------------------------
class Transitions:
    """Which tag may follow which (and start or end a sequence) in a tag set's scheme."""

    def __init__(self, tags: Sequence[str]) -> None:
        self.tags = tuple(tags)
        self.scheme = tag_scheme(self.tags)
        parts = [split_tag(t) for t in self.tags]
        # A slot is open after B-x / I-x (BIOES: it must go on with I-x or end with E-x).
        inside = [p in ("B", "I") for p, _ in parts]
        n = len(parts)
        allowed = np.zeros((n, n), dtype=bool)  # (previous, next)
        for j, (p, name) in enumerate(parts):
            for i, (q, prev) in enumerate(parts):
                continues = q in ("B", "I") and prev == name
                if p in ("I", "E"):
                    allowed[i, j] = continues
                elif self.scheme == "bioes":
                    allowed[i, j] = not inside[i]  # O, B-, S- only after a closed slot
                else:
                    allowed[i, j] = True
        self.allowed = allowed
        self.start = np.array([p in ("O", "B", "S") for p, _ in parts])
        self.end = np.array([not (self.scheme == "bioes" and inside[j]) for j in range(n)])

    def viterbi(self, log_probs: np.ndarray) -> list[int]:
        """The most probable tag path of (T, L) per-position log-probabilities using only valid transitions."""
        if len(log_probs) == 0:
            return []
        forbid = np.float32(-1e9)
        step = np.where(self.allowed, 0.0, forbid).astype(np.float32)  # (L, L)
        score = log_probs[0] + np.where(self.start, 0.0, forbid)  # (L,)
        back = np.zeros(log_probs.shape, dtype=np.int64)
        for t in range(1, len(log_probs)):
            total = score[:, None] + step  # (L prev, L next)
            back[t] = total.argmax(axis=0)
            score = total[back[t], np.arange(total.shape[1])] + log_probs[t]
        score = score + np.where(self.end, 0.0, forbid)
        path = [int(score.argmax())]
        for t in range(len(log_probs) - 1, 0, -1):
            path.append(int(back[t, path[-1]]))
        return path[::-1]


# ------------------------------------------------------------------------------------------------
# Characters <-> sub-tokens
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaggedTokens:
    """A text's token ids and, per token, the characters ``[start, end)`` of the text it tags."""

    ids: list[int]
    chars: list[tuple[int, int] | None]
    """Per token: its characters from its anchor (first non-space character) on; None for a token that
    tags nothing (special tokens, the text prefix, a bare ``▁``, a token that shares its anchor with a
    longer one)."""
    truncated: bool = False
    """The text was longer than ``max_length`` tokens: characters past the last token are tagged ``O``."""

    @property
    def tagged(self) -> list[int]:
        """Indices of the tokens that carry a tag, in order."""
        return [i for i, c in enumerate(self.chars) if c is not None]


def is_cjk(char: str) -> bool:
    """Han ideographs, kana and hangul: scripts written without spaces between words."""
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF  # hiragana, katakana
        or 0x3400 <= code <= 0x4DBF
        or 0x4E00 <= code <= 0x9FFF
        or 0xAC00 <= code <= 0xD7AF  # hangul syllables
        or 0xF900 <= code <= 0xFAFF
        or 0x20000 <= code <= 0x2FFFF
    )


def _split_pieces(token: str, ids: tuple[int, int], tokenizer: Tokenizer) -> list[tuple[int, tuple[int, int]]] | None:
    """``token`` (character offsets ``ids``) as one token per character, when it holds CJK and the vocabulary
    has every piece; else None. A leading ``▁`` (SentencePiece's space) stays a token of its own."""
    start, end = ids
    body = token[1:] if token.startswith("▁") else token
    if len(body) < 2 or end - len(body) < start or not any(is_cjk(c) for c in body):
        return None
    first = end - len(body)  # the body's characters are the last ones of the token's offsets
    pieces = [(tokenizer.token_to_id("▁"), (start, first))] if len(body) < len(token) else []
    pieces += [(tokenizer.token_to_id(c), (first + k, first + k + 1)) for k, c in enumerate(body)]
    if any(i is None for i, _ in pieces):
        return None
    return pieces


def tag_tokens(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    *,
    prefix: str = "",
    max_length: int | None = None,
    split_cjk: bool = True,
) -> list[TaggedTokens]:
    """Token ids of ``prefix + text`` for each text, with the characters of ``text`` each token tags."""
    encodings = tokenizer.backend.encode_batch([prefix + t for t in texts], add_special_tokens=True)
    shift = len(prefix)
    out = []
    for text, enc in zip(texts, encodings):
        pieces: list[tuple[int, tuple[int, int]]] = []
        for token_id, token, (s, e) in zip(enc.ids, enc.tokens, enc.offsets):
            split = _split_pieces(token, (s, e), tokenizer) if split_cjk and s >= shift else None
            pieces += split or [(token_id, (s, e))]
        truncated = max_length is not None and len(pieces) > max_length
        if truncated:
            pieces = [*pieces[: max_length - 1], pieces[-1]]  # keep the closing token (</s>, [SEP])
        ids = [i for i, _ in pieces]
        chars: list[tuple[int, int] | None] = []
        owner: dict[int, int] = {}  # anchor character -> the token that tags it
        for k, (_, (s, e)) in enumerate(pieces):
            s, e = max(s - shift, 0), min(e - shift, len(text))
            anchor = next((c for c in range(s, e) if not text[c].isspace()), None)
            if anchor is None or (k == len(pieces) - 1 and truncated):
                chars.append(None)
                continue
            if anchor in owner:  # "▁" (0, 1) then "播放" (0, 2): the longer, later token tags the character
                chars[owner[anchor]] = None
            owner[anchor] = k
            chars.append((anchor, e))
        out.append(TaggedTokens(ids=ids, chars=chars, truncated=truncated))
    return out


def token_labels(tokens: TaggedTokens, tags: Sequence[str], index: dict[str, int], scheme: Scheme) -> list[int]:
    """Tag indices for each token of ``tokens`` from the text's character ``tags`` (-100: not scored).

    A slot whose characters anchor no token (it lies inside a token that starts before it) cannot be
    learned; it is left out (``unreachable_slots`` counts them)."""
    owner = _slot_of_chars(tags)
    members: dict[int, list[int]] = {}
    labels = [IGNORE] * len(tokens.ids)
    spans = tags_to_spans(tags)
    for k, chars in enumerate(tokens.chars):
        if chars is None:
            continue
        labels[k] = index["O"]
        slot = owner[chars[0]]
        if slot >= 0:
            members.setdefault(slot, []).append(k)
    for slot, positions in members.items():
        token_tags = spans_to_tags([Span(spans[slot].label, 0, len(positions))], len(positions), scheme)
        for k, tag in zip(positions, token_tags):
            labels[k] = index[tag]
    return labels


def unreachable_slots(tokens: TaggedTokens, tags: Sequence[str]) -> int:
    """How many of the text's slots no token is anchored in (they cannot be predicted with this tokenizer)."""
    owner = _slot_of_chars(tags)
    reached = {owner[c[0]] for c in tokens.chars if c is not None}
    return len(tags_to_spans(tags)) - len(reached - {-1})


def _slot_of_chars(tags: Sequence[str]) -> list[int]:
    """Per character, the index of the slot (in ``tags_to_spans`` order) it belongs to, or -1."""
    owner = [-1] * len(tags)
    for n, span in enumerate(tags_to_spans(tags)):
        owner[span.start : span.end] = [n] * (span.end - span.start)
    return owner


def char_spans(text: str, tokens: TaggedTokens, token_tags: Sequence[str]) -> list[Span]:
    """The character spans that ``token_tags`` (one per tagged token, in order) mark in ``text``."""
    tagged = tokens.tagged
    out = []
    for span in tags_to_spans(token_tags):
        start = tokens.chars[tagged[span.start]][0]
        end = tokens.chars[tagged[span.end - 1]][1]
        while end > start and text[end - 1].isspace():
            end -= 1
        out.append(Span(span.label, start, end))
    return out


def parse_markup(annotated: str) -> tuple[str, list[str]]:
    """``"set an alarm for [seven](time)"`` -> the text and its BIOES tags, one per character.

    The markup of Rasa's training examples: ``[value](slot)``; a way to write slots into example
    sentences (an assistant's catalogue) without counting characters."""
    text, spans, i = [], [], 0
    while i < len(annotated):
        if annotated[i] == "[":
            close = annotated.find("](", i)
            end = annotated.find(")", close + 2) if close >= 0 else -1
            if close < 0 or end < 0:
                raise ValueError(f"{annotated!r}: '[' at character {i} is not closed as [value](slot)")
            value, name = annotated[i + 1 : close], annotated[close + 2 : end].strip()
            if not name or "[" in value:
                raise ValueError(f"{annotated!r}: [value](slot) at character {i} needs a value and a slot name")
            start = len("".join(text))
            text.append(value)
            spans.append(Span(name, start, start + len(value)))
            i = end + 1
        else:
            text.append(annotated[i])
            i += 1
    joined = "".join(text)
    return joined, spans_to_tags(spans, len(joined), "bioes")
