"""One small detector per kind of private data: a pattern for candidates, then a validation that throws out
what only looks like one (a checksum, ``ipaddress``, ``phonenumbers``), as presidio's recognizers do.

Each detector has a ``kind`` (the placeholder's name: ``EMAIL`` -> ``[EMAIL]``) and ``find(text)``, the
``Span``s it finds. Patterns use ASCII classes, not ``\\w``: in Python ``\\w`` also matches Chinese
characters, and ``邮箱alice@example.com`` must find the address without the word before it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from megasense.errors import MissingExtraError
from megasense.privacy.checksums import cn_id_valid, luhn_valid


@dataclass(frozen=True)
class Span:
    """``text[start:end]`` is private data of this ``kind`` (EMAIL, PHONE, URL, CARD, ID, IP, NAME)."""

    start: int
    end: int
    kind: str

    def to_dict(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "kind": self.kind}


class Detector(Protocol):
    kind: str

    def find(self, text: str) -> list[Span]: ...


class RegexDetector:
    """Candidates from a pattern, each kept when ``valid(candidate)``; the base of most detectors."""

    kind = ""
    pattern: re.Pattern[str]

    def valid(self, candidate: str) -> bool:
        return True

    def candidates(self, text: str) -> Iterable[tuple[int, int]]:
        for m in self.pattern.finditer(text):
            yield m.start(), m.end()

    def find(self, text: str) -> list[Span]:
        return [Span(s, e, self.kind) for s, e in self.candidates(text) if self.valid(text[s:e])]


class EmailDetector(RegexDetector):
    kind = "EMAIL"
    pattern = re.compile(
        r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+"
        r"[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
    )


TLDS = (
    "com|net|org|edu|gov|io|ai|app|dev|co|cn|uk|de|fr|jp|kr|hk|tw|sg|au|ca|us|in|ru|br|es|it|nl|se|ch|info|biz|"
    "me|tv|xyz|shop|store|online|site|top|vip|xin|wang"
)
"""Top-level domains a bare domain (``taobao.com/item``, no scheme) must end in to count as a URL: a short
list keeps ``node.js``, ``report.pdf`` and ``v1.2`` out."""
_NOT_IN_URL = r"\s<>\"'\u3000-\u9fff\uf900-\ufaff\uff00-\uffef"
"""Whitespace, quotes and CJK characters and punctuation end a URL: Chinese text runs on right after one
(``见https://x.cn/a获取``); a real URL carries non-ASCII letters percent-encoded."""
_URL_TAIL = r"(?:[/?#][^" + _NOT_IN_URL + r"]*)?"
_TRAILING = ".,;:!?)]}'\""


class UrlDetector(RegexDetector):
    kind = "URL"
    pattern = re.compile(
        r"(?:(?:https?|ftp)://[^" + _NOT_IN_URL + r"]+"
        r"|(?<![A-Za-z0-9.@\-])(?:www\.)?(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)+(?:" + TLDS + r")"
        r"(?![A-Za-z0-9@\-])(?::\d{2,5})?" + _URL_TAIL + ")",
        re.IGNORECASE,
    )

    def candidates(self, text: str) -> Iterable[tuple[int, int]]:
        for s, e in super().candidates(text):
            while e > s and text[e - 1] in _TRAILING:  # "see https://x.com/a." ends the sentence, not the URL
                if text[e - 1] == ")" and text.count("(", s, e) >= text.count(")", s, e):
                    break  # a balanced ")" belongs to the URL (Wikipedia's "Foo_(bar)")
                e -= 1
            yield s, e


NOT_PHONE = re.compile(
    r"(?:\b(?:order|invoice|tracking|ref|no|sku|lot|batch|serial)|#|订单|单号|编号|货号|快递|批号|批次|积分)\s*[#:：.]?\s*$",
    re.I,
)
"""Words after which a run of digits is an order, invoice or batch number, not a phone number."""


def _after_order_word(text: str, start: int) -> bool:
    return bool(NOT_PHONE.search(text[max(0, start - 16) : start]))


class PhoneDetector:
    """Phone numbers found by Google's libphonenumber (the ``phonenumbers`` port): any number written with its
    country code (``+44 20 7946 0958``), and national numbers of ``regions`` (US and Chinese formats by
    default), each checked against the numbering plan (``Leniency.VALID``). A number right after an order,
    invoice or tracking word is not a phone (``order 4155552671``)."""

    kind = "PHONE"

    def __init__(self, regions: Sequence[str] = ("US", "CN")) -> None:
        try:
            import phonenumbers
        except ModuleNotFoundError:
            raise MissingExtraError(
                "redaction finds phone numbers with phonenumbers, not installed: pip install 'megasense[privacy]'"
            ) from None

        self._pn = phonenumbers
        self.regions = tuple(regions)

    def find(self, text: str) -> list[Span]:
        found: set[tuple[int, int]] = set()
        if not any(ch.isdigit() for ch in text):
            return []
        for region in self.regions:
            for m in self._pn.PhoneNumberMatcher(text, region, leniency=self._pn.Leniency.VALID):
                if not _after_order_word(text, m.start):
                    found.add((m.start, m.end))
        return [Span(s, e, self.kind) for s, e in sorted(found)]


class ChineseMobileDetector(RegexDetector):
    """Mainland mobile numbers: 11 digits from 13x-19x, optionally after +86 or 0086 and split 3-4-4 by spaces
    or hyphens; not inside a longer run of digits (an order number)."""

    kind = "PHONE"
    pattern = re.compile(r"(?<![0-9+])(?:(?:\+|00)86[ \-]?)?1[3-9]\d(?:[ \-]?\d{4}){2}(?![0-9])")

    def candidates(self, text: str) -> Iterable[tuple[int, int]]:
        return ((s, e) for s, e in super().candidates(text) if not _after_order_word(text, s))


CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|35|6011|64[4-9]|65|62|81)")
"""Issuer prefixes (ISO/IEC 7812 IINs): Visa, Mastercard, Amex, Diners, JCB, Discover, UnionPay."""


class CardDetector(RegexDetector):
    """Payment card numbers: 13-19 digits (in groups split by spaces or hyphens), an issuer's prefix, and a
    passing Luhn check, so nine in ten random digit runs (order numbers) are not cards."""

    kind = "CARD"
    pattern = re.compile(r"(?<![0-9A-Za-z\-])\d(?:[ \-]?\d){12,18}(?![0-9A-Za-z])")

    def valid(self, candidate: str) -> bool:
        digits = re.sub(r"[ \-]", "", candidate)
        return 13 <= len(digits) <= 19 and bool(CARD_PREFIX.match(digits)) and luhn_valid(digits)


class ChineseIdDetector(RegexDetector):
    """Chinese resident ID numbers (18 characters: 17 digits and a check digit or X), with a real birth date
    and a check character that fits (GB 11643-1999)."""

    kind = "ID"
    pattern = re.compile(r"(?<![0-9A-Za-z])\d{17}[0-9Xx](?![0-9A-Za-z])")

    def valid(self, candidate: str) -> bool:
        return cn_id_valid(candidate)


class IpDetector(RegexDetector):
    """IPv4 and IPv6 addresses, each checked by the standard library's ``ipaddress``; a dotted quad after a
    version or section word (``version 1.2.3.4``, ``chapter 3.2.1.4``, ``版本``, ``第``) is not an address."""

    kind = "IP"
    pattern = re.compile(
        r"(?<![0-9A-Za-z.:])(?:"
        r"(?:\d{1,3}\.){3}\d{1,3}(?![0-9]|\.\d)"
        r"|(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4})"
        r"(?:%[0-9A-Za-z]+)?(?![0-9A-Za-z:])"
        r")"
    )
    VERSION = re.compile(
        r"(?:\b(?:v|version|ver|firmware|build|release|chapter|section)\.?|§|版本号?|第)\s*[:：]?\s*$", re.I
    )

    def find(self, text: str) -> list[Span]:
        spans = []
        for m in self.pattern.finditer(text):
            candidate = m.group()
            if (
                "." in candidate
                and ":" not in candidate
                and self.VERSION.search(text[max(0, m.start() - 12) : m.start()])
            ):
                continue
            if _ip_valid(candidate):
                spans.append(Span(m.start(), m.end(), self.kind))
        return spans


def _ip_valid(candidate: str) -> bool:
    if ":" in candidate and not any(c in "0123456789abcdefABCDEF" for c in candidate.split("%")[0]):
        return False  # "::" alone is an address, but in text it is punctuation
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


class NameDetector:
    """The names a user lists, found case-insensitively: a Latin name as a whole word (not ``Al`` in
    ``Also``), a name with Chinese characters anywhere (Chinese has no spaces between words). Longer names
    first, so ``Anna Lee`` is one name, not ``Anna``."""

    kind = "NAME"

    def __init__(self, names: Iterable[str]) -> None:
        cleaned = sorted({" ".join(n.split()) for n in names if n and n.strip()}, key=lambda n: (-len(n), n))
        self.names = tuple(cleaned)
        parts = [self._part(n) for n in cleaned]
        self.pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None

    @staticmethod
    def _part(name: str) -> str:
        body = r"\s+".join(re.escape(w) for w in name.split(" "))
        if re.search(r"[\u3400-\u9fff\uf900-\ufaff]", name):
            return body
        return r"(?<![A-Za-z0-9])" + body + r"(?![A-Za-z0-9])"

    def find(self, text: str) -> list[Span]:
        if self.pattern is None:
            return []
        return [Span(m.start(), m.end(), self.kind) for m in self.pattern.finditer(text)]


def default_detectors() -> list[Detector]:
    """Every built-in detector but names (which need a list); in the order they win a tie."""
    return [
        EmailDetector(),
        UrlDetector(),
        ChineseIdDetector(),
        CardDetector(),
        IpDetector(),
        ChineseMobileDetector(),
        PhoneDetector(),
    ]
