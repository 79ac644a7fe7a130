"""Dialogue context: which intent and slots a turn means, given the turns before it ("and tomorrow?").

``DialogueState`` keeps the last ``max_turns`` turns. Each call to :meth:`DialogueState.update` takes
one user utterance with what the intent model and slot extraction made of it, decides what the
utterance means in context, and returns a :class:`Turn`. The *frame* is the intent and slots of the
most recent kept turn that had an intent: it holds the slots of every earlier turn it carried on, so
"what's the weather in Paris?" -> "and tomorrow?" -> "what about London?" ends at weather, London,
tomorrow.

The rules, in order:

1. **Follow-up** (the turn takes the frame's intent, ``carried_intent=True``). An utterance is a
   follow-up when a frame exists and, once its slot values, a follow-up cue ("and", "what about",
   "how about", "make it", "actually"; 那…呢, 还有, 改成) and filler words ("the", "in", "at", "please",
   "morning"; 的, 在, 呢) are taken out,

   - nothing is left and it had a cue or a slot ("and tomorrow?", "what about London?", "how about
     at 8", "上海呢", "tomorrow at 7"): whatever the intent model says, because such an utterance
     carries no request of its own (``intent-en`` reads "and tomorrow?" as ``date`` at 0.997 and "how
     about in Berlin" as ``travel_suggestion`` at 0.95), or
   - at most ``max_extra_words`` words (Chinese: ``max_extra_chars`` characters) are left, it had a cue,
     and the intent model is unsure: out of scope, no intent, or a score below ``min_score`` ("and
     the forecast?" with an out-of-scope answer). Without a cue, one leftover word is enough to make
     it a request of its own ("what is the capital of peru": "what", "is", "capital").

   Slots: the frame's, with the turn's own values overriding those of the same name. A bare number
   ("make it 15") fills the frame's numeric slot, keeping its unit: after ``duration="10 minutes"`` it
   becomes ``duration="15 minutes"``, after ``time="7 am"`` ``time="8 am"``.
2. **Same intent again**: the model is sure of the frame's intent ("what's the weather tomorrow"
   after a weather turn): the slots carry over as in 1, the intent is the model's.
3. **New request**: any other turn. Its intent is the model's (None when out of scope); its slots
   are its own, except that a location (``city``, ``place``) carries over into an intent that is
   about a place (``location_intents``: weather, time zone, directions, travel, restaurants...), so
   "what's the weather in Paris?" -> "what time is it there?" keeps Paris. Other slots (a date, a
   duration) belong to the request that gave them and start fresh. An out-of-scope turn leaves the
   frame as it was, so the conversation can come back to it ("and tomorrow?" after an off-topic
   question still means the weather), as long as the frame's turn is among the last ``max_turns``.

Slot values are the words as the user wrote them (``Entities.slots()``), so they can be taken out of
the utterance (rule 1) and read again with ``extract_entities`` after a bare number changed them.
``to_dict`` / ``from_dict`` carry the state through JSON (an HTTP request), never pickle.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from megasense.errors import MegasenseInputError

# clinc150 (intent-en) intents whose requests are about a place: a city or place carries over into them.
LOCATION_INTENTS = frozenset(
    (
        *("weather", "time", "timezone", "directions", "distance", "traffic", "uber", "gas", "how_busy"),
        *("book_flight", "book_hotel", "car_rental", "flight_status", "restaurant_reservation"),
        *("restaurant_suggestion", "restaurant_reviews", "travel_suggestion", "travel_alert"),
        *("travel_notification", "international_visa", "plug_type", "current_location"),
    )
)
LOCATION_SLOTS = ("city", "place")
STATE_FORMAT = "megasense.dialogue_state"
STATE_VERSION = 1

_CUE_EN = re.compile(
    r"^\s*(?:(?:and|or|but|so|ok(?:ay)?|then|well|hmm+|um+)[,\s]+)*"
    r"(?:(?:what|how)\s+about|what\s+of|and|also|actually|instead|same\s+for|"
    r"(?:make|change|move|set|switch)\s+(?:it|that)(?:\s+to)?)\b",
    re.I,
)
_CUE_ZH = re.compile(r"^\s*(?:那(?:么)?|还有|换成|改成|改为|改到|那就|如果是)|呢\s*[？?！!。.]*\s*$")
_FILLERS_EN = frozenset(
    (
        *("the", "a", "an", "in", "at", "on", "for", "to", "of", "it", "that", "this", "there", "then", "please"),
        *("instead", "too", "also", "just", "maybe", "same", "one", "ones", "and", "or", "but", "so", "ok"),
        *("okay", "well", "actually", "morning", "afternoon", "evening", "night"),
    )
)
_FILLERS_ZH = re.compile(r"[那么呢吗吧啊呀的在去和还有换成改成为到就是要如果早上午中下晚请嗯哦]|[\s\W]")
_NUMBER = re.compile(
    r"\b(?:\d+(?:\.\d+)?|zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
    r"fifteen|sixteen|seventeen|eighteen|nineteen|(?:twenty|thirty|forty|fifty|sixty)(?:[- ][a-z]+)?)\b"
    r"|[0-9]+|[零〇一二两三四五六七八九十百]+",
    re.I,
)
_NUMERIC_SLOTS = ("duration", "time", "number")


@dataclass(frozen=True)
class Turn:
    """What one user utterance means in context."""

    text: str
    intent: str | None
    """The intent in context: the model's, or the frame's for a follow-up; None when out of scope."""
    slots: dict[str, str]
    """Every slot in force after this turn: its own and the carried ones."""
    carried_intent: bool = False
    """True when the intent came from an earlier turn (a follow-up)."""
    carried_slots: tuple[str, ...] = ()
    """Names of the slots that came from earlier turns, in slot order."""
    out_of_scope: bool = False
    """True when the turn has no intent: the model said out of scope and it was no follow-up."""
    intent_score: float = 0.0
    """The model's score for its own answer (kept for the record)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "intent": self.intent,
            "slots": dict(self.slots),
            "carried_intent": self.carried_intent,
            "carried_slots": list(self.carried_slots),
            "out_of_scope": self.out_of_scope,
            "intent_score": self.intent_score,
        }


@dataclass
class DialogueState:
    """Multi-turn intent and slot tracking (the rules are in the module's docstring)."""

    max_turns: int = 8
    """Turns kept; a frame older than this is forgotten."""
    min_score: float = 0.5
    """Below this the intent model counts as unsure (rule 1, second case)."""
    max_extra_words: int = 1
    """English words besides slots, cue and fillers that an unsure-model follow-up may have."""
    max_extra_chars: int = 3
    """The same for Chinese, in characters."""
    location_intents: Collection[str] = LOCATION_INTENTS
    location_slots: tuple[str, ...] = LOCATION_SLOTS
    turns: deque[Turn] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise MegasenseInputError(f"max_turns={self.max_turns}: a dialogue state keeps at least 1 turn")
        if not 0.0 <= self.min_score <= 1.0:
            raise MegasenseInputError(f"min_score={self.min_score}: expected a probability between 0 and 1")
        self.turns = deque(self.turns, maxlen=self.max_turns)

    def reset(self) -> None:
        """Forget every turn."""
        self.turns.clear()

    @property
    def frame(self) -> Turn | None:
        """The most recent kept turn with an intent: what a follow-up continues."""
        return next((t for t in reversed(self.turns) if t.intent is not None), None)

    def update(
        self,
        text: str,
        *,
        intent: str | None,
        intent_score: float = 1.0,
        out_of_scope: bool = False,
        slots: Mapping[str, str] | None = None,
    ) -> Turn:
        """Add one user turn (the model's intent and score, and the slots found in ``text``); return its meaning."""
        own = {str(k): str(v) for k, v in (slots or {}).items()}
        frame = self.frame
        unsure = out_of_scope or intent is None or intent_score < self.min_score
        turn: Turn
        if frame is not None and self._is_follow_up(text, own, unsure=unsure):
            merged, carried = _carry(frame.slots, own)
            turn = Turn(text, frame.intent, merged, True, carried, False, intent_score)
        elif frame is not None and not unsure and intent == frame.intent:
            merged, carried = _carry(frame.slots, own)
            turn = Turn(text, intent, merged, False, carried, False, intent_score)
        else:
            new_intent = None if out_of_scope else intent
            merged, carried = dict(own), []
            if frame is not None and new_intent in self.location_intents:
                for name in self.location_slots:
                    if name in frame.slots and not any(s in own for s in self.location_slots):
                        merged[name] = frame.slots[name]
                        carried.append(name)
            turn = Turn(text, new_intent, merged, False, tuple(carried), new_intent is None, intent_score)
        self.turns.append(turn)
        return turn

    def _is_follow_up(self, text: str, slots: Mapping[str, str], *, unsure: bool) -> bool:
        chinese = re.search(r"[\u4e00-\u9fff]", text) is not None
        cue = (_CUE_ZH if chinese else _CUE_EN).search(text)
        if cue is None and not slots:
            return False
        rest = text
        if cue is not None:
            rest = rest[: cue.start()] + " " + rest[cue.end() :]
        for value in sorted(slots.values(), key=len, reverse=True):
            rest = re.sub(re.escape(value), " ", rest, flags=re.I) if value else rest
        if chinese:
            extra = len(_FILLERS_ZH.sub("", rest))
            limit = self.max_extra_chars
        else:
            extra = sum(1 for w in re.findall(r"[a-z0-9']+", rest.lower()) if w not in _FILLERS_EN)
            limit = self.max_extra_words
        return extra == 0 or (cue is not None and unsure and extra <= limit)

    # --------------------------------------------------------------------------------------- JSON

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-ready data (what an HTTP client sends back with its next request)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "max_turns": self.max_turns,
            "turns": [t.to_dict() for t in self.turns],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **settings: Any) -> DialogueState:
        """A state from ``to_dict()``'s data; ``settings`` (``min_score``...) as for the constructor.

        Every problem raises a ``MegasenseInputError`` that names the field (``turns[1].slots.city``).
        """
        if not isinstance(data, Mapping):
            raise MegasenseInputError(f"dialogue state: expected a JSON object, found {type(data).__name__}")
        if data.get("format", STATE_FORMAT) != STATE_FORMAT or data.get("version", STATE_VERSION) != STATE_VERSION:
            raise MegasenseInputError(
                f"dialogue state: format {data.get('format')!r} version {data.get('version')!r}; "
                f"expected {STATE_FORMAT!r} version {STATE_VERSION}"
            )
        max_turns = settings.pop("max_turns", data.get("max_turns", 8))
        if not isinstance(max_turns, int) or isinstance(max_turns, bool):
            raise MegasenseInputError(f"dialogue state: max_turns must be an integer, found {max_turns!r}")
        raw_turns = data.get("turns", [])
        if not isinstance(raw_turns, list):
            raise MegasenseInputError(f"dialogue state: turns must be a list, found {type(raw_turns).__name__}")
        turns = [_turn_from_dict(raw, f"turns[{i}]") for i, raw in enumerate(raw_turns)]
        return cls(max_turns=max_turns, turns=deque(turns[-max_turns:]), **settings)


def _carry(previous: Mapping[str, str], own: Mapping[str, str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """The frame's slots overridden by the turn's own; a bare number updates the frame's numeric slot."""
    own = dict(own)
    if set(own) == {"number"}:
        target = next((name for name in _NUMERIC_SLOTS if name in previous), None)
        if target is not None and target != "number":
            replaced, count = _NUMBER.subn(own["number"], previous[target], count=1)
            if count:
                own = {target: replaced}
    merged = {**previous, **own}
    return merged, tuple(name for name in previous if name not in own)


def _turn_from_dict(raw: Any, where: str) -> Turn:
    if not isinstance(raw, Mapping):
        raise MegasenseInputError(f"dialogue state: {where} must be an object, found {type(raw).__name__}")
    expect = {
        "text": (str,),
        "intent": (str, type(None)),
        "slots": (dict,),
        "carried_intent": (bool,),
        "carried_slots": (list,),
        "out_of_scope": (bool,),
        "intent_score": (int, float),
    }
    for key, types in expect.items():
        if key == "text" and key not in raw:
            raise MegasenseInputError(f"dialogue state: {where}.text is missing")
        value = raw.get(key, types[0]())
        if not isinstance(value, types) or (key == "intent_score" and isinstance(value, bool)):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise MegasenseInputError(f"dialogue state: {where}.{key} must be {names}, found {value!r}")
    slots = raw.get("slots", {})
    for name, value in slots.items():
        if not isinstance(value, str):
            raise MegasenseInputError(f"dialogue state: {where}.slots.{name} must be a string, found {value!r}")
    carried = tuple(raw.get("carried_slots", []))
    unknown = [name for name in carried if name not in slots]
    if unknown:
        raise MegasenseInputError(
            f"dialogue state: {where}.carried_slots names {unknown}, which are not in its slots {sorted(slots)}"
        )
    return Turn(
        raw["text"],
        raw.get("intent"),
        dict(slots),
        raw.get("carried_intent", False),
        carried,
        raw.get("out_of_scope", False),
        float(raw.get("intent_score", 0.0)),
    )
