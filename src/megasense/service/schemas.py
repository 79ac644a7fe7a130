"""Request and response bodies of the HTTP API (they are also the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator


class SentimentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[StrictStr] | None = Field(None, description="Texts to score (or use `text` for one).")
    text: StrictStr | None = Field(None, description="A single text to score.")
    model: StrictStr | None = Field(None, description="Model name; omit for the service's model.")

    @model_validator(mode="after")
    def _one_of(self) -> SentimentRequest:
        if (self.texts is None) == (self.text is None):
            raise ValueError("give exactly one of 'texts' (a list of strings) or 'text' (a string)")
        if self.texts is not None and not self.texts:
            raise ValueError("'texts' is empty; send at least one text")
        return self

    def all_texts(self) -> list[str]:
        return list(self.texts) if self.texts is not None else [self.text]


class SentimentResult(BaseModel):
    """One text's answer: the fields of ``megasense.predictors.results.SentimentResult``."""

    label: str = Field(description="The most probable label.")
    score: float = Field(description="Probability of the label.")
    probs: dict[str, float] = Field(description="Probability of every label.")
    chunks: int = Field(1, description="Model windows the text was read in (more than 1: a long text).")
    scores: dict[str, float] = Field(
        description="The same as `probs` (its name before 0.2); will be removed.",
        json_schema_extra={"deprecated": True},
    )

    @classmethod
    def of(cls, result) -> SentimentResult:
        return cls(
            label=result.label, score=result.score, probs=result.probs, chunks=result.chunks, scores=result.probs
        )


class Usage(BaseModel):
    texts: int
    characters: int
    chunks: int = Field(description="Model windows used; a text longer than the model's window takes several.")


class SentimentResponse(BaseModel):
    model: str
    results: list[SentimentResult]
    usage: Usage


class EmbeddingRequest(BaseModel):
    """The shape clients of embedding APIs already speak."""

    model_config = ConfigDict(extra="forbid")

    input: StrictStr | list[StrictStr] = Field(description="A string or a list of strings.")
    model: StrictStr | None = None
    encoding_format: Literal["float"] = "float"
    user: StrictStr | None = None

    def all_texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float]


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    task: str
    labels: list[str] = []
    dimensions: int | None = None
    ready: bool


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
