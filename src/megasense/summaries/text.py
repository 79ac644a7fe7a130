"""Text into the units a summary is made of: sentences, dialogue turns, sections, and chunks that fit a token budget.

Sentence splitting is by rules, on purpose: the usual libraries need data that cannot be downloaded here (nltk's
punkt) or a parser model (spaCy), and summaries only need boundaries good enough to pick whole sentences. English
splits after ``.``, ``!`` or ``?`` followed by a space and a capital, a digit or a quote, except after common
abbreviations (``Dr.``, ``e.g.``); Chinese splits after ``。！？；`` and after a half-width ``.`` between Chinese
characters (abstracts often use it). A dialogue (``Speaker: ...`` on most lines) keeps one unit per turn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from megasense.predictors.language import dominant_script

LANGS = ("auto", "en", "zh")
ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "fig",
        "eq",
        "no",
        "al",
        "approx",
        "dept",
        "est",
        "inc",
        "ltd",
        "co",
        "corp",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "u.s",
        "u.k",
    ]
)
_EN_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9#])")
_ZH_END = re.compile(r"(?<=[。！？；!?;])[”」』）)]*|(?<=[\u4e00-\u9fff])\.(?=[\u4e00-\u9fff])")
_TURN = re.compile(r"^\s*(#?[\w .'-]{1,30}#?)\s*[:：]\s*\S")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+\S")


def detect_lang(text: str, lang: str = "auto") -> str:
    """``en`` or ``zh``: ``lang`` as given, or by the text's dominant script when ``auto``."""
    if lang not in LANGS:
        raise ValueError(f"lang={lang!r}: expected one of {', '.join(LANGS)}")
    if lang != "auto":
        return lang
    return "zh" if dominant_script(text) == "cjk" else "en"


def is_dialogue(text: str) -> bool:
    """Most non-empty lines (at least two) start with ``Speaker:``."""
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) >= 2 and sum(bool(_TURN.match(line)) for line in lines) >= 0.6 * len(lines)


def split_sentences(text: str, lang: str = "en") -> list[str]:
    """The sentences of ``text`` (paragraph breaks always end one), stripped, in order."""
    out: list[str] = []
    # a Markdown heading names a section; it is no sentence of it (a paragraph break stands in its place)
    text = "\n".join("" if _HEADING.match(line) else line for line in text.splitlines())
    for paragraph in re.split(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)", text):
        flat = " ".join(paragraph.split()) if lang == "en" else "".join(_join_lines(paragraph))
        if not flat:
            continue
        if lang == "zh":
            out.extend(s.strip() for s in _split_keep(flat, _ZH_END) if s.strip())
        else:
            out.extend(_merge_abbreviations([s.strip() for s in _EN_END.split(flat) if s.strip()]))
    return out


def _join_lines(paragraph: str) -> list[str]:
    """Lines of a Chinese paragraph joined: no space between CJK characters, one between Latin words."""
    parts = [line.strip() for line in paragraph.splitlines() if line.strip()]
    joined = []
    for i, part in enumerate(parts):
        if i and part[:1].isascii() and joined[-1][-1:].isascii():
            joined.append(" ")
        joined.append(part)
    return joined


def _split_keep(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Split after each match of ``pattern``, keeping the match with the piece before it."""
    pieces, start = [], 0
    for match in pattern.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    pieces.append(text[start:])
    return pieces


def _merge_abbreviations(pieces: list[str]) -> list[str]:
    merged: list[str] = []
    for piece in pieces:
        last_word = merged[-1].rsplit(maxsplit=1)[-1].rstrip(".").lower() if merged else ""
        if merged and (last_word in ABBREVIATIONS or re.fullmatch(r"[a-z]", last_word)):
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    return merged


def split_turns(text: str) -> list[str]:
    """A dialogue's turns, one per ``Speaker: ...`` line (a line without a speaker continues the turn before)."""
    turns: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if _TURN.match(line) or not turns:
            turns.append(" ".join(line.split()))
        else:
            turns[-1] += " " + " ".join(line.split())
    return turns


def split_units(text: str, lang: str) -> list[str]:
    """What a summary picks from: a dialogue's turns, else sentences."""
    return split_turns(text) if is_dialogue(text) else split_sentences(text, lang)


def split_sections(text: str) -> list[str]:
    """Markdown sections (a heading starts one); a text without headings is one section."""
    sections: list[list[str]] = [[]]
    for line in text.splitlines():
        if _HEADING.match(line) and any(s.strip() for s in sections[-1]):
            sections.append([])
        sections[-1].append(line)
    return ["\n".join(s).strip() for s in sections if "\n".join(s).strip()]


def count_words(text: str) -> int:
    """Words, counting each CJK character as one (how a Chinese reader counts 字)."""
    cjk = len(re.findall(r"[\u3400-\u9fff\uf900-\ufaff]", text))
    latin = len(re.findall(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*", re.sub(r"[\u3400-\u9fff\uf900-\ufaff]", " ", text)))
    return cjk + latin


def cut_to_words(sentences: Sequence[str], max_words: int) -> tuple[list[str], int]:
    """The leading sentences within ``max_words`` (at least the first, cut at a word if it alone is longer), and
    how many words were cut."""
    kept, used, total = [], 0, sum(count_words(s) for s in sentences)
    for sentence in sentences:
        n = count_words(sentence)
        if used + n > max_words:
            if not kept:
                kept.append(_cut_sentence(sentence, max_words))
                used = count_words(kept[0])
            break
        kept.append(sentence)
        used += n
    return kept, total - used


def _cut_sentence(sentence: str, max_words: int) -> str:
    if count_words(sentence) <= max_words:
        return sentence
    if re.search(r"[\u3400-\u9fff]", sentence):
        return sentence[:max_words].rstrip("，、,;；") + "…"
    return " ".join(sentence.split()[:max_words]).rstrip(",;:") + "…"


@dataclass(frozen=True)
class Chunk:
    """Consecutive units of a document that fit one prompt."""

    units: tuple[str, ...]
    tokens: int
    cut: bool = False
    """A single unit longer than the budget was cut to fit (its end is lost; the summary says so)."""


def chunk_units(units: Sequence[str], count_tokens: Callable[[str], int], budget: int, sep: str = " ") -> list[Chunk]:
    """Group ``units`` in order into chunks of at most ``budget`` tokens, never splitting a unit; a unit longer than
    the budget alone becomes a chunk cut to the budget's share of its characters (flagged ``cut``)."""
    if budget < 1:
        raise ValueError(f"budget={budget} must be at least 1 token")
    chunks: list[Chunk] = []
    current: list[str] = []
    used = 0
    for unit in units:
        n = count_tokens(unit) + count_tokens(sep)
        if current and used + n > budget:
            chunks.append(Chunk(tuple(current), used))
            current, used = [], 0
        if n > budget:
            keep = max(1, int(len(unit) * budget / n * 0.95))  # tokens are not characters: leave some room
            chunks.append(Chunk((unit[:keep],), count_tokens(unit[:keep]), cut=True))
            continue
        current.append(unit)
        used += n
    if current:
        chunks.append(Chunk(tuple(current), used))
    return chunks
