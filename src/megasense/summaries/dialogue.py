"""A dialogue's turns as reported speech: ``#Person2#: I've been ill.`` becomes ``#Person2# has been ill.``

Summaries of conversations are written in the third person and name the speakers; a turn quoted as it was said
("I", "you") reads wrong in one. The rewrite is by rules (first person to the speaker, second person to the other
speaker of a two-person dialogue, the verb after "I" agreed in the common cases); a sentence the rules cannot turn
cleanly (a question, a greeting) is left out of the summary's candidates rather than rewritten badly. Rules, not a
model: the embedded decoder is too small to do this reliably, and the rules never add a fact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from megasense.summaries.text import count_words, split_sentences

_SPEAKER = re.compile(r"^\s*(#?[\w .'-]{1,30}?#?)\s*[:：]\s*(.*)$")
_FILLER = re.compile(
    r"^(?:hi|hello|hey|good (?:morning|afternoon|evening)|thanks?|thank you|ok(?:ay)?|sure|yes|yeah|no|well|oh|"
    r"bye|goodbye|see you|really|great|fine|all right|alright|of course|sorry|excuse me|wow|uh|um|hmm)\b[\s,.!]*$",
    re.IGNORECASE,
)
_IRREGULAR = {
    "am": "is", "'m": " is", "have": "has", "'ve": " has", "do": "does", "don't": "doesn't", "go": "goes",
    "was": "was", "'ll": " will", "'d": " would", "can": "can", "can't": "can't", "will": "will", "would": "would",
    "should": "should", "could": "could", "must": "must", "might": "might", "won't": "won't", "didn't": "didn't",
    "haven't": "hasn't", "wasn't": "wasn't", "are": "is", "aren't": "isn't", "were": "was", "weren't": "wasn't",
    "had": "had", "did": "did", "got": "got", "went": "went", "said": "said", "made": "made", "saw": "saw",
    "thought": "thought", "bought": "bought", "left": "left", "took": "took", "came": "came", "found": "found",
}  # fmt: skip
_NO_S = re.compile(r"(?:(?<!e)ed|n't)$")
_BEFORE_SUBJECT = ("that", "what", "if", "when", "and", "but", "so", "think", "thinks", "know", "knows", "hope")
# "you" as a subject: at the start, or after a word that opens a clause (fixed-width look-behinds, one each)
_SUBJECT_YOU = "(?:^|" + "|".join(rf"(?<=\b{w} )" for w in _BEFORE_SUBJECT) + ")you "
_NOT_VERBS = frozenset(
    [
        "and",
        "or",
        "to",
        "too",
        "for",
        "at",
        "in",
        "on",
        "with",
        "about",
        "the",
        "a",
        "an",
        "so",
        "very",
        "not",
        "all",
        "of",
        "from",
        "by",
    ]
)
_NOT_VERB_RE = r"(?:" + "|".join(sorted(_NOT_VERBS)) + r")\b"
_ADVERB = r"((?:just|really|also|never|always|still|already|only|probably|actually) )?"


@dataclass(frozen=True)
class ReportedSentence:
    text: str
    """The sentence in the third person."""
    turn: int
    """Index of the turn it comes from."""
    speaker: str


def speaker_of(turn: str) -> tuple[str, str]:
    """(speaker, what they said) of a ``Speaker: ...`` line; ("", line) without a speaker."""
    match = _SPEAKER.match(turn)
    return (match.group(1).strip(), match.group(2).strip()) if match else ("", turn.strip())


def reported_sentences(turns: list[str]) -> list[ReportedSentence]:
    """The turns' statements as third-person sentences (questions, greetings and one-word answers left out)."""
    speakers = [speaker_of(t)[0] for t in turns]
    cast = [s for s in dict.fromkeys(speakers) if s]
    out: list[ReportedSentence] = []
    for i, turn in enumerate(turns):
        speaker, said = speaker_of(turn)
        other = next((s for s in cast if s != speaker), "") if len(cast) == 2 else ""
        for sentence in split_sentences(said, "en"):
            rewritten = report(sentence, speaker, other)
            if rewritten is not None:
                out.append(ReportedSentence(rewritten, i, speaker))
    return out


def report(sentence: str, speaker: str, other: str) -> str | None:
    """``sentence`` said by ``speaker`` to ``other``, in the third person; None for a question, a filler, a sentence
    without a first-person subject to anchor it, or second person without a known listener."""
    text = " ".join(sentence.replace(" ' ", "'").replace("’", "'").split())
    if not speaker or text.endswith("?") or _FILLER.match(text) or count_words(text) < 4:
        return None
    text = re.sub(
        r"^(?:(?:well|oh|so|yes|yeah|no|ok(?:ay)?|sure|hi|hello|hey|but|and)\b[,!]?\s+)+", "", text, flags=re.I
    )
    if not re.search(r"\b(?:I|I'm|I've|I'll|I'd|my|me|we|we're|our|us)\b", text):
        return None  # no one named: a statement about the world, which reads fine quoted, but needs its speaker
    if re.search(r"\b(?:you|your|yours|you're|you've|you'll)\b", text, re.IGNORECASE) and not other:
        return None
    text = re.sub(r"\bI('m|'ve|'ll|'d)\b", lambda m: f"{speaker}{_IRREGULAR[m.group(1).lower()]}", text, flags=re.I)
    text = re.sub(
        rf"\bI (?!{_NOT_VERB_RE}){_ADVERB}(\w+(?:'t)?)\b",
        lambda m: f"{speaker} {m.group(1) or ''}{_agree(m.group(2))}",
        text,
    )
    text = re.sub(r"\bI\b", speaker, text)
    text = re.sub(r"\b(?:my|our)\b", f"{speaker}'s", text, flags=re.IGNORECASE)
    text = re.sub(r"\b(?:me|us|myself)\b", speaker, text)
    text = re.sub(r"\b(?:we|We)\b", f"{speaker} and {other}" if other else speaker, text)
    if other:
        text = re.sub(r"\byou're\b", f"{other} is", text, flags=re.IGNORECASE)
        text = re.sub(r"\byou've\b", f"{other} has", text, flags=re.IGNORECASE)
        text = re.sub(r"\byou'll\b", f"{other} will", text, flags=re.IGNORECASE)
        text = re.sub(r"\b(?:your|yours)\b", f"{other}'s", text, flags=re.IGNORECASE)
        text = re.sub(
            rf"{_SUBJECT_YOU}{_ADVERB}(\w+(?:'t)?)\b",
            lambda m: f"{other} {m.group(1) or ''}{_agree(m.group(2))}",
            text,
            flags=re.I,
        )
        text = re.sub(r"\byou\b", other, text, flags=re.IGNORECASE)
    text = text[0].upper() + text[1:] if text[0].isalpha() else text
    return text if text.endswith((".", "!")) else text + "."


def _agree(verb: str) -> str:
    """The verb after "I" agreed with a third-person subject: am -> is, have -> has, want -> wants."""
    low = verb.lower()
    if low in _IRREGULAR:
        return _IRREGULAR[low].strip()
    if _NO_S.search(low) or low in _NOT_VERBS:
        return verb
    if re.search(r"(?:s|sh|ch|x|z|o)$", low):
        return verb + "es"
    if re.search(r"[^aeiou]y$", low):
        return verb[:-1] + "ies"
    return verb + "s"
