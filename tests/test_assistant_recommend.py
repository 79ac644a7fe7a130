"""Feature catalogue, usage history, profiles, the recommender (with a bag-of-words embedder) and the simulator."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from megasense.assistant.catalogue import catalogue_from_dict, load_catalogue
from megasense.assistant.history import EVENTS, UsageEvent, UserProfile, read_history, write_history
from megasense.assistant.recommend import (
    FRUSTRATION,
    Recommender,
    calibrate_semantic_threshold,
)
from megasense.assistant.simulate import SimulationSettings, simulate
from megasense.errors import ConfigError, MegasenseInputError, TableError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "examples" / "assistant" / "smart-speaker.toml"
SHIPPED_ZH = ROOT / "examples" / "assistant" / "smart-speaker-zh.toml"
NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


class BagOfWords:
    """A fixed random vector per word, summed and normalised: texts sharing words point the same way."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim))
        for i, text in enumerate(texts):
            for word in text.lower().replace(":", " ").replace(",", " ").split():
                out[i] += np.random.default_rng(zlib.crc32(word.encode())).standard_normal(self.dim)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def _feature(fid, name, intents, examples=(), description=None, **extra):
    return {
        "id": fid,
        "name": name,
        "description": description or f"{name} for you",
        "intents": list(intents),
        "examples": list(examples),
        **extra,
    }


CATALOGUE = catalogue_from_dict(
    {
        "name": "test speaker",
        "feature": [
            _feature("alarms", "Alarms", ["alarm"], ["wake me up at seven"]),
            _feature("timers", "Timers", ["timer"], ["start a pasta timer"]),
            _feature("reminders", "Reminders", ["reminder", "reminder_update"], ["remind me to call mum"]),
            _feature("weather", "Weather", ["weather"], ["will it rain tomorrow"]),
            _feature("music", "Music", ["play_music"], ["play some jazz"]),
            _feature("lights", "Lights", ["smart_home"], ["turn on the lights"], "Switch lamps on and off"),
            _feature("heating", "Heating", ["smart_home"], ["set the heating temperature"], "Thermostat control"),
            _feature("help", "Help", ["what_can_i_ask_you"], ["what can I say"], help=True),
        ],
    },
    source="test.toml",
)


def _events(user, *pairs, start=NOW - timedelta(days=10)):
    """UsageEvents of ``user`` from (feature, event) pairs, one hour apart."""
    return [UsageEvent(start + timedelta(hours=i), user, f, e) for i, (f, e) in enumerate(pairs)]


def _population():
    """Timer users mostly also use reminders, some alarms; nobody pairs timers with weather."""
    events = []
    for u in range(10):
        events += _events(f"a{u}", ("timers", "used"), ("reminders", "used"))
    for u in range(4):
        events += _events(f"b{u}", ("timers", "used"), ("alarms", "used"))
    for u in range(6):
        events += _events(f"c{u}", ("weather", "used"), ("music", "used"))
    return events


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- catalogue


def test_catalogue_bad_toml_names_the_file(tmp_path):
    path = _write(tmp_path, "bad.toml", "[[feature]]\nid = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_catalogue(path)


@pytest.mark.parametrize(
    ("table", "pattern"),
    [
        ({"id": "a", "name": "A", "intents": ["alarm"]}, r"field 'description'.*found nothing"),
        ({"id": "a", "name": "A", "description": "d", "intents": ["x"], "colour": "red"}, r"unknown field\(s\) colour"),
        ({"id": "a", "name": "A", "description": "d", "intents": []}, r"field 'intents' must list at least one"),
    ],
)
def test_catalogue_field_errors_name_file_feature_and_field(tmp_path, table, pattern):
    lines = [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    path = _write(tmp_path, "cat.toml", "[[feature]]\n" + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=rf"cat\.toml: feature 1 \(id 'a'\): {pattern}"):
        load_catalogue(path)


def test_catalogue_duplicate_id():
    one = _feature("a", "A", ["alarm"])
    with pytest.raises(ConfigError, match=r"dup\.toml: feature 2 repeats id 'a'"):
        catalogue_from_dict({"feature": [one, one]}, source="dup.toml")


def test_shipped_catalogues_map_only_real_intent_labels():
    labels = set(json.loads((ROOT / "src/megasense/assets/intent-en/adapter.json").read_text())["head"]["labels"])
    # Chinese requests are matched by meaning alone (no intent model reads them), so the zh catalogue's
    # features list more ways of asking (benchmarks/assistant_recommend_zh.py).
    for path, language, most_examples in ((SHIPPED, "en", 4), (SHIPPED_ZH, "zh", 12)):
        catalogue = load_catalogue(path)
        assert catalogue.language == language
        assert catalogue.intents <= labels - {"oos"}, catalogue.intents - labels
        served = [intent for feature in catalogue for intent in feature.intents]
        assert len(served) == len(set(served)), "an intent maps to more than one feature"
        assert [f.id for f in catalogue.help_features] == ["help"]
        assert all(2 <= len(f.examples) <= most_examples for f in catalogue)
    assert 20 <= len(load_catalogue(SHIPPED)) <= 30


# --------------------------------------------------------------------------------------------- history


def test_read_history(tmp_path):
    lines = [
        {"time": "2024-05-01T07:00:00Z", "user": "u1", "feature": "alarms", "event": "used"},
        {"time": "2024-05-01 08:00", "user": "u1", "feature": "timers", "event": "opened", "device": "kitchen"},
    ]
    path = _write(tmp_path, "h.jsonl", json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1]) + "\n")
    events = read_history(path, catalogue=CATALOGUE)
    assert [(e.feature, e.event) for e in events] == [("alarms", "used"), ("timers", "opened")]
    assert events[1].time == datetime(2024, 5, 1, 8, tzinfo=UTC)  # no offset: UTC
    again = read_history(write_history(tmp_path / "copy.jsonl", events))
    assert again == events


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ('{"time": "2024-05-01", "user": "u1", "feature": "alarms"', r"line 2: not valid JSON"),
        ('["used"]', r"line 2: found a JSON list; expected an object"),
        ('{"time": "2024-05-01", "user": "u1", "feature": "alarms"}', r"line 2: missing field\(s\) event"),
        (
            '{"time": "yesterday", "user": "u1", "feature": "alarms", "event": "used"}',
            r"line 2: field 'time'.*yesterday",
        ),
        ('{"time": 17, "user": "u1", "feature": "alarms", "event": "used"}', r"line 2: field 'time' found int 17"),
        ('{"time": "2024-05-01", "user": "", "feature": "alarms", "event": "used"}', r"line 2: field 'user' is ''"),
        (
            '{"time": "2024-05-01", "user": "u1", "feature": "alarms", "event": "clicked"}',
            r"line 2: field 'event' is 'clicked'; expected one of used, dismissed, shown, opened",
        ),
        (
            '{"time": "2024-05-01", "user": "u1", "feature": "radio", "event": "used"}',
            r"line 2: field 'feature' is 'radio', which is not in the catalogue test\.toml; expected one of alarms",
        ),
    ],
)
def test_history_errors_name_file_line_and_field(tmp_path, line, pattern):
    good = '{"time": "2024-05-01", "user": "u1", "feature": "alarms", "event": "used"}'
    path = _write(tmp_path, "bad.jsonl", good + "\n" + line + "\n")
    with pytest.raises(TableError, match=rf"bad\.jsonl, {pattern}"):
        read_history(path, catalogue=CATALOGUE)


def test_unknown_event_lists_the_allowed_ones():
    with pytest.raises(MegasenseInputError, match="expected one of used, dismissed, shown, opened"):
        UsageEvent(NOW, "u1", "alarms", "clicked")
    assert set(EVENTS) == {"used", "dismissed", "shown", "opened"}


def test_profile_decays_with_half_life():
    events = [
        UsageEvent(NOW, "u1", "timers", "used"),
        UsageEvent(NOW - timedelta(days=30), "u1", "timers", "used"),
        UsageEvent(NOW - timedelta(days=60), "u1", "alarms", "used"),
        UsageEvent(NOW - timedelta(days=30), "u1", "alarms", "opened"),
        UsageEvent(NOW - timedelta(days=1), "u1", "weather", "dismissed"),
        UsageEvent(NOW, "u2", "music", "used"),  # someone else
        UsageEvent(NOW + timedelta(days=1), "u1", "music", "used"),  # after now
    ]
    profile = UserProfile.from_events(events, "u1", now=NOW, half_life_days=30)
    assert profile.use_weight["timers"] == pytest.approx(1.5)
    assert profile.use_weight["alarms"] == pytest.approx(0.25 + 0.5 * 0.5)  # an opening is half a use
    assert profile.used == {"timers": 2, "alarms": 1}
    assert profile.dismiss_weight["weather"] == pytest.approx(0.5 ** (1 / 30))
    assert profile.share("timers") == pytest.approx(0.75)
    assert profile.days_since_used("alarms") == pytest.approx(60)
    assert profile.snoozed("weather", 14) and not profile.snoozed("weather", 0.5)
    assert UserProfile.from_events(events, "u1").now == NOW + timedelta(days=1)  # default: latest event
    with pytest.raises(MegasenseInputError, match="half_life_days = 0"):
        UserProfile.from_events(events, "u1", half_life_days=0)


# ----------------------------------------------------------------------------------------- recommender


@pytest.fixture(scope="module")
def embedder():
    return BagOfWords()


def test_request_maps_the_intent_and_breaks_ties_by_meaning(embedder):
    recommender = Recommender(CATALOGUE, embedder)
    [rec] = recommender.recommend("wake me at six", intent="alarm", intent_score=0.9, k=3)
    assert (rec.feature.id, rec.kind, rec.score) == ("alarms", "request", 0.9)
    assert rec.reason == 'You asked for Alarms ("wake me at six")'
    assert recommender.recommend("turn on the lights please", intent="smart_home")[0].feature.id == "lights"
    assert recommender.recommend("set the heating to 20", intent="smart_home")[0].feature.id == "heating"
    assert Recommender(CATALOGUE).recommend("heating", intent="smart_home")[0].feature.id == "lights"  # first


def test_abstains_out_of_scope_and_on_unmapped_intents(embedder):
    plain = Recommender(CATALOGUE, embedder)
    assert plain.recommend("wake me up at seven", intent="alarm", out_of_scope=True) == []
    assert plain.recommend("wake me up at seven", intent="balance") == []
    semantic = Recommender(CATALOGUE, embedder, semantic_threshold=0.9)
    [rec] = semantic.recommend("wake me up at seven", intent="balance")
    assert (rec.feature.id, rec.kind) == ("alarms", "request") and rec.score >= 0.9
    assert "close to what Alarms does" in rec.reason
    assert semantic.recommend("what is my account balance", intent="balance") == []
    assert semantic.recommend("wake me up at seven", intent=None, out_of_scope=True) == []
    with pytest.raises(ConfigError, match="needs an embedder"):
        Recommender(CATALOGUE, semantic_threshold=0.5)


def test_calibrated_threshold_lets_through_the_budget(embedder):
    recommender = Recommender(CATALOGUE, embedder)
    negatives = ["what is my balance", "book a flight to rome", "how old are you", "tell me about taxes"]
    threshold = calibrate_semantic_threshold(recommender, negatives, budget=0.25)
    passed = (recommender.similarities(negatives).max(axis=1) >= threshold).mean()
    assert passed == pytest.approx(0.25)


@pytest.mark.parametrize("emotion", sorted(FRUSTRATION))
def test_help_comes_first_for_a_frustrated_user(embedder, emotion):
    recs = Recommender(CATALOGUE, embedder).recommend("set an alarm", intent="alarm", emotions=["neutral", emotion])
    assert [(r.feature.id, r.kind) for r in recs] == [("help", "help"), ("alarms", "request")]
    assert recs[0].reason == f"You seem {FRUSTRATION[emotion]}: here is how to get help"


def test_no_help_without_frustration_and_no_duplicates(embedder):
    recommender = Recommender(CATALOGUE, embedder)
    assert [r.kind for r in recommender.recommend("alarm", intent="alarm", emotions=["joy", "neutral"])] == ["request"]
    recs = recommender.recommend("what can I say", intent="what_can_i_ask_you", emotions=["annoyance"])
    assert [(r.feature.id, r.kind) for r in recs] == [("help", "help")]


def test_discover_related_features_with_reasons(embedder):
    recommender = Recommender(CATALOGUE, embedder).fit(_population())
    assert recommender.co_use_[CATALOGUE.features.index(CATALOGUE.get("timers")), 2] == pytest.approx(10 / 14)
    profile = UserProfile.from_events(_events("me", *[("timers", "used")] * 3), "me", now=NOW)
    recs = recommender.recommend("", intent=None, profile=profile, k=3)
    # all of this user's use is Timers (share 1), ahead of what Timers users also use
    assert [(r.feature.id, r.kind) for r in recs[:3]] == [
        ("timers", "favourite"),
        ("reminders", "discover"),
        ("alarms", "discover"),
    ]
    assert recs[0].reason == "You use Timers often (3 times)"
    assert recs[1].reason == (
        "You use Timers often and have not tried Reminders (71% of people who use Timers also use it)"
    )


def test_dismissed_features_are_snoozed_then_pushed_down():
    events = []
    for u in range(6):
        events += _events(f"a{u}", ("timers", "used"), ("reminders", "used"))
    for u in range(5):
        events += _events(f"b{u}", ("timers", "used"), ("alarms", "used"))
    recommender = Recommender(CATALOGUE, max_favourites=0).fit(events)  # co-use only: 6/11 vs 5/11
    uses = [("timers", "used")] * 3

    def ranked(dismissed_days_ago):
        events = _events("me", *uses, start=NOW - timedelta(days=40))
        if dismissed_days_ago is not None:
            events.append(UsageEvent(NOW - timedelta(days=dismissed_days_ago), "me", "reminders", "dismissed"))
        profile = UserProfile.from_events(events, "me", now=NOW)
        return [r.feature.id for r in recommender.recommend("", intent=None, profile=profile, k=5)]

    assert ranked(None) == ["reminders", "alarms"]
    assert "reminders" not in ranked(3)  # snoozed for 14 days
    assert ranked(20) == ["alarms", "reminders"]  # back after the snooze, but below


def test_k_bound_determinism_and_dicts(embedder):
    recommender = Recommender(CATALOGUE, embedder).fit(_population())
    profile = UserProfile.from_events(_events("me", ("timers", "used"), ("weather", "used")), "me")
    args = dict(intent="alarm", emotions=["anger"], profile=profile)
    full = recommender.recommend("wake me up", **args, k=10)
    assert len(full) > 3 and len({r.feature.id for r in full}) == len(full)
    assert recommender.recommend("wake me up", **args, k=2) == full[:2]
    assert recommender.recommend("wake me up", **args, k=10) == full
    assert set(full[0].to_dict()) == {"id", "name", "kind", "score", "reason", "description"}
    with pytest.raises(MegasenseInputError, match="k = 0"):
        recommender.recommend("wake me up", intent="alarm", k=0)


def test_profile_without_embedder_or_history(embedder):
    profile = UserProfile.from_events(_events("me", *[("timers", "used")] * 3), "me")
    bare = Recommender(CATALOGUE).recommend("", intent=None, profile=profile)
    assert [(r.feature.id, r.kind) for r in bare] == [("timers", "favourite")]
    newcomer = UserProfile.from_events([], "me", now=NOW)
    recs = Recommender(CATALOGUE).fit(_population()).recommend("", intent=None, profile=newcomer, k=2)
    assert [r.feature.id for r in recs] == ["timers", "reminders"]  # most users use them
    assert recs[0].reason == "Many people use Timers (70% of users) and you have not tried it yet"


def test_fit_rejects_features_outside_the_catalogue():
    with pytest.raises(MegasenseInputError, match="names feature 'radio', which is not in the catalogue"):
        Recommender(CATALOGUE).fit(_events("u", ("radio", "used")))


# ------------------------------------------------------------------------------------------- simulator


def test_simulator_is_reproducible():
    catalogue = load_catalogue(SHIPPED)
    settings = SimulationSettings(users=30, mean_steps=15)
    one, two = simulate(catalogue, settings=settings, seed=3), simulate(catalogue, settings=settings, seed=3)
    assert one == two
    other = simulate(catalogue, settings=settings, seed=4)
    assert one.events != other.events
    ids = set(one.feature_ids)
    for user in one.users:
        times = [e.time for e in user.history]
        assert times == sorted(times) and len(user.history) >= 5
        assert user.next_used in ids and (
            user.next_new is None or user.next_new not in {e.feature for e in user.history if e.event == "used"}
        )
        assert sum(user.interests.values()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="not among the features"):
        simulate(["alarms"], settings=settings)


# ------------------------------------------------------------------------------------- real weights


@pytest.mark.slow
def test_shipped_catalogue_with_intent_en_and_minilm():
    from megasense.assistant.recommend import load_recommender
    from megasense.predictors.sentiment import load_predictor

    predictor = load_predictor("intent-en")
    catalogue = load_catalogue(SHIPPED)
    assert catalogue.intents <= set(predictor.labels)
    recommender = load_recommender(catalogue)
    cases = {
        "set an alarm for 6am": "alarms",
        "add milk to my shopping list": "shopping_list",
        "turn the kitchen lights off": "smart_home",
        "how do I say thank you in Italian": "translate",
        "what is the capital of peru": None,
    }
    batch = predictor.predict(list(cases))
    for i, (text, expected) in enumerate(cases.items()):
        result = batch[i]
        recs = recommender.recommend(
            text, intent=result.label, intent_score=result.score, out_of_scope=result.label == "oos"
        )
        request = next((r.feature.id for r in recs if r.kind == "request"), None)
        assert request == expected, (text, result.label)


@pytest.mark.slow
def test_chinese_catalogue_with_e5():
    from megasense.assistant.recommend import load_embedder

    catalogue = load_catalogue(SHIPPED_ZH)
    recommender = Recommender(catalogue, load_embedder("zh"))
    texts = {"明天早上七点叫我起床": "alarms", "周末天气怎么样": "weather", "帮我把空调温度调低一点": "smart_home"}
    best = recommender.similarities(list(texts)).argmax(axis=1)
    assert [catalogue.features[i].id for i in best] == list(texts.values())
