"""Redaction where texts are stored or shown: ``megasense predict --redact``, ``megasense analyze --redact`` (the
database, Parquet, the report and the models never see the private data; appending keeps redacting) and the
service's logs (``redact_logs``)."""

from __future__ import annotations

import logging

import duckdb
import pandas as pd
import pytest

from _analytics_fakes import FakeEmbedder, FakeScorer, english_rows, write_csv
from megasense.cli.main import main

PRIVATE = ("jane.doe@example.com", "13812345678", "4111 1111 1111 1111", "192.168.1.20", "Jane Doe")


def _rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rows = english_rows(n, seed=seed)
    for i, row in enumerate(rows[::5]):
        row["text"] += f" mail {PRIVATE[0]} call {PRIVATE[1]} card {PRIVATE[2]} ip {PRIVATE[3]} from {PRIVATE[4]}"
        row["text"] += " " * (i % 2)
    return rows


def _leaks(text: str, private: tuple[str, ...] = PRIVATE) -> list[str]:
    return [p for p in private if p in text]


def test_analyze_redacts_before_scoring_embedding_and_storing(tmp_path, monkeypatch, capsys):
    from megasense.analytics import analysis as pipeline

    embedder, scorer = FakeEmbedder(), FakeScorer()
    monkeypatch.setattr(pipeline, "_load_embedder", lambda name: embedder)
    monkeypatch.setattr(pipeline, "_load_scorer", lambda name: scorer)
    names = tmp_path / "names.txt"
    names.write_text("# people\nJane Doe\n", encoding="utf-8")
    source, out = write_csv(tmp_path / "in.csv", _rows(90)), tmp_path / "out"
    args = ["analyze", str(source), "--out", str(out), "--reducer", "pca", "--no-progress"]
    with pytest.raises(SystemExit) as done:
        main([*args, "--min-topic-size", "10", "--redact-names", str(names)])
    assert done.value.code in (0, None), capsys.readouterr().err
    assert _leaks(" ".join(embedder.seen + scorer.seen)) == []
    assert any("[EMAIL]" in t and "[NAME]" in t and "[CARD]" in t for t in scorer.seen)
    with duckdb.connect(str(out / "analysis.duckdb"), read_only=True) as con:
        texts = [r[0] for r in con.execute("SELECT text FROM documents").fetchall()]
    assert len(texts) == 90 and _leaks(" ".join(texts)) == []
    assert sum("[PHONE]" in t and "[IP]" in t for t in texts) == 18
    for path in [out / "report.html", *out.glob("parquet/*.parquet"), *out.glob("*.json")]:
        assert _leaks(path.read_bytes().decode("utf-8", "replace")) == [], path
    # appending without the flags still redacts: the analysis remembers
    more = write_csv(tmp_path / "more.csv", _rows(20, seed=3))
    with pytest.raises(SystemExit) as again:
        main(["analyze", str(more), "--out", str(out), "--append", "--no-progress"])
    assert again.value.code in (0, None), capsys.readouterr().err
    with duckdb.connect(str(out / "analysis.duckdb"), read_only=True) as con:
        texts = [r[0] for r in con.execute("SELECT text FROM documents").fetchall()]
    assert len(texts) == 110 and _leaks(" ".join(texts)) == []


def test_analyze_names_file_errors_name_the_file(tmp_path, capsys):
    source = write_csv(tmp_path / "in.csv", _rows(20))
    missing = tmp_path / "nobody.txt"
    with pytest.raises(SystemExit) as done:
        main(["analyze", str(source), "--out", str(tmp_path / "o"), "--redact-names", str(missing), "--no-progress"])
    assert (
        done.value.code == 2 and f"{missing}: the names file (--redact-names) does not exist" in capsys.readouterr().err
    )


class _FakeBatch:
    def __init__(self, texts):
        self.texts = texts

    def columns(self):
        return {
            "label": ["positive"] * len(self.texts),
            "score": [0.9] * len(self.texts),
            "chunks": [1] * len(self.texts),
        }


class _FakePredictor:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def predict(self, texts, progress=None, **_):
        self.seen.extend(texts)
        return _FakeBatch(texts)


def test_predict_redact_writes_and_scores_only_redacted_text(tmp_path, monkeypatch, capsys):
    from megasense.cli import sentiment as cli

    predictor = _FakePredictor()
    monkeypatch.setattr(cli, "_load_any", lambda *a, **k: (predictor, None))
    source = write_csv(tmp_path / "in.csv", _rows(10))
    output = tmp_path / "out.csv"
    with pytest.raises(SystemExit) as done:
        main(["predict", str(source), "--redact", "-o", str(output), "--no-progress"])
    assert done.value.code in (0, None)
    assert "8 items redacted (2 EMAIL, 2 PHONE, 2 CARD, 2 IP)" in " ".join(capsys.readouterr().err.split())
    written = pd.read_csv(output)
    unlisted = PRIVATE[:4]  # no --redact-names: the name stays
    assert len(written) == 10 and _leaks(" ".join(written["text"]), unlisted) == []
    assert _leaks(" ".join(predictor.seen), unlisted) == []
    assert written["text"].str.contains(r"\[EMAIL\] call \[PHONE\] card \[CARD\] ip \[IP\]").sum() == 2
    assert "Jane Doe" in " ".join(written["text"])  # names only when listed
    with pytest.raises(SystemExit) as printed:
        main(["predict", str(source), "--redact", "--no-progress"])
    assert printed.value.code in (0, None) and _leaks(capsys.readouterr().out, unlisted) == []


def test_service_logs_are_redacted_unless_turned_off(caplog):
    pytest.importorskip("fastapi")
    from megasense.service.app import create_app
    from megasense.service.settings import ServiceSettings

    log = logging.getLogger("megasense.service")
    for redact, expected in ((True, []), (False, ["jane.doe@example.com", "13812345678"])):
        create_app(ServiceSettings(redact_logs=redact, embedding_model=None), backends=lambda s: [])
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="megasense.service"):
            try:
                raise ValueError("cannot read 'write to jane.doe@example.com or 13812345678'")
            except ValueError:
                log.exception("unexpected error on %s", "/v1/sentiment?email=jane.doe@example.com")
        assert _leaks(caplog.text) == expected
        assert ("[EMAIL]" in caplog.text) is redact and "ValueError" in caplog.text
    create_app(ServiceSettings(embedding_model=None), backends=lambda s: [])  # on by default
    assert any(type(f).__name__ == "RedactingFilter" for f in log.filters)
