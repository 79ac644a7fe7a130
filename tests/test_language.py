from __future__ import annotations

import pytest

from megasense.predictors.language import dominant_script, needs_multilingual


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("The battery life is great", "latin"),
        ("这家酒店的服务太差了", "cjk"),
        ("iPhone 15 的电池续航很好", "cjk"),
        ("I bought it on 淘宝 and it broke", "latin"),
        ("Отличный сервис", "other"),
        ("12345 😀 https://x.co", "latin"),  # the URL's letters are Latin
        ("12345 😀 !!!", "none"),
        ("Café très agréable", "latin"),
    ],
)
def test_dominant_script(text, script):
    assert dominant_script(text) == script


def test_routing():
    assert needs_multilingual("股票明天会涨吗") and not needs_multilingual("Will the stock rise tomorrow?")
