"""A product's feature catalogue: the features an assistant may point a user to, read from TOML.

A catalogue is a list of ``[[feature]]`` tables. Each feature names the intents it serves, so the
intent model's answer maps onto features, and describes itself in words (``description``,
``examples``) so features can also be found by meaning::

    name = "Smart speaker"
    language = "en"                      # en or zh: which sentence encoder compares texts

    [[feature]]
    id = "alarms"
    name = "Alarms"
    description = "Wake up to an alarm at a time you choose, once or on repeat."
    intents = ["alarm"]
    examples = ["wake me up at seven", "set an alarm for 6:30 tomorrow"]
    requires = ["speaker"]               # device capabilities (optional)
    help = false                         # true: offered first to a frustrated or angry user

Every problem is reported with the file, the feature's position and id, and the field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megasense.errors import ConfigError

LANGUAGES = ("en", "zh")
_FEATURE_KEYS = {"id", "name", "description", "intents", "examples", "requires", "help"}


@dataclass(frozen=True)
class Feature:
    """One product feature."""

    id: str
    """Stable identifier, used in usage histories (``feature`` field) and in answers."""
    name: str
    """What users see ("Alarms")."""
    description: str
    """One or two sentences of what it does: the catalogue facts a reply may state."""
    intents: tuple[str, ...]
    """Intent labels this feature serves (labels of the intent model, e.g. ``intent-en``'s)."""
    examples: tuple[str, ...] = ()
    """Utterances that ask for this feature."""
    requires: tuple[str, ...] = ()
    """Device capabilities it needs (``speaker``, ``display``, ``smart_home_hub``...)."""
    help: bool = False
    """A help or support feature: offered first when the user is frustrated or angry."""

    def facts(self) -> str:
        """The catalogue facts about this feature, in one line, for grounding a reply."""
        text = f"{self.name}: {self.description}"
        if self.requires:
            text += f" (needs: {', '.join(self.requires)})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "intents": list(self.intents),
            "examples": list(self.examples),
            "requires": list(self.requires),
            "help": self.help,
        }


@dataclass(frozen=True)
class Catalogue:
    """A product's features, in catalogue order."""

    features: tuple[Feature, ...]
    name: str = "catalogue"
    language: str = "en"
    source: str = ""
    """Where it was read from (for messages)."""
    _by_id: dict[str, Feature] = field(init=False, repr=False, compare=False)
    _by_intent: dict[str, tuple[Feature, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = self.source or self.name
        if not self.features:
            raise ConfigError(f"{where}: the catalogue has no [[feature]] tables; add at least one")
        if self.language not in LANGUAGES:
            raise ConfigError(f"{where}: language = {self.language!r}; expected one of {', '.join(LANGUAGES)}")
        by_id: dict[str, Feature] = {}
        by_intent: dict[str, list[Feature]] = {}
        for index, feature in enumerate(self.features, 1):
            if feature.id in by_id:
                raise ConfigError(f"{where}: feature {index} repeats id {feature.id!r}; ids must be unique")
            by_id[feature.id] = feature
            for intent in feature.intents:
                by_intent.setdefault(intent, []).append(feature)
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_by_intent", {k: tuple(v) for k, v in by_intent.items()})

    def __len__(self) -> int:
        return len(self.features)

    def __iter__(self):
        return iter(self.features)

    def __contains__(self, feature_id: object) -> bool:
        return feature_id in self._by_id

    def get(self, feature_id: str) -> Feature:
        """The feature with this id; a ``ConfigError`` naming the known ids if there is none."""
        try:
            return self._by_id[feature_id]
        except KeyError:
            known = ", ".join(sorted(self._by_id))
            raise ConfigError(
                f"{self.source or self.name}: no feature with id {feature_id!r}; known ids: {known}"
            ) from None

    def for_intent(self, intent: str | None) -> tuple[Feature, ...]:
        """The features that serve ``intent``, in catalogue order (empty for unknown or no intent)."""
        return self._by_intent.get(intent or "", ())

    @property
    def intents(self) -> set[str]:
        """Every intent some feature serves."""
        return set(self._by_intent)

    @property
    def help_features(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.help)


def load_catalogue(path: str | Path) -> Catalogue:
    """Read and check a TOML catalogue; a ``ConfigError`` names the file, feature and field of any problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such catalogue file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return catalogue_from_dict(raw, source=str(path))


def catalogue_from_dict(raw: dict[str, Any], *, source: str = "catalogue") -> Catalogue:
    """A catalogue from its parsed TOML (``{"name", "language", "feature": [...]}``)."""
    unknown = set(raw) - {"name", "language", "feature"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}; expected name, language, [[feature]]"
        )
    tables = raw.get("feature", [])
    if not isinstance(tables, list):
        found = type(tables).__name__
        raise ConfigError(f"{source}: 'feature' must be an array of tables ([[feature]]), found {found}")
    features = tuple(_feature(table, index, source) for index, table in enumerate(tables, 1))
    name = raw.get("name", Path(source).stem if source else "catalogue")
    language = raw.get("language", "en")
    for key, value in (("name", name), ("language", language)):
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, found {value!r}")
    return Catalogue(features=features, name=name, language=language, source=source)


def _feature(table: Any, index: int, source: str) -> Feature:
    where = f"{source}: feature {index}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table ([[feature]]), found {table!r}")
    if isinstance(table.get("id"), str):
        where += f" (id {table['id']!r})"
    unknown = set(table) - _FEATURE_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(_FEATURE_KEYS))}"
        )
    for key in ("id", "name", "description"):
        value = table.get(key)
        if not isinstance(value, str) or not value.strip():
            found = "nothing" if value is None else repr(value)
            raise ConfigError(f"{where}: field {key!r} must be a non-empty string, found {found}")
    lists = {key: _strings(table.get(key, []), key, where) for key in ("intents", "examples", "requires")}
    if not lists["intents"]:
        raise ConfigError(f"{where}: field 'intents' must list at least one intent label this feature serves")
    help_flag = table.get("help", False)
    if not isinstance(help_flag, bool):
        raise ConfigError(f"{where}: field 'help' must be true or false, found {help_flag!r}")
    return Feature(
        id=table["id"].strip(),
        name=table["name"].strip(),
        description=table["description"].strip(),
        intents=lists["intents"],
        examples=lists["examples"],
        requires=lists["requires"],
        help=help_flag,
    )


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: field {key!r} must be a list of non-empty strings, found {value!r}")
    return tuple(v.strip() for v in value)
