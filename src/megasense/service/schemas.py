"""Request and response bodies of the HTTP API (they are also the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import ClassVar, Literal, Self

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


class TextsRequest(BaseModel):
    """The body of /v1/slots, and of the classifiers without ``top_k``: one text or many, and the model."""

    model_config = ConfigDict(extra="forbid")

    texts: list[StrictStr] | None = Field(None, description="Texts to classify (or use `text` for one).")
    text: StrictStr | None = Field(None, description="A single text to classify.")
    model: StrictStr | None = Field(None, description="Model name; omit for the service's model.")

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.texts is None) == (self.text is None):
            raise ValueError("give exactly one of 'texts' (a list of strings) or 'text' (a string)")
        if self.texts is not None and not self.texts:
            raise ValueError("'texts' is empty; send at least one text")
        return self

    def all_texts(self) -> list[str]:
        return list(self.texts) if self.texts is not None else [self.text]


class ClassificationRequest(TextsRequest):
    """The body of /v1/sentiment, /v1/intent and /v1/emotion."""

    top_k: StrictInt | None = Field(
        None,
        ge=1,
        description="Return only the k most probable labels in `probs` (most probable first), 1 to the model's "
        "number of labels (see GET /v1/models); omit for every label, in the model's order.",
    )


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

    omitted_when_none: ClassVar[tuple[str, ...]] = ("labels",)
    """Fields left out of the JSON when they are None (a single-label model's answer has no `labels` at all)."""

    @model_serializer(mode="wrap")
    def _optional_only_when_given(self, handler: SerializerFunctionWrapHandler):
        data = handler(self)
        for name in self.omitted_when_none:
            if getattr(self, name, None) is None:
                data.pop(name, None)
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


class Slot(BaseModel):
    """One slot of a text: the fields of ``megasense.predictors.slots.Slot``."""

    slot: str = Field(description="The slot's name (`time`, `singer_name`).")
    value: str = Field(description="The slot's text: `text[start:end]`.")
    start: int = Field(description="Its first character (0-based, counted in Unicode code points).")
    end: int = Field(description="One past its last character.")
    score: float = Field(description="Mean probability of the slot's token tags: how sure the model is of the span.")

    @classmethod
    def all_of(cls, result) -> list[Slot]:
        """The slots of a library ``SlotResult`` (None: an empty text, skipped: none)."""
        return [] if result is None else [cls(**slot.to_dict()) for slot in result.slots]


class SlotResult(BaseModel):
    """One text's slots: ``megasense.predictors.slots.SlotResult.to_dict()``."""

    slots: list[Slot] = Field(description="The slots found, in text order (empty when none, or for an empty text).")
    tags: list[str] = Field(
        description="One tag per character of the text, in the model's scheme (`O`, `B-time`, `I-time`, ...; "
        "the tags are listed as `labels` by GET /v1/models); `O` past the end of a text longer than the model reads."
    )

    @classmethod
    def of(cls, result, text: str) -> SlotResult:
        """The HTTP body of a library ``SlotResult`` for ``text`` (None: an empty text, skipped: no slots, ``O``
        for each of its characters)."""
        tags = ["O"] * len(text) if result is None else list(result.tags)
        return cls(slots=Slot.all_of(result), tags=tags)


class IntentResult(ClassificationResult):
    out_of_scope: bool = Field(
        description="True when `label` is the model's out-of-scope label (`oos` for intent-en, listed as "
        "`oos_label` by GET /v1/models): the text asks for none of the model's intents. Always false for a model "
        "without an out-of-scope label."
    )
    slots: list[Slot] | None = Field(
        None,
        description="Only when the service also serves a slots model (`slots_model`): the text's slots, as "
        "POST /v1/slots answers them (filled by that model, concurrently, for the same texts); left out otherwise.",
    )

    omitted_when_none: ClassVar[tuple[str, ...]] = ("labels", "slots")


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


class SlotResponse(BaseModel):
    model: str = Field(description="The slots model that answered.")
    results: list[SlotResult] = Field(description="One per text, in the order sent.")
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
    task: str = Field(description="`sentiment`, `intent`, `emotion`, `slots`, `embedding` or `chat`.")
    labels: list[str] = Field(default_factory=list, description="Classifiers: their labels; slots models: their tags.")
    oos_label: str | None = Field(None, description="The label that means out-of-scope (intent models that have one).")
    dimensions: int | None = None
    max_tokens: int | None = Field(
        None,
        description="Embedding models: tokens read per text; longer ones are cut. Chat models: the context, the "
        "conversation and the reply together (older turns are dropped to fit).",
    )
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
