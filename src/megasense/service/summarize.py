"""``POST /v1/summarize``: study notes, an abstract or bullet points of a text, over HTTP.

Served when the service has a chat model (``chat_model``): the summarizer (``summaries.summarizer``) uses that
decoder and the embedded sentence encoders, loaded at start-up. Summaries run on one worker thread of their own,
off the event loop; the answer is whole (a summary is checked sentence by sentence before it is shown).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from megasense.errors import MegasenseError
from megasense.service.chat import ChatError
from megasense.service.schemas import ErrorResponse
from megasense.service.settings import ServiceSettings

SUMMARIZE_PATH = "/v1/summarize"


class SummarizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, description="The text to summarize (a document's text, a dialogue).")
    style: Literal["study", "brief", "bullets"] = Field(
        "brief", description="study (Markdown notes), brief (an abstract) or bullets (key points)."
    )
    max_words: int | None = Field(None, ge=1, le=2000, description="Most words (Chinese: characters).")
    lang: Literal["auto", "en", "zh"] = "auto"
    strategy: Literal["greedy", "beam", "sample"] = "greedy"
    method: Literal["auto", "generate", "extract"] = "auto"
    seed: int | None = Field(None, description="Seed for strategy=sample.")


class KeyTermOut(BaseModel):
    term: str
    definition: str


class SummarizeResponse(BaseModel):
    text: str = Field(description="The summary as shown: plain text, a '- ' list, or Markdown study notes.")
    style: str
    lang: str
    method: str = Field(description="generated (the decoder's sentences, each supported by the source) or extracted.")
    abstract: list[str]
    key_points: list[str]
    key_terms: list[KeyTermOut]
    questions: list[str]
    chunks: int = Field(description="Parts the text was summarized in (map-reduce) when it did not fit one prompt.")
    dropped: list[str] = Field(description="Generated sentences left out: the source does not support them.")
    notes: list[str] = Field(description="What was cut or substituted.")
    words: int


class _State(Protocol):
    settings: ServiceSettings
    summarizer: Any


def load_summarizer(settings: ServiceSettings):
    """The summarizer on the service's chat model (called at start-up, off the event loop)."""
    from megasense.summaries.summarizer import load_summarizer as load

    return load(settings.chat_model)


def summarize_router(state: _State) -> APIRouter:
    errors = {code: {"model": ErrorResponse} for code in (401, 404, 413, 422, 503)}
    api = APIRouter(prefix="/v1", responses=errors)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="megasense-summarize")

    @api.post(
        "/summarize",
        response_model=SummarizeResponse,
        summary="Summarize a text: study notes, an abstract or bullet points, checked against the source",
    )
    async def summarize(body: SummarizeRequest) -> SummarizeResponse:
        summarizer = getattr(state, "summarizer", None)
        if summarizer is None:
            raise ChatError(
                404,
                "not_found",
                "this service has no summarizer; start it with --chat-model smollm2-135m-instruct "
                "(or MEGASENSE_CHAT_MODEL, or chat_model in the settings file)",
            )
        limit = state.settings.max_chars_per_text
        if len(body.text) > limit:
            raise ChatError(413, "too_large", f"text has {len(body.text):,} characters; the limit is {limit:,}")
        loop = asyncio.get_running_loop()
        options = body.model_dump(exclude={"text"})
        try:
            summary = await loop.run_in_executor(executor, lambda: summarizer.summarize(body.text, **options))
        except MegasenseError as exc:
            raise ChatError(422, "invalid_request", str(exc)) from None
        return SummarizeResponse(**summary.to_dict())

    return api
