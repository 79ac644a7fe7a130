"""Grounded replies: the tone an emotion asks for, the system prompt, checks on a generated reply, a template.

The assistant's reply comes from a small decoder told what to say (:func:`system_prompt`: the intent,
the user's emotion, a tone, and the one catalogue feature's facts). A small model can still loop,
ramble, invent a feature or claim to have done something, so every generated reply goes through
:func:`check_reply`; one that fails is replaced by :func:`template_reply`, which says only catalogue
facts. Both languages of a catalogue (``en``, ``zh``) are covered.

Tones from GoEmotions labels (``emotion-en``), the first group that any of the user's emotions falls in:

=================================  =====================================================================
tone                               emotions
=================================  =====================================================================
``calm and apologetic``            anger, annoyance, disappointment, disapproval, disgust
``gentle and supportive``          sadness, grief, remorse, embarrassment
``reassuring``                     fear, nervousness
``patient and clear``              confusion, curiosity
``warm``                           joy, gratitude, admiration, amusement, excitement, love, optimism, pride,
                                   relief, approval, caring, desire, surprise
``neutral and concise``            neutral, realization, none; then the sentiment decides: negative ->
                                   ``calm and apologetic``, positive -> ``warm``
=================================  =====================================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from megasense.errors import MegasenseInputError

if TYPE_CHECKING:
    from megasense.assistant.catalogue import Catalogue, Feature

APOLOGETIC, SUPPORTIVE, REASSURING, PATIENT, WARM, NEUTRAL = (
    "calm and apologetic",
    "gentle and supportive",
    "reassuring",
    "patient and clear",
    "warm",
    "neutral and concise",
)
TONE_EMOTIONS: dict[str, frozenset[str]] = {
    APOLOGETIC: frozenset({"anger", "annoyance", "disappointment", "disapproval", "disgust"}),
    SUPPORTIVE: frozenset({"sadness", "grief", "remorse", "embarrassment"}),
    REASSURING: frozenset({"fear", "nervousness"}),
    PATIENT: frozenset({"confusion", "curiosity"}),
    WARM: frozenset(
        {
            "joy",
            "gratitude",
            "admiration",
            "amusement",
            "excitement",
            "love",
            "optimism",
            "pride",
            "relief",
            "approval",
            "caring",
            "desire",
            "surprise",
        }
    ),
}
_TONE_ZH = {
    APOLOGETIC: "冷静、带着歉意",
    SUPPORTIVE: "温和、体贴",
    REASSURING: "让人安心",
    PATIENT: "耐心、清楚",
    WARM: "热情",
    NEUTRAL: "中立、简洁",
}
_OPENERS = {
    "en": {
        APOLOGETIC: "Sorry that's been frustrating.",
        SUPPORTIVE: "I'm sorry to hear that.",
        REASSURING: "Don't worry, I can help.",
        PATIENT: "No problem, let me help.",
        WARM: "Happy to help!",
    },
    "zh": {
        APOLOGETIC: "抱歉让你不愉快了。",
        SUPPORTIVE: "听到这个我很难过。",
        REASSURING: "别担心，我来帮你。",
        PATIENT: "别着急，我来帮你。",
        WARM: "很乐意帮忙！",
    },
}
LANGUAGES = ("en", "zh")


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise MegasenseInputError(f"language={language!r}; expected one of {', '.join(LANGUAGES)}")


def tone_for(emotions: Sequence[str], sentiment: str | None = None) -> str:
    """The tone a reply should take for the user's emotions (GoEmotions labels) and sentiment (the table above)."""
    found = {e.lower() for e in emotions}
    for tone, members in TONE_EMOTIONS.items():
        if found & members:
            return tone
    return {"negative": APOLOGETIC, "positive": WARM}.get((sentiment or "").lower(), NEUTRAL)


def system_prompt(
    *,
    catalogue_name: str,
    intent: str | None,
    out_of_scope: bool,
    emotions: Sequence[str],
    tone: str,
    feature: Feature | None,
    slots: Mapping[str, str],
    language: str,
) -> str:
    """The system message of a grounded reply: short, and only the one feature's catalogue facts."""
    _check_language(language)
    feelings = [e for e in emotions if e != "neutral"]
    details = ", ".join(f"{k} = {v}" for k, v in slots.items())
    if language == "zh":
        lines = [f"你是{catalogue_name}的语音助手。用中文回答，只说一到两句，语气{_TONE_ZH.get(tone, tone)}。"]
        if feelings:
            lines.append(f"用户的情绪：{'、'.join(feelings)}。")
        if out_of_scope or feature is None:
            lines.append("这个请求不在产品功能范围内：礼貌地说明你暂时帮不了，不要编造功能。")
        else:
            lines.append(f"用户想要：{intent}。" + (f"已知信息：{details}。" if details else ""))
            lines.append(f"只能提到这个功能和它的事实：{feature.facts()}")
            lines.append("不要承诺目录里没有的功能，不要说你已经替用户完成了预订、购买或发送。")
        return "\n".join(lines)
    lines = [
        f"You are the voice assistant of {catalogue_name}. Reply in English in 1-2 short sentences, in a {tone} tone."
    ]
    if feelings:
        lines.append(f"The user seems to feel: {', '.join(feelings)}.")
    if out_of_scope or feature is None:
        lines.append("This request is outside what the product can do: say politely that you cannot help with it yet.")
        lines.append("Do not invent features.")
    else:
        lines.append(f"The user wants: {intent}." + (f" Details: {details}." if details else ""))
        lines.append(f"Only mention this feature and its facts: {feature.facts()}")
        lines.append(
            "Never promise features that are not in the catalogue; never claim you booked, ordered or sent anything."
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ checking

# Capabilities a smart-device reply might name: (English stems, Chinese words). A reply that names one
# that no catalogue text mentions, in either language, promises something the product does not have.
_CAPABILITIES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("alarm",), ("闹钟",)),
    (("timer",), ("计时",)),
    (("reminder",), ("提醒",)),
    (("calendar", "agenda"), ("日历", "日程")),
    (("weather", "forecast"), ("天气",)),
    (("music", "song"), ("音乐", "歌曲")),
    (("playlist",), ("歌单", "播放列表")),
    (("podcast",), ("播客",)),
    (("audiobook",), ("有声书",)),
    (("radio",), ("电台", "收音机")),
    (("news",), ("新闻",)),
    (("shopping list",), ("购物清单",)),
    (("to-do", "todo"), ("待办",)),
    (("translat",), ("翻译",)),
    (("smart home",), ("智能家居",)),
    (("thermostat",), ("温控", "空调")),
    (("camera",), ("摄像头", "相机")),
    (("doorbell",), ("门铃",)),
    (("video call",), ("视频通话",)),
    (("intercom",), ("对讲",)),
    (("email", "e-mail"), ("邮件",)),
    (("text message", "sms"), ("短信",)),
    (("payment", "pay for", "money transfer"), ("支付", "付款", "转账")),
    (("food delivery", "takeaway", "takeout"), ("外卖",)),
    (("taxi", "ride-hailing", "cab"), ("打车", "叫车", "出租车")),
    (("flight",), ("机票", "航班")),
    (("hotel",), ("酒店",)),
    (("restaurant",), ("餐厅", "饭店")),
    (("recipe",), ("菜谱", "食谱")),
    (("navigation", "directions"), ("导航",)),
    (("traffic",), ("路况", "交通")),
    (("voice recording", "recorder"), ("录音",)),
    (("game",), ("游戏",)),
    (("workout", "fitness"), ("健身", "锻炼")),
    (("meditation",), ("冥想",)),
    (("white noise", "sleep sounds"), ("白噪音",)),
    (("television", "tv show", "movie"), ("电视", "电影")),
    (("photo",), ("照片",)),
    (("stock price", "stock market"), ("股票", "股价")),
    (("sports score",), ("比分",)),
)
_NEGATION = re.compile(
    r"\b(?:can't|cannot|can not|not|unable|don't|doesn't|won't|no)\b|不能|无法|没法|不支持|暂时不|没有|不会", re.I
)
_CLAIM_VERBS = (
    "booked|book|ordered|order|sent|send|bought|buy|purchased|purchase|paid|pay|called|call|texted|text|emailed|email|"
    "scheduled|reserved|reserve|cancell?ed|cancel|transferred|transfer|placed|set up|set|added|turned on|turned off|"
    "started|created|deleted|changed"
)
_ACTION_EN = re.compile(
    r"\b(?:(?P<future>I'll|I’ll|I will)|I(?:'ve|’ve| have)?|I just|I already)\s+"
    r"(?:just\s+|already\s+|gone ahead and\s+|go ahead and\s+)?"
    rf"(?P<verb>{_CLAIM_VERBS})\b"
    r"|\b(?:has|have) been "
    r"(?P<passive>booked|ordered|sent|bought|purchased|paid|scheduled|reserved|cancell?ed|transferred|placed)\b",
    re.I,
)
_MODALS = frozenset(("shall", "should", "can", "could", "may", "might", "would", "do", "did", "if", "when"))
_BASE_VERBS = frozenset(
    ("book", "order", "send", "buy", "purchase", "pay", "call", "text", "email", "reserve", "cancel", "transfer")
)
_ACTION_ZH = re.compile(
    r"(?:已经?|我(?:已经?)?)(?:帮你|为你|给你|替你)?(?P<verb>预订|预定|订好|订了|下单|购买|买好|买了|发送|发好|发了|支付|付款|打电话|"
    r"取消|转账|设置|设好|定好|添加|打开|关闭)"
    r"|(?:帮你|为你|给你|替你)(?P<verb2>预订|预定|订|下单|买|发|支付|转账|设|定|添加|打开|关闭)(?:好|完)?了"
)
# A claimed verb is fine when the grounded feature's facts hold its stem ("order" for a shopping feature).
_VERB_STEMS = {
    **{"booked": "book", "ordered": "order", "sent": "send", "bought": "buy", "purchased": "purchase"},
    **{"paid": "pay", "called": "call", "texted": "text", "emailed": "email", "scheduled": "schedul"},
    **{"reserved": "reserv", "canceled": "cancel", "cancelled": "cancel", "transferred": "transfer"},
    **{"placed": "place", "added": "add", "started": "start", "created": "creat", "deleted": "delet"},
    **{"changed": "chang", "turned on": "turn", "turned off": "turn", "set up": "set"},
}
_URL = re.compile(r"\b(?:https?://|www\.)\S+|\b[\w.+-]+@[\w-]+\.[\w.]+\b|\b[\w-]+\.(?:com|net|org|io|cn|co)\b", re.I)
_PHONE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d")
_ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_SENTENCE = re.compile(r"[^.!?。！？]+[.!?。！？]*")


def check_reply(
    reply: str,
    *,
    feature: Feature | None,
    catalogue: Catalogue,
    previous_replies: Sequence[str] = (),
    language: str | None = None,
    max_chars: int | None = None,
    grounding: str = "",
) -> str | None:
    """What is wrong with a generated reply, in a few words, or None when it may be sent.

    Checked, in order: empty; too long (``max_chars``, default 300 characters, 150 in Chinese); looping
    (a sentence twice, a word four times in a row, a 4-word or 4-character sequence three times);
    the last reply again; a URL, e-mail address or phone number that no catalogue text holds; a claim to
    have done something (booked, ordered, sent...) that the grounded feature's facts do not describe; a
    capability no catalogue feature mentions; a number, month or weekday that neither ``grounding`` (the
    user's words and slots) nor the grounded feature's facts hold (a small model invents balances, dates
    and populations); the wrong language (``language``, default the catalogue's); in English, no content word
    shared with the grounded feature's name, description or examples (off topic).
    """
    language = language or catalogue.language
    _check_language(language)
    text = reply.strip() if isinstance(reply, str) else ""
    if not text:
        return "empty reply"
    limit = max_chars or (150 if language == "zh" else 300)
    if len(text) > limit:
        return f"too long: {len(text)} characters, at most {limit}"
    problem = _repetition(text, language)
    if problem:
        return problem
    if previous_replies and _plain(previous_replies[-1]) == _plain(text):
        return "repeats the previous reply word for word"
    catalogue_text = " ".join(f"{f.name} {f.description} {' '.join(f.examples)}" for f in catalogue).lower()
    problem = _contact_details(text, catalogue_text)
    if problem:
        return problem
    problem = _action_claim(text, feature)
    if problem:
        return problem
    problem = _off_catalogue(text, catalogue_text)
    if problem:
        return problem
    problem = _invented_facts(text, f"{grounding} {feature.facts() if feature is not None else ''}")
    if problem:
        return problem
    problem = _wrong_language(text, language)
    if problem:
        return problem
    if feature is not None and language == "en" and not _on_topic(text, feature):
        return f"off topic: says nothing of {feature.name}"
    return None


def _content_words(text: str) -> set[str]:
    """Words of four letters or more, without common function words, cut to a 5-letter stem."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return {w[:5] for w in re.findall(r"[a-z]{4,}", text.lower()) if w not in ENGLISH_STOP_WORDS}


def _on_topic(text: str, feature: Feature) -> bool:
    """The reply shares a content word with the grounded feature (name, description, examples): a grounded
    reply talks about the feature; "That's a great idea! I'll keep an eye out" does not, and neither does an
    answer that only echoes the request ("to get to the bowling alley you'll need a taxi")."""
    about = _content_words(" ".join((feature.name, feature.description, *feature.examples)))
    return bool(_content_words(text) & about)


_FACT = re.compile(
    r"\d+(?:[.,:]\d+)*|\b(?:january|february|march|april|may|june|july|august|september|october|november|december"
    r"|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b",
    re.I,
)
_WORDS_0_TO_20 = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
)
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_WORDS_0_TO_20.split(" "))}


def _invented_facts(text: str, grounding: str) -> str | None:
    """A number, month or weekday in the reply that the request and the feature's facts do not hold."""
    known = grounding.lower()
    known_numbers = set(re.findall(r"\d+", known)) | {
        d for w, d in _NUMBER_WORDS.items() if re.search(rf"\b{w}\b", known)
    }
    for m in _FACT.finditer(text):
        found = m.group().lower()
        if found == "may" and not text[m.start() : m.start() + 1].isupper():
            continue  # the modal verb, not the month
        if found[0].isdigit():
            if all(part in known_numbers for part in re.findall(r"\d+", found)):
                continue
        elif re.search(rf"\b{found}\b", known):
            continue
        return f"states {m.group()!r}, which neither the request nor the catalogue says"
    return None


def _contact_details(text: str, catalogue_text: str) -> str | None:
    for pattern, what in ((_URL, "link or address"), (_PHONE, "phone number")):
        for m in pattern.finditer(text):
            found = m.group().strip()
            if what == "phone number" and (sum(c.isdigit() for c in found) < 7 or _ISO_DATE.fullmatch(found)):
                continue  # a time or a date, not a number to call
            if found.lower() not in catalogue_text:
                return f"gives a {what} that is not in the catalogue: {found!r}"
    return None


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def _repetition(text: str, language: str) -> str | None:
    sentences = [_plain(s) for s in _SENTENCE.findall(text) if _plain(s)]
    if len(sentences) != len(set(sentences)):
        return "repeats a sentence"
    words = re.findall(r"\w+", text.casefold()) if language == "en" else [c for c in text if c.isalnum()]
    for i in range(len(words) - 3):
        if language == "en" and len(set(words[i : i + 4])) == 1:
            return f"repeats {words[i]!r} again and again"
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - 3):
        gram = tuple(words[i : i + 4])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] >= 3:
            return f"loops on {' '.join(gram) if language == 'en' else ''.join(gram)!r}"
    return None


def _action_claim(text: str, feature: Feature | None) -> str | None:
    facts = feature.facts().lower() if feature is not None else ""
    for m in _ACTION_EN.finditer(text):
        verb = (m.group("verb") or m.group("passive")).lower()
        before = text[: m.start()].split()[-1:]
        if before and before[0].lower() in _MODALS:
            continue  # "Shall I set an alarm?" offers, it claims nothing
        if verb in _BASE_VERBS and not m.group("future"):
            continue  # "I book", present tense: a description, not a claim; "I'll book" is a promise
        stem = _VERB_STEMS.get(verb, verb)
        if not facts or stem not in facts:
            return f"claims an action no feature here performs: {m.group().strip()!r}"
    for m in _ACTION_ZH.finditer(text):
        verb = m.group("verb") or m.group("verb2")
        if not facts or verb[0] not in facts:
            return f"claims an action no feature here performs: {m.group()!r}"
    return None


def _off_catalogue(text: str, catalogue_text: str) -> str | None:
    for sentence in _SENTENCE.findall(text):
        if _NEGATION.search(sentence):
            continue  # "I can't order food yet" promises nothing
        lowered = sentence.lower()
        for english, chinese in _CAPABILITIES:
            named = [s for s in english if re.search(rf"\b{re.escape(s)}", lowered)] + [
                w for w in chinese if w in sentence
            ]
            if named and not any(s in catalogue_text for s in (*english, *chinese)):
                return f"mentions {named[0]!r}, which no catalogue feature offers"
    for m in re.finditer(r"\b(?i:the|our|my)\s+((?:[A-Z][\w-]*\s){1,3})(?:feature|app|skill)\b", text):
        if m.group(1).strip().lower() not in catalogue_text:
            return f"names a feature that is not in the catalogue: {m.group(1).strip()!r}"
    return None


def _wrong_language(text: str, language: str) -> str | None:
    han = len(re.findall(r"[\u4e00-\u9fff]", text))
    latin = len(re.findall(r"[A-Za-z]", text))
    if language == "zh" and han < latin:
        return f"not in Chinese: {han} Chinese characters against {latin} Latin letters"
    if language == "en" and han > 0.2 * (han + latin):
        return f"not in English: {han} Chinese characters against {latin} Latin letters"
    return None


# ------------------------------------------------------------------------------------------ template


def template_reply(
    *,
    intent: str | None,
    out_of_scope: bool,
    feature: Feature | None,
    slots: Mapping[str, str],
    emotions: Sequence[str],
    language: str,
    sentiment: str | None = None,
    suggestions: Sequence[Feature] = (),
) -> str:
    """The fallback reply: a tone opener, then the grounded feature's facts and the slots to confirm, or,
    out of scope (or no feature for ``intent``), that this cannot be done yet and what can (``suggestions``).

    The feature already stands for the intent, so ``intent`` changes nothing in the words; it is taken
    so the call reads like :func:`system_prompt`'s and the two can be swapped.
    """
    _check_language(language)
    opener = _OPENERS[language].get(tone_for(emotions, sentiment), "")
    if out_of_scope or feature is None:
        if tone_for(emotions, sentiment) not in (APOLOGETIC, SUPPORTIVE):
            opener = ""  # "Happy to help!" or "Let me help" before "I can't help with that" reads as a joke
        names = [f.name for f in suggestions[:3]]
        if language == "zh":
            body = "抱歉，这个我暂时帮不了。" + (f"你可以问我：{'、'.join(names)}。" if names else "")
        else:
            body = "I can't help with that yet." if opener.startswith("Sorry") else "Sorry, I can't help with that yet."
            body += f" You can ask me about {_join_en(names)}." if names else ""
        return f"{opener}{'' if language == 'zh' else ' '}{body}".strip()
    description = _SENTENCE.findall(feature.description)[0].strip() if feature.description else ""
    if language == "zh":
        ask = "".join(slots[k] for k in ("city", "place", "date", "time", "duration") if slots.get(k))
        return f"{opener}我可以帮你：{feature.name}——{description}" + (f"是{ask}吗？" if ask else "")
    body = f"I can help with that: {feature.name} — {description}"
    confirm = _confirm_en(slots)
    return " ".join(part for part in (opener, body, confirm) if part)


def _confirm_en(slots: Mapping[str, str]) -> str:
    """ "At 7 am tomorrow?", "Tomorrow in Paris?", "For 10 minutes?": the slots read back as a question."""
    parts = []
    if slots.get("duration"):
        parts.append(f"for {slots['duration']}")
    if slots.get("time"):
        parts.append(f"at {slots['time']}")
    date = slots.get("date")
    if date:
        starts_plain = re.match(rf"(?:\d|the\b|{'|'.join(_MONTHS_AND_DAYS)})", date, re.I)
        parts.append(f"on {date}" if starts_plain else date)
    place = slots.get("city") or slots.get("place")
    if place:
        parts.append(f"in {place}")
    if not parts:
        return ""
    sentence = " ".join(parts)
    return sentence[0].upper() + sentence[1:] + "?"


_MONTHS_AND_DAYS = (
    *("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    *("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
)


def _join_en(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
