"""A sentiment scorer whose model copies live on Ray actors: ``megasense analyze --engine ray``'s scoring stage.

``analyze`` streams its input and asks its scorer for one batch of texts at a time, so it is not a
Ray Data pipeline; ``RayScorer`` keeps its interface (``predict(texts)`` -> labels, scores, probs)
and spreads each call over a pool of actors (Ray's ``ActorPool``, answers in order), each holding
one model loaded once. Dead actors are restarted and their piece retried, as in ``ray_engine``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from megasense.errors import MegasenseInputError
from megasense.predictors.ray_engine import RaySettings, connect, plan_actors


@dataclass
class ScoredTexts:
    """What ``analytics.protocols.score_texts`` reads from a scorer's answer."""

    labels: list[str]
    scores: np.ndarray
    """(N,) probability of each label."""
    probs: np.ndarray
    """(N, len(label_names)) probabilities."""
    label_names: tuple[str, ...]


class ModelActor:
    """One model copy in a Ray actor: loaded once, then asked for batches."""

    def __init__(self, load: Callable[[], Any], threads: int = 1) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.model = load()

    def ready(self) -> bool:
        return True

    def predict(self, texts: list[str]) -> ScoredTexts:
        batch = self.model.predict(texts)
        return ScoredTexts(list(batch.labels), np.asarray(batch.scores), np.asarray(batch.probs), batch.label_names)


class RayScorer:
    """``predict(texts)`` on ``settings.actors`` Ray actors (a ``SentimentScorer`` for ``analytics``).

    ``load``: a picklable zero-argument callable that each actor calls once for its predictor
    (``functools.partial(load_predictor, "default")``); ``name``: what the analysis records as the model.
    """

    def __init__(self, load: Callable[[], Any], *, name: str, settings: RaySettings | None = None) -> None:
        self.settings = settings or RaySettings()
        self.name = name
        ray = connect(self.settings.address)
        from ray.util import ActorPool

        plan = plan_actors(ray, self.settings)
        remote = ray.remote(ModelActor).options(
            num_cpus=plan.cpus,
            max_restarts=self.settings.max_restarts,
            max_task_retries=self.settings.max_task_retries,
        )
        self.actors = [remote.remote(load, plan.threads) for _ in range(plan.actors)]
        try:
            ray.get([a.ready.remote() for a in self.actors])
        except ray.exceptions.RayActorError as exc:
            self.close()
            cause = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise MegasenseInputError(f"the Ray actors could not load the sentiment model {name!r}: {cause}") from None
        self.pool = ActorPool(self.actors)

    def predict(self, texts: Sequence[str]) -> ScoredTexts:
        texts = list(texts)
        if not texts:
            return ScoredTexts([], np.zeros(0), np.zeros((0, 0)), ())
        # as many pieces as actors (at most batch_size texts each), so one call keeps every actor busy
        size = max(1, min(self.settings.batch_size, -(-len(texts) // len(self.actors))))
        pieces = [texts[i : i + size] for i in range(0, len(texts), size)]
        answers = list(self.pool.map(lambda actor, piece: actor.predict.remote(piece), pieces))
        return ScoredTexts(
            labels=[label for a in answers for label in a.labels],
            scores=np.concatenate([a.scores for a in answers]),
            probs=np.concatenate([a.probs for a in answers]),
            label_names=answers[0].label_names,
        )

    def close(self) -> None:
        """Stop the actors (the Ray instance stays up for other jobs)."""
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    def __enter__(self) -> RayScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
