"""Which features to point a user to now, each with a reason in plain words.

``Recommender.recommend`` ranks at most ``k`` features of a catalogue, in this order:

1. ``help``: when the user seems frustrated or angry (any of ``FRUSTRATION``'s GoEmotions labels among
   the detected emotions), the catalogue's help features (``help = true``) come first.
2. ``request``: the feature serving the intent the user just expressed (when several serve it, the one
   whose description and examples are closest to the text). None when the utterance is out of scope or
   its intent maps to no feature, so the assistant does not push a feature nobody asked for; with a
   ``semantic_threshold``, an in-scope utterance of an unmapped intent (or of no intent: a Chinese one,
   which no shipped intent model reads) still gets the feature whose examples it is clearly close to
   (``semantic_scores`` at least the threshold: the closest text's cosine, or a vote over the examples).
3. From the user's history (a ``UserProfile``): ``discover``, features the user has never used that are
   related to what they use, by meaning (feature vectors from name, description and examples) and by
   co-use (how often people who use one use the other, learnt with ``fit``); and ``favourite``, features
   the user uses often (at most ``max_favourites`` of them). Both are ranked by score; a feature the user
   dismissed is not offered for ``snooze_days`` and is pushed down after that.

No feature appears twice; the same inputs always give the same list.

The embedder is any object with ``embed(texts) -> np.ndarray`` of L2-normalised rows (``SentenceEmbedder``
fits; ``load_embedder`` picks the one for the catalogue's language), so tests can hand in a fake one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from megasense.assistant.catalogue import Catalogue, Feature
from megasense.assistant.history import UsageEvent, UserProfile
from megasense.errors import ConfigError, MegasenseInputError

FRUSTRATION: dict[str, str] = {
    "anger": "angry",
    "annoyance": "annoyed",
    "disapproval": "unhappy with this",
    "disappointment": "disappointed",
    "confusion": "unsure how to go on",
}
"""The GoEmotions labels (``emotion-en``'s) that put help first, and how a reason words each."""

FRUSTRATION_ZH = {
    "anger": "生气",
    "annoyance": "烦躁",
    "disapproval": "不满意",
    "disappointment": "失望",
    "confusion": "困惑",
}

REASONS: dict[str, dict[str, str]] = {
    "en": {
        "help": "You seem {mood}: here is how to get help",
        "asked": "You asked for {feature}{said}",
        "close": "What you said{said} is close to what {feature} does",
        "favourite": "You use {feature} often ({times} times)",
        "popular": "Many people use {feature} ({share:.0%} of users) and you have not tried it yet",
        "discover": "You use {used}{often} and have not tried {feature}",
        "often": " often",
        "co_use": " ({share:.0%} of people who use {used} also use it)",
        "quote": ' ("{text}")',
    },
    "zh": {
        "help": "你好像有点{mood}：这里可以获得帮助",
        "asked": "你想用{feature}{said}",
        "close": "你说的{said}和{feature}的功能很接近",
        "favourite": "你经常用{feature}（{times}次）",
        "popular": "很多人在用{feature}（{share:.0%}的用户），你还没试过",
        "discover": "你{often}用{used}，还没试过{feature}",
        "often": "经常",
        "co_use": "（用{used}的人中有{share:.0%}也在用它）",
        "quote": "（“{text}”）",
    },
}
"""The reasons' words, in the catalogue's language."""

KINDS = ("help", "request", "favourite", "discover")
EMBEDDING_MODELS = {"en": "all-minilm-l6-v2", "zh": "multilingual-e5-small"}
"""The sentence encoder for each catalogue language."""

SEMANTIC_THRESHOLDS: dict[str, float] = {"all-minilm-l6-v2": 0.53, "multilingual-e5-small": 0.20}
"""The ``semantic_scores`` at which an utterance is "clearly" close to a feature, per encoder.

all-minilm-l6-v2 (a cosine): 0.53 is what 1% of clinc150 train utterances of intents outside the
smart-speaker catalogue (and out-of-scope ones) reach (``benchmarks/assistant_recommend.py`` measures it).
On clinc150 val it helps a little and costs nothing where it is used: top-1 feature accuracy 0.965 -> 0.966,
abstention on out-of-scope utterances 0.88 either way. Also trying it on utterances the intent model calls
out of scope gained one more in-scope request (0.966) but lost one abstention (0.87), so it is not used there.

multilingual-e5-small (a vote share, see ``SEMANTIC_TEMPERATURES``): 0.20 is what 5% of the train
utterances of SMP2019 and CAIS domains outside the Chinese catalogue reach (stories, news, poems, video,
TV, flights, stocks...; ``benchmarks/assistant_recommend_zh.py`` maps the labels and measures). For Chinese
this rule is the whole decision (no intent model reads Chinese), and those negatives are close neighbours of
the catalogue's requests, so the English 1% would abstain on most real requests. On the dev splits (1,063
utterances of mapped labels, 308 of unmapped ones): top-1 feature 0.43, abstention 0.96 (false abstention
0.57). Letting 1% / 5% / 10% / 20% of train negatives through gives top-1 0.15 / 0.41 / 0.55 / 0.67 for
abstention 0.99 / 0.96 / 0.93 / 0.85; at 5% the closest text's cosine gives top-1 0.31 and the margin between
the two best features' cosines 0.20 (e5's cosines sit in a narrow 0.87-0.97 band). Without abstaining, top-1
is 0.88: ranking works, telling a catalogue request from a neighbouring one is what is hard. A TF-IDF +
logistic regression model trained on those data sets' own train splits reaches 0.98 / 0.93, but their
licences forbid shipping it."""

SEMANTIC_TEMPERATURES: dict[str, float] = {"multilingual-e5-small": 0.03}
"""Encoders whose ``semantic_scores`` are a nearest-example vote, and its temperature: every text of the
catalogue votes for its feature with weight exp(cosine / temperature), a feature's vote is the mean of its
texts' (so a feature with more examples gets no head start), and the shares sum to 1. Absent: the cosine of
the closest text (all-minilm-l6-v2). With e5, 0.03 spreads its narrow cosine band: a request close to several
examples of one feature outvotes one that is as close to one example each of several features. Chosen on
the benchmark's train splits (top-1 at 5% of negatives; 0.44 with 0.03): 0.02 gives 0.42, and 0.05 is within
0.03 too. Summing each feature's votes instead of averaging gives 0.58, all of it from CAIS music (the
feature with most examples is its most common request) while SMP2019 drops from 0.56 to 0.53: a head start
that moves whenever someone adds examples, so it is not used. A plain majority of the 3, 5 or 9 nearest
texts gives 0.42, 0.32 and 0.44, in coarse steps."""


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) array, one L2-normalised row per text."""
        ...


@dataclass(frozen=True)
class Recommendation:
    """One feature offered to the user, and why."""

    feature: Feature
    score: float
    """How strongly it fits, within its kind: the intent's probability (``request``), the
    ``semantic_scores`` of the text (``request`` found by meaning: a cosine, or a vote share), 1 (``help``),
    the user's share of recent use (``favourite``), the estimated chance the user takes it up given what they
    use (``discover``)."""
    reason: str
    """Why it is offered, in plain language, for the user."""
    kind: str
    """One of ``KINDS``: help, request, favourite, discover."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.feature.id,
            "name": self.feature.name,
            "kind": self.kind,
            "score": round(float(self.score), 4),
            "reason": self.reason,
            "description": self.feature.description,
        }


def load_embedder(language: str = "en") -> Embedder:
    """The sentence encoder for a catalogue language (loads weights: call once, keep it)."""
    if language not in EMBEDDING_MODELS:
        raise ConfigError(f"language = {language!r}; expected one of {', '.join(EMBEDDING_MODELS)}")
    from megasense.predictors.embedding import SentenceEmbedder
    from megasense.zoo.load import load_model

    return SentenceEmbedder(load_model(EMBEDDING_MODELS[language]))


def load_recommender(catalogue: Catalogue, *, history: Iterable[UsageEvent] = ()) -> Recommender:
    """A recommender with the catalogue language's encoder, its semantic threshold, fitted on ``history``."""
    model = EMBEDDING_MODELS[catalogue.language]
    recommender = Recommender(
        catalogue,
        load_embedder(catalogue.language),
        semantic_threshold=SEMANTIC_THRESHOLDS.get(model),
        semantic_temperature=SEMANTIC_TEMPERATURES.get(model),
    )
    return recommender.fit(history)


class Recommender:
    """Ranks a catalogue's features for one utterance and one user; see the module docstring.

    - ``embedder``: compares texts; without one, ties between features of one intent go to catalogue
      order, there is no semantic fallback, and discovery relies on co-use alone.
    - ``semantic_threshold``: ``semantic_scores`` at or above which an utterance of an unmapped intent (or of
      none) still gets a ``request`` (None: never; see ``SEMANTIC_THRESHOLDS`` and ``calibrate_semantic_threshold``).
    - ``semantic_temperature``: None, ``semantic_scores`` is the cosine of the feature's closest text; a number,
      it is the feature's share of a vote of all catalogue texts weighted by exp(cosine / temperature)
      (see ``SEMANTIC_TEMPERATURES``).
    - ``max_favourites``: at most this many ``favourite`` suggestions (features the user already uses),
      so the other places go to discovery; ``min_favourite_uses``: uses before a feature can be one.
    - ``snooze_days``: a dismissed feature is not suggested for this long (unless used since); after
      that its score is divided by 1 + its decayed dismissal count.
    - ``similarity_weight``: once fitted, relatedness is this much meaning and the rest co-use.

    Fitted state (``fit``): ``co_use_[i, j]``, the share of users of feature i who also use feature j,
    and ``popularity_[j]``, the share of users who use feature j.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        embedder: Embedder | None = None,
        *,
        semantic_threshold: float | None = None,
        semantic_temperature: float | None = None,
        max_favourites: int = 1,
        min_favourite_uses: int = 3,
        snooze_days: float = 14.0,
        similarity_weight: float = 0.3,
    ) -> None:
        if semantic_threshold is not None and embedder is None:
            raise ConfigError("semantic_threshold needs an embedder to compare texts with; pass embedder=")
        if semantic_temperature is not None and not semantic_temperature > 0:
            raise ConfigError(f"semantic_temperature = {semantic_temperature}; expected a number above 0, or None")
        if max_favourites < 0 or min_favourite_uses < 1 or snooze_days < 0:
            raise ConfigError(
                f"max_favourites = {max_favourites}, min_favourite_uses = {min_favourite_uses}, "
                f"snooze_days = {snooze_days}; expected >= 0, >= 1 and >= 0"
            )
        if not 0.0 <= similarity_weight <= 1.0:
            raise ConfigError(f"similarity_weight = {similarity_weight}; expected a number from 0 to 1")
        self.catalogue = catalogue
        self._words = REASONS[catalogue.language]
        self.embedder = embedder
        self.semantic_threshold = semantic_threshold
        self.semantic_temperature = semantic_temperature
        self.max_favourites = max_favourites
        self.min_favourite_uses = min_favourite_uses
        self.snooze_days = snooze_days
        self.similarity_weight = similarity_weight
        self._ids = [f.id for f in catalogue]
        self._index = {fid: i for i, fid in enumerate(self._ids)}
        n = len(self._ids)
        self.co_use_: np.ndarray | None = None
        self.popularity_: np.ndarray | None = None
        # Feature vectors, computed once: every text of a feature (its name and description, each
        # example) is a row of _text_vectors, owned by _text_owner; a feature's vector is their mean.
        self._text_vectors: np.ndarray | None = None
        self._text_owner = np.zeros(0, dtype=np.int64)
        self.feature_similarity = np.zeros((n, n))
        if embedder is not None:
            texts, owner = [], []
            for i, feature in enumerate(catalogue):
                for text in (f"{feature.name}: {feature.description}", *feature.examples):
                    texts.append(text)
                    owner.append(i)
            vectors = _normalised(np.asarray(embedder.embed(texts), dtype=np.float64))  # (texts, D)
            self._text_vectors, self._text_owner = vectors, np.asarray(owner)
            means = _normalised(np.stack([vectors[self._text_owner == i].mean(axis=0) for i in range(n)]))
            similarity = np.clip(means @ means.T, 0.0, 1.0)  # (F, F); unrelated features 0, not negative
            np.fill_diagonal(similarity, 0.0)
            self.feature_similarity = similarity

    def fit(self, events: Iterable[UsageEvent]) -> Recommender:
        """Learn co-use and popularity from a population's ``used`` events; returns ``self``."""
        users: dict[str, set[int]] = {}
        for event in events:
            if event.event != "used":
                continue
            if event.feature not in self._index:
                raise MegasenseInputError(
                    f"usage event of user {event.user!r} at {event.time.isoformat()} names feature "
                    f"{event.feature!r}, which is not in the catalogue {self.catalogue.source or self.catalogue.name}"
                )
            users.setdefault(event.user, set()).add(self._index[event.feature])
        n = len(self._ids)
        if not users:
            self.co_use_, self.popularity_ = None, None
            return self
        matrix = np.zeros((len(users), n))  # (users, F): who has used what
        for row, features in enumerate(users.values()):
            matrix[row, list(features)] = 1.0
        both = matrix.T @ matrix  # (F, F): users of both i and j; the diagonal counts users of i
        users_of = np.diag(both).copy()
        co_use = np.divide(both, users_of[:, None], out=np.zeros_like(both), where=users_of[:, None] > 0)
        np.fill_diagonal(co_use, 0.0)
        self.co_use_ = co_use
        self.popularity_ = users_of / len(users)
        return self

    def similarity(self, text: str) -> np.ndarray:
        """(F,) cosine of ``text`` to each feature's closest text (name and description, or an example)."""
        return self.similarities([text])[0]

    def similarities(self, texts: Sequence[str]) -> np.ndarray:
        """(N, F) ``similarity`` of many texts at once."""
        cosines = self._cosines(texts)  # (N, texts of all features)
        best = np.full((len(cosines), len(self._ids)), -1.0)
        for i in range(len(self._ids)):
            best[:, i] = cosines[:, self._text_owner == i].max(axis=1)
        return best

    def semantic_scores(self, texts: Sequence[str]) -> np.ndarray:
        """(N, F) what ``semantic_threshold`` is compared with: ``similarities`` without a
        ``semantic_temperature``; with one, each feature's share of the nearest-example vote (rows sum to 1)."""
        if self.semantic_temperature is None:
            return self.similarities(texts)
        cosines = self._cosines(texts)  # (N, texts)
        # exp((cos - best) / T): the same shares as exp(cos / T), without overflow at small T
        weights = np.exp((cosines - cosines.max(axis=1, keepdims=True)) / self.semantic_temperature)
        votes = np.stack([weights[:, self._text_owner == i].mean(axis=1) for i in range(len(self._ids))], axis=1)
        return votes / votes.sum(axis=1, keepdims=True)  # (N, F)

    def _cosines(self, texts: Sequence[str]) -> np.ndarray:
        """(N, texts of all features): cosine of each text to every catalogue text."""
        if self.embedder is None or self._text_vectors is None:
            raise ConfigError("this recommender has no embedder; pass embedder= to compare texts with features")
        queries = _normalised(np.asarray(self.embedder.embed(list(texts)), dtype=np.float64))  # (N, D)
        return queries @ self._text_vectors.T

    def recommend(
        self,
        text: str,
        *,
        intent: str | None,
        intent_score: float = 1.0,
        out_of_scope: bool = False,
        emotions: Sequence[str] = (),
        profile: UserProfile | None = None,
        k: int = 3,
    ) -> list[Recommendation]:
        """At most ``k`` features for this utterance and user, best first, each with its reason.

        ``intent`` and ``intent_score`` are the intent model's label and probability, ``out_of_scope`` its
        out-of-scope decision, ``emotions`` the detected GoEmotions labels, ``profile`` the user's history.
        """
        if k < 1:
            raise MegasenseInputError(f"k = {k}; expected at least 1 recommendation")
        if isinstance(emotions, str):
            emotions = (emotions,)
        ranked: list[Recommendation] = []
        moods = FRUSTRATION_ZH if self.catalogue.language == "zh" else FRUSTRATION
        mood = next((moods[e] for e in emotions if e in moods), None)
        if mood is not None:
            for feature in self.catalogue.help_features:
                ranked.append(Recommendation(feature, 1.0, self._words["help"].format(mood=mood), "help"))
        request = self._request(text, intent, intent_score, out_of_scope)
        if request is not None:
            ranked.append(request)
        if profile is not None and len(ranked) < k:
            ranked.extend(self._from_profile(profile))
        out, seen = [], set()
        for rec in ranked:
            if rec.feature.id not in seen:
                seen.add(rec.feature.id)
                out.append(rec)
        return out[:k]

    def _request(self, text: str, intent: str | None, score: float, out_of_scope: bool) -> Recommendation | None:
        if out_of_scope:
            return None
        said = _quote(text, self._words["quote"])
        serving = self.catalogue.for_intent(intent)
        if len(serving) == 1 or (serving and (self.embedder is None or not text.strip())):
            reason = self._words["asked"].format(feature=serving[0].name, said=said)
            return Recommendation(serving[0], float(score), reason, "request")
        if serving:
            cosines = self.similarity(text)
            best = max(serving, key=lambda f: (cosines[self._index[f.id]], -self._index[f.id]))
            return Recommendation(
                best, float(score), self._words["asked"].format(feature=best.name, said=said), "request"
            )
        if self.semantic_threshold is None or not text.strip():
            return None
        scores = self.semantic_scores([text])[0]
        best = int(np.argmax(scores))  # first of equals: catalogue order
        if scores[best] < self.semantic_threshold:
            return None
        feature = self.catalogue.features[best]
        reason = self._words["close"].format(feature=feature.name, said=said)
        return Recommendation(feature, float(scores[best]), reason, "request")

    def _from_profile(self, profile: UserProfile) -> list[Recommendation]:
        interest = np.array([profile.use_weight.get(fid, 0.0) for fid in self._ids])  # (F,) decayed use
        total = interest.sum()
        if total > 0:
            interest = interest / total
        relatedness = self._relatedness()  # (F, F)
        candidates: list[tuple[float, int, Recommendation]] = []
        favourites = []
        for j, fid in enumerate(self._ids):
            if profile.snoozed(fid, self.snooze_days):
                continue
            push_down = 1.0 / (1.0 + profile.dismiss_weight.get(fid, 0.0))
            feature = self.catalogue.features[j]
            if profile.has_used(fid):
                if profile.used[fid] >= self.min_favourite_uses:
                    reason = self._words["favourite"].format(feature=feature.name, times=profile.used[fid])
                    favourites.append((interest[j] * push_down, j, Recommendation(feature, 0.0, reason, "favourite")))
                continue
            if total > 0:
                contributions = interest * relatedness[:, j]  # (F,) how much each used feature points to j
                score = float(contributions.sum())
                reason = self._discover_reason(profile, int(np.argmax(contributions)), j)
            elif self.popularity_ is not None:
                score = float(self.popularity_[j])
                reason = self._words["popular"].format(feature=feature.name, share=score)
            else:
                continue
            if score > 0:
                candidates.append((score * push_down, j, Recommendation(feature, 0.0, reason, "discover")))
        favourites.sort(key=lambda item: (-item[0], item[1]))
        candidates.extend(favourites[: self.max_favourites])
        candidates.sort(key=lambda item: (-item[0], item[1]))
        return [Recommendation(rec.feature, round(score, 6), rec.reason, rec.kind) for score, _, rec in candidates]

    def _discover_reason(self, profile: UserProfile, source: int, target: int) -> str:
        used, new = self.catalogue.features[source], self.catalogue.features[target]
        words = self._words
        often = words["often"] if profile.used.get(used.id, 0) >= self.min_favourite_uses else ""
        reason = words["discover"].format(used=used.name, often=often, feature=new.name)
        if self.co_use_ is not None and self.co_use_[source, target] > 0:
            reason += words["co_use"].format(share=self.co_use_[source, target], used=used.name)
        return reason

    def _relatedness(self) -> np.ndarray:
        """(F, F): how strongly using feature i points to feature j, by meaning and by co-use."""
        if self.co_use_ is None:
            return self.feature_similarity
        if self.embedder is None:
            return self.co_use_
        w = self.similarity_weight
        return w * self.feature_similarity + (1.0 - w) * self.co_use_


def calibrate_semantic_threshold(recommender: Recommender, negatives: Sequence[str], *, budget: float = 0.01) -> float:
    """The best ``semantic_scores`` (a cosine, or a vote share with a ``semantic_temperature``) that only
    ``budget`` of ``negatives`` reach: utterances that must not map to any feature (requests the catalogue
    does not serve, out-of-scope ones). Pass it as ``semantic_threshold``."""
    if not negatives:
        raise MegasenseInputError("no negative utterances to calibrate the semantic threshold on")
    if not 0.0 < budget < 1.0:
        raise ConfigError(f"budget = {budget}; expected a share between 0 and 1")
    return float(np.quantile(recommender.semantic_scores(negatives).max(axis=1), 1.0 - budget))


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _quote(text: str, template: str = REASONS["en"]["quote"], limit: int = 60) -> str:
    text = " ".join(text.split())
    if not text:
        return ""
    return template.format(text=text if len(text) <= limit else text[: limit - 1] + "…")
