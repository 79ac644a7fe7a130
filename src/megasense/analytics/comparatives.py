"""Comparisons between two named things in one sentence: "X is better than Y" is positive for X, negative for Y.

A pair classifier reads one (sentence, target) pair at a time and mostly answers the sentence's tone for both
sides of a comparison (aspect-sentiment-en: 0.45 of the brand pairs right on 20 comparison sentences). These
are rules, not a model, because no maintained library parses comparatives: spaCy, stanza and TextBlob tag
"better" as JJR and stop there; the comparative-mining work (Jindal & Liu 2006, CompSent) ships no package.
The rules read the words between two mentions (and just before the first), so they fire only on the
constructions below, and a sentence with none keeps the model's answer.

English: "X is better / faster / cheaper / more reliable than Y", "X is worse / slower / less ADJ than Y",
"X beats / outperforms / is superior to Y", "X loses to / lags behind Y", "prefer / pick X to / over /
instead of Y", "X over Y", "switched from Y to X", "X > Y", "X is (not) as ADJ as Y", "unlike / compared
with Y, X ...", with negation flipping the sides ("X isn't better than Y", "X doesn't beat Y").
Chinese: "X比Y好/强/快/便宜", "X比Y差/慢/贵", "X不比Y便宜", "X不如Y", "X比不上Y", "X没有Y(那么)好", "X优于/胜过Y",
"X逊于/输给Y", "相比Y，X更...", "和Y相比，X更...".

A comparative's polarity comes from word lists: comparative forms (better, worse, 好, 差 ...), and for
"more / less / as ADJ" the adjective's polarity from a small product-review list, then VADER's lexicon (when
vaderSentiment, the ``baselines`` extra, is installed), then TextBlob's (pattern's adjective lexicon, the
``analytics`` extra). An adjective none of them knows leaves the sentence to the model. No torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from megasense.predictors.language import needs_multilingual

POSITIVE, NEGATIVE = "positive", "negative"
OPPOSITE = {POSITIVE: NEGATIVE, NEGATIVE: POSITIVE, "neutral": "neutral"}


@dataclass(frozen=True)
class Verdict:
    """What a comparison says about one target: a ``label``, or (``label`` None) the opposite of the label the
    model gives ``opposite_of`` (another target's key): "Unlike Y, X fixed my internet" leaves X to the model
    and Y the other way. ``rule`` names the construction (shown beside the mention)."""

    label: str | None
    rule: str
    opposite_of: int | None = None


def _words(*lines: str) -> frozenset[str]:
    return frozenset(" ".join(lines).split())


# -- English word lists ------------------------------------------------------------------------------------
_POS_ER = _words(
    "better faster quicker cheaper nicer smoother easier sturdier stronger cleaner clearer sharper brighter "
    "quieter safer smarter friendlier tastier fresher richer healthier happier simpler comfier crisper superior "
    "preferable snappier kinder lighter tougher"
)
_NEG_ER = _words(
    "worse slower pricier costlier dearer weaker uglier dirtier buggier noisier louder flimsier poorer laggier "
    "clunkier blurrier dimmer ruder greasier soggier inferior lousier glitchier riskier messier harder"
)
# Adjectives after more / less / as ... as, where the general lexicons are silent or wrong for products.
_ADJECTIVES = {
    **dict.fromkeys(
        _words(
            "reliable affordable accurate intuitive durable convenient responsive fast quick smooth sturdy robust "
            "stable efficient comfortable cheap sharp quiet powerful helpful spacious tasty polished secure "
            "user-friendly fun useful consistent generous"
        ),
        1,
    ),
    **dict.fromkeys(
        _words(
            "expensive pricey costly overpriced buggy laggy slow unreliable fragile complicated confusing crowded "
            "noisy clunky flimsy bloated cramped"
        ),
        -1,
    ),
}
_NEGATION = re.compile(r"n[’']t\b|\b(?:not|never|no|hardly|barely|nowhere)\b")
_ARTICLES = r"(?:(?:the|a|an|my|our|their|his|her|its|your|what|whatever|that|those|these|new|old)\s+)"
_BREAK = re.compile(r"[,;:!?()]|\.(?:\s|$)|\b(?:but|however|although|though|while|whereas|yet|because|since)\b")
_THAN = re.compile(rf"\bthan\s+{_ARTICLES}{{0,2}}$")
_AS_AS = re.compile(rf"\bas\s+(?P<adj>[a-z][a-z-]*)(?:\s+[a-z]+){{0,3}}?\s+as\s+{_ARTICLES}{{0,2}}$")
_VERBS_POS = (
    r"beats?|beating|outperform(?:s|ed)?|outclass(?:es|ed)?|outshines?|outshone|outlasts?|outsells?|outsold|"
    r"surpass(?:es|ed)?|trumps?|trumped|crush(?:es|ed)|destroys?|destroyed|(?:is|are|was|were)\s+superior\s+to|"
    r"superior\s+to|preferable\s+to|(?:is|are|was|were)\s+ahead\s+of|wins?\s+over|won\s+over|blows?\s+away|blew\s+away"
)
_VERBS_NEG = (
    r"loses?\s+to|lost\s+to|lags?(?:\s+behind)?|lagged(?:\s+behind)?|trails?|trailed|falls?\s+short\s+of|"
    r"fell\s+short\s+of|inferior\s+to|pales?\s+(?:in\s+comparison\s+)?(?:next\s+)?to"
)
_VERB = re.compile(rf"\b(?:(?P<pos>{_VERBS_POS})|(?P<neg>{_VERBS_NEG}))\s+{_ARTICLES}{{0,1}}$")
_CHOICE = re.compile(
    r"\b(?:prefer(?:s|red)?|pick(?:s|ed)?|choose|chose|recommend(?:s|ed)?|go\s+with|went\s+with|buy|bought|"
    r"rather\s+(?:have|use)|take|took|vote\s+for|use|love)\s+(?:the\s+)?$"
)
_INSTEAD = re.compile(rf"^\s*(?:to|over|rather\s+than|instead\s+of)\s+{_ARTICLES}{{0,1}}$")
_OVER = re.compile(r"^\s*over\s+(?:the\s+)?$")
_SWITCH_FROM = re.compile(
    r"\b(?:switch(?:ed|ing)?|mov(?:e|ed|ing)|went|go|upgrad(?:e|ed|ing)|chang(?:e|ed|ing)|migrat(?:e|ed|ing))\s+"
    r"(?:over\s+)?from\s+(?:the\s+|my\s+|an?\s+)?$"
)
_SWITCH_TO = re.compile(r"^\s*to\s+(?:the\s+|an?\s+)?$")
_LEFT_FOR = re.compile(
    r"\b(?:ditch(?:ed)?|dump(?:ed)?|left|leave|drop(?:ped)?|quit|replac(?:e|ed))\s+(?:the\s+|my\s+)?$"
)
_FOR = re.compile(r"^\s*(?:for|with)\s+(?:the\s+|an?\s+)?$")
_GREATER, _LESS = re.compile(r"^\s*(?:>+|≫|>=)\s*$"), re.compile(r"^\s*(?:<+|≪|<=)\s*$")
_AGAINST = re.compile(
    r"(?:^|[,;.]\s*)(?:unlike|compared\s+(?:to|with)|in\s+contrast\s+to|as\s+opposed\s+to|relative\s+to|next\s+to)"
    r"\s+(?:the\s+)?$"
)
_APPOSITION = re.compile(r"^\s*,\s*(?:unlike|compared\s+(?:to|with)|as\s+opposed\s+to)\s+(?:the\s+)?$")
_NOT_ADJECTIVES = _words("well much many far long soon often little few")  # "as well as Y"
_PRICE_VERB = _words("cost costs costed priced charge charges charged")

# -- Chinese word lists --------------------------------------------------------------------------------------
_ZH_POS = _words(
    "好 强 快 便宜 实惠 划算 稳定 流畅 清晰 准确 精准 耐用 靠谱 省电 安静 舒服 舒适 方便 干净 贴心 专业 给力",
    "优秀 棒 出色 漂亮 美味 新鲜 热情 周到 及时 灵敏 顺滑 丝滑 高级 细腻 可靠 安全 轻便 轻薄 省心 人性化 合理",
    "不错 香 好用 好吃 好看 好喝 好开",
)
_ZH_NEG = _words(
    "差 慢 贵 烂 卡 坑 弱 难用 难吃 难看 难喝 糟糕 麻烦 吵 费电 脏 差劲 垃圾 粗糙 敷衍 冷漠 不稳定 卡顿 发热",
    "发烫 笨重 模糊 迟 慢吞吞 坑爹 不好",
)
_ZH_WORDS = sorted(
    {**dict.fromkeys(sorted(_ZH_POS), 1), **dict.fromkeys(sorted(_ZH_NEG), -1)}.items(), key=lambda kv: -len(kv[0])
)
_ZH_BREAK = re.compile(r"[，,。；;！!？?：:]|但是|不过|可是|然而|而且|并且")
_ZH_THAN = re.compile(r"(?P<neg>不|并不|也不|没|并没)?比$")
_ZH_LESS = re.compile(r"(?:不如|比不上|比不过|赶不上|不及)$")
_ZH_NOT_AS = re.compile(r"(?:没有|没)$")
_ZH_VERB = re.compile(
    r"(?P<neg>不|并不|没有)?(?:(?P<pos>优于|胜过|胜于|强于|好于|超过|碾压|完爆|吊打|秒杀|领先于?)|(?P<bad>逊于|劣于|差于|输给|不敌|落后于?))了?$"
)
_ZH_AGAINST_BEFORE = re.compile(r"(?:^|[，,。；;])\s*(?:相比于?|相较于?|比起|对比)$")
_ZH_AGAINST_WITH = re.compile(r"(?:^|[，,。；;])\s*(?:和|与|跟|同)$")
_ZH_AGAINST_AFTER = re.compile(r"^(?:相比|相较|比起来|比较起来|比)(?:之下|而言|来说)?\s*[，,]?")


@cache
def _vader() -> Mapping[str, float]:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:  # the baselines extra is optional: the other lists still work
        return {}
    return SentimentIntensityAnalyzer().lexicon


@cache
def adjective_polarity(word: str) -> int:
    """+1, -1 or 0 (unknown) for an English adjective (or noun: "more problems"), from the lists above."""
    word = word.lower()
    if word in _ADJECTIVES:
        return _ADJECTIVES[word]
    value = _vader().get(word)
    if value is None:
        try:
            from textblob import TextBlob
        except ImportError:
            return 0
        value = TextBlob(word).sentiment.polarity
    return 0 if abs(value) < 0.1 else (1 if value > 0 else -1)


def _comparative(word: str, last: bool) -> int:
    """The polarity of a comparative form: the lists, or for the word right before "than" its stem's ("kinder")."""
    if word in _POS_ER:
        return 1
    if word in _NEG_ER:
        return -1
    if not last or len(word) < 5 or not word.endswith("er"):
        return 0
    stem = word[:-3] + "y" if word.endswith("ier") else word[:-2]
    candidates = [stem, stem + "e"] + ([stem[:-1]] if len(stem) > 2 and stem[-1] == stem[-2] else [])
    return next((p for p in map(adjective_polarity, candidates) if p), 0)


def english_cue(text: str) -> int:
    """The sign of the comparatives in ``text`` (words between two targets, or a clause): +1, -1 or 0."""
    words = re.findall(r"[a-z][a-z'’-]*", text.lower())
    total = 0
    for i, word in enumerate(words):
        after = words[i + 1] if i + 1 < len(words) else ""
        if word in ("more", "less", "fewer"):
            sign = -1 if word != "more" else 1
            polarity = adjective_polarity(after) if after and after != "than" else 0
            if not polarity and i > 0 and words[i - 1] in _PRICE_VERB:
                polarity = -1  # "costs more than": dearer
            total += sign * polarity
        elif i == 0 or words[i - 1] not in ("more", "less", "fewer"):
            total += _comparative(word, last=i == len(words) - 1)
    return (total > 0) - (total < 0)


def _negated(prefix: str, words: int = 5) -> bool:
    """A negation among the last ``words`` words before a comparative ("isn't much better than"), not one
    further back ("never lets me down and is better than")."""
    return bool(_NEGATION.search(" ".join(prefix.split()[-words:])))


def _sides(sign: int, rule: str, flip: bool = False) -> tuple[Verdict, Verdict] | None:
    if flip:
        sign = -sign
    if sign == 0:
        return None
    first = POSITIVE if sign > 0 else NEGATIVE
    return Verdict(first, rule), Verdict(OPPOSITE[first], rule)


def _english(text: str, a: tuple[int, int], b: tuple[int, int], keys: tuple[int, int]):
    """Verdicts for (the target at ``a``, the one at ``b``), ``a`` first in the sentence; None: no comparison."""
    lowered = text.lower()
    between, before = lowered[a[1] : b[0]], lowered[: a[0]]
    clause_start = max((m.end() for m in _BREAK.finditer(before)), default=0)
    before_clause = before[clause_start:]
    if _AGAINST.search(before) and re.match(r"^[^.;!?]*?,\s*(?:[a-z'’]+\s+){0,3}$", between):
        # "Unlike Y, X ...": a is Y, b is X; X's clause says how X fares, Y fares the other way
        main = _BREAK.split(lowered[b[1] :])[0]
        sides = _sides(english_cue(main), "unlike")
        if sides:
            return sides[1], sides[0]
        return Verdict(None, "unlike", opposite_of=keys[1]), Verdict(None, "unlike")
    if _APPOSITION.match(between):  # "X, unlike Y, ..."
        main = _BREAK.split(lowered[b[1] :].lstrip(" ,"))[0]
        sides = _sides(english_cue(main), "unlike")
        return sides or (Verdict(None, "unlike"), Verdict(None, "unlike", opposite_of=keys[0]))
    if _GREATER.match(between) or _LESS.match(between):
        return _sides(1 if _GREATER.match(between) else -1, ">")
    if _SWITCH_TO.match(between) and _SWITCH_FROM.search(before_clause):
        return _sides(-1, "switched")
    if _FOR.match(between) and _LEFT_FOR.search(before_clause):
        return _sides(-1, "switched")
    if _INSTEAD.match(between) and _CHOICE.search(before_clause):
        return _sides(1, "prefer")
    if _OVER.match(between) and len(before_clause.split()) <= 1:
        return _sides(1, "over")
    if _BREAK.search(between):
        return None
    than = _THAN.search(between)
    if than:
        return _sides(english_cue(between[: than.start()]), "than", flip=_negated(between[: than.start()]))
    as_as = _AS_AS.search(between)
    if as_as and as_as["adj"] not in _NOT_ADJECTIVES:
        sign = adjective_polarity(as_as["adj"])
        if not sign:
            return None
        if _negated(between[: as_as.start()]):
            return _sides(sign, "as ... as", flip=True)
        same = Verdict(POSITIVE if sign > 0 else NEGATIVE, "as ... as")
        return same, same
    verb = _VERB.search(between)
    if verb:
        return _sides(1 if verb["pos"] else -1, "beats", flip=_negated(between[: verb.start()]))
    return None


def chinese_cue(text: str) -> int:
    """The polarity of the first evaluative word in ``text`` (a clause), negated by 不/没 right before it."""
    for i in range(len(text)):
        for word, polarity in _ZH_WORDS:
            if text.startswith(word, i):
                negated = any(n in text[max(0, i - 2) : i] for n in ("不", "没")) and not word.startswith("不")
                return -polarity if negated else polarity
    return 0


def _chinese(text: str, a: tuple[int, int], b: tuple[int, int], keys: tuple[int, int]):
    between, before = text[a[1] : b[0]], text[: a[0]]
    after = _ZH_BREAK.split(text[b[1] :])[0]
    against = _ZH_AGAINST_BEFORE.search(before) or (
        _ZH_AGAINST_WITH.search(before) and _ZH_AGAINST_AFTER.match(between)
    )
    if against and len(_ZH_BREAK.split(between)) <= 2 and len(_ZH_BREAK.split(between)[-1]) <= 2:
        # 相比Y，X更... / 和Y相比，X更...: a is Y, b is X
        sides = _sides(chinese_cue(after), "相比")
        if sides:
            return sides[1], sides[0]
        return Verdict(None, "相比", opposite_of=keys[1]), Verdict(None, "相比")
    if _ZH_BREAK.search(between):
        return None
    than = _ZH_THAN.search(between)
    if than:
        return _sides(chinese_cue(after), "比", flip=bool(than["neg"]))
    if _ZH_LESS.search(between):
        cue = chinese_cue(after)
        return _sides(-cue if cue else -1, "不如")
    if _ZH_NOT_AS.search(between):
        return _sides(chinese_cue(after), "没有", flip=True)
    verb = _ZH_VERB.search(between)
    if verb:
        return _sides(1 if verb["pos"] else -1, "优于", flip=bool(verb["neg"]))
    return None


def _spans(text: str, form: str) -> list[tuple[int, int]]:
    """Where ``form`` occurs in ``text`` (case-insensitive; a Latin form as whole Latin words)."""
    if needs_multilingual(form):
        pattern = re.escape(form)
    else:
        pattern = rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])"
    return [(m.start(), m.end()) for m in re.finditer(pattern, text, re.IGNORECASE)]


def compare(text: str, targets: Mapping[int, str]) -> dict[int, Verdict]:
    """Verdicts for the targets (key -> the form as written) that ``text`` compares; the others are absent.

    Every ordered pair of occurrences is tried, earlier first; a target keeps its first verdict."""
    occurrences = sorted((span, key) for key, form in targets.items() for span in _spans(text, form))
    chinese = needs_multilingual(text)
    rules = _chinese if chinese else _english
    out: dict[int, Verdict] = {}
    for i, (a, key_a) in enumerate(occurrences):
        for b, key_b in occurrences[i + 1 :]:
            if key_a == key_b or b[0] < a[1] or (key_a in out and key_b in out):
                continue
            found = rules(text, a, b, (key_a, key_b))
            if found is None:
                continue
            for key, verdict in zip((key_a, key_b), found):
                out.setdefault(key, verdict)
    return out
