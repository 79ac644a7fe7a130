"""Which head sits on a backbone, and its settings; stored beside ModelConfig in ``config.json``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from megasense.config.model import ConfigError

Task = Literal["encoder", "embedding", "classification", "pretraining", "causal_lm"]
TASKS = ("encoder", "embedding", "classification", "pretraining", "causal_lm")


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

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"head task={self.task!r} is not one of {', '.join(TASKS)}")
        if self.task == "classification" and len(self.labels) < 2:
            raise ConfigError(f"a classification head needs at least 2 labels, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"head labels repeat: {list(self.labels)}")
        if self.pooling not in ("mean", "cls", "pooler"):
            raise ConfigError(f"pooling={self.pooling!r} is not one of mean, cls, pooler")
        object.__setattr__(self, "labels", tuple(self.labels))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "head") -> HeadConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown head config keys {unknown}; known keys are {sorted(known)}")
        return cls(**{**data, "labels": tuple(data.get("labels", ()))})
