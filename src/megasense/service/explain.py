"""``POST /v1/explain``: which words drove a served classifier's prediction (``predictors.explain``).

The explanation runs on the served model's own thread (its batcher's one-thread executor): integrated
gradients hook the model's word-embedding table while they run, so no batch of other requests may pass
through the model meanwhile, and occlusion's many predictions queue behind the batches like any request.
Each word of a text costs one forward pass (occlusion) or the text costs ``steps`` (ig), so a request is
limited to ``MAX_TEXTS`` texts.
"""

from __future__ import annotations

import asyncio
from typing import Literal, Protocol

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from megasense.errors import MegasenseError
from megasense.service.chat import ChatError
from megasense.service.schemas import ErrorResponse, TextsRequest
from megasense.service.settings import ServiceSettings

MAX_TEXTS = 16
"""Texts one /v1/explain request may carry."""


class ExplainRequest(TextsRequest):
    """One text or many, the served classifier to explain and the method."""

    model_config = ConfigDict(extra="forbid")
    task: Literal["sentiment", "intent", "emotion"] = Field("sentiment", description="Which served classifier.")
    method: Literal["occlusion", "ig"] = Field(
        "occlusion", description="occlusion (each word deleted in turn) or ig (integrated gradients)."
    )
    top: int = Field(5, ge=1, le=50, description="Words listed in `top` per text.")
    steps: int = Field(32, ge=2, le=128, description="Integrated gradients' interpolation steps.")


class WordOut(BaseModel):
    word: str
    start: int
    end: int
    attribution: float = Field(description="How much the word raised the predicted label's probability.")


class ExplanationOut(BaseModel):
    text: str
    label: str
    score: float
    method: str
    words: list[WordOut]
    top: list[str]
    truncated: bool


class ExplainResponse(BaseModel):
    model: StrictStr
    results: list[ExplanationOut]


class _State(Protocol):
    settings: ServiceSettings

    def get(self, task: str, requested: str | None): ...


def explain_router(state: _State) -> APIRouter:
    errors = {code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 503)}
    api = APIRouter(prefix="/v1", responses=errors)

    @api.post("/explain", response_model=ExplainResponse, summary="Which words drove a classifier's prediction")
    async def explain(body: ExplainRequest) -> ExplainResponse:
        texts = body.all_texts()
        if len(texts) > MAX_TEXTS:
            raise ChatError(413, "too_many_texts", f"{len(texts)} texts; /v1/explain takes at most {MAX_TEXTS}")
        limit = state.settings.max_chars_per_text
        for i, text in enumerate(texts):
            if len(text) > limit:
                raise ChatError(413, "text_too_long", f"text {i} has {len(text)} characters; the limit is {limit}")
        served = state.get(body.task, body.model)
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(served.batcher.executor, _explain, served.backend.predictor, body)
        except MegasenseError as exc:
            raise ChatError(422, "invalid_request", str(exc)) from None
        return ExplainResponse(model=served.backend.name, results=results)

    return api


def _explain(predictor, body: ExplainRequest) -> list[ExplanationOut]:
    from megasense.predictors.explain import Explainer

    explainer = Explainer(predictor, method=body.method, steps=body.steps)
    return [ExplanationOut(**e.to_dict(top=body.top)) for e in explainer.explain(body.all_texts())]
