"""``POST /v1/assist``: the product assistant over HTTP, and its chat mode behind ``/v1/chat/completions``.

With ``assistant_catalogue`` set, the service loads an ``Assistant`` (the intent, emotion and sentiment
models it names, or ``intent-en`` / ``emotion-en`` / the sentiment setting; replies from ``chat_model``, or
templates without one). The service keeps no sessions: an answer carries the dialogue ``state`` and the
client sends it back with the next utterance, so a follow-up ("and tomorrow?") keeps its context on any
worker. A user's profile comes from the request's ``history`` or, by ``user``, from
``assistant_history`` (a JSONL file read at start-up).

With a chat model too, ``/v1/chat/completions`` also serves the model ``assistant``: the same
conversation, answered as the assistant (``assistant.assistant.AssistantResponder``).

The assistant runs on one worker thread of its own (its models are shared), off the event loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from megasense.errors import MegasenseError
from megasense.service.chat import ChatError
from megasense.service.schemas import ErrorResponse
from megasense.service.settings import ServiceSettings

ASSIST_PATH = "/v1/assist"


class UsageEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    time: datetime = Field(description="When, ISO 8601 (UTC if no offset).")
    user: str = Field(min_length=1, max_length=200)
    feature: str = Field(min_length=1, max_length=200, description="A catalogue feature's id.")
    event: str = Field(description="used, dismissed, shown or opened.")


class TurnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(pattern="^(user|assistant)$")
    content: str = Field(max_length=20_000)


class AssistRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, description="What the user said.")
    user: str | None = Field(None, max_length=200, description="Whose profile to use (from the history).")
    history: list[UsageEventIn] | None = Field(
        None, max_length=10_000, description="The user's usage events; instead of the service's assistant_history."
    )
    state: dict[str, Any] | None = Field(None, description="The `state` of the previous answer in this conversation.")
    messages: list[TurnIn] | None = Field(
        None, max_length=200, description="Earlier user and assistant turns, for the reply model's context."
    )
    k: int = Field(3, ge=1, le=20, description="Most features to recommend.")
    reply: bool = Field(True, description="Write a reply (the chat model's, checked, or a template).")


class RecommendationOut(BaseModel):
    id: str
    name: str
    kind: str = Field(description="help, request, favourite or discover.")
    score: float
    reason: str
    description: str


class AssistResponse(BaseModel):
    text: str
    language: str
    intent: str | None = Field(
        description="The intent in context (a follow-up keeps the previous one); null: out of scope."
    )
    intent_score: float
    out_of_scope: bool
    carried_intent: bool
    model_intent: str | None = Field(description="What the intent model alone said.")
    top_intents: list[dict[str, Any]]
    slots: dict[str, str]
    carried_slots: list[str]
    entities: list[dict[str, Any]]
    emotions: list[str]
    sentiment: str | None
    sentiment_score: float
    feature: RecommendationOut | None = Field(
        description="The feature serving the request; null: the assistant abstains."
    )
    recommendations: list[RecommendationOut]
    reply: str
    reply_source: str = Field(description="model, template or none.")
    reply_problem: str | None
    state: dict[str, Any] = Field(description="Send it back as `state` with the next utterance.")


class _State(Protocol):
    settings: ServiceSettings
    assistant: Any


def load_assistant(settings: ServiceSettings):
    """The assistant the settings describe (called at start-up, off the event loop)."""
    from megasense.assistant.assistant import Assistant
    from megasense.errors import ConfigError

    try:
        return Assistant.load(
            settings.assistant_catalogue,
            intent_model=settings.intent_model or "intent-en",
            emotion_model=settings.emotion_model or "emotion-en",
            sentiment_model=settings.model or None,
            slots_model=settings.slots_model or None,
            chat_model=settings.chat_model or None,
            history=settings.assistant_history or (),
            precision=settings.precision,
        )
    except MegasenseError as exc:
        raise ConfigError(f"assistant_catalogue={settings.assistant_catalogue!r}: {exc}") from exc


def check_assistant_files(settings: ServiceSettings) -> None:
    """Read the catalogue and the history now (a ``ConfigError`` naming the file, line and field)."""
    from megasense.assistant.catalogue import load_catalogue
    from megasense.assistant.history import read_history

    catalogue = load_catalogue(settings.assistant_catalogue)
    if settings.assistant_history:
        read_history(settings.assistant_history, catalogue=catalogue)


def assistant_router(state: _State) -> APIRouter:
    errors = {code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 503)}
    api = APIRouter(prefix="/v1", responses=errors)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="megasense-assist")

    @api.post(
        "/assist",
        response_model=AssistResponse,
        summary="The product assistant: intent in context, emotion, slots, recommended features, a grounded reply",
    )
    async def assist(body: AssistRequest, request: Request) -> AssistResponse:
        assistant = getattr(state, "assistant", None)
        if assistant is None:
            raise ChatError(
                404,
                "not_found",
                "this service has no assistant; start it with --assistant-catalogue FILE "
                "(or MEGASENSE_ASSISTANT_CATALOGUE, or assistant_catalogue in the settings file)",
            )
        if len(body.text) > state.settings.max_chars_per_text:
            raise ChatError(
                413,
                "too_large",
                f"text has {len(body.text):,} characters; the limit is {state.settings.max_chars_per_text:,}",
            )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, _answer, assistant, body)
        except MegasenseError as exc:
            raise ChatError(422, "invalid_request", str(exc)) from None

    return api


def _answer(assistant, body: AssistRequest) -> AssistResponse:
    from megasense.assistant.assistant import Session, profile_for
    from megasense.assistant.context import DialogueState
    from megasense.assistant.history import UsageEvent

    if body.history is not None:
        events = [UsageEvent(time=e.time, user=e.user, feature=e.feature, event=e.event) for e in body.history]
        for i, event in enumerate(events):
            if event.feature not in assistant.catalogue:
                raise MegasenseError(f"history[{i}].feature = {event.feature!r} is not a feature of the catalogue")
        profile = profile_for(events, body.user)
    elif body.user is not None:
        profile = assistant.session(body.user).profile
    else:
        profile = None
    state = DialogueState.from_dict(body.state) if body.state is not None else DialogueState()
    session = Session(state=state, messages=[m.model_dump() for m in body.messages or []], profile=profile)
    result = assistant.assist(body.text, session=session, k=body.k, reply=body.reply)
    return AssistResponse(**result.to_dict(), state=session.state.to_dict())
