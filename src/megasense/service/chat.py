"""``POST /v1/chat/completions``: OpenAI-compatible chat, whole or streamed as server-sent events.

The official ``openai`` client and other OpenAI-compatible tools work against it unchanged. The request
takes ``model``, ``messages`` (``system`` / ``developer`` / ``user`` / ``assistant``; content a string or a
list of ``{"type": "text", "text": ...}`` parts), ``stream``, ``max_completion_tokens`` (or ``max_tokens``),
``temperature`` (0 is greedy; OpenAI's default, 1, samples), ``top_p``, ``stop`` (up to 4 strings), ``seed``,
``n`` (1 only) and ``stream_options.include_usage``; other OpenAI fields are ignored, as OpenAI ignores unknown
ones. Invalid values answer 400 (OpenAI's status for them; the other endpoints answer 422) in the service's
error envelope. A conversation longer than the model's context loses its oldest turns (the system messages
stay; see ``TextGenerator.chat_ids``): the answer's ``truncation`` says how many messages were dropped and
whether the last user message was cut.

With ``stream: true`` the answer is ``text/event-stream``: ``data: {chunk}`` events of
``object: "chat.completion.chunk"`` -- the first delta has the role, then content deltas, the last has the
``finish_reason`` (with ``stream_options.include_usage``, one more chunk with no choices and the usage) --
then ``data: [DONE]``. A failure after the stream has begun arrives as ``data: {"error": {...}}``.

Concurrency, measured with ``benchmarks/chat_stream.py --threads 1 --designs threads lock batch`` (SmolLM2-135M,
2 shared CPU cores, 8 streams of 64 tokens): each reply is generated on a thread of its own
(``chat_max_streams`` at once; more wait for a free thread, and past ``max_queue_texts`` waiting the answer is
429), never on the event loop, so other endpoints and the other streams keep going. Free threads: every
stream's first token within about 1 s and 23-26 tokens/s in total (1 stream alone: 17-18). One lock around
each model step instead: 16-18 tokens/s, and Python's lock is not fair, so the first token took 13-15 s for
half the streams and up to 28 s. Decoding the 8 as one batch gives about 73 tokens/s, but only for streams
that start together: adding a stream to a batch already decoding needs per-sequence cache positions that the
engine (``inference/generation.py``) does not have. On a CPU, concurrent streams share the cores: give torch
few intra-op threads (``OMP_NUM_THREADS=1``) where many streams run, or threads wait for each other. A client
that hangs up stops its generation within one token.

Who answers: a ``ChatResponder``, any object with ``name``, ``context_tokens`` and ``respond(messages,
config, stop) -> ChatStream``. The default, ``ModelResponder``, hands the conversation to the model as it
came. Another responder (the assistant mode) may rewrite the messages first (a grounded system prompt)
and may replace the model's reply (``ChatStream.of_text`` for a template); it is plugged in as
``create_app(settings, backends=lambda s: [..., ChatBackend(MyResponder(...))])``. It runs on the
stream's worker thread, so it may block.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from megasense.config import GenerationConfig
from megasense.errors import ConfigError, MegasenseError, MegasenseInputError
from megasense.service.schemas import ErrorResponse
from megasense.service.settings import ServiceSettings

if TYPE_CHECKING:  # torch loads with the model, not with the app
    from megasense.predictors.generation import ChatPrompt, ChatReply, ChatStream, TextGenerator

log = logging.getLogger("megasense.service")

CHAT_PATH = "/v1/chat/completions"
DEFAULT_MAX_TOKENS = 256
"""New tokens at most when a request names no ``max_completion_tokens`` / ``max_tokens``."""
MAX_STOP_STRINGS = 4
"""As OpenAI: up to 4 stop strings."""
ROLES = ("system", "developer", "user", "assistant")
"""``developer`` is OpenAI's newer name for ``system`` and is read as one."""


class ChatError(Exception):
    """An answer other than 200, in the service's error envelope (``app`` renders it as its own errors)."""

    def __init__(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type_, message, headers or {}


# ----------------------------------------------------------------------------------------------
# Who answers
# ----------------------------------------------------------------------------------------------
class ChatResponder(Protocol):
    """What answers ``/v1/chat/completions``: a conversation in, a reply stream out (on a worker thread)."""

    name: str
    """The model id clients send as ``model`` and ``GET /v1/models`` lists."""
    context_tokens: int
    """Tokens the model reads at most, the conversation and the reply together."""

    def respond(self, messages: list[dict[str, str]], config: GenerationConfig, stop: tuple[str, ...]) -> ChatStream:
        """The reply to ``messages`` (roles ``system`` / ``user`` / ``assistant``, content strings)."""
        ...


class ModelResponder:
    """The plain model: the conversation as it came, the model's reply as it is generated."""

    def __init__(self, name: str, generator: TextGenerator) -> None:
        self.name = name
        self.generator = generator
        self.context_tokens = generator.context_tokens

    def respond(self, messages: list[dict[str, str]], config: GenerationConfig, stop: tuple[str, ...]) -> ChatStream:
        return self.generator.stream_chat(messages, config, stop=stop)


class ChatBackend:
    """A responder behind ``/v1/chat/completions`` and the threads its replies are generated on."""

    task = "chat"
    labels: tuple[str, ...] = ()
    dimensions = None

    def __init__(self, responder: ChatResponder, *, max_streams: int = 8, max_waiting: int = 4096) -> None:
        self.responder = responder
        self.name = responder.name
        self.max_tokens: int = responder.context_tokens
        """The context: conversation and reply together (listed by ``GET /v1/models``)."""
        self.max_streams, self.max_waiting = max_streams, max_waiting
        self.executor = ThreadPoolExecutor(max_workers=max_streams, thread_name_prefix="megasense-chat")
        self.jobs: set[_Job] = set()
        """Replies being generated or waiting for a thread."""

    def start(
        self, messages: list[dict[str, str]], config: GenerationConfig, stop: tuple[str, ...], *, pieces: bool
    ) -> _Job:
        """Begin a reply on a worker thread; ``pieces``: report each piece (streaming), else only the end."""
        if len(self.jobs) >= self.max_streams + self.max_waiting:
            waiting = len(self.jobs) - self.max_streams
            raise ChatError(
                429,
                "queue_full",
                f"{waiting} chat requests are waiting for one of the {self.max_streams} streams (limit "
                f"max_queue_texts={self.max_waiting}); retry later",
                {"Retry-After": "1"},
            )
        job = _Job(asyncio.get_running_loop(), pieces=pieces)
        self.jobs.add(job)
        future = job.loop.run_in_executor(self.executor, job.work, self.responder, messages, config, stop)
        future.add_done_callback(lambda _: self.jobs.discard(job))
        return job

    async def stop(self, timeout: float | None = None) -> None:
        """Let the replies in flight finish (for at most ``timeout`` seconds), then stop the rest."""
        deadline = time.monotonic() + (timeout if timeout is not None else math.inf)
        while self.jobs and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for job in list(self.jobs):
            job.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)


class _Job:
    """One reply: generated on a worker thread, its events handed to the event loop through a queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, pieces: bool) -> None:
        self.loop = loop
        self.pieces = pieces
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop generating (the client has gone): the worker stops before its next piece."""
        self.cancelled.set()

    async def next(self) -> tuple[str, Any]:
        """``("prompt", ChatPrompt)`` first, then ``("piece", str)``... and ``("done", ChatReply)``, or
        ``("error", exception)``."""
        return await self.events.get()

    def work(self, responder: ChatResponder, messages, config: GenerationConfig, stop: tuple[str, ...]) -> None:
        if self.cancelled.is_set():  # abandoned while it waited for a thread
            return
        try:
            stream = responder.respond(messages, config, stop)
            with contextlib.closing(stream):
                self._put("prompt", stream.prompt)
                for piece in stream:
                    if self.cancelled.is_set():
                        return
                    if self.pieces:
                        self._put("piece", piece)
                self._put("done", stream.reply)
        except Exception as exc:
            self._put("error", exc)

    def _put(self, kind: str, value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop has closed: nobody is listening
            self.cancelled.set()


def load_chat_backend(settings: ServiceSettings) -> ChatBackend:
    """The ``chat_model`` loaded (a decoder with a chat template); a ``ConfigError`` naming the setting if not."""
    from megasense.predictors.generation import TextGenerator
    from megasense.zoo.load import load_model

    name = settings.chat_model
    try:
        generator = TextGenerator(load_model(name, device=settings.device))
    except MegasenseError as exc:
        raise ConfigError(f"chat_model={name!r}: {exc}") from exc
    if not generator.has_chat_template:
        raise ConfigError(
            f"chat_model={name!r} has no chat template (a base model, not an instruction-tuned one); name a chat "
            "model such as smollm2-135m-instruct"
        )
    return ChatBackend(
        ModelResponder(name, generator), max_streams=settings.chat_max_streams, max_waiting=settings.max_queue_texts
    )


# ----------------------------------------------------------------------------------------------
# Request and response bodies (OpenAI's shapes)
# ----------------------------------------------------------------------------------------------
class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: StrictStr


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # `name` and the like

    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="`developer` is read as `system`. Tool messages are not supported."
    )
    content: StrictStr | list[TextPart] = Field(
        description='A string, or a list of text parts `{"type": "text", "text": ...}` (joined with newlines).'
    )

    @field_validator("role", mode="before")
    @classmethod
    def _known_role(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ROLES:
            raise _invalid(f"role {value!r} is not supported here; use one of {', '.join(ROLES)}")
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            for i, part in enumerate(value):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind != "text":
                    raise _invalid(
                        f"part {i} is {'of type ' + repr(kind) if kind else 'not a {type, text} object'}; this model "
                        "reads text only: send a string or parts of type 'text'"
                    )
        return value

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "\n".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: StrictBool | None = Field(None, description="Send a last chunk with the usage (and no choices).")


Number = Annotated[float | None, Field(strict=True)]  # an int or a float, not a string or a boolean


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request; fields this service does not use are ignored, as OpenAI does."""

    model_config = ConfigDict(extra="ignore")

    model: StrictStr | None = Field(None, description="The chat model (see GET /v1/models); omit for the service's.")
    messages: list[ChatMessage] = Field(description="The conversation so far, oldest first.")
    stream: StrictBool | None = Field(False, description="Answer as server-sent events, piece by piece.")
    stream_options: StreamOptions | None = None
    max_completion_tokens: StrictInt | None = Field(
        None, ge=1, description=f"New tokens at most [default: {DEFAULT_MAX_TOKENS}]."
    )
    max_tokens: StrictInt | None = Field(None, ge=1, description="The older name of `max_completion_tokens`.")
    temperature: Number = Field(None, description="0 to 2; 0 is greedy [default: 1, sampling, as OpenAI].")
    top_p: Number = Field(None, description="Nucleus sampling, 0 to 1 [default: 1]; 0 is greedy.")
    stop: StrictStr | list[StrictStr] | None = Field(
        None, description=f"Up to {MAX_STOP_STRINGS} strings; the reply ends before the first one (not included)."
    )
    seed: StrictInt | None = Field(
        None, ge=-(2**63), le=2**63 - 1, description="Makes sampling repeatable (with the same request)."
    )
    n: StrictInt | None = Field(1, description="Choices to return: only 1 is supported.")

    @field_validator("messages")
    @classmethod
    def _some_messages(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not value:
            raise _invalid("the list is empty; send at least one message (the user's)")
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise _invalid(f"n={value}: this service returns one choice per request; send n=1 or leave it out")
        return value

    @field_validator("temperature", "top_p")
    @classmethod
    def _in_range(cls, value: float | None, info: ValidationInfo) -> float | None:
        high = 2.0 if info.field_name == "temperature" else 1.0
        if value is not None and not (math.isfinite(value) and 0.0 <= value <= high):
            raise _invalid(f"{info.field_name}={value} must be a number from 0 to {high:g}")
        return value

    @field_validator("stop")
    @classmethod
    def _usable_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP_STRINGS:
            raise _invalid(f"{len(stops)} strings; at most {MAX_STOP_STRINGS} are allowed")
        if any(not s for s in stops):
            raise _invalid("an empty string would end every reply at once; send non-empty strings")
        return value

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def conversation(self) -> list[dict[str, str]]:
        """The messages as the model's roles (``developer`` as ``system``) and plain text."""
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]

    def generation_config(self, context_tokens: int) -> GenerationConfig:
        asked = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        name = "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"
        if asked is not None and asked >= context_tokens:
            raise ChatError(
                400,
                "invalid_request",
                f"{name}={asked} does not fit the model's context of {context_tokens} tokens, which holds the "
                f"conversation too; ask for at most {context_tokens - 1}",
            )
        max_new = asked if asked is not None else min(DEFAULT_MAX_TOKENS, context_tokens - 1)
        temperature = 1.0 if self.temperature is None else self.temperature
        top_p = 1.0 if self.top_p is None else self.top_p
        if temperature == 0 or top_p == 0:
            return GenerationConfig(max_new_tokens=max_new, seed=self.seed)
        return GenerationConfig(
            max_new_tokens=max_new, do_sample=True, temperature=temperature, top_p=top_p, seed=self.seed
        )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatUsage(BaseModel):
    prompt_tokens: int = Field(description="Tokens of the conversation as the model read it (after truncation).")
    completion_tokens: int
    total_tokens: int


class Truncation(BaseModel):
    """Not in OpenAI's shape (its clients ignore it): how the conversation was fitted to the model's context."""

    dropped_messages: int = Field(description="The oldest user/assistant messages left out (system messages stay).")
    last_message_cut: bool = Field(description="The last user message was too long alone and lost its start.")


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: ChatUsage
    truncation: Truncation


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is ``message`` alone (no "Value error, " before it)."""
    return PydanticCustomError("invalid_value", message)


def _usage(reply: ChatReply) -> ChatUsage:
    return ChatUsage(
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        total_tokens=reply.prompt_tokens + reply.completion_tokens,
    )


def _truncation(prompt: ChatPrompt) -> Truncation:
    return Truncation(dropped_messages=prompt.dropped_messages, last_message_cut=prompt.last_turn_cut)


# ----------------------------------------------------------------------------------------------
# The route
# ----------------------------------------------------------------------------------------------
class _State(Protocol):
    """What the route reads of the service's state (``app.ServiceState``)."""

    settings: ServiceSettings

    def get(self, task: str, requested: str | None) -> Any: ...


def chat_router(state: _State) -> APIRouter:
    errors = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 429, 503)}
    api = APIRouter(prefix="/v1", responses=errors)
    stream_doc = {
        "description": "A chat completion; with `stream: true`, server-sent events `data: {chunk}` of "
        "`chat.completion.chunk` objects (`choices[0].delta` holds the role, then pieces of `content`; the last has "
        "`finish_reason`; the first also `truncation`), ending with `data: [DONE]`.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }

    @api.post(
        "/chat/completions",
        response_model=ChatCompletion,
        responses={200: stream_doc},
        summary="Chat (OpenAI-compatible), whole or streamed",
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        messages = body.conversation()
        _check_limits(messages, state.settings)
        backend: ChatBackend = state.get("chat", body.model).backend
        config = body.generation_config(backend.max_tokens)
        job = backend.start(messages, config, body.stops(), pieces=bool(body.stream))
        meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": backend.name}
        try:
            prompt = await _until_hang_up(job, request, "prompt")
            if not body.stream:
                reply = await _until_hang_up(job, request, "done")
                return ChatCompletion(
                    **meta,
                    choices=[Choice(message=AssistantMessage(content=reply.text), finish_reason=reply.finish_reason)],
                    usage=_usage(reply),
                    truncation=_truncation(prompt),
                )
        except BaseException:
            job.cancel()
            raise
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _events(job, prompt, meta, usage=usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return api


async def _until_hang_up(job: _Job, request: Request, wanted: str) -> Any:
    """The value of the job's next ``wanted`` event; a ChatError if the job failed or the client hung up."""
    hung_up = asyncio.ensure_future(_disconnected(request))
    try:
        while True:
            event = asyncio.ensure_future(job.next())
            await asyncio.wait({event, hung_up}, return_when=asyncio.FIRST_COMPLETED)
            if not event.done():
                event.cancel()
                raise ChatError(499, "client_closed_request", "the client closed the connection")
            kind, value = event.result()
            if kind == "error":
                raise _error_of(value)
            if kind == wanted:
                return value
    finally:
        hung_up.cancel()


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _events(job: _Job, prompt: ChatPrompt, meta: dict, *, usage: bool) -> AsyncIterator[str]:
    """The server-sent events of a streamed reply; if the client goes (this generator is closed), the job stops."""

    def event(choices: list[dict], **extra: Any) -> str:
        body = {**meta, "object": "chat.completion.chunk", "choices": choices, **extra}
        if usage:
            body.setdefault("usage", None)  # as OpenAI: null on every chunk but the last when usage is asked for
        return f"data: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n"

    def choice(delta: dict, finish: str | None = None) -> list[dict]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    try:
        truncation = _truncation(prompt).model_dump()
        yield event(choice({"role": "assistant", "content": ""}), truncation=truncation)
        while True:
            kind, value = await job.next()
            if kind == "piece":
                yield event(choice({"content": value}))
            elif kind == "done":
                yield event(choice({}, value.finish_reason))
                if usage:
                    yield event([], usage=_usage(value).model_dump())
                yield "data: [DONE]\n\n"
                return
            elif kind == "error":
                error = _error_of(value)
                yield f"data: {json.dumps({'error': {'type': error.type, 'message': error.message}})}\n\n"
                return
    finally:
        job.cancel()


def _error_of(exc: BaseException) -> ChatError:
    """The answer for a failure on the worker thread: the user's mistake (400) or a bug (500, logged)."""
    if isinstance(exc, MegasenseInputError):
        return ChatError(400, "invalid_request", str(exc))
    log.error("chat generation failed", exc_info=exc)
    return ChatError(500, "internal_error", "an unexpected error occurred; it has been logged")


def _check_limits(messages: list[Mapping[str, str]], settings: ServiceSettings) -> None:
    """The service's limits, applied to the messages' contents (413, naming the message and the setting)."""
    if len(messages) > settings.max_texts_per_request:
        raise ChatError(
            413,
            "too_many_texts",
            f"{len(messages)} messages in one request; the limit is max_texts_per_request="
            f"{settings.max_texts_per_request}",
        )
    total = 0
    for i, message in enumerate(messages):
        content = message["content"]
        if len(content) > settings.max_chars_per_text:
            raise ChatError(
                413,
                "text_too_long",
                f"messages[{i}].content has {len(content)} characters; the limit is max_chars_per_text="
                f"{settings.max_chars_per_text}",
            )
        if any("\ud800" <= ch <= "\udfff" for ch in content):
            raise ChatError(
                400, "invalid_request", f"messages[{i}].content contains a lone UTF-16 surrogate; send valid Unicode"
            )
        total += len(content)
    if total > settings.max_chars_per_request:
        raise ChatError(
            413,
            "request_too_large",
            f"{total} characters in the messages; the limit is max_chars_per_request={settings.max_chars_per_request}",
        )


__all__ = [
    "CHAT_PATH",
    "ChatBackend",
    "ChatCompletionRequest",
    "ChatError",
    "ChatResponder",
    "ModelResponder",
    "chat_router",
    "load_chat_backend",
]
