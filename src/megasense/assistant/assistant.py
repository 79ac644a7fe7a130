"""The assistant: one utterance in; what it means in context, which features fit, and a grounded reply out.

``Assistant.assist(text, state=..., profile=...)`` runs, in order:

1. **Understand** (``understand``, many texts in one batch per model): the intent model's answer (with its
   calibrated out-of-scope decision), the emotion model's labels, the sentiment, and slots (rules in
   ``entities.py``, plus a trained slot model's spans when one is given).
2. **Context** (``context.DialogueState``): a follow-up ("and tomorrow?") keeps the previous intent and
   carries earlier slots over.
3. **Recommend** (``recommend.Recommender``): help first for a frustrated user, the feature serving the
   request (or none: abstain), then features from the user's history; each with its reason.
4. **Reply** (``reply.py``): the detected intent, emotion and the chosen feature's catalogue facts go into
   the system prompt, the tone follows the emotion; the decoder answers; a reply that fails the checks
   (empty, looping, repeated, promising what the catalogue does not have, wrong language) is replaced by
   a template, and the answer says so (``reply_source``, ``reply_problem``).

An intent model that cannot read the text's script (``intent-en`` on Chinese) is not asked; the request
is then matched by meaning alone (the recommender's semantic threshold). The same goes for the emotion
model. ``AssistantResponder`` puts the whole thing behind ``/v1/chat/completions`` (assistant mode).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megasense.assistant.catalogue import Catalogue, load_catalogue
from megasense.assistant.context import DialogueState, Turn
from megasense.assistant.entities import Entities, EntityExtractor, merge_model_slots
from megasense.assistant.history import UsageEvent, UserProfile, read_history
from megasense.assistant.recommend import Recommendation, Recommender, load_recommender
from megasense.assistant.reply import _SENTENCE, check_reply, system_prompt, template_reply, tone_for
from megasense.config import GenerationConfig
from megasense.errors import MegasenseInputError
from megasense.predictors.generation import ChatPrompt, ChatStream, TextGenerator
from megasense.predictors.language import dominant_script

REPLY_CONFIG = GenerationConfig(max_new_tokens=48, repetition_penalty=1.1)
"""Greedy, short: a grounded reply is one or two sentences."""

CLOCK_INTENTS = frozenset({"alarm", "reminder", "reminder_update", "schedule_meeting", "calendar_update"})
"""Intents (``intent-en``'s) whose bare number ("wake me at seven", "for seven") is a time of day."""

MAX_SENTENCES = 2
"""A generated reply is kept to this many sentences."""

INTENT_TOP = 3
"""Alternative intents reported beside the chosen one."""


@dataclass(frozen=True)
class Reading:
    """What the models say about one text, before the dialogue's context is applied."""

    text: str
    language: str
    """``en`` or ``zh``: the script of the text (Chinese characters: ``zh``)."""
    intent: str | None
    """The intent model's label; None when the model cannot read the text's script or there is no model."""
    intent_score: float
    out_of_scope: bool
    top_intents: tuple[tuple[str, float], ...]
    emotions: tuple[str, ...]
    """The emotion model's labels (most probable first); empty when there is no model or it cannot read the text."""
    sentiment: str | None
    sentiment_score: float
    entities: Entities


@dataclass
class AssistResult:
    """The assistant's answer to one utterance."""

    reading: Reading
    turn: Turn
    """The utterance in context: intent (carried over for a follow-up) and slots (with earlier turns')."""
    recommendations: list[Recommendation]
    reply: str = ""
    reply_source: str = "none"
    """``model`` (the decoder's reply passed the checks), ``template`` or ``none`` (no reply asked for)."""
    reply_problem: str | None = None
    """Why the model's reply was replaced by the template (None when it was not, or no model was used)."""

    @property
    def feature(self) -> Recommendation | None:
        """The feature that serves this request, or None: the assistant abstains."""
        return next((r for r in self.recommendations if r.kind == "request"), None)

    def to_dict(self) -> dict[str, Any]:
        r, t = self.reading, self.turn
        return {
            "text": r.text,
            "language": r.language,
            "intent": t.intent,
            "intent_score": round(r.intent_score, 4),
            "out_of_scope": t.out_of_scope,
            "carried_intent": t.carried_intent,
            "model_intent": r.intent,
            "top_intents": [{"intent": name, "score": round(score, 4)} for name, score in r.top_intents],
            "slots": dict(t.slots),
            "carried_slots": list(t.carried_slots),
            "entities": [e.to_dict() for e in r.entities],
            "emotions": list(r.emotions),
            "sentiment": r.sentiment,
            "sentiment_score": round(r.sentiment_score, 4),
            "feature": None if self.feature is None else self.feature.to_dict(),
            "recommendations": [rec.to_dict() for rec in self.recommendations],
            "reply": self.reply,
            "reply_source": self.reply_source,
            "reply_problem": self.reply_problem,
        }


@dataclass
class Session:
    """One user's conversation: the dialogue state, the chat so far and the user's profile."""

    state: DialogueState = field(default_factory=DialogueState)
    messages: list[dict[str, str]] = field(default_factory=list)
    """The user and assistant turns so far, OpenAI style (what the reply model sees as history)."""
    profile: UserProfile | None = None

    def reset(self) -> None:
        self.state.reset()
        self.messages.clear()


class Assistant:
    """Intent, emotion, sentiment, slots, recommendation and replies over one feature catalogue.

    Every model is optional: without an intent model requests are matched by meaning alone (as Chinese ones
    are with ``intent-en``), without an emotion model there is no help-first rule, without a chat model every
    reply is a template. Build one with ``Assistant.load``."""

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        intent,
        recommender: Recommender,
        emotion=None,
        sentiment=None,
        slots=None,
        generator: TextGenerator | None = None,
        extractor: EntityExtractor | None = None,
        reply_config: GenerationConfig = REPLY_CONFIG,
        history: Sequence[UsageEvent] = (),
    ) -> None:
        self.catalogue = catalogue
        self.history = list(history)
        """Every user's usage events (``session`` builds a user's profile from them)."""
        self.intent = intent
        self.recommender = recommender
        self.emotion = emotion
        self.sentiment = sentiment
        self.slots = slots
        self.generator = generator
        self.extractor = extractor or EntityExtractor()
        self.reply_config = reply_config
        self._reads = {name: _scripts(model) for name, model in (("intent", intent), ("emotion", emotion))}

    @classmethod
    def load(
        cls,
        catalogue: Catalogue | str | Path,
        *,
        intent_model: str = "intent-en",
        emotion_model: str | None = "emotion-en",
        sentiment_model: str | None = "default",
        slots_model: str | None = None,
        chat_model: str | None = "smollm2-135m-instruct",
        history: Sequence[UsageEvent] | str | Path = (),
        precision: str = "auto",
    ) -> Assistant:
        """Load every model by name or directory (None leaves one out). ``history`` (every user's events, or a
        JSONL file of them) teaches the recommender which features are used together and gives ``session``
        each user's profile."""
        from megasense.predictors.sentiment import load_predictor
        from megasense.zoo.load import load_model

        if not isinstance(catalogue, Catalogue):
            catalogue = load_catalogue(catalogue)
        if isinstance(history, (str, Path)):
            history = read_history(history, catalogue=catalogue)
        slots = None
        if slots_model:
            from megasense.predictors.slots import SlotFiller

            slots = SlotFiller(load_model(slots_model), precision=precision)
        return cls(
            catalogue,
            history=history,
            intent=load_predictor(intent_model, precision=precision),
            emotion=load_predictor(emotion_model, precision=precision) if emotion_model else None,
            sentiment=load_predictor(sentiment_model, precision=precision) if sentiment_model else None,
            slots=slots,
            recommender=load_recommender(catalogue, history=history),
            generator=TextGenerator(load_model(chat_model)) if chat_model else None,
        )

    def session(self, user: str | None = None) -> Session:
        """A new conversation for ``user``, with their profile from the history (with ``user`` None, the
        history's only user; an error naming the users when it holds several)."""
        return Session(profile=profile_for(self.history, user))

    # ---------------------------------------------------------------------------------------- understand
    def understand(self, texts: Sequence[str], *, now: dt.date | dt.datetime | None = None) -> list[Reading]:
        """What the models say about each text (one batch per model)."""
        texts = [_check_text(t, i) for i, t in enumerate(texts)]
        languages = ["zh" if dominant_script(t) == "cjk" else "en" for t in texts]
        intents = self._predict(self.intent, "intent", texts, languages)
        emotions = self._predict(self.emotion, "emotion", texts, languages)
        sentiments = self.sentiment.predict(texts) if self.sentiment is not None and texts else None
        slot_results = self.slots.predict(texts) if self.slots is not None and texts else None
        readings = []
        for i, (text, language) in enumerate(zip(texts, languages)):
            entities = self.extractor.extract(text, language=language, now=now)
            if slot_results is not None:
                entities = merge_model_slots(entities, slot_results[i])
            readings.append(
                Reading(
                    text=text,
                    language=language,
                    **_intent_fields(intents[i], getattr(self.intent, "oos_label", "")),
                    emotions=_emotion_labels(emotions[i]),
                    sentiment=None if sentiments is None else sentiments[i].label,
                    sentiment_score=0.0 if sentiments is None else float(sentiments[i].score),
                    entities=entities,
                )
            )
        return readings

    def _predict(self, model, name: str, texts: list[str], languages: list[str]) -> list:
        """The model's result per text, None where there is no model or it cannot read the text's script."""
        out: list = [None] * len(texts)
        if model is None:
            return out
        readable = [i for i, lang in enumerate(languages) if lang in self._reads[name]]
        if readable:
            batch = model.predict([texts[i] for i in readable])
            for j, i in enumerate(readable):
                out[i] = batch[j]
        return out

    # ------------------------------------------------------------------------------------------- assist
    def assist(
        self,
        text: str,
        *,
        session: Session | None = None,
        k: int = 3,
        reply: bool = True,
        now: dt.date | dt.datetime | None = None,
    ) -> AssistResult:
        """Understand ``text`` in the session's context, recommend up to ``k`` features and (``reply``) answer.

        The session (a new one when None) is updated: the turn joins its dialogue state, and the exchange
        its messages."""
        session = session if session is not None else Session()
        reading = self.understand([text], now=now)[0]
        result = self._in_context(reading, session, k=k)
        if reply:
            previous = [m["content"] for m in session.messages if m["role"] == "assistant"]
            messages = self.grounded_messages(result, session.messages)
            result.reply, result.reply_source, result.reply_problem = self._reply(result, messages, previous)
            session.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": result.reply}]
        return result

    def _in_context(self, reading: Reading, session: Session, *, k: int) -> AssistResult:
        slots = reading.entities.slots()
        if reading.intent in CLOCK_INTENTS and "number" in slots and "time" not in slots:
            slots["time"] = slots.pop("number")  # "set an alarm for seven": a bare number is a clock time here
        turn = session.state.update(
            reading.text,
            intent=reading.intent,
            intent_score=reading.intent_score,
            out_of_scope=reading.out_of_scope,
            slots=slots,
        )
        recommendations = self.recommender.recommend(
            reading.text,
            intent=turn.intent,
            intent_score=1.0 if turn.carried_intent else reading.intent_score,
            out_of_scope=turn.out_of_scope and reading.intent is not None,
            emotions=reading.emotions,
            profile=session.profile,
            k=k,
        )
        return AssistResult(reading=reading, turn=turn, recommendations=recommendations)

    def grounded_messages(self, result: AssistResult, history: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        """The conversation for the reply model: a grounded system prompt, the earlier turns, the utterance."""
        feature = result.feature.feature if result.feature is not None else None
        system = system_prompt(
            catalogue_name=self.catalogue.name,
            intent=result.turn.intent,
            out_of_scope=feature is None,
            emotions=result.reading.emotions,
            tone=tone_for(result.reading.emotions, result.reading.sentiment),
            feature=feature,
            slots=result.turn.slots,
            language=result.reading.language,
        )
        earlier = [dict(m) for m in history if m.get("role") in ("user", "assistant")]
        demo = self._demonstration(feature, result.reading.language) if not earlier else []
        return [
            {"role": "system", "content": system},
            *demo,
            *earlier,
            {"role": "user", "content": result.reading.text},
        ]

    def _demonstration(self, feature, language: str) -> list[dict[str, str]]:
        """One example exchange for the feature (its first example, the template's answer): a 135M-parameter
        model follows an example far better than instructions. On six requests its replies went from five
        apologies for "your loss" to six on-topic answers (``tests/test_assistant.py`` keeps the shape)."""
        if feature is None or not feature.examples:
            return []
        answer = template_reply(
            intent=None, out_of_scope=False, feature=feature, slots={}, emotions=(), language=language
        )
        return [{"role": "user", "content": feature.examples[0]}, {"role": "assistant", "content": answer}]

    def template(self, result: AssistResult) -> str:
        feature = result.feature.feature if result.feature is not None else None
        suggestions = [r.feature for r in result.recommendations if r.kind != "request"] or list(
            self.catalogue.features[:3]
        )
        return template_reply(
            intent=result.turn.intent,
            out_of_scope=feature is None,
            feature=feature,
            slots=result.turn.slots,
            emotions=result.reading.emotions,
            language=result.reading.language,
            sentiment=result.reading.sentiment,
            suggestions=suggestions,
        )

    def check(self, result: AssistResult, reply: str, previous: Sequence[str]) -> str | None:
        """What is wrong with a generated reply to ``result`` (None: it may be sent)."""
        entities = " ".join(f"{e.value} {e.normalized}" for e in result.reading.entities)
        return check_reply(
            reply,
            feature=result.feature.feature if result.feature is not None else None,
            catalogue=self.catalogue,
            previous_replies=previous,
            language=result.reading.language,
            grounding=" ".join([result.reading.text, *result.turn.slots.values(), entities]),
        )

    def finish(self, result: AssistResult, generated: str, previous: Sequence[str]) -> tuple[str, str, str | None]:
        """(reply, source, problem) from a generated reply: kept to its first ``MAX_SENTENCES`` sentences
        (the prompt asks for one or two; a small model runs on), then checked; a failed check gives the template."""
        text = " ".join(s.strip() for s in _SENTENCE.findall(generated.strip())[:MAX_SENTENCES]).strip()
        if result.reading.language == "zh":
            text = "".join(s.strip() for s in _SENTENCE.findall(generated.strip())[:MAX_SENTENCES])
        problem = self.check(result, text, previous)
        if problem is not None:
            return self.template(result), "template", problem
        return text, "model", None

    def _reply(
        self, result: AssistResult, messages: list[dict[str, str]], previous: Sequence[str]
    ) -> tuple[str, str, str | None]:
        if self.generator is None:
            return self.template(result), "template", None
        if result.feature is None:
            # Nothing in the catalogue to ground a reply on: the template says so and offers what can be done;
            # a free reply from the model is where invented answers come from.
            return self.template(result), "template", "no catalogue feature to ground a reply on"
        return self.finish(result, self.generator.chat(messages, self.reply_config).text, previous)


class AssistantResponder:
    """The assistant behind ``/v1/chat/completions`` (``service.chat.ChatResponder``): every user message of
    the conversation goes through the dialogue state in order (the service keeps no sessions), the reply
    is grounded on the last one and checked.

    A checked reply cannot be streamed while it is generated (a check may replace it), so it is generated
    whole and sent as one piece: the first token arrives when the reply is complete."""

    def __init__(self, assistant: Assistant, name: str = "assistant") -> None:
        if assistant.generator is None:
            raise MegasenseInputError("the assistant's chat mode needs a chat model (chat_model)")
        self.assistant = assistant
        self.name = name
        self.context_tokens = assistant.generator.context_tokens

    def respond(self, messages: list[dict[str, str]], config: GenerationConfig, stop: tuple[str, ...]) -> ChatStream:
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users:
            raise MegasenseInputError("messages: the conversation has no user message to answer")
        session = Session()
        readings = self.assistant.understand(users)
        for reading in readings[:-1]:
            self.assistant._in_context(reading, session, k=3)
        result = self.assistant._in_context(readings[-1], session, k=3)
        history = messages[: max(i for i, m in enumerate(messages) if m["role"] == "user")]
        grounded = self.assistant.grounded_messages(result, history)
        generator = self.assistant.generator
        previous = [m["content"] for m in history if m["role"] == "assistant"]
        finish_reason = "stop"
        if result.feature is None:
            text = self.assistant.template(result)
        else:
            reply = generator.chat(grounded, config, stop=stop)
            text, _, _ = self.assistant.finish(result, reply.text, previous)
            finish_reason = reply.finish_reason
        prompt = ChatPrompt(ids=generator.chat_ids(grounded, config.max_new_tokens).ids)
        tokens = len(generator.tokenizer.encode(text, add_special_tokens=False))
        return ChatStream.of_text(text, prompt, completion_tokens=tokens, finish_reason=finish_reason)


def profile_for(events: Sequence[UsageEvent], user: str | None) -> UserProfile | None:
    """The profile of ``user`` from a history; with ``user`` None, the history's only user (an error naming
    them when there are several). None for an empty history."""
    users = sorted({e.user for e in events})
    if not users:
        return None
    if user is None:
        if len(users) > 1:
            shown = ", ".join(users[:10]) + (f" and {len(users) - 10} more" if len(users) > 10 else "")
            raise MegasenseInputError(f"the history holds {len(users)} users ({shown}); say which one with --user")
        user = users[0]
    elif user not in users:
        raise MegasenseInputError(f"user {user!r} has no event in the history; its users: {', '.join(users[:10])}")
    return UserProfile.from_events(events, user)


def _check_text(text: Any, index: int) -> str:
    if not isinstance(text, str) or not text.strip():
        raise MegasenseInputError(f"text {index}: expected a non-empty utterance, found {text!r}")
    return text


def _scripts(model) -> set[str]:
    """The languages a classifier reads: Chinese only if its tokenizer knows common Chinese characters
    (an English WordPiece vocabulary turns them into [UNK])."""
    if model is None:
        return set()
    loaded = getattr(model, "loaded", None)
    tokenizer = getattr(loaded, "tokenizer", None)
    if tokenizer is None:  # a router (sentiment) or a fake: trust it with both
        return {"en", "zh"}
    probe = tokenizer.encode("设置明天早上的闹钟", add_special_tokens=False)
    unknown = tokenizer.token_to_id("[UNK]")
    known = [i for i in probe if i != unknown]
    return {"en", "zh"} if len(known) >= len(probe) / 2 and probe else {"en"}


def _intent_fields(result, oos_label: str) -> dict[str, Any]:
    if result is None:
        return {"intent": None, "intent_score": 0.0, "out_of_scope": False, "top_intents": ()}
    ranked = sorted(result.probs.items(), key=lambda kv: -kv[1])
    top = tuple((name, float(p)) for name, p in ranked if name != oos_label)[:INTENT_TOP]
    out_of_scope = bool(oos_label) and result.label == oos_label
    return {
        "intent": result.label,
        "intent_score": float(result.score),
        "out_of_scope": out_of_scope,
        "top_intents": top,
    }


def _emotion_labels(result) -> tuple[str, ...]:
    if result is None:
        return ()
    labels = result.labels if result.labels is not None else (result.label,)
    return tuple(label for label in labels if label)
