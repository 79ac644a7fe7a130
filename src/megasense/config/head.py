"""Which head sits on a backbone, and its settings; stored beside ModelConfig in ``config.json``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from megasense.config.model import ConfigError

Task = Literal["encoder", "embedding", "classification", "token_classification", "pretraining", "causal_lm"]
TASKS = ("encoder", "embedding", "classification", "token_classification", "pretraining", "causal_lm")


@dataclass(kw_only=True, frozen=True)
class HeadConfig:
    task: Task = "encoder"
    """``encoder`` (hidden states), ``embedding`` (mean-pooled, normalised), ``classification``,
    ``pretraining`` (masked LM + optional binary head) or ``causal_lm`` (decoders)."""

    labels: tuple[str, ...] = ()
    """Class names, in logit order, for ``classification``."""

    pooling: Literal["mean", "cls", "pooler"] = "mean"
    """How ``classification`` pools token states into one vector."""

    dropout: float = 0.1
    """Dropout before the classifier during training."""

    text_prefix: str = ""
    """Prepended to every text before tokenization (the e5 models expect ``query: ``)."""

    multi_label: bool = False
    """``classification`` with any number of labels per text (a sigmoid per label, not one softmax)."""

    thresholds: tuple[float, ...] = ()
    """Multi-label: the probability above which each label (in ``labels`` order) is predicted; empty: 0.5."""

    oos_label: str = ""
    """The label that means "none of the others" (out-of-scope intents: ``oos``); empty when there is none."""

    oos_threshold: float | None = None
    """With ``oos_label``: a text whose in-scope score, the log-sum-exp of the other labels' logits (the
    energy score of Liu et al. 2020), is below this is answered ``oos_label``; calibrated on validation
    data by training. None: only the model's own ``oos_label`` logit decides."""

    pair: str = ""
    """What a pair classifier reads as the second segment beside each text (``aspect``: aspect-based sentiment,
    ``[CLS] text [SEP] aspect [SEP]``); empty: the text alone."""

    temperature: float = 1.0
    """Single-label classification: logits are divided by this before the softmax (temperature scaling, Guo
    et al. 2017), fitted on validation data by training so that a 0.8 score is right about 80% of the time.
    It changes no label, only how sure the scores are. 1.0: the raw softmax."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"head task={self.task!r} is not one of {', '.join(TASKS)}")
        if self.task in ("classification", "token_classification") and len(self.labels) < 2:
            raise ConfigError(f"a classification head needs at least 2 labels, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"head labels repeat: {list(self.labels)}")
        if self.pooling not in ("mean", "cls", "pooler"):
            raise ConfigError(f"pooling={self.pooling!r} is not one of mean, cls, pooler")
        object.__setattr__(self, "labels", tuple(self.labels))
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        if self.thresholds and len(self.thresholds) != len(self.labels):
            raise ConfigError(f"{len(self.thresholds)} thresholds for {len(self.labels)} labels")
        if self.oos_label and self.oos_label not in self.labels:
            raise ConfigError(f"oos_label={self.oos_label!r} is not one of the labels {list(self.labels)}")
        if self.oos_threshold is not None and not math.isfinite(self.oos_threshold):
            raise ConfigError(f"oos_threshold={self.oos_threshold} must be a finite number")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"temperature={self.temperature} must be a finite number above 0")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["labels"] = list(self.labels)
        d["thresholds"] = list(self.thresholds)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "head") -> HeadConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown head config keys {unknown}; known keys are {sorted(known)}")
        return cls(**{**data, "labels": tuple(data.get("labels", ())), "thresholds": tuple(data.get("thresholds", ()))})
