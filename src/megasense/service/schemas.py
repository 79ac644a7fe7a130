"""Request and response bodies of the HTTP API (they are also the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    StrictStr,
    model_serializer,
    model_validator,
)


class ClassificationRequest(BaseModel):
    """The body of /v1/sentiment, /v1/intent and /v1/emotion."""

    model_config = ConfigDict(extra="forbid")

    texts: list[StrictStr] | None = Field(None, description="Texts to classify (or use `text` for one).")
    text: StrictStr | None = Field(None, description="A single text to classify.")
    model: StrictStr | None = Field(None, description="Model name; omit for the service's model.")
    top_k: StrictInt | None = Field(
        None,
        ge=1,
        description="Return only the k most probable labels in `probs` (most probable first), 1 to the model's "
        "number of labels (see GET /v1/models); omit for every label, in the model's order.",
    )

    @model_validator(mode="after")
    def _one_of(self) -> ClassificationRequest:
        if (self.texts is None) == (self.text is None):
            raise ValueError("give exactly one of 'texts' (a list of strings) or 'text' (a string)")
        if self.texts is not None and not self.texts:
            raise ValueError("'texts' is empty; send at least one text")
        return self

    def all_texts(self) -> list[str]:
        return list(self.texts) if self.texts is not None else [self.text]


SentimentRequest = ClassificationRequest
"""The request's name from when sentiment was the only classifier."""


class ClassificationResult(BaseModel):
    """One text's answer: the fields of ``megasense.predictors.results.SentimentResult``.

    An empty or all-whitespace text is skipped, as ``megasense predict`` skips it: ``label`` is empty,
    ``score`` null, ``probs`` empty and ``chunks`` 0."""

    label: str = Field(
        description="The most probable label (multi-label models: every predicted label, comma-separated); "
        "empty for an empty text."
    )
    score: float | None = Field(
        description="Probability of the label (multi-label models: of the most probable one); null for an empty text."
    )
    probs: dict[str, float] = Field(
        description="Probability of every label in the model's order, or with `top_k` of the k most probable, "
        "most probable first. Multi-label models give each label its own independent probability. Empty for an "
        "empty text."
    )
    chunks: int = Field(1, description="Model windows the text was read in (more than 1: a long text; 0: empty).")
    labels: list[str] | None = Field(
        None, description="Multi-label models only: every predicted label, most probable first."
    )

    @model_serializer(mode="wrap")
    def _labels_only_when_given(self, handler: SerializerFunctionWrapHandler):
        data = handler(self)
        if self.labels is None:
            data.pop("labels", None)  # a single-label model's answer has no `labels` at all
        return data

    @classmethod
    def of(cls, result, *, top_k: int | None = None, **extra) -> Self:
        """The HTTP body of a ``SentimentResult`` (None: an empty text, skipped), with ``probs`` cut to the
        ``top_k`` most probable labels."""
        if result is None:
            return cls(label="", score=None, probs={}, chunks=0, labels=cls._no_labels(), **extra)
        probs = _top(result.probs, top_k)
        labels = None if result.labels is None else list(result.labels)
        return cls(label=result.label, score=result.score, probs=probs, chunks=result.chunks, labels=labels, **extra)

    @classmethod
    def _no_labels(cls) -> list[str] | None:
        return None


def _top(probs: dict[str, float], k: int | None) -> dict[str, float]:
    if k is None:
        return dict(probs)
    return dict(sorted(probs.items(), key=lambda item: -item[1])[:k])  # sorted is stable: ties keep model order


class SentimentResult(ClassificationResult):
    scores: dict[str, float] = Field(
        description="The same as `probs` (its name before 0.2); will be removed.",
        json_schema_extra={"deprecated": True},
    )

    @classmethod
    def of(cls, result, *, top_k: int | None = None, **extra) -> SentimentResult:
        scores = {} if result is None else _top(result.probs, top_k)
        return super().of(result, top_k=top_k, scores=scores, **extra)


class IntentResult(ClassificationResult):
    out_of_scope: bool = Field(
        description="True when `label` is the model's out-of-scope label (`oos` for intent-en, listed as "
        "`oos_label` by GET /v1/models): the text asks for none of the model's intents. Always false for a model "
        "without an out-of-scope label."
    )


class EmotionResult(ClassificationResult):
    labels: list[str] = Field(
        description="Every predicted emotion, most probable first (at least one; none for an empty text)."
    )

    @classmethod
    def _no_labels(cls) -> list[str] | None:
        return []


class Usage(BaseModel):
    texts: int
    characters: int
    chunks: int = Field(description="Model windows used; a text longer than the model's window takes several.")


class SentimentResponse(BaseModel):
    model: str
    results: list[SentimentResult]
    usage: Usage


class IntentResponse(BaseModel):
    model: str
    results: list[IntentResult]
    usage: Usage


class EmotionResponse(BaseModel):
    model: str
    results: list[EmotionResult]
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
    tokens: int = Field(0, description="Tokens of the text the model read (after truncation).")
    truncated: bool = Field(
        False,
        description="True when the text was longer than the model's window (`max_tokens` in GET /v1/models) and "
        "only its first tokens were embedded.",
    )


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
    oos_label: str | None = Field(None, description="The label that means out-of-scope (intent models that have one).")
    dimensions: int | None = None
    max_tokens: int | None = Field(None, description="Embedding models: tokens read per text; longer ones are cut.")
    routes: list[str] | None = Field(
        None,
        description="A routing rule (`default`): the models it picks from by script; name one as `model` to use it "
        "for every text.",
    )
    ready: bool


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
