"""Part-of-speech tagsets: the native one (jieba's, i.e. PKU/ICTCLAS) and Universal POS (UPOS).

Native tags are what jieba's dictionary and user dictionaries use: ``n`` noun, ``nr`` person,
``ns`` place, ``nt`` organisation, ``nz`` other proper noun, ``v`` verb, ``a`` adjective, ``d``
adverb, ``m`` number, ``q`` classifier, ``p`` preposition, ``c`` conjunction, ``u*`` particles, ``r``
pronoun... megasense adds ``w`` (punctuation and symbols), ``eng`` (Latin-script words, as jieba) and
``m`` for numbers written with digits. The table also covers the tags of Baidu LAC and THULAC, so the
benchmark can score them with the same mapping.

UPOS follows the UD Chinese treebanks: classifiers are NOUN, localisers (``f``: 中, 上, 后) are ADP,
the copula 是, the passive 被 and modal verbs are AUX, aspect markers 了/着/过 are AUX, demonstratives
are DET. Where the native tag cannot tell (是 is just ``v``), a short list of function words decides.
"""

from __future__ import annotations

import unicodedata

UPOS_TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT")
UPOS_TAGS += ("SCONJ", "SYM", "VERB", "X")

# UPOS -> the native tags it covers (jieba/PKU/ICTCLAS, plus LAC's PER LOC ORG TIME nw xc).
_GROUPS = {
    "NOUN": "n nl ng g an vn t tg s TIME q qv qt",  # classifiers (个, 种) are NOUN in UD Chinese
    "PROPN": "nr nr1 nr2 nrj nrf nrfg ns nsf nt nz nw j PER LOC ORG",
    "VERB": "v vd vf vx vi vl vg vyou i l",
    "AUX": "vshi pbei ul uz ug ule uzhe uguo",  # the copula, the passive, aspect markers
    "ADJ": "a ag al b bl z zg",
    "ADV": "d dg df ad",
    "PRON": "r rr rz rzt rzs rzv ry ryt rys ryv rg",
    "NUM": "m mq mg",
    "ADP": "p pba f",  # f: localisers (中, 上) are postpositions in UD Chinese
    "CCONJ": "c cc",
    "PART": "u uj ud uv ude1 ude2 ude3 usuo udeng uyy udh uls ulian y h k xc",
    "INTJ": "e o",
    "PUNCT": "w wp wkz wky wyz wyy wj ww wt wd wf wn wm ws wb wh",
    "X": "eng x xx xu nx un",
}
_BY_TAG: dict[str, str] = {tag: upos for upos, tags in _GROUPS.items() for tag in tags.split()}

# Function words whose UPOS the native tag does not decide (UD Chinese guidelines).
_WORDS = {"AUX": "是 被 能 能够 可以 应该 应当 必须", "DET": "这 那 这些 那些 每 各 某 该 此"}
_BY_WORD: dict[str, str] = {word: upos for upos, words in _WORDS.items() for word in words.split()}


def to_upos(word: str, tag: str) -> str:
    """The UPOS tag of ``word`` tagged ``tag`` in the native tagset (X for a tag it does not know)."""
    if word in _BY_WORD:
        return _BY_WORD[word]
    if tag in ("x", "w") or tag.startswith("w"):
        return _symbol_upos(word)
    return _BY_TAG.get(tag, "X")


def is_symbols(word: str) -> bool:
    """True for punctuation or symbols only (``，``, ``——``, ``%``, ``¥``)."""
    return bool(word) and all(unicodedata.category(c)[0] in "PS" for c in word)


def _symbol_upos(word: str) -> str:
    if not is_symbols(word):
        return "X"
    return "PUNCT" if all(unicodedata.category(c)[0] == "P" for c in word) else "SYM"
