"""Which writing system a text is in, to route it to the English or the multilingual model.

Script, not language: counting letters by Unicode block is exact and instant, and it is what the
routing needs (an English model cannot read Chinese characters; any Latin-script text goes to it).
"""

from __future__ import annotations

import unicodedata


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0xF900 <= code <= 0xFAFF
        or 0x3040 <= code <= 0x30FF
        or 0xAC00 <= code <= 0xD7AF
    )


def script_counts(text: str) -> dict[str, int]:
    """Letters by script: ``cjk`` (Chinese, Japanese kana, Korean), ``latin``, ``other``."""
    counts = {"cjk": 0, "latin": 0, "other": 0}
    for ch in text:
        if _is_cjk(ch):
            counts["cjk"] += 1
        elif ch.isalpha():
            counts["latin" if "LATIN" in unicodedata.name(ch, "") else "other"] += 1
    return counts


def dominant_script(text: str) -> str:
    """``cjk``, ``latin``, ``other`` or ``none`` (no letters at all: numbers, emoji, URLs only).

    One CJK character weighs as much as a short Latin word (3 letters), since that is roughly how
    much meaning each carries.
    """
    counts = script_counts(text)
    weights = {"cjk": counts["cjk"] * 3, "latin": counts["latin"], "other": counts["other"]}
    if not any(weights.values()):
        return "none"
    return max(weights, key=lambda k: weights[k])


def needs_multilingual(text: str) -> bool:
    """True when an English-only model would not understand the text's script."""
    return dominant_script(text) in ("cjk", "other")
