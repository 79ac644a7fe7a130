"""Reference scorers that need no model: VADER, the standard lexicon baseline for social media text.

VADER is English-only. Its compound score maps to three classes by the thresholds its authors give
(>= 0.05 positive, <= -0.05 negative, neutral in between).
"""

from __future__ import annotations

from collections.abc import Sequence

from megasense.config.extras import MissingExtraError


class BaselineUnavailable(MissingExtraError):
    """vaderSentiment (the ``baselines`` extra) is not installed."""


def vader_labels(texts: Sequence[str], *, allowed: Sequence[str] | None = None) -> list[str]:
    """VADER's label for each text; with ``allowed`` (e.g. a binary subset) the compound sign decides."""
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        raise BaselineUnavailable(
            "the VADER baseline needs vaderSentiment: pip install 'megasense[baselines]'"
        ) from None
    analyzer = SentimentIntensityAnalyzer()
    binary = allowed is not None and "neutral" not in allowed
    labels = []
    for text in texts:
        compound = analyzer.polarity_scores(text)["compound"]
        if binary:
            labels.append("positive" if compound >= 0 else "negative")
        elif compound >= 0.05:
            labels.append("positive")
        elif compound <= -0.05:
            labels.append("negative")
        else:
            labels.append("neutral")
    return labels
