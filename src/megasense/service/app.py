"""``create_app(settings)``: the FastAPI app. Explicit steps per request, as the serving flow reads:

request -> schema validation (pydantic) -> limits -> dynamic batcher -> model (off the event loop)
-> response. Models are loaded in the lifespan, never at import; ``/ready`` says when they are.
Every expected failure has its status and a body ``{"error": {"type", "message"}}``: 401 (key),
404 (no model enabled for the endpoint), 413 (too many texts or characters), 422 (malformed fields, a
model not served here), 429 (queue full, with Retry-After), 503 (not ready).

The classifiers (``/v1/sentiment``, ``/v1/intent``, ``/v1/emotion``) share one request shape and one
path; each has its own batcher, and their answers differ only in the fields their task adds.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from megasense.service.auth import KeyChecker
from megasense.service.backends import Backend, load_backends
from megasense.service.batching import DynamicBatcher, NotRunning, QueueFull
from megasense.service.metrics import ServiceMetrics
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
    Usage,
)
from megasense.service.settings import TASK_SETTINGS, ServiceSettings

log = logging.getLogger("megasense.service")


class ServiceError(Exception):
    def __init__(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type_, message, headers or {}


@dataclass
class _Served:
    backend: Backend
    batcher: DynamicBatcher


class ServiceState:
    """What the routes read: settings, metrics, keys, and the served models once they are loaded."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.keys = KeyChecker(settings)
        self.ready = False
        self.served: dict[str, _Served] = {}  # task -> model and its batcher

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
        if requested not in (None, "default", served.backend.name):
            raise ServiceError(
                422,
                "invalid_request",
                f"model {requested!r} is not served here; this service serves "
                f"{served.backend.name!r} for {task} (see GET /v1/models)",
            )
        return served


def _error(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
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


async def _run(state: ServiceState, served: _Served, texts: list[str]) -> list:
    task = served.backend.task
    try:
        results = await served.batcher.submit(texts)
    except QueueFull as exc:
        raise ServiceError(429, "queue_full", str(exc), {"Retry-After": str(round(exc.retry_after))}) from None
    except NotRunning:
        raise ServiceError(503, "not_ready", "the model is not running (the service is starting or stopping)") from None
    finally:
        state.metrics.queue_depth.labels(task).set(served.batcher.waiting_texts)
    state.metrics.texts.labels(task).inc(len(texts))
    return results


def _router(state: ServiceState) -> APIRouter:
    async def require_key(request: Request) -> None:
        header = request.headers.get("authorization", "")
        presented = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
        if not state.keys.check(presented):
            raise ServiceError(401, "unauthorized", "a valid API key is required", {"WWW-Authenticate": "Bearer"})

    errors = {code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 429, 503)}
    api = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], responses=errors)

    async def classify(task: str, body: ClassificationRequest) -> tuple[_Served, list, Usage]:
        texts = body.all_texts()
        _check_limits(texts, state.settings)
        served = state.get(task, body.model)
        _check_top_k(body.top_k, served)
        results = await _run(state, served, texts)
        usage = Usage(texts=len(texts), characters=sum(map(len, texts)), chunks=sum(r.chunks for r in results))
        return served, results, usage

    # response_model_exclude_none: `labels` appears only where a model gives label sets
    @api.post(
        "/sentiment",
        response_model=SentimentResponse,
        response_model_exclude_none=True,
        summary="Sentiment of one text or many",
    )
    async def sentiment(body: ClassificationRequest) -> SentimentResponse:
        served, results, usage = await classify("sentiment", body)
        return SentimentResponse(
            model=served.backend.name, results=[SentimentResult.of(r, top_k=body.top_k) for r in results], usage=usage
        )

    @api.post(
        "/intent",
        response_model=IntentResponse,
        response_model_exclude_none=True,
        summary="Intent of one text or many, or out-of-scope",
    )
    async def intent(body: ClassificationRequest) -> IntentResponse:
        served, results, usage = await classify("intent", body)
        oos = served.backend.oos_label
        return IntentResponse(
            model=served.backend.name,
            results=[IntentResult.of(r, top_k=body.top_k, out_of_scope=bool(oos) and r.label == oos) for r in results],
            usage=usage,
        )

    @api.post(
        "/emotion",
        response_model=EmotionResponse,
        response_model_exclude_none=True,
        summary="Emotions of one text or many (multi-label)",
    )
    async def emotion(body: ClassificationRequest) -> EmotionResponse:
        served, results, usage = await classify("emotion", body)
        return EmotionResponse(
            model=served.backend.name, results=[EmotionResult.of(r, top_k=body.top_k) for r in results], usage=usage
        )

    @api.post("/embeddings", response_model=EmbeddingResponse, summary="Sentence embeddings (L2-normalised)")
    async def embeddings(body: EmbeddingRequest) -> EmbeddingResponse:
        texts = body.all_texts()
        if not texts:
            raise ServiceError(422, "invalid_request", "input: the list is empty; send at least one string")
        _check_limits(texts, state.settings)
        served = state.get("embedding", body.model)
        results = await _run(state, served, texts)
        tokens = sum(r.tokens for r in results)
        return EmbeddingResponse(
            data=[EmbeddingData(index=i, embedding=r.vector) for i, r in enumerate(results)],
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
    loader = backends or load_backends

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for backend in loader(settings):
            batcher = DynamicBatcher(
                backend.run,
                max_batch_size=settings.max_batch_size,
                max_wait_ms=settings.max_wait_ms,
                max_queue_texts=settings.max_queue_texts,
                merge=settings.dynamic_batching,
                on_batch=_batch_observer(state, backend.task),
            )
            batcher.start()
            state.served[backend.task] = _Served(backend, batcher)
        state.ready = True
        log.info("megasense service ready: %s", ", ".join(f"{t}={s.backend.name}" for t, s in state.served.items()))
        try:
            yield
        finally:
            state.ready = False  # /ready turns false before the in-flight work is drained
            for served in state.served.values():
                await served.batcher.stop()

    app = FastAPI(
        title="megasense",
        summary="Sentiment, intents, emotions and sentence embeddings from Megatron-style models",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.megasense = state
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
        )
    _install_handlers(app, state)
    app.include_router(_router(state))

    @app.get("/health", summary="The process is alive")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready", summary="The models are loaded and requests are accepted")
    async def ready() -> JSONResponse:
        if state.ready:
            return JSONResponse({"ready": True})
        return JSONResponse({"ready": False}, status_code=503)

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
        return _error(exc.status, exc.type, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        state.metrics.errors.labels("invalid_request").inc()
        return _error(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        state.metrics.errors.labels("internal_error").inc()
        return _error(500, "internal_error", "an unexpected error occurred; it has been logged")

    @app.middleware("http")
    async def observe(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        state.metrics.requests.labels(endpoint, str(response.status_code)).inc()
        state.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
        return response


def _version() -> str:
    from megasense import __version__

    return __version__
