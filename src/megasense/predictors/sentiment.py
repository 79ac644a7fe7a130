"""Texts in, sentiment (or intents, emotions: any text classes) out: one classification model, or the
``default`` sentiment router between two.

``SentimentClassifier`` runs one classification model: the window task (``predictors.windows``) turns
texts into token windows, the encoder engine runs them in length-sorted batches at the chosen
precision (``"auto"``: bf16 autocast where the CPU has native bf16 matrix units, 2-3.5x faster than
fp32 at equal accuracy; see ``inference.quantize``), and the task turns logits back into a
``SentimentBatch`` (``predictors.results``). ``SentimentRouter`` is the ``default`` model: each text
goes to the English or the multilingual classifier by its script. Files are the job of
``predictors.jobs``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from megasense.errors import CheckpointError, MegasenseInputError
from megasense.files.progress import Progress
from megasense.formats.release import LoadedModel
from megasense.inference.encoder import EncoderEngine, EncoderSettings
from megasense.inference.quantize import check_precision
from megasense.predictors.language import needs_multilingual
from megasense.predictors.results import SentimentBatch
from megasense.predictors.texts import check_texts, require_tokenizer
from megasense.predictors.windows import SentimentTask
from megasense.zoo import load_model
from megasense.zoo.shipped import ROUTER


class SentimentClassifier:
    """Texts -> labels, scores and probabilities with one classification model."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        labels: Sequence[str] | None = None,
        max_length: int = 256,
        overlap: int = 64,
        precision: str = "auto",
        bf16: bool | None = None,
        settings: EncoderSettings | None = None,
        name: str | None = None,
    ) -> None:
        if loaded.head.task != "classification":
            raise MegasenseInputError(
                f"{loaded.path}: is a {loaded.head.task!r} model, not a classifier; use sentiment-en, "
                "sentiment-multilingual, or a model made by `megasense train`"
            )
        require_tokenizer(loaded)
        self.loaded = loaded
        self.name = name or str(loaded.metadata.get("name") or loaded.path)
        max_length = min(max_length, loaded.config.max_position_embeddings)
        self.task = SentimentTask(
            loaded.tokenizer,
            loaded.head.labels,
            prefix=loaded.head.text_prefix,
            max_length=max_length,
            overlap=min(overlap, max_length // 4),
            allowed=labels,
            multi_label=loaded.head.multi_label,
            thresholds=loaded.head.thresholds,
            oos_label=loaded.head.oos_label,
            oos_threshold=loaded.head.oos_threshold,
            temperature=loaded.head.temperature,
        )
        if bf16 is not None:  # the older switch: bf16=True/False means precision bf16/fp32
            precision = "bf16" if bf16 else "fp32"
        self.engine = EncoderEngine(
            loaded.model, pad_id=loaded.tokenizer.pad_id, settings=settings, precision=check_precision(precision)
        )

    @property
    def precision(self) -> str:
        """The concrete precision the model runs at: fp32, bf16, int8, onnx or onnx-int8."""
        return self.engine.precision

    @property
    def multi_label(self) -> bool:
        return self.task.multi_label

    @property
    def oos_label(self) -> str:
        """The model's out-of-scope label ('' when it has none)."""
        return self.task.oos_label

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels predictions are chosen from (the model's, or the restricted subset)."""
        return self.task.allowed

    def restricted(self, labels: Sequence[str] | None) -> SentimentClassifier:
        clone = object.__new__(SentimentClassifier)
        clone.__dict__.update(self.__dict__)
        clone.task = self.task.restricted(labels)
        return clone

    @property
    def pair(self) -> str:
        """What the model reads beside each text (``aspect`` for aspect sentiment); empty: the text alone."""
        return self.loaded.head.pair

    def predict(
        self,
        texts: Sequence[str] | str,
        *,
        aspects: Sequence[str] | None = None,
        progress: Progress | None = None,
    ) -> SentimentBatch:
        """Predictions for ``texts``; a pair model (``pair == "aspect"``) needs one aspect per text and gives
        the sentiment toward that aspect."""
        texts = check_texts(texts)
        aspects = self._check_aspects(texts, aspects)
        if not texts:
            return self.task.decode(np.zeros((0, len(self.labels)), dtype=np.float32), [])
        plan = self.task.encode(texts, aspects)
        logits: torch.Tensor | None = None
        done = set()
        for indices, out in self.engine.batches(plan.sequences):
            if logits is None:
                logits = out.new_empty((len(plan.sequences), out.shape[1]))
            logits[torch.as_tensor(indices)] = out
            if progress is not None:
                finished = {plan.owner[i] for i in indices} - done
                done |= finished
                progress(len(finished))
        bad = ~torch.isfinite(logits).all(dim=-1)  # (windows,)
        if bool(bad.any()):  # never a NaN score: broken weights are the model's fault, named here
            texts_hit = len({plan.owner[i] for i in torch.nonzero(bad).flatten().tolist()})
            raise CheckpointError(
                self.loaded.path,
                f"model {self.name!r} gives NaN or infinite scores ({texts_hit} of {len(texts)} texts): its weights "
                "are not finite, as after a diverged training run; retrain it with a lower --lr",
            )
        return self.task.aggregate(logits, plan)

    def _check_aspects(self, texts: list[str], aspects: Sequence[str] | str | None) -> list[str] | None:
        if aspects is None:
            if self.pair:
                raise MegasenseInputError(
                    f"model {self.name!r} reads each text with its {self.pair}: give one per text "
                    f"(--{self.pair}-col COLUMN, or {self.pair}s=[...])"
                )
            return None
        if not self.pair:
            raise MegasenseInputError(
                f"model {self.name!r} reads texts alone, not (text, aspect) pairs; use aspect-sentiment-en or a "
                "model trained with `megasense train --aspect-col`"
            )
        aspects = [aspects] if isinstance(aspects, str) else list(aspects)
        if len(aspects) != len(texts):
            raise MegasenseInputError(f"{len(texts)} texts but {len(aspects)} aspects: give one aspect per text")
        blank = [i for i, a in enumerate(aspects) if not isinstance(a, str) or not a.strip()]
        if blank:
            raise MegasenseInputError(
                f"{len(blank)} empty or missing aspects (at positions {blank[:10]}); every text needs an aspect"
            )
        return aspects


class SentimentRouter:
    """The ``default`` model: Chinese (and other non-Latin) texts to the multilingual classifier, others to
    the English one. The multilingual model is loaded only when a text needs it."""

    def __init__(self, english: SentimentClassifier, multilingual: Callable[[], SentimentClassifier]) -> None:
        self.english = english
        self._multilingual_factory = multilingual
        self._multilingual: SentimentClassifier | None = None
        self.name = ROUTER

    @property
    def labels(self) -> tuple[str, ...]:
        return self.english.labels

    multi_label = False
    oos_label = ""
    pair = ""

    @property
    def multilingual(self) -> SentimentClassifier:
        if self._multilingual is None:
            model = self._multilingual_factory()
            if tuple(model.labels) != tuple(self.english.labels):
                raise MegasenseInputError(
                    f"the routed models disagree on labels: {self.english.labels} vs {model.labels}"
                )
            self._multilingual = model
        return self._multilingual

    def restricted(self, labels: Sequence[str] | None) -> SentimentRouter:
        return SentimentRouter(self.english.restricted(labels), lambda: self.multilingual.restricted(labels))

    def predict(
        self, texts: Sequence[str] | str, *, aspects: Sequence[str] | None = None, progress: Progress | None = None
    ) -> SentimentBatch:
        texts = check_texts(texts)
        if aspects is not None:
            raise MegasenseInputError(
                "the default model reads texts alone, not (text, aspect) pairs; use --model aspect-sentiment-en"
            )
        route = np.array([needs_multilingual(t) for t in texts], dtype=bool)
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        windows = [1] * len(texts)
        for mask, model in ((~route, self.english), (route, None)):
            picked = np.flatnonzero(mask)
            if len(picked) == 0:
                continue
            model = model or self.multilingual
            part = model.predict([texts[i] for i in picked], progress=progress)
            probs[picked] = part.probs
            for i, w in zip(picked, part.chunks):
                windows[i] = w
        return self.english.task.decode(probs, windows)


TextClassifier = SentimentClassifier
"""The name for classifiers that are not about sentiment (intents, emotions): the same class."""

Predictor = SentimentClassifier | SentimentRouter


def load_predictor(
    model: str | Path | LoadedModel = ROUTER,
    *,
    labels: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    **options: Any,
) -> Predictor:
    """A predictor for a model name (``default``, ``sentiment-en``, ``sentiment-multilingual``), a path or a
    loaded model, on ``device``. ``options`` go to ``SentimentClassifier`` (``precision``, ``max_length``, ...)."""
    check_precision(options.get("precision", "auto"))  # before any model is loaded
    if isinstance(model, LoadedModel):
        return SentimentClassifier(model, labels=labels, **options)
    if str(model) == ROUTER:
        english = SentimentClassifier(
            load_model("sentiment-en", device=device), labels=labels, name="sentiment-en", **options
        )
        return SentimentRouter(
            english,
            lambda: SentimentClassifier(
                load_model("sentiment-multilingual", device=device),
                labels=labels,
                name="sentiment-multilingual",
                **options,
            ),
        )
    return SentimentClassifier(load_model(model, device=device), labels=labels, name=str(model), **options)
