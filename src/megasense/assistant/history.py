"""How users use a product's features: usage events read from JSONL, and one user's profile built from them.

A usage history is one JSON object per line::

    {"time": "2024-05-01T07:00:00Z", "user": "u17", "feature": "alarms", "event": "used"}

``time`` is ISO 8601 (a time without an offset is taken as UTC), ``user`` and ``feature`` are
non-empty strings (``feature`` is a catalogue id), ``event`` is one of ``EVENTS``. Other fields are
allowed and ignored (logs often carry a session id or a device), blank lines are skipped.

A ``UserProfile`` summarises one user: how often each feature was used and dismissed, raw and with
recent events weighing more (exponential decay: an event ``half_life_days`` old counts half as much as
one happening now, one two half-lives old a quarter), and when each was last used or dismissed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from megasense.errors import MegasenseInputError, TableError
from megasense.files.atomic import atomic_write_text

if TYPE_CHECKING:
    from megasense.assistant.catalogue import Catalogue

EVENTS: Mapping[str, str] = MappingProxyType(
    {
        "used": "the user used the feature (asked for it, or it ran on their behalf)",
        "dismissed": "the feature was offered and the user turned it down: it is not offered again for a while",
        "shown": "the feature was offered to the user (a recommendation was displayed); logged, not ranked on",
        "opened": "the user opened the feature's page or tip without using it yet: interest, half a use",
    }
)
"""The allowed ``event`` values and what each means to the recommender."""

FIELDS = ("time", "user", "feature", "event")
DEFAULT_HALF_LIFE_DAYS = 30.0
_TIME_EXAMPLE = "2024-05-01T07:30:00Z"


@dataclass(frozen=True)
class UsageEvent:
    """One thing a user did with a feature, at a time (always timezone-aware, UTC when read from a file)."""

    time: datetime
    user: str
    feature: str
    event: str

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise MegasenseInputError(f"unknown usage event {self.event!r}; expected one of {', '.join(EVENTS)}")
        if self.time.tzinfo is None:
            object.__setattr__(self, "time", self.time.replace(tzinfo=UTC))

    def to_dict(self) -> dict[str, str]:
        """The JSONL form: ``{"time", "user", "feature", "event"}`` with ``time`` in ISO 8601."""
        return {
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "user": self.user,
            "feature": self.feature,
            "event": self.event,
        }


def parse_time(value: Any) -> datetime:
    """An ISO 8601 date-time (``2024-05-01T07:30:00Z``, ``2024-05-01 07:30+02:00``, ``2024-05-01``) as an
    aware datetime; no offset means UTC. A ``ValueError`` says what was found."""
    if not isinstance(value, str):
        raise ValueError(f"found {type(value).__name__} {value!r}; expected an ISO 8601 string such as {_TIME_EXAMPLE}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"found {value!r}; expected an ISO 8601 date-time such as {_TIME_EXAMPLE}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def read_history(path: str | Path, *, catalogue: Catalogue | None = None) -> list[UsageEvent]:
    """The events of a JSONL usage history, in file order.

    With a ``catalogue``, every ``feature`` must be one of its ids. A ``TableError`` names the file, the
    line, the field, what was found and what was expected.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of line 1
    except FileNotFoundError:
        raise TableError(f"{path}: no such usage history file") from None
    except IsADirectoryError:
        raise TableError(f"{path}: is a directory; expected a JSONL usage history file") from None
    except UnicodeDecodeError as exc:
        raise TableError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            events.append(_event(line, f"{path}, line {number}", catalogue))
    return events


def _event(line: str, where: str, catalogue: Catalogue | None) -> UsageEvent:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TableError(
            f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); expected one object per line"
        ) from None
    if not isinstance(raw, dict):
        raise TableError(f"{where}: found a JSON {type(raw).__name__}; expected an object with {', '.join(FIELDS)}")
    missing = [name for name in FIELDS if name not in raw]
    if missing:
        raise TableError(f"{where}: missing field(s) {', '.join(missing)}; each line needs {', '.join(FIELDS)}")
    try:
        time = parse_time(raw["time"])
    except ValueError as exc:
        raise TableError(f"{where}: field 'time' {exc}") from None
    for name in ("user", "feature", "event"):
        value = raw[name]
        if not isinstance(value, str) or not value.strip():
            raise TableError(f"{where}: field {name!r} is {value!r}; expected a non-empty string")
    if raw["event"] not in EVENTS:
        raise TableError(f"{where}: field 'event' is {raw['event']!r}; expected one of {', '.join(EVENTS)}")
    if catalogue is not None and raw["feature"] not in catalogue:
        known = ", ".join(f.id for f in catalogue)
        raise TableError(
            f"{where}: field 'feature' is {raw['feature']!r}, which is not in the catalogue "
            f"{catalogue.source or catalogue.name}; expected one of {known}"
        )
    return UsageEvent(time=time, user=raw["user"], feature=raw["feature"], event=raw["event"])


def write_history(path: str | Path, events: Iterable[UsageEvent]) -> Path:
    """Write ``events`` as JSONL (one object per line), atomically; returns ``path``."""
    lines = [json.dumps(event.to_dict(), ensure_ascii=False) for event in events]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def decay(age_days: float, half_life_days: float) -> float:
    """The weight of an event ``age_days`` old: 1 now, 0.5 after one half-life, 0.25 after two."""
    return 0.5 ** (max(age_days, 0.0) / half_life_days)


@dataclass(frozen=True)
class UserProfile:
    """One user's use of the features, as of ``now``.

    ``use_weight`` and ``dismiss_weight`` are decayed counts: each event adds ``decay(age, half_life)``,
    so a feature used five times last week outweighs one used twenty times a year ago.
    """

    user: str
    now: datetime
    """The moment the profile describes; events after it are left out."""
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS
    used: Mapping[str, int] = field(default_factory=dict)
    """Raw number of ``used`` events per feature."""
    dismissed: Mapping[str, int] = field(default_factory=dict)
    """Raw number of ``dismissed`` events per feature."""
    opened: Mapping[str, int] = field(default_factory=dict)
    shown: Mapping[str, int] = field(default_factory=dict)
    use_weight: Mapping[str, float] = field(default_factory=dict)
    """Decayed ``used`` count per feature (plus half of each ``opened``: interest without use)."""
    dismiss_weight: Mapping[str, float] = field(default_factory=dict)
    """Decayed ``dismissed`` count per feature."""
    last_used: Mapping[str, datetime] = field(default_factory=dict)
    last_dismissed: Mapping[str, datetime] = field(default_factory=dict)

    @classmethod
    def from_events(
        cls,
        events: Iterable[UsageEvent],
        user: str,
        *,
        now: datetime | None = None,
        half_life_days: float = DEFAULT_HALF_LIFE_DAYS,
    ) -> UserProfile:
        """The profile of ``user`` from a history holding any users' events.

        ``now`` defaults to the time of the latest event in ``events`` (any user's), so the same history
        always gives the same profile; events after ``now`` are ignored.
        """
        if not half_life_days > 0:
            raise MegasenseInputError(f"half_life_days = {half_life_days}; expected a positive number of days")
        events = list(events)
        if now is None:
            now = max((e.time for e in events), default=datetime(1970, 1, 1, tzinfo=UTC))
        elif now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        counts: dict[str, dict[str, int]] = {name: {} for name in EVENTS}
        use_weight: dict[str, float] = {}
        dismiss_weight: dict[str, float] = {}
        last: dict[str, dict[str, datetime]] = {"used": {}, "dismissed": {}}
        for event in events:
            if event.user != user or event.time > now:
                continue
            feature, kind = event.feature, event.event
            counts[kind][feature] = counts[kind].get(feature, 0) + 1
            weight = decay((now - event.time).total_seconds() / 86400.0, half_life_days)
            if kind in ("used", "opened"):
                use_weight[feature] = use_weight.get(feature, 0.0) + (weight if kind == "used" else 0.5 * weight)
            elif kind == "dismissed":
                dismiss_weight[feature] = dismiss_weight.get(feature, 0.0) + weight
            if kind in last and (feature not in last[kind] or event.time > last[kind][feature]):
                last[kind][feature] = event.time
        return cls(
            user=user,
            now=now,
            half_life_days=half_life_days,
            used=counts["used"],
            dismissed=counts["dismissed"],
            opened=counts["opened"],
            shown=counts["shown"],
            use_weight=use_weight,
            dismiss_weight=dismiss_weight,
            last_used=last["used"],
            last_dismissed=last["dismissed"],
        )

    @property
    def total_use_weight(self) -> float:
        return sum(self.use_weight.values())

    def share(self, feature: str) -> float:
        """``feature``'s part of the user's decayed use (0 to 1; 0 for a user with no use)."""
        total = self.total_use_weight
        return self.use_weight.get(feature, 0.0) / total if total > 0 else 0.0

    def has_used(self, feature: str) -> bool:
        return self.used.get(feature, 0) > 0

    def days_since_used(self, feature: str) -> float:
        """Days since ``feature`` was last used (infinity if never)."""
        last = self.last_used.get(feature)
        return float("inf") if last is None else (self.now - last).total_seconds() / 86400.0

    def snoozed(self, feature: str, days: float) -> bool:
        """Dismissed within the last ``days`` and not used since: not to be offered again yet."""
        dismissed = self.last_dismissed.get(feature)
        if dismissed is None or (self.now - dismissed).total_seconds() / 86400.0 > days:
            return False
        used = self.last_used.get(feature)
        return used is None or used < dismissed
