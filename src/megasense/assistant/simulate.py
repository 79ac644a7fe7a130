"""A simulated user population, for measuring recommendations offline. These are not real users.

No real usage logs are available to this project, so recommendations are measured on a population whose
hidden preferences we write down ourselves. Each simulated user mixes a few latent interest groups (cook,
commuter, music lover, smart home, productivity, family) with Dirichlet weights; a feature's appeal to the
user is its popularity (one log-normal draw per feature, shared by everyone) times how much the user's
groups contain it, plus a little background taste for everything. Over ``days`` the user:

- mostly uses features they already know, in proportion to their appeal (``used``);
- now and then finds a new feature alone, picked by appeal (``used``);
- is sometimes shown a feature they do not know, picked at random by the product (``shown``), and takes
  it up with a chance that grows with its appeal (``used``) or turns it down (``dismissed``).

After the history, the simulation goes on to the user's next ``used`` feature (``next_used``, often one
they use already) and to the first feature they use that the history never showed them using
(``next_new``): the held-out targets. Whatever a recommender scores here measures how well it recovers
preferences of exactly this structure from histories; it says nothing certain about real people, whose
tastes drift, whose sessions cluster and whose reactions to suggestions this does not model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from megasense.assistant.catalogue import Catalogue
from megasense.assistant.history import UsageEvent
from megasense.errors import ConfigError

DEFAULT_GROUPS: Mapping[str, tuple[str, ...]] = {
    "cook": ("recipes", "kitchen_tips", "timers", "shopping_list", "calculator"),
    "commuter": ("commute", "weather", "rides", "alarms", "clock", "calls"),
    "music_lover": ("music", "playlists", "volume", "whisper_mode", "sync_device"),
    "smart_home": ("smart_home", "sync_device", "voice_settings", "names", "find_phone", "reset_settings"),
    "productivity": ("calendar", "reminders", "todo_list", "alarms", "calls", "translate", "dictionary"),
    "family": ("fun", "dictionary", "music", "timers", "weather", "translate"),
}
"""Latent interest groups over the ids of ``examples/assistant/smart-speaker.toml``."""


@dataclass(frozen=True)
class SimulationSettings:
    """How the population behaves; every rate is per step (one step is one interaction)."""

    users: int = 2000
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_GROUPS))
    """Interest group name -> the feature ids it likes; features in no group get background taste only."""
    concentration: float = 0.3
    """Dirichlet parameter of each user's group weights: below 1, most users have one or two interests."""
    background: float = 0.05
    """Share of a user's taste spread evenly over all features."""
    popularity_spread: float = 0.8
    """Standard deviation of log feature popularity: 0 makes every feature equally popular."""
    mean_steps: float = 40.0
    """Mean number of interactions in a user's history (Poisson, at least 5)."""
    days: float = 90.0
    """Length of the history; interactions fall uniformly in it."""
    show_rate: float = 0.1
    """Chance that a step shows the user a random feature they have not used."""
    explore_rate: float = 0.05
    """Chance that a step is the user finding a new feature alone."""
    start_known: int = 2
    """Features each user knows at the start (drawn by appeal)."""
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)

    def __post_init__(self) -> None:
        if self.users < 1 or self.mean_steps < 1 or self.days <= 0 or self.start_known < 1:
            raise ConfigError(
                f"users = {self.users}, mean_steps = {self.mean_steps}, days = {self.days}, "
                f"start_known = {self.start_known}; expected users >= 1, mean_steps >= 1, days > 0, start_known >= 1"
            )
        if min(self.show_rate, self.explore_rate) < 0 or self.show_rate + self.explore_rate >= 1:
            raise ConfigError(
                f"show_rate = {self.show_rate}, explore_rate = {self.explore_rate}; "
                "expected both >= 0 with a sum below 1"
            )
        if self.concentration <= 0 or not 0 <= self.background <= 1 or self.popularity_spread < 0:
            raise ConfigError(
                f"concentration = {self.concentration}, background = {self.background}, popularity_spread = "
                f"{self.popularity_spread}; expected concentration > 0, background in [0, 1], spread >= 0"
            )


@dataclass(frozen=True)
class SimulatedUser:
    user: str
    interests: dict[str, float]
    """Hidden: the user's weight on each interest group."""
    appeal: dict[str, float]
    """Hidden: each feature's share of the user's taste (sums to 1)."""
    history: tuple[UsageEvent, ...]
    next_used: str
    """The feature of the user's next ``used`` event after the history."""
    next_new: str | None
    """The first feature used after the history that the history never shows used (None: none within reach)."""


@dataclass(frozen=True)
class Population:
    feature_ids: tuple[str, ...]
    popularity: dict[str, float]
    """The shared popularity of each feature (normalised to sum to 1)."""
    users: tuple[SimulatedUser, ...]

    @property
    def events(self) -> list[UsageEvent]:
        """Every user's history, user after user."""
        return [event for user in self.users for event in user.history]


def simulate(
    features: Catalogue | Iterable[str], *, settings: SimulationSettings | None = None, seed: int = 0
) -> Population:
    """A population over ``features`` (a catalogue or its ids); the same seed gives the same population."""
    settings = settings or SimulationSettings()
    ids = tuple(f.id for f in features) if isinstance(features, Catalogue) else tuple(features)
    index = {fid: i for i, fid in enumerate(ids)}
    unknown = sorted({fid for members in settings.groups.values() for fid in members} - set(index))
    if unknown:
        raise ConfigError(f"interest groups name feature(s) {', '.join(unknown)} not among the features {ids}")
    rng = np.random.default_rng(seed)
    groups = list(settings.groups)
    membership = np.zeros((len(groups), len(ids)))  # (groups, F): each group's taste, rows sum to 1
    for g, name in enumerate(groups):
        members = [index[fid] for fid in settings.groups[name]]
        membership[g, members] = 1.0 / len(members)
    popularity = rng.lognormal(0.0, settings.popularity_spread, len(ids))
    popularity /= popularity.sum()
    users = tuple(
        _user(f"sim{u:05d}", rng, ids, groups, membership, popularity, settings) for u in range(settings.users)
    )
    return Population(ids, dict(zip(ids, popularity.tolist())), users)


def _user(
    user: str,
    rng: np.random.Generator,
    ids: tuple[str, ...],
    groups: list[str],
    membership: np.ndarray,
    popularity: np.ndarray,
    settings: SimulationSettings,
) -> SimulatedUser:
    n = len(ids)
    weights = rng.dirichlet(np.full(len(groups), settings.concentration))
    taste = settings.background / n + (1.0 - settings.background) * (weights @ membership)  # (F,)
    appeal = popularity * taste
    appeal /= appeal.sum()
    known = np.zeros(n, dtype=bool)
    known[rng.choice(n, size=min(settings.start_known, n), replace=False, p=appeal)] = True
    steps = max(5, int(rng.poisson(settings.mean_steps)))
    offsets = np.sort(rng.uniform(0.0, settings.days, steps))
    history: list[UsageEvent] = []
    for day in offsets:
        time = settings.start + timedelta(days=float(day))
        history.extend(UsageEvent(time, user, ids[f], event) for f, event in _step(rng, known, appeal, settings))
    used_before = {e.feature for e in history if e.event == "used"}
    next_used, next_new = None, None
    for _ in range(2000):  # beyond the history: the held-out targets
        for f, event in _step(rng, known, appeal, settings):
            if event != "used":
                continue
            next_used = next_used or ids[f]
            if next_new is None and ids[f] not in used_before:
                next_new = ids[f]
        if next_used is not None and (next_new is not None or known.all()):
            break
    return SimulatedUser(
        user=user,
        interests=dict(zip(groups, weights.tolist())),
        appeal=dict(zip(ids, appeal.tolist())),
        history=tuple(history),
        next_used=next_used,
        next_new=next_new,
    )


def _step(rng: np.random.Generator, known: np.ndarray, appeal: np.ndarray, settings: SimulationSettings):
    """One interaction: the (feature index, event) pairs it logs; ``known`` is updated in place."""
    unknown = np.flatnonzero(~known)
    draw = rng.random()
    if unknown.size and draw < settings.show_rate:
        shown = int(rng.choice(unknown))
        if rng.random() < appeal[shown] / appeal.max():
            known[shown] = True
            return [(shown, "shown"), (shown, "used")]
        return [(shown, "shown"), (shown, "dismissed")]
    if unknown.size and draw < settings.show_rate + settings.explore_rate:
        found = int(rng.choice(unknown, p=appeal[unknown] / appeal[unknown].sum()))
        known[found] = True
        return [(found, "used")]
    familiar = np.flatnonzero(known)
    return [(int(rng.choice(familiar, p=appeal[familiar] / appeal[familiar].sum())), "used")]
