"""Redaction: property-based tests per detector (generated valid items are found, checksum failures are not),
precision/recall floors on the labelled sample, the names file, and the overlap rules."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from megasense.errors import MegasenseInputError
from megasense.privacy import Redactor, build_redactor, read_names
from megasense.privacy.checksums import cn_id_valid, id_check_char, luhn_check_digit, luhn_valid
from megasense.privacy.detectors import (
    CardDetector,
    ChineseIdDetector,
    ChineseMobileDetector,
    EmailDetector,
    IpDetector,
    NameDetector,
    PhoneDetector,
    UrlDetector,
)
from megasense.privacy.evaluation import read_sample, score_sample

SAMPLE = Path(__file__).parent / "data" / "privacy" / "sample.jsonl"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONTEXTS = ("contact {} now", "see: {}, thanks", "{}", "联系{}，谢谢", "(请用 {})")


def found(detector, text: str, item: str) -> bool:
    start = text.index(item)
    return any(s.start == start and s.end == start + len(item) for s in detector.find(text))


label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
emails = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.from_regex(r"[a-z0-9](?:[a-z0-9._+-]{0,15}[a-z0-9])?", fullmatch=True),
    label,
    st.sampled_from(["com", "org", "cn", "io", "co.uk", "com.cn", "museum"]),
)


@FAST
@given(emails, st.sampled_from(CONTEXTS))
def test_generated_emails_are_found(email: str, context: str) -> None:
    assert found(EmailDetector(), context.format(email), email)


@FAST
@given(
    st.sampled_from(["http://", "https://", "https://www."]),
    label,
    st.sampled_from(["com", "cn", "org", "io"]),
    st.from_regex(r"(/[a-z0-9_\-]{1,8}){0,3}(\?[a-z]{1,5}=[0-9]{1,4})?", fullmatch=True),
    st.sampled_from(CONTEXTS),
)
def test_generated_urls_are_found(scheme: str, domain: str, tld: str, path: str, context: str) -> None:
    url = f"{scheme}{domain}.{tld}{path}"
    assert found(UrlDetector(), context.format(url), url)


def test_urls_stop_at_sentence_punctuation_and_chinese() -> None:
    text = "见https://x.cn/a获取帮助。Also https://en.wikipedia.org/wiki/Foo_(bar)."
    urls = [text[s.start : s.end] for s in UrlDetector().find(text)]
    assert urls == ["https://x.cn/a", "https://en.wikipedia.org/wiki/Foo_(bar)"]
    assert UrlDetector().find("node.js and report.pdf and v1.2") == []


CARD_PREFIXES = ["4", "51", "55", "2221", "34", "37", "6011", "65", "62", "35"]


@st.composite
def card_payloads(draw) -> str:
    """The digits of a card number but its check digit."""
    prefix = draw(st.sampled_from(CARD_PREFIXES))
    length = draw(st.sampled_from([15, 16] if prefix in ("34", "37") else [16, 19] if prefix == "62" else [16]))
    body = draw(st.text("0123456789", min_size=length - 1 - len(prefix), max_size=length - 1 - len(prefix)))
    return prefix + body


def grouped(digits: str, sep: str) -> str:
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


@FAST
@given(card_payloads(), st.sampled_from(["", " ", "-"]), st.sampled_from(CONTEXTS))
def test_luhn_valid_cards_are_found_and_invalid_ones_are_not(payload: str, sep: str, context: str) -> None:
    good = payload + luhn_check_digit(payload)
    bad = payload + str((int(luhn_check_digit(payload)) + 1) % 10)
    assert luhn_valid(good) and not luhn_valid(bad)
    assert found(CardDetector(), context.format(grouped(good, sep)), grouped(good, sep))
    assert CardDetector().find(context.format(grouped(bad, sep))) == []


def test_luhn_known_numbers() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112") and not luhn_valid("12a4")


@st.composite
def id_payloads(draw) -> str:
    """The first 17 digits of a resident ID: region, birth date, sequence."""
    region = draw(st.from_regex(r"[1-8][0-9]{5}", fullmatch=True))
    born = draw(st.dates(dt.date(1900, 1, 1), dt.date(2020, 12, 31)))
    return region + born.strftime("%Y%m%d") + draw(st.from_regex(r"[0-9]{3}", fullmatch=True))


@FAST
@given(id_payloads(), st.sampled_from(CONTEXTS))
def test_checksummed_ids_are_found_and_wrong_checks_are_not(payload: str, context: str) -> None:
    check = id_check_char(payload)
    good = payload + check
    wrong = payload + next(c for c in "0123456789X" if c != check)
    assert cn_id_valid(good) and not cn_id_valid(wrong)
    assert found(ChineseIdDetector(), context.format(good), good)
    assert ChineseIdDetector().find(context.format(wrong)) == []


def test_id_with_impossible_birth_date_is_not_found() -> None:
    payload = "44030619851301567"  # month 13
    assert ChineseIdDetector().find("身份证" + payload + id_check_char(payload)) == []
    assert cn_id_valid("11010519491231002X")  # GB 11643's published example


@FAST
@given(st.ip_addresses(v=4), st.sampled_from(CONTEXTS))
def test_ipv4_addresses_are_found(address, context: str) -> None:
    assert found(IpDetector(), context.format(address), str(address))


@FAST
@given(st.ip_addresses(v=6).filter(lambda a: str(a) != "::"), st.sampled_from(CONTEXTS))
def test_ipv6_addresses_are_found(address, context: str) -> None:
    assert found(IpDetector(), context.format(address), str(address))


def test_not_addresses() -> None:
    assert IpDetector().find("version 1.2.3.4, v10.0.0.1, 10.0.0.256, 12:30:45, 第3.2.1.4节") == []


REGIONS = ["US", "GB", "DE", "FR", "JP", "IN", "BR", "AU", "CN", "KR", "SG", "ES"]


@FAST
@given(st.sampled_from(REGIONS), st.sampled_from(["MOBILE", "FIXED_LINE"]), st.sampled_from(CONTEXTS))
def test_international_numbers_are_found(region: str, kind: str, context: str) -> None:
    import phonenumbers

    example = phonenumbers.example_number_for_type(region, getattr(phonenumbers.PhoneNumberType, kind))
    number = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    assert found(Redactor(), context.format(number), number)


@FAST
@given(
    st.from_regex(r"1[3-9][0-9]", fullmatch=True),
    st.from_regex(r"[0-9]{8}", fullmatch=True),
    st.sampled_from(["", " ", "-"]),
    st.sampled_from(["", "+86 ", "0086"]),
    st.sampled_from(CONTEXTS),
)
def test_chinese_mobiles_are_found(head: str, tail: str, sep: str, country: str, context: str) -> None:
    number = country + head + sep + tail[:4] + sep + tail[4:]
    assert found(ChineseMobileDetector(), context.format(number), number)
    assert [s.kind for s in Redactor().find(context.format(number))] == ["PHONE"]


def test_digit_runs_that_are_not_phones() -> None:
    for text in ("order 4155552671 shipped", "订单号202311058842123", "电话1381234567少了一位", "2023-11-05 12:30"):
        assert PhoneDetector().find(text) == [] and ChineseMobileDetector().find(text) == [], text


@FAST
@given(st.from_regex(r"[A-Z][a-z]{2,8}( [A-Z][a-z]{2,8})?", fullmatch=True), st.sampled_from(CONTEXTS))
def test_listed_names_are_found_in_any_case_as_whole_words(name: str, context: str) -> None:
    detector = NameDetector([name])
    for variant in (name, name.lower(), name.upper()):
        assert found(detector, context.format(variant), variant)
    assert detector.find(context.format(name + "son")) == [] and detector.find(context.format("x" + name)) == []


def test_chinese_names_are_substrings() -> None:
    detector = NameDetector(["张伟", " ", ""])
    assert [(s.start, s.end) for s in detector.find("我是张伟，Alice张伟好")] == [(2, 4), (10, 12)]


def test_overlaps_the_longest_wins_and_placeholders_are_typed() -> None:
    redactor = Redactor(names=["alice"])
    text = "Alice: alice@example.com, http://x.com/?e=bob@example.com, 4111 1111 1111 1111, 13812345678"
    assert redactor.redact(text) == "[NAME]: [EMAIL], [URL], [CARD], [PHONE]"
    assert redactor.summary() == "5 items redacted (1 NAME, 1 EMAIL, 1 URL, 1 CARD, 1 PHONE)"
    assert Redactor().redact("") == "" and Redactor().redact("nothing here") == "nothing here"


def test_names_file(tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    path.write_text("# staff\nAlice Smith\n\n张伟\n", encoding="utf-8")
    assert read_names(path) == ["Alice Smith", "张伟"]
    redactor = build_redactor(False, names_file=path)
    assert redactor is not None and redactor.redact("ALICE SMITH met 张伟") == "[NAME] met [NAME]"
    assert build_redactor(False) is None
    with pytest.raises(MegasenseInputError, match="does not exist"):
        read_names(tmp_path / "missing.txt")
    path.write_bytes(b"Alice\n\xff\xfe\n")
    with pytest.raises(MegasenseInputError, match=r"line 2 is not UTF-8"):
        read_names(path)
    path.write_text("# only a comment\n", encoding="utf-8")
    with pytest.raises(MegasenseInputError, match="holds no names"):
        read_names(path)


def test_precision_and_recall_floors_on_the_labelled_sample() -> None:
    examples = read_sample(SAMPLE)
    assert len(examples) >= 200
    assert {e.lang for e in examples} == {"en", "zh"}
    names = sorted({e.text[s.start : s.end] for e in examples for s in e.spans if s.kind == "NAME"})
    score = score_sample(Redactor(names=names), examples)
    for kind, s in score.kinds.items():
        assert s.true_positives + s.false_negatives >= 5, kind  # every kind is in the sample
        assert s.recall >= 0.95, (kind, score.errors)
        assert s.precision >= (0.85 if kind == "NAME" else 0.95), (kind, score.errors)
    # the gold spans are what they say they are
    for e in examples:
        for s in e.spans:
            piece = e.text[s.start : s.end]
            assert piece == piece.strip() and re.search(r"\w", piece), (e.text, s)
