"""The dashboard's API over a real analysis.duckdb: filters narrow the documents and the panels agree.

The page itself is only checked for what it loads (no CDN); a real headless-browser test is still to do.
"""

from __future__ import annotations

import pytest

from _analytics_fakes import english_rows, small_analysis

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from megasense.analytics.dashboard import create_dashboard_app  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    rows = english_rows(90)
    rows[0]["text"] = "<img src=x onerror=alert(1)> battery charger power bad 100%_off"
    return TestClient(create_dashboard_app(small_analysis(root, rows)))


def test_meta_lists_topics_groups_and_span(client):
    meta = client.get("/api/meta").json()
    assert meta["documents"] == 90 and len([t for t in meta["topics"] if t["topic"] >= 0]) == 3
    assert meta["groups"] == ["A", "B"]
    assert meta["first"].startswith("2024-01-01") and meta["last"].startswith("2024-01-28")


def test_filters_narrow_documents_and_charts_agree(client):
    everything = client.get("/api/query").json()
    assert everything["total"] == 90 and len(everything["documents"]) == 50  # first page
    assert sum(r["n"] for r in everything["sentiment"]) == 90
    negative = client.get("/api/query", params={"sentiment": "negative", "group": "A", "limit": 500}).json()
    assert 0 < negative["total"] < 90
    assert all(d["sentiment"] == "negative" and d["grp"] == "A" for d in negative["documents"])
    assert [r["sentiment"] for r in negative["sentiment"]] == ["negative"]
    week = client.get("/api/query", params={"start": "2024-01-01", "end": "2024-01-07", "limit": 500}).json()
    assert {d["time_utc"][:10] for d in week["documents"]} <= {f"2024-01-0{i}" for i in range(1, 8)}
    assert sum(r["n"] for r in week["timeseries"]) == week["total"] == len(week["documents"])
    topic = client.get("/api/query", params={"topic": 1}).json()
    assert {d["topic"] for d in topic["documents"]} == {1} and len(topic["topics"]) == 1


def test_text_search_is_literal_and_safe(client):
    found = client.get("/api/query", params={"q": "100%_OFF"}).json()  # % and _ are not wildcards
    assert found["total"] == 1 and found["documents"][0]["text"].startswith("<img")
    assert client.get("/api/query", params={"q": "'; DROP TABLE documents; --"}).json()["total"] == 0
    assert client.get("/api/meta").json()["documents"] == 90


def test_bad_filters_are_422(client):
    assert client.get("/api/query", params={"start": "yesterday"}).status_code == 422
    assert client.get("/api/query", params={"sentiment": "angry"}).status_code == 422
    assert client.get("/api/query", params={"limit": 10_000}).status_code == 422


def test_page_loads_plotly_from_the_service_not_a_cdn(client):
    page = client.get("/").text
    assert '<script src="/plotly.min.js"></script>' in page and "http" not in page.split("<body>")[0]
    assert "textContent" in page and "innerHTML" not in page
    js = client.get("/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000


def test_not_an_analysis(tmp_path):
    with pytest.raises(ValueError, match="holds no megasense analysis"):
        create_dashboard_app(tmp_path)
