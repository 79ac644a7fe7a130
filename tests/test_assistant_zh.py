"""Chinese requests in the assistant: no intent model reads Chinese, so the request's feature is found by
meaning alone, with the nearest-example vote (``semantic_temperature``). Fake embedders with hand-placed
vectors keep the rule's tests exact; the slow ones run multilingual-e5-small on the shipped zh catalogue."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

import megasense.assistant.recommend as recommend
from megasense.assistant.catalogue import catalogue_from_dict, load_catalogue
from megasense.assistant.recommend import (
    EMBEDDING_MODELS,
    SEMANTIC_TEMPERATURES,
    SEMANTIC_THRESHOLDS,
    Recommender,
    calibrate_semantic_threshold,
    load_recommender,
)
from megasense.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "examples" / "assistant" / "smart-speaker.toml"
SHIPPED_ZH = ROOT / "examples" / "assistant" / "smart-speaker-zh.toml"
DIM = 16


def _axis(i: int) -> np.ndarray:
    v = np.zeros(DIM)
    v[i] = 1.0
    return v


class Placed:
    """An embedder that knows its texts' vectors: each feature's texts lie around one axis (0, 1, 2), each
    off it by 0.1 along an axis of its own (3 and up), so texts of one feature are close, not identical."""

    def __init__(self, catalogue, queries: dict[str, np.ndarray]) -> None:
        self.vectors = dict(queries)
        private = 3
        for axis, feature in enumerate(catalogue):
            for text in (f"{feature.name}: {feature.description}", *feature.examples):
                self.vectors[text] = _axis(axis) + 0.1 * _axis(private)
                private += 1

    def embed(self, texts):
        rows = np.stack([self.vectors[t] for t in texts])
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _catalogue(examples_per_feature=(2, 2, 2)):
    names = (("alarms", "闹钟", "alarm"), ("weather", "天气", "weather"), ("music", "音乐", "play_music"))
    return catalogue_from_dict(
        {
            "name": "测试音箱",
            "language": "zh",
            "feature": [
                {
                    "id": fid,
                    "name": name,
                    "description": f"{name}的说明",
                    "intents": [intent],
                    "examples": [f"{name}例句{j}" for j in range(n)],
                }
                for (fid, name, intent), n in zip(names, examples_per_feature)
            ],
        },
        source="zh-test.toml",
    )


QUERIES = {
    "叫我起床": _axis(0),  # right on the alarms axis
    "一半一半": _axis(0) + _axis(1),  # as close to alarms as to weather: cosine 0.70 to both
    "无关的话": _axis(12),  # near no feature (its own axis; no catalogue text uses 12 here)
}


def _request(recommender, text):
    return next((r for r in recommender.recommend(text, intent=None) if r.kind == "request"), None)


def test_vote_offers_the_clear_feature_and_abstains_between_two():
    catalogue = _catalogue()
    embedder = Placed(catalogue, QUERIES)
    cosine = Recommender(catalogue, embedder, semantic_threshold=0.6)
    vote = Recommender(catalogue, embedder, semantic_threshold=0.6, semantic_temperature=0.03)

    clear = _request(vote, "叫我起床")
    assert clear.feature.id == "alarms" and clear.score > 0.99 and "闹钟" in clear.reason
    shares = vote.semantic_scores(["一半一半"])[0]
    np.testing.assert_allclose(shares, [0.5, 0.5, 0.0], atol=1e-6)
    assert _request(vote, "一半一半") is None  # the vote is split: abstain
    # the closest text's cosine (the English rule) cannot tell: 0.70 >= 0.6 offers the first of equals
    assert _request(cosine, "一半一半").feature.id == "alarms"
    # far from everything: every cosine is 0, the vote is a three-way tie, and both rules abstain
    np.testing.assert_allclose(vote.semantic_scores(["无关的话"])[0], [1 / 3] * 3, atol=1e-6)
    assert _request(vote, "无关的话") is None and _request(cosine, "无关的话") is None


def test_vote_gives_no_head_start_to_a_feature_with_more_examples():
    catalogue = _catalogue(examples_per_feature=(8, 1, 1))  # alarms: 9 texts, weather: 2
    vote = Recommender(catalogue, Placed(catalogue, QUERIES), semantic_temperature=0.03)
    shares = vote.semantic_scores(["一半一半"])[0]
    assert shares[0] == pytest.approx(shares[1], abs=1e-6)  # a sum would give alarms 9:2


def test_vote_shares_sum_to_one_and_lower_temperatures_sharpen():
    catalogue = _catalogue()
    leaning = {"偏向闹钟": _axis(0) + 0.8 * _axis(1)}
    embedder = Placed(catalogue, leaning)
    sharp = Recommender(catalogue, embedder, semantic_temperature=0.01).semantic_scores(["偏向闹钟"])[0]
    soft = Recommender(catalogue, embedder, semantic_temperature=0.3).semantic_scores(["偏向闹钟"])[0]
    assert sharp.sum() == pytest.approx(1.0) and soft.sum() == pytest.approx(1.0)
    assert sharp.argmax() == soft.argmax() == 0
    assert sharp[0] > 0.99 > 0.7 > soft[0] > soft[1] > soft[2]


def test_calibration_uses_the_recommenders_own_scores():
    catalogue = _catalogue()
    embedder = Placed(catalogue, QUERIES)
    negatives = ["一半一半", "无关的话"]
    vote = Recommender(catalogue, embedder, semantic_temperature=0.03)
    cosine = Recommender(catalogue, embedder)
    # vote maxima 0.5 and 1/3; cosine maxima 0.70 and 0: the threshold that half the negatives reach
    assert calibrate_semantic_threshold(vote, negatives, budget=0.5) == pytest.approx((0.5 + 1 / 3) / 2, abs=1e-6)
    assert calibrate_semantic_threshold(cosine, negatives, budget=0.5) == pytest.approx(0.9950 * 0.7071 / 2, abs=1e-3)


@pytest.mark.parametrize("temperature", [0.0, -0.1])
def test_semantic_temperature_must_be_positive(temperature):
    catalogue = _catalogue()
    with pytest.raises(ConfigError, match=rf"semantic_temperature = {temperature}; expected a number above 0"):
        Recommender(catalogue, Placed(catalogue, QUERIES), semantic_temperature=temperature)


class CharBag:
    """Any text: a fixed random vector per character, summed (the shipped catalogues' texts, without weights)."""

    def embed(self, texts):
        out = np.zeros((len(texts), DIM))
        for i, text in enumerate(texts):
            for char in text:
                out[i] += np.random.default_rng(zlib.crc32(char.encode())).standard_normal(DIM)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_load_recommender_picks_each_languages_rule(monkeypatch):
    monkeypatch.setattr(recommend, "load_embedder", lambda language: CharBag())
    zh = load_recommender(load_catalogue(SHIPPED_ZH))
    e5 = EMBEDDING_MODELS["zh"]
    assert (zh.semantic_threshold, zh.semantic_temperature) == (SEMANTIC_THRESHOLDS[e5], SEMANTIC_TEMPERATURES[e5])
    assert 0.0 < zh.semantic_threshold < 1.0  # a vote share, not a cosine
    en = load_recommender(load_catalogue(SHIPPED))
    assert (en.semantic_threshold, en.semantic_temperature) == (SEMANTIC_THRESHOLDS["all-minilm-l6-v2"], None)


# ------------------------------------------------------------------------------------- real weights


@pytest.mark.slow
def test_chinese_requests_with_e5_on_the_shipped_catalogue():
    recommender = load_recommender(load_catalogue(SHIPPED_ZH))
    cases = {  # none of these is one of the catalogue's examples
        "明天早上七点叫醒我": "alarms",
        "周末上海会下雨吗": "weather",
        "倒计时五分钟": "timers",
        "声音小一点": "volume",
        "把卧室的灯打开": "smart_home",
        "谢谢用法语怎么说": "translate",
        "去机场怎么走": "commute",
        "把洗衣粉加到购物清单": "shopping_list",
        "帮我订一张去上海的机票": None,  # flights, TV programmes and lotteries are not in the catalogue
        "湖南卫视在放什么": None,
        "双色球开奖号码": None,
    }
    found = {}
    for text in cases:
        request = _request(recommender, text)
        found[text] = None if request is None else request.feature.id
    assert found == cases


@pytest.mark.slow
def test_chinese_request_end_to_end_without_models_that_cannot_read_it():
    from megasense.assistant.assistant import Assistant

    catalogue = load_catalogue(SHIPPED_ZH)
    assistant = Assistant(catalogue, intent=None, recommender=load_recommender(catalogue))
    result = assistant.assist("明天早上七点叫醒我")
    assert result.reading.language == "zh" and result.reading.intent is None
    assert result.feature is not None and result.feature.feature.id == "alarms"
    assert result.turn.slots == {"date": "明天", "time": "早上七点"}
    assert result.reply_source == "template"
    assert result.reply.startswith("我可以帮你：闹钟") and result.reply.endswith("是明天早上七点吗？")


def test_reasons_are_in_the_catalogues_language():
    from megasense.assistant.catalogue import catalogue_from_dict
    from megasense.assistant.recommend import Recommender

    zh = catalogue_from_dict(
        {
            "language": "zh",
            "feature": [
                {"id": "alarms", "name": "闹钟", "description": "按时叫醒你。", "intents": ["alarm"]},
                {"id": "help", "name": "帮助", "description": "出问题时的帮助。", "intents": ["help"], "help": True},
            ],
        }
    )
    recs = Recommender(zh).recommend("明天七点叫我", intent="alarm", emotions=("anger",))
    assert [(r.kind, r.reason) for r in recs] == [
        ("help", "你好像有点生气：这里可以获得帮助"),
        ("request", "你想用闹钟（“明天七点叫我”）"),
    ]
