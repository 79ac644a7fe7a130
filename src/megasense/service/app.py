"""``create_app(settings)``: the FastAPI app. Explicit steps per request, as the serving flow reads:

request -> gate (``service.gate``: stopping, API key, body size; before the body is parsed) -> schema
validation (pydantic) -> limits -> dynamic batcher -> model (off the event loop) -> response. Models
are loaded in the lifespan, never at import; ``/ready`` says when they are. Every failure has its
status and a body ``{"error": {"type", "message"}}``: 400 (a body that is not JSON: invalid UTF-8,
syntax, nesting too deep, a number too long), 401 (key), 404 (no such endpoint, or no model enabled
for it), 405 (method), 413 (body, texts or characters over a limit), 422 (malformed fields, a model not
served here), 429 (queue full, with Retry-After from the recent throughput), 503 (not ready, or
stopping), 500 (a bug, logged).

An empty (or all-whitespace) text is not sent to the model, as ``megasense predict`` skips it: its result
has an empty ``label``, a null ``score``, no ``probs`` and 0 ``chunks``. A request whose client hangs up
while it waits is dropped before it reaches the model. On SIGTERM (``service.server``) ``/ready`` turns
503 at once while ``/health`` stays 200, new requests get 503, and those in flight finish (for up to
``drain_timeout_s``).

The classifiers (``/v1/sentiment``, ``/v1/intent``, ``/v1/emotion``) and the slot filler (``/v1/slots``)
share one request shape and one path; each has its own batcher, and their answers differ only in the fields
their task adds. With both an intent and a slots model, ``/v1/intent`` submits its texts to both batchers at
once and each intent answer carries the text's ``slots``.

``POST /v1/chat/completions`` (``service.chat``, with ``chat_model``) is OpenAI's chat API: its replies are
generated on threads of their own, not through a batcher, and its invalid requests answer 400, as OpenAI's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from megasense.assistant.assistant import AssistantResponder
from megasense.service.assist import assistant_router, load_assistant
from megasense.service.auth import KeyChecker
from megasense.service.backends import Backend, load_backends
from megasense.service.batching import DynamicBatcher, NotRunning, QueueFull
from megasense.service.chat import CHAT_PATH, ChatBackend, ChatError, chat_router, load_chat_backend
from megasense.service.explain import explain_router
from megasense.service.gate import BODY_KEY, RequestGate, error_response, unparseable_body
from megasense.service.log_redaction import install_log_redaction
from megasense.service.metrics import ObserveRequests, ServiceMetrics
from megasense.service.schemas import (
    ClassificationRequest,
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    EmotionResponse,
    EmotionResult,
    ErrorResponse,
    IntentResponse,
    IntentResult,
    ModelCard,
    ModelList,
    SentimentResponse,
    SentimentResult,
    Slot,
    SlotResponse,
    SlotResult,
    TextsRequest,
    Usage,
)
from megasense.service.settings import TASK_SETTINGS, ServiceSettings
from megasense.service.summarize import load_summarizer, summarize_router

log = logging.getLogger("megasense.service")


class ServiceError(Exception):
    def __init__(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type_, message, headers or {}


@dataclass
class _Served:
    backend: Backend
    batcher: DynamicBatcher | None
    """None for the chat model, whose replies run on threads of their own (``service.chat``)."""
    routes: dict[str, _Served] = field(default_factory=dict)
    """A routing rule's models (``default``: sentiment-en, sentiment-multilingual), each servable alone."""


class ServiceState:
    """What the routes read: settings, metrics, keys, and the served models once they are loaded."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.keys = KeyChecker(settings)
        self.ready = False
        self.draining = False
        """SIGTERM was received: /ready answers 503, new requests are refused, those in flight finish."""
        self.served: dict[str, _Served] = {}  # task -> model and its batcher
        self.assistant = None
        """The product assistant (``service.assist``), with ``assistant_catalogue``."""
        self.summarizer = None
        """The summarizer on the chat model (``service.summarize``), with ``chat_model``."""

    def begin_drain(self) -> None:
        """Stop taking requests (readiness flips now; liveness stays until the process exits)."""
        self.ready = False
        self.draining = True

    def get(self, task: str, requested: str | None) -> _Served:
        if not self.ready or task not in self.served:
            if self.ready:
                setting = TASK_SETTINGS.get(task, task)
                raise ServiceError(
                    404,
                    "not_found",
                    f"this service has no {task} model enabled; start it with --{setting.replace('_', '-')} NAME "
                    f"(or MEGASENSE_{setting.upper()}, or {setting} in the settings file)",
                )
            raise ServiceError(503, "not_ready", "the models are still loading (or the service is stopping)")
        served = self.served[task]
        if requested in served.routes:
            return served.routes[requested]
        if requested not in (None, "default", served.backend.name):
            routes = "".join(f" or {name!r}" for name in served.routes)
            raise ServiceError(
                422,
                "invalid_request",
                f"model {requested!r} is not served here; this service serves "
                f"{served.backend.name!r}{routes} for {task} (see GET /v1/models)",
            )
        return served


def _validation_message(exc: RequestValidationError) -> str:
    invalid = next((e for e in exc.errors() if e.get("type") == "json_invalid"), None)
    if invalid is not None:
        where = next((p for p in invalid.get("loc", ()) if isinstance(p, int)), None)
        at = f" at character {where}" if where is not None else ""
        return f"the body is not valid JSON{at}: {invalid.get('ctx', {}).get('error', 'JSON decode error')}"
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _check_limits(texts: list[str], settings: ServiceSettings) -> None:
    if len(texts) > settings.max_texts_per_request:
        raise ServiceError(
            413,
            "too_many_texts",
            f"{len(texts)} texts in one request; the limit is max_texts_per_request={settings.max_texts_per_request}",
        )
    total = 0
    for i, text in enumerate(texts):
        if len(text) > settings.max_chars_per_text:
            raise ServiceError(
                413,
                "text_too_long",
                f"text {i} has {len(text)} characters; the limit is max_chars_per_text={settings.max_chars_per_text}",
            )
        # JSON can carry lone UTF-16 surrogates ("\ud800"), which are not text and no tokenizer takes.
        if any("\ud800" <= ch <= "\udfff" for ch in text):
            raise ServiceError(422, "invalid_request", f"text {i} contains a lone UTF-16 surrogate; send valid Unicode")
        total += len(text)
    if total > settings.max_chars_per_request:
        raise ServiceError(
            413,
            "request_too_large",
            f"{total} characters in one request; the limit is max_chars_per_request={settings.max_chars_per_request}",
        )


def _check_top_k(top_k: int | None, served: _Served) -> None:
    labels = len(served.backend.labels)
    if top_k is not None and top_k > labels:
        raise ServiceError(
            422,
            "invalid_request",
            f"top_k={top_k} is more than the {labels} labels of model {served.backend.name!r}; give 1 to {labels}",
        )


async def _run(state: ServiceState, served: _Served, texts: list[str], request: Request) -> list:
    """The batcher's results for ``texts``; if the client hangs up first, its request is withdrawn."""
    (results,) = await _run_each(state, [served], texts, request)
    return results


async def _run_each(state: ServiceState, models: list[_Served], texts: list[str], request: Request) -> list[list]:
    """Each model's results for ``texts``, submitted to their batchers at once so they run concurrently. If the
    client hangs up first, or one model refuses (queue full, stopping), every submission is withdrawn."""
    submitted = [asyncio.ensure_future(served.batcher.submit(texts)) for served in models]
    hung_up = asyncio.ensure_future(_disconnected(request))
    try:
        while True:
            for each in submitted:
                if each.done():
                    each.result()  # a model that refused (queue full, stopping) fails the request at once
            if all(each.done() for each in submitted):
                break
            if hung_up.done():  # nobody will read the answer: withdraw it before it reaches the models
                raise ServiceError(499, "client_closed_request", "the client closed the connection")
            await asyncio.wait({*submitted, hung_up}, return_when=asyncio.FIRST_COMPLETED)
        results = [each.result() for each in submitted]
    except QueueFull as exc:
        raise ServiceError(429, "queue_full", str(exc), {"Retry-After": str(round(exc.retry_after))}) from None
    except NotRunning:
        raise ServiceError(503, "not_ready", "the model is not running (the service is starting or stopping)") from None
    finally:
        hung_up.cancel()
        for each in submitted:  # withdraws what still waits when this handler is cancelled or gives up
            if not each.cancel() and not each.cancelled():
                each.exception()  # done: mark a second model's refusal as seen
        for served in models:
            state.metrics.queue_depth.labels(served.backend.task).set(served.batcher.waiting_texts)
    for served in models:
        state.metrics.texts.labels(served.backend.task).inc(len(texts))
    return results


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _router(state: ServiceState) -> APIRouter:
    # The API key is checked by the gate (service.gate), before the body is read.
    errors = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 429, 503)}
    api = APIRouter(prefix="/v1", responses=errors)

    async def answer(
        task: str, body: TextsRequest, request: Request, *, slots: bool = False
    ) -> tuple[_Served, list[str], list, list | None]:
        """``(served, texts, results, slot_results)``: the model of ``task`` and every text's result, None for
        the empty ones (skipped, as ``megasense predict`` skips them); with ``slots`` and a slots model served,
        the slots of the same texts from that model, run concurrently (else None)."""
        texts = body.all_texts()
        _check_limits(texts, state.settings)
        served = state.get(task, body.model)
        if isinstance(body, ClassificationRequest):
            _check_top_k(body.top_k, served)
        models = [served, *([state.served["slots"]] if slots and "slots" in state.served else [])]
        kept = [i for i, text in enumerate(texts) if text.strip()]
        answers: list[list] = [[None] * len(texts) for _ in models]
        if kept:
            for answered, results in zip(answers, await _run_each(state, models, [texts[i] for i in kept], request)):
                for i, result in zip(kept, results):
                    answered[i] = result
        return served, texts, answers[0], answers[1] if len(answers) > 1 else None

    async def classify(
        task: str, body: ClassificationRequest, request: Request, *, slots: bool = False
    ) -> tuple[_Served, list, Usage, list | None]:
        served, texts, results, slot_results = await answer(task, body, request, slots=slots)
        chunks = sum(r.chunks for r in results if r is not None)
        usage = Usage(texts=len(texts), characters=sum(map(len, texts)), chunks=chunks)
        return served, results, usage, slot_results

    # `labels` appears only where a model gives label sets (schemas.ClassificationResult drops it otherwise)
    @api.post(
        "/sentiment",
        response_model=SentimentResponse,
        summary="Sentiment of one text or many",
    )
    async def sentiment(body: ClassificationRequest, request: Request) -> SentimentResponse:
        served, results, usage, _ = await classify("sentiment", body, request)
        return SentimentResponse(
            model=served.backend.name, results=[SentimentResult.of(r, top_k=body.top_k) for r in results], usage=usage
        )

    @api.post(
        "/intent",
        response_model=IntentResponse,
        summary="Intent of one text or many, or out-of-scope",
    )
    async def intent(body: ClassificationRequest, request: Request) -> IntentResponse:
        served, results, usage, slots = await classify("intent", body, request, slots=True)
        oos = served.backend.oos_label
        return IntentResponse(
            model=served.backend.name,
            results=[
                IntentResult.of(
                    r,
                    top_k=body.top_k,
                    out_of_scope=bool(oos) and r is not None and r.label == oos,
                    slots=None if slots is None else Slot.all_of(slots[i]),
                )
                for i, r in enumerate(results)
            ],
            usage=usage,
        )

    @api.post(
        "/emotion",
        response_model=EmotionResponse,
        summary="Emotions of one text or many (multi-label)",
    )
    async def emotion(body: ClassificationRequest, request: Request) -> EmotionResponse:
        served, results, usage, _ = await classify("emotion", body, request)
        return EmotionResponse(
            model=served.backend.name, results=[EmotionResult.of(r, top_k=body.top_k) for r in results], usage=usage
        )

    @api.post("/slots", response_model=SlotResponse, summary="Slots of one text or many (token classification)")
    async def slots(body: TextsRequest, request: Request) -> SlotResponse:
        served, texts, results, _ = await answer("slots", body, request)
        usage = Usage(
            texts=len(texts), characters=sum(map(len, texts)), chunks=sum(r is not None for r in results)
        )  # a slot filler reads one window per text (a longer text is cut: `O` past the cut)
        return SlotResponse(
            model=served.backend.name,
            results=[SlotResult.of(r, text) for r, text in zip(results, texts)],
            usage=usage,
        )

    @api.post("/embeddings", response_model=EmbeddingResponse, summary="Sentence embeddings (L2-normalised)")
    async def embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingResponse:
        texts = body.all_texts()
        if not texts:
            raise ServiceError(422, "invalid_request", "input: the list is empty; send at least one string")
        _check_limits(texts, state.settings)
        served = state.get("embedding", body.model)
        results = await _run(state, served, texts, request)
        tokens = sum(r.tokens for r in results)
        return EmbeddingResponse(
            data=[
                EmbeddingData(index=i, embedding=r.vector, truncated=r.truncated, tokens=r.tokens)
                for i, r in enumerate(results)
            ],
            model=served.backend.name,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )

    @api.get("/models", response_model=ModelList, summary="The models this service serves")
    async def models() -> ModelList:
        return ModelList(
            data=[
                ModelCard(
                    id=s.backend.name,
                    task=task,
                    labels=list(s.backend.labels),
                    oos_label=getattr(s.backend, "oos_label", "") or None,  # classifier backends have one
                    dimensions=s.backend.dimensions,
                    max_tokens=getattr(s.backend, "max_tokens", None),
                    routes=list(s.routes) or None,
                    ready=state.ready,
                )
                for task, s in state.served.items()
            ]
        )

    return api


def create_app(
    settings: ServiceSettings | None = None, *, backends: Callable[[ServiceSettings], list[Backend]] | None = None
) -> FastAPI:
    """The app for ``settings``; ``backends`` (default: load the configured models) runs in the lifespan."""
    settings = settings or ServiceSettings()
    state = ServiceState(settings)
    install_log_redaction(settings.redact_logs)
    loader = backends or load_backends

    def batcher(backend: Backend, executor=None) -> DynamicBatcher:
        made = DynamicBatcher(
            backend.run,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue_texts=settings.max_queue_texts,
            merge=settings.dynamic_batching,
            on_batch=_batch_observer(state, backend.task),
            executor=executor,
        )
        made.start()
        return made

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = list(loader(settings))
        if settings.chat_model and not any(b.task == "chat" for b in loaded):
            loaded.append(await asyncio.to_thread(load_chat_backend, settings))
        for backend in loaded:
            if isinstance(backend, ChatBackend):
                state.served[backend.task] = _Served(backend, None)
                continue
            served = _Served(backend, batcher(backend))
            for route in getattr(backend, "routes", list)():  # the same weights: the same model thread
                served.routes[route.name] = _Served(route, batcher(route, served.batcher.executor))
            state.served[backend.task] = served
        if settings.assistant_catalogue:
            state.assistant = await asyncio.to_thread(load_assistant, settings)
            chat = state.served.get("chat")
            if chat is not None and state.assistant.generator is not None:  # the model `assistant` of the chat API
                responder = AssistantResponder(state.assistant)
                backend = ChatBackend(
                    responder, max_streams=settings.chat_max_streams, max_waiting=settings.max_queue_texts
                )
                chat.routes[responder.name] = _Served(backend, None)
        if settings.chat_model:
            state.summarizer = await asyncio.to_thread(load_summarizer, settings)
        state.ready = True
        log.info("megasense service ready: %s", ", ".join(f"{t}={s.backend.name}" for t, s in state.served.items()))
        try:
            yield
        finally:
            state.begin_drain()  # /ready turns false before the in-flight work is drained
            for served in state.served.values():
                for route in served.routes.values():
                    if route.batcher is None:
                        await route.backend.stop(settings.drain_timeout_s)
                    else:
                        await route.batcher.stop(settings.drain_timeout_s)
                if served.batcher is None:
                    await served.backend.stop(settings.drain_timeout_s)
                else:
                    await served.batcher.stop(settings.drain_timeout_s)

    app = FastAPI(
        title="megasense",
        summary="Sentiment, intents, emotions, slots, sentence embeddings and chat from Megatron-style models",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.megasense = state
    # Starlette runs the middleware added last first: observe (metrics) -> CORS -> gate -> the routes.
    app.add_middleware(RequestGate, state=state)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
        )
    _install_handlers(app, state)
    app.include_router(_router(state))
    app.include_router(chat_router(state))
    app.include_router(assistant_router(state))
    app.include_router(summarize_router(state))
    app.include_router(explain_router(state))

    @app.get("/health", summary="The process is alive (200 until it exits, also while it drains)")
    async def health() -> dict:
        return {"status": "draining" if state.draining else "ok"}

    @app.get("/ready", summary="The models are loaded and requests are accepted (503 while loading or draining)")
    async def ready() -> JSONResponse:
        if state.ready:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False, "draining": state.draining}, status_code=503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def _batch_observer(state: ServiceState, task: str) -> Callable[[int, float], None]:
    def observe(size: int, seconds: float) -> None:
        state.metrics.batch_size.labels(task).observe(size)
        state.metrics.batch_seconds.labels(task).observe(seconds)

    return observe


def _install_handlers(app: FastAPI, state: ServiceState) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        state.metrics.errors.labels(exc.type).inc()
        return error_response(exc.status, exc.type, exc.message, exc.headers)

    app.add_exception_handler(ChatError, service_error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            state.metrics.errors.labels("invalid_json").inc()
            return error_response(400, "invalid_json", _validation_message(exc))
        state.metrics.errors.labels("invalid_request").inc()
        status = 400 if request.url.path == CHAT_PATH else 422  # OpenAI's API answers 400
        return error_response(status, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """The framework's own errors (no such path, wrong method, an unparseable body) in the service's shape."""
        type_, message = _http_error(request, exc)
        state.metrics.errors.labels(type_).inc()
        return error_response(exc.status_code, type_, message, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        state.metrics.errors.labels("internal_error").inc()
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")

    app.add_middleware(ObserveRequests, metrics=state.metrics)


def _http_error(request: Request, exc: StarletteHTTPException) -> tuple[str, str]:
    method, path = request.method, request.url.path
    if exc.status_code == 404:
        return "not_found", f"no endpoint at {path}; see /docs for the endpoints"
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return "method_not_allowed", f"{path} does not answer {method}" + (f"; use {allowed}" if allowed else "")
    if exc.status_code == 400:
        return "invalid_json", unparseable_body(request.scope.get(BODY_KEY))
    return "http_error", str(exc.detail)


def _version() -> str:
    from megasense import __version__

    return __version__
