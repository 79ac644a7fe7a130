"""Stand-ins for the models analytics receives: a bag-of-words embedder and a keyword sentiment scorer.

They make topics and sentiment known in advance, so tests check that the analysis finds them, in
milliseconds and without weights.
"""

from __future__ import annotations

import csv
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from megasense.analytics.text import Segmenter

TOPICS = {
    "battery": ["battery", "charge", "charger", "power", "hours"],
    "delivery": ["delivery", "courier", "package", "shipping", "arrived"],
    "screen": ["screen", "display", "pixels", "brightness", "colour"],
}
ZH_TOPICS = {
    "food": ["外卖", "味道", "米饭", "口味", "菜品"],
    "hotel": ["酒店", "房间", "前台", "床铺", "早餐"],
}


class FakeEmbedder:
    """Sum of a fixed random vector per word: texts sharing words point the same way."""

    name = "fake-embedder"

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim
        self.seen: list[str] = []
        self._segmenter = Segmenter(bigrams=False)

    def embed(self, texts):
        self.seen.extend(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            for word in self._segmenter.words(text) or [text]:
                out[i] += np.random.default_rng(zlib.crc32(word.encode())).standard_normal(self.dim)
        return out


@dataclass
class FakeResult:
    labels: list[str]
    scores: np.ndarray
    probs: np.ndarray
    label_names: tuple[str, ...] = ("negative", "neutral", "positive")


class FakeScorer:
    """``negative`` for texts with bad/broken/差, ``positive`` for great/love/好, else ``neutral``."""

    name = "fake-sentiment"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def predict(self, texts):
        self.seen.extend(texts)
        labels = []
        for t in texts:
            if any(w in t for w in ("bad", "broken", "差")):
                labels.append("negative")
            elif any(w in t for w in ("great", "love", "好")):
                labels.append("positive")
            else:
                labels.append("neutral")
        names = FakeResult.label_names
        probs = np.full((len(texts), 3), 0.05)
        for i, label in enumerate(labels):
            probs[i, names.index(label)] = 0.9
        return FakeResult(labels, probs.max(axis=1), probs)


def english_rows(n: int = 150, seed: int = 0, month: int = 1) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = list(TOPICS)[i % 3]
        words = rng.sample(TOPICS[topic], 3)
        mood = rng.choice(["great", "bad", "fine"])
        rows.append(
            {
                "text": f"the {words[0]} and {words[1]} {words[2]} {mood}",
                "date": f"2024-{month:02d}-{1 + i % 28:02d}",
                "product": rng.choice(["A", "B"]),
                "truth": topic,
            }
        )
    return rows


def chinese_rows(n: int = 60, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = list(ZH_TOPICS)[i % 2]
        a, b, c = rng.sample(ZH_TOPICS[topic], 3)
        rows.append({"text": f"{a}和{b}，{c}很{rng.choice(['好', '差'])}", "truth": topic})
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def small_analysis(root: Path, rows: list[dict[str, str]]) -> Path:
    """``analyze`` over ``rows`` with the fakes (dates and products, 3 topics); returns the output dir."""
    from megasense.analytics import analyze

    analyze(
        write_csv(root / "in.csv", rows),
        root / "out",
        embedder=FakeEmbedder(),
        scorer=FakeScorer(),
        time_col="date",
        group_col="product",
        reducer="pca",
        min_topic_size=10,
        report=False,
    )
    return root / "out"


def run_fake_analysis(source, out, defaults: dict, **kwargs):
    """``analyze(source, out)`` with the fake embedder and scorer (unless given), ``defaults`` under ``kwargs``."""
    from megasense.analytics import analyze

    kwargs.setdefault("embedder", FakeEmbedder())
    kwargs.setdefault("scorer", FakeScorer())
    return analyze(source, out, **{**defaults, **kwargs})


def sql(out: Path, query: str):
    """A query's result (a DataFrame) from the ``analysis.duckdb`` in ``out``, opened read-only."""
    import duckdb

    with duckdb.connect(str(out / "analysis.duckdb"), read_only=True) as con:
        return con.execute(query).df()
