"""The public Python API, re-exported from ``megasense``: one thin call per job.

``load_model``, ``sentiment``, ``classify`` (intents, emotions, any classifier), ``evaluate``, ``embed``,
``generate``, ``train``, ``analyze``, and the assistant: ``load_assistant`` and ``assist``. Each
call accepts a model name, a path, or an already loaded model (``megasense.load_model``); pass a
loaded model (or predictor) when calling many times, so the weights are read once. The work itself
lives in the rooms below: ``predictors`` (text in, typed results out), ``training`` and ``analytics``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from megasense.analytics.analysis import analyze
from megasense.assistant.assistant import Assistant, AssistResult
from megasense.config import GenerationConfig
from megasense.formats.release import LoadedModel
from megasense.predictors.embedding import SentenceEmbedder
from megasense.predictors.generation import TextGenerator
from megasense.predictors.jobs import evaluate_file
from megasense.predictors.sentiment import Predictor, SentimentClassifier, SentimentRouter, load_predictor
from megasense.predictors.texts import check_texts
from megasense.training.finetune import train
from megasense.zoo import load_model
from megasense.zoo.shipped import ROUTER

__all__ = [
    "analyze",
    "assist",
    "classify",
    "embed",
    "evaluate",
    "generate",
    "load_assistant",
    "load_model",
    "sentiment",
    "train",
]


def _loaded(model: str | LoadedModel) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def embed(texts: Sequence[str] | str, *, model: str | LoadedModel = "all-minilm-l6-v2") -> np.ndarray:
    """(N, hidden) L2-normalised sentence embeddings.

    >>> vectors = megasense.embed(["good service", "服务很好"], model="multilingual-e5-small")  # doctest: +SKIP
    """
    return SentenceEmbedder(_loaded(model)).embed(texts)


def generate(
    prompt: str,
    *,
    model: str | LoadedModel = "smollm2-135m-instruct",
    chat: bool | None = None,
    stream: bool = False,
    **options,
) -> str | Iterator[str]:
    """Generated text for ``prompt``; ``options`` are GenerationConfig fields (max_new_tokens, do_sample,
    temperature, top_k, top_p, num_beams, seed, ...). With ``stream=True``, an iterator of text pieces.

    >>> megasense.generate("What is a transformer?", max_new_tokens=40)  # doctest: +SKIP
    """
    generator = TextGenerator(_loaded(model))
    config = GenerationConfig(**options)
    if stream:
        return generator.stream(prompt, config, chat=chat)
    return generator.generate([prompt], config, chat=chat)[0][0]


def sentiment(
    texts: Sequence[str] | str,
    *,
    model: str | Path | LoadedModel | Predictor = ROUTER,
    labels: Sequence[str] | None = None,
    precision: str = "auto",
) -> dict[str, Any] | list[dict[str, Any]]:
    """``{"label", "score", "probs", "chunks"}`` for a text, or a list of them for a list of texts.

    ``precision`` is ``"auto"`` (the fastest at fp32's accuracy on this machine), fp32, bf16, int8, or
    onnx / onnx-int8 (ONNX Runtime; needs ``megasense[onnx]``).

    >>> megasense.sentiment(["The staff were lovely", "房间太小了"])  # doctest: +SKIP
    """
    predictor = _predictor(model, precision=precision)
    if labels is not None:
        predictor = predictor.restricted(labels)
    out = [result.to_dict() for result in predictor.predict(check_texts(texts))]
    return out[0] if isinstance(texts, str) else out


def classify(
    texts: Sequence[str] | str,
    *,
    model: str | Path | LoadedModel | Predictor,
    precision: str = "auto",
) -> dict[str, Any] | list[dict[str, Any]]:
    """Any classifier's answer, as ``sentiment`` gives it: ``{"label", "score", "probs", "chunks"}`` per text,
    plus ``labels`` (every label above its threshold) for a multi-label model. An intent model with an
    out-of-scope label answers it (``oos`` for ``intent-en``) for texts that are none of its intents.

    >>> megasense.classify("wake me up at seven tomorrow", model="intent-en")["label"]  # doctest: +SKIP
    'alarm'
    >>> megasense.classify("thank you so much, this made my day", model="emotion-en")["labels"]  # doctest: +SKIP
    ['gratitude', 'joy']
    """
    return sentiment(texts, model=model, precision=precision)


def evaluate(
    data: str | Path,
    *,
    label_col: str = "label",
    text_col: str = "text",
    model: str | Path | LoadedModel | Predictor = ROUTER,
    labels: Sequence[str] | None = None,
    baseline: bool = True,
    precision: str = "auto",
) -> dict[str, Any]:
    """Accuracy, F1, recall, per-class scores, confusion matrix and calibration of ``model`` on a labelled table.

    >>> megasense.evaluate("reviews.csv", label_col="stars_sentiment")  # doctest: +SKIP
    """
    return evaluate_file(
        _predictor(model, precision=precision),
        data,
        label_col=label_col,
        text_col=text_col,
        labels=labels,
        baseline=baseline,
    )


def _predictor(model: str | Path | LoadedModel | Predictor, *, precision: str) -> Predictor:
    loaded = isinstance(model, SentimentClassifier | SentimentRouter)
    return model if loaded else load_predictor(model, precision=precision)


def load_assistant(
    catalogue: str | Path,
    *,
    intent_model: str = "intent-en",
    emotion_model: str | None = "emotion-en",
    sentiment_model: str | None = "default",
    chat_model: str | None = "smollm2-135m-instruct",
    slots_model: str | None = None,
    history: str | Path | None = None,
) -> Assistant:
    """The assistant for a feature catalogue (TOML), with its models loaded once; keep it and call
    ``assistant.assist(text, session=assistant.session(user))`` per utterance.

    >>> bot = megasense.load_assistant("examples/assistant/smart-speaker.toml")  # doctest: +SKIP
    >>> bot.assist("set an alarm for seven").to_dict()["feature"]["name"]  # doctest: +SKIP
    'Alarms'
    """
    return Assistant.load(
        catalogue,
        intent_model=intent_model,
        emotion_model=emotion_model,
        sentiment_model=sentiment_model,
        chat_model=chat_model,
        slots_model=slots_model,
        history=history if history is not None else (),
    )


def assist(
    text: str,
    *,
    catalogue: str | Path | Assistant,
    user: str | None = None,
    history: str | Path | None = None,
    k: int = 3,
    reply: bool = True,
) -> AssistResult:
    """One utterance answered as the catalogue's assistant: intent, emotion, sentiment, slots, up to ``k``
    recommended features with their reasons, and a grounded reply. Pass a loaded ``Assistant`` (from
    ``load_assistant``) as ``catalogue`` when calling many times."""
    assistant = catalogue if isinstance(catalogue, Assistant) else load_assistant(catalogue, history=history)
    return assistant.assist(text, session=assistant.session(user), k=k, reply=reply)
