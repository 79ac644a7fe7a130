"""The check digits that tell a payment card or a Chinese resident ID number from any other run of digits.

Written by hand: each is a few lines of published arithmetic (ISO/IEC 7812 Luhn, GB 11643-1999 ISO 7064
MOD 11-2), and the libraries that carry them (python-stdnum, for one) would be a dependency for ten lines.
"""

from __future__ import annotations

import datetime as _dt

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
"""GB 11643-1999: the weight of each of the first 17 digits (2**(17-i) mod 11)."""
ID_CHECK = "10X98765432"
"""The check character for each remainder of the weighted sum mod 11."""


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (only 0-9) pass the Luhn check: every second digit from the right doubled."""
    if not digits.isdigit() or not digits.isascii():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass the Luhn check (for building valid numbers in tests)."""
    for d in "0123456789":
        if luhn_valid(payload + d):
            return d
    raise ValueError(f"{payload!r} is not a string of digits")  # unreachable for digits


def id_check_char(first17: str) -> str:
    """The 18th character (0-9 or X) of a resident ID number whose first 17 digits are ``first17``."""
    if len(first17) != 17 or not first17.isdigit() or not first17.isascii():
        raise ValueError(f"expected 17 digits, got {first17!r}")
    return ID_CHECK[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS)) % 11]


def cn_id_valid(number: str, *, today: _dt.date | None = None) -> bool:
    """True for an 18-character Chinese resident ID number with a valid check character, a province code
    (first digit 1-8) and a real birth date (YYYYMMDD at digits 7-14, from 1900 to ``today``)."""
    if len(number) != 18 or not number[:17].isdigit() or not number.isascii():
        return False
    if number[0] not in "12345678":
        return False
    try:
        born = _dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if not _dt.date(1900, 1, 1) <= born <= (today or _dt.date.today()):
        return False
    return number[17].upper() == id_check_char(number[:17])
