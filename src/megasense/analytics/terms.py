"""Named things to look for in texts: aspects (``aspects.toml``) and brands (``brands.toml``), and finding them.

A file lists one table per thing; every name it may go by is a form of it::

    [[aspect]]                      # brands.toml: [[brand]] with aliases = [...]
    name = "battery"
    synonyms = ["battery life", "charge"]
    zh = ["电池", "续航"]

``TermMatcher`` finds the forms in a sentence: a Latin-script form as whole words, case-insensitively
("Apple" in "apple's", not in "pineapple"); a Chinese form as a substring (Chinese has no spaces to
bound a word). Where forms overlap, the longest wins ("battery life" over "battery"). No torch.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from megasense.errors import ConfigError, MegasenseInputError

KINDS = {"aspect": "synonyms", "brand": "aliases"}
"""The table name of each kind of file, and the key of its other names."""


@dataclass(frozen=True)
class Term:
    name: str
    """How the report names it."""
    forms: tuple[str, ...]
    """Every form it is found by: the name, synonyms or aliases, Chinese names."""


def read_terms(path: str | Path, kind: str) -> list[Term]:
    """The aspects (``kind="aspect"``) or brands (``"brand"``) of a TOML file; errors name the file and entry."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MegasenseInputError(f"{path}: no such file (--{kind}s)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    entries = data.get(kind)
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected [[{kind}]] tables, each with a name; found keys {sorted(data)}")
    allowed = {"name", KINDS[kind], "zh"}
    terms = []
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: [[{kind}]] number {number}"
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown}; expected {sorted(allowed)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: 'name' must be a non-empty string, found {name!r}")
        forms = [name]
        for key in (KINDS[kind], "zh"):
            value = entry.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise ConfigError(f"{where} ({name}): {key!r} must be a list of non-empty strings, found {value!r}")
            forms += value
        terms.append(Term(name.strip(), tuple(dict.fromkeys(f.strip() for f in forms))))
    names = [t.name.lower() for t in terms]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{path}: {kind}s named more than once: {repeated}")
    return terms


def _is_cjk(form: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in form)


_NOT_CJK_WORD = r"[^\W\u3400-\u9fff\uf900-\ufaff]"
"""A word character other than a Chinese one: what may not touch a Latin form, so "pineapple" holds no "apple"
but "相比OPPO，vivo更好" holds OPPO (Chinese is written without spaces, and ``\\w`` counts its characters)."""


class TermMatcher:
    """Mentions of terms in sentences: ``find(sentence)`` -> [(term index, form as written), ...], in order."""

    def __init__(self, terms: list[Term]) -> None:
        self.terms = terms
        owner: dict[str, int] = {}
        for index, term in enumerate(terms):
            for form in term.forms:
                owner.setdefault(form.lower(), index)  # a form listed twice belongs to the first term
        self._owner = owner
        forms = sorted(owner, key=len, reverse=True)  # the regex tries the longest form first
        edge = _NOT_CJK_WORD
        pieces = [re.escape(f) if _is_cjk(f) else rf"(?<!{edge}){re.escape(f)}(?!{edge})" for f in forms]
        self._pattern = re.compile("|".join(pieces), re.IGNORECASE) if pieces else None

    def find(self, sentence: str) -> list[tuple[int, str]]:
        if self._pattern is None:
            return []
        return [(self._owner[m.group().lower()], m.group()) for m in self._pattern.finditer(sentence)]
