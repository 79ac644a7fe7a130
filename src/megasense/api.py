"""The public Python API, re-exported from ``megasense``: one thin call per job.

``load_model``, ``sentiment``, ``classify`` (intents, emotions, any classifier), ``predict`` (a table file),
``evaluate``, ``embed``, ``generate``, ``train``, ``analyze``, ``market``, the assistant (``load_assistant``,
``assist``) and study summaries (``load_summarizer``, ``summarize``). ``predict`` and ``analyze`` take
``engine="ray"`` (and ``ray_address``) to score on Ray actors, as ``megasense predict --engine ray`` does. Each
call accepts a model name, a path, or an already loaded model (``megasense.load_model``); pass a
loaded model (or predictor) when calling many times, so the weights are read once. The work itself
lives in the rooms below: ``predictors`` (text in, typed results out), ``training`` and ``analytics``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from megasense.analytics.analysis import AnalysisResult
from megasense.analytics.analysis import analyze as _analyze
from megasense.assistant.assistant import Assistant, AssistResult
from megasense.config import GenerationConfig
from megasense.errors import ConfigError, MegasenseInputError, MissingExtraError
from megasense.formats.release import LoadedModel
from megasense.market.inputs import TextColumns
from megasense.market.pipeline import MarketResult, market_settings
from megasense.market.pipeline import market as _market
from megasense.predictors.embedding import SentenceEmbedder
from megasense.predictors.explain import Explainer
from megasense.predictors.generation import TextGenerator
from megasense.predictors.jobs import evaluate_file, predict_file
from megasense.predictors.sentiment import Predictor, SentimentClassifier, SentimentRouter, load_predictor
from megasense.predictors.texts import check_texts
from megasense.summaries.jobs import summarize_document
from megasense.summaries.summarizer import Summarizer, Summary, load_summarizer
from megasense.training.finetune import train
from megasense.zoo import load_model
from megasense.zoo.shipped import ROUTER

__all__ = [
    "analyze",
    "assist",
    "classify",
    "embed",
    "evaluate",
    "explain",
    "generate",
    "load_assistant",
    "load_model",
    "load_summarizer",
    "market",
    "predict",
    "sentiment",
    "summarize",
    "train",
]


ENGINES = ("local", "ray")


def _on_ray(engine: str, ray_address: str | None) -> bool:
    """True for ``engine="ray"``; a clear error for an unknown engine, an address without Ray, or Ray missing."""
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r}: expected one of {', '.join(ENGINES)}")
    if ray_address is not None and engine != "ray":
        raise ConfigError(f"ray_address={ray_address!r} needs engine='ray'")
    if engine == "ray":
        from megasense.predictors.ray_engine import INSTALL, import_ray

        try:
            import_ray()  # before any model loads
        except MissingExtraError as exc:
            raise MissingExtraError(f"engine='ray' needs Ray: {INSTALL}, or use engine='local' ({exc})") from None
    return engine == "ray"


def predict(
    source: str | Path,
    output: str | Path,
    *,
    model: str | Path = ROUTER,
    text_col: str = "text",
    labels: Sequence[str] | None = None,
    precision: str = "auto",
    engine: str = "local",
    ray_address: str | None = None,
) -> dict[str, Any]:
    """``megasense predict``: label, score and prob_<label> columns added to every row of a table file.

    ``engine="local"`` writes ``output`` (a CSV, TSV, JSONL or Parquet file) from this process;
    ``engine="ray"`` reads ``source`` (a file or a folder of them) as a Ray dataset, scores it on Ray actors
    that load ``model`` once each, and writes ``output`` as a folder of parts plus ``_manifest.json``,
    committed atomically. Without ``ray_address`` a local Ray instance is started (or the one this process
    runs is joined); ``ray_address`` joins a cluster (``host:6379``, ``ray://host:10001``, ``auto``).
    Returns ``{"output", "rows", "engine"}``.

    >>> megasense.predict("posts/", "posts.scored.parquet", engine="ray", ray_address="auto")  # doctest: +SKIP
    """
    options = {"labels": labels, "precision": precision}
    if _on_ray(engine, ray_address):
        from megasense.predictors.ray_engine import RaySettings, run_file_job

        load_predictor(model, **options)  # a wrong name, label or kind of model fails here, before Ray starts
        summary = run_file_job(
            functools.partial(load_predictor, model, **options),
            source,
            output,
            task="predict",
            text_col=text_col,
            settings=RaySettings(address=ray_address, progress=False),
            describe={"model": str(model)},
        )
    else:
        summary = predict_file(load_predictor(model, **options), source, output, text_col=text_col)
    return {"output": Path(output), "rows": summary.rows, "engine": engine}


def analyze(
    source: str | Path,
    out: str | Path,
    *,
    engine: str = "local",
    ray_address: str | None = None,
    **options: Any,
) -> AnalysisResult:
    """``megasense analyze``: topics, sentiment over time and per group, written to the directory ``out``
    (``analytics.analysis.analyze`` takes the same ``options``: time_col, group_col, scorer, embedder, ...).

    ``engine="ray"`` scores the sentiment on Ray actors (one copy of ``sentiment_model`` each; ``ray_address``
    joins a cluster), as ``megasense analyze --engine ray`` does; the rest runs here.

    >>> megasense.analyze("reviews.csv", "reviews-analysis", time_col="date", group_col="product")  # doctest: +SKIP
    """
    if not _on_ray(engine, ray_address) or options.get("scorer") is False:
        return _analyze(source, out, **options)
    if options.get("scorer") is not None:
        raise ConfigError("engine='ray' loads the sentiment model on the Ray actors: pass sentiment_model, not scorer")
    if options.get("append"):
        raise MegasenseInputError(
            "engine='ray' cannot append: an appended analysis scores with the model saved in it; use engine='local'"
        )
    from megasense.predictors.ray_engine import RaySettings
    from megasense.predictors.ray_pool import RayScorer

    name = options.pop("sentiment_model", "default")
    load = functools.partial(load_predictor, name)
    with RayScorer(load, name=name, settings=RaySettings(address=ray_address)) as scorer:
        return _analyze(source, out, scorer=scorer, sentiment_model=name, **options)


def _loaded(model: str | LoadedModel) -> LoadedModel:
    return model if isinstance(model, LoadedModel) else load_model(model)


def market(
    texts: str | Path,
    prices: str | Path,
    out: str | Path,
    *,
    protocol: str | None = None,
    model: str | Path | None = None,
    scorer: Any = None,
    cache: str | Path | bool = True,
    columns: TextColumns | None = None,
    overwrite: bool = False,
    report: bool = True,
    **settings: Any,
) -> MarketResult:
    """Texts with times and tickers + prices -> next-day predictions walk-forward beside baselines, a backtest,
    an event study; ``out`` gets market.duckdb, metrics.json and report.html. ``settings``: ``test_start``,
    ``val_start`` (the end of training), ``up``, ``down``, ``market_tz``, ``close``... (``MarketSettings``);
    ``columns``: the text, time and ticker columns when they are not found by name (``TextColumns``).

    ``megasense.market`` is the room's package, so this one is imported from here (``megasense.api.market``):

    >>> from megasense.api import market  # doctest: +SKIP
    >>> result = market("tweets.jsonl.gz", "price-raw", "run", protocol="stocknet")  # doctest: +SKIP
    >>> result.metrics["test"][result.metrics["selected"]]["mcc"]  # doctest: +SKIP
    """
    settings_ = market_settings(protocol, **settings)
    options = {"model": model, "scorer": scorer, "cache": cache, "overwrite": overwrite, "report": report}
    options["columns"] = columns
    return _market(texts, prices, out, settings=settings_, **options)


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
    aspects: Sequence[str] | str | None = None,
) -> dict[str, Any] | list[dict[str, Any]]:
    """``{"label", "score", "probs", "chunks"}`` for a text, or a list of them for a list of texts.

    ``aspects`` (one per text) with a pair model: the sentiment toward each aspect
    (``megasense.sentiment("Samsung is better than Apple", aspects="Apple", model="aspect-sentiment-en")``).

    ``precision`` is ``"auto"`` (the fastest at fp32's accuracy on this machine), fp32, bf16, int8, or
    onnx / onnx-int8 (ONNX Runtime; needs ``megasense[onnx]``).

    >>> megasense.sentiment(["The staff were lovely", "房间太小了"])  # doctest: +SKIP
    """
    predictor = _predictor(model, precision=precision)
    if labels is not None:
        predictor = predictor.restricted(labels)
    pair = {} if aspects is None else {"aspects": [aspects] if isinstance(aspects, str) else list(aspects)}
    out = [result.to_dict() for result in predictor.predict(check_texts(texts), **pair)]
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
    aspect_col: str | None = None,
) -> dict[str, Any]:
    """Accuracy, F1, recall, per-class scores, confusion matrix and calibration of ``model`` on a labelled table
    (of (text, aspect) rows with ``aspect_col`` and a pair model such as ``aspect-sentiment-en``).

    >>> megasense.evaluate("reviews.csv", label_col="stars_sentiment")  # doctest: +SKIP
    """
    return evaluate_file(
        _predictor(model, precision=precision),
        data,
        label_col=label_col,
        text_col=text_col,
        labels=labels,
        baseline=baseline,
        aspect_col=aspect_col,
    )


def explain(
    texts: Sequence[str] | str,
    *,
    model: str | Path | LoadedModel | Predictor = ROUTER,
    method: str = "occlusion",
    top: int = 5,
    steps: int = 32,
) -> dict[str, Any] | list[dict[str, Any]]:
    """Which words drove each prediction: ``{"text", "label", "score", "method", "words": [{"word", "start",
    "end", "attribution"}], "top", "truncated"}`` per text. ``method``: ``occlusion`` (the default: each
    word deleted in turn) or ``ig`` (integrated gradients on the input embeddings, ``steps`` steps). The
    model runs at fp32: integrated gradients need the torch weights, and both methods then score alike.

    >>> megasense.explain("The battery is great but the screen cracked")["top"]  # doctest: +SKIP
    ['cracked', 'but']
    """
    explainer = Explainer(_predictor(model, precision="fp32"), method=method, steps=steps)
    out = [e.to_dict(top=top) for e in explainer.explain(check_texts(texts))]
    return out[0] if isinstance(texts, str) else out


def _predictor(model: str | Path | LoadedModel | Predictor, *, precision: str) -> Predictor:
    if isinstance(model, SentimentClassifier | SentimentRouter) or hasattr(model, "predict"):
        return model  # a loaded predictor (or anything that predicts like one)
    return load_predictor(model, precision=precision)


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


def summarize(
    text: str | Path,
    *,
    style: str = "brief",
    max_words: int | None = None,
    lang: str = "auto",
    strategy: str = "greedy",
    method: str = "auto",
    seed: int | None = None,
    model: str | Summarizer = "smollm2-135m-instruct",
) -> Summary:
    """A text's (or a ``.txt``/``.md``/``.html``/``.pdf`` file's) summary: ``style`` ``study`` (Markdown notes: summary,
    key points, key terms, review questions), ``brief`` (an abstract) or ``bullets``; ``summary.text`` is what to show,
    ``summary.notes`` what was cut. Pass ``model=megasense.load_summarizer()`` when calling many times.

    >>> megasense.summarize("lecture.pdf", style="study").text  # doctest: +SKIP
    """
    summarizer = model if isinstance(model, Summarizer) else load_summarizer(model if method != "extract" else None)
    options = {"style": style, "max_words": max_words, "lang": lang, "strategy": strategy, "method": method}
    return summarize_document(summarizer, str(text), seed=seed, **options)[0]
