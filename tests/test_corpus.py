"""Corpus tokenization into Megatron's indexed-dataset format, and tokenizer training."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import unicodedata

import numpy as np
import pandas as pd
import pytest

from _shared import shared_texts
from megasense.data.corpus import expand_inputs, tokenize_corpus, train_tokenizer
from megasense.data.indexed import IndexedDataset, IndexedDatasetError, IndexedDatasetWriter
from megasense.files.tables import TableError


@pytest.fixture(scope="module")
def en() -> list[str]:
    return shared_texts("tweets-sentiment-en/val.csv", 300)


@pytest.fixture(scope="module")
def zh() -> list[str]:
    return shared_texts("chnsenticorp/dev.csv", 200)


def test_index_layout_is_megatrons(tmp_path):
    with IndexedDatasetWriter(tmp_path / "ds", dtype=np.uint16) as w:
        w.add_document([[5, 6, 7]])
        w.add_document([[1], [2, 3]])  # one document of two sentences
        w.add_document([[]])  # empty: dropped
    raw = (tmp_path / "ds.idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    version, code, seqs, docs = struct.unpack_from("<QBQQ", raw, 9)
    assert (version, code, seqs, docs) == (1, 8, 3, 3)
    body = raw[9 + 25 :]
    assert np.frombuffer(body[:12], np.int32).tolist() == [3, 1, 2]
    assert np.frombuffer(body[12:36], np.int64).tolist() == [0, 6, 8]
    assert np.frombuffer(body[36:], np.int64).tolist() == [0, 1, 3]
    ds = IndexedDataset(tmp_path / "ds")
    assert len(ds) == 3 and ds.num_documents == 2
    assert [s.tolist() for s in ds.document(1)] == [[1], [2, 3]]
    assert (tmp_path / "ds.bin").read_bytes() == np.array([5, 6, 7, 1, 2, 3], np.uint16).tobytes()


def test_tokenize_mixed_formats_and_globs_round_trip(tmp_path, en, zh):
    from megasense.tokenization import Tokenizer
    from megasense.zoo.embedded import find_embedded, package_path

    tok = Tokenizer.load(package_path(find_embedded("all-minilm-l6-v2")))
    (tmp_path / "a.txt").write_text("\n".join(en[:100]) + "\n\n", encoding="utf-8")
    pd.DataFrame({"body": zh[:50]}).to_parquet(tmp_path / "b.parquet")
    with open(tmp_path / "c.jsonl", "w", encoding="utf-8") as f:
        for text in zh[50:80]:
            f.write(json.dumps({"body": text}, ensure_ascii=False) + "\n")
    paths = expand_inputs([str(tmp_path / "a.txt")])
    result = tokenize_corpus(paths, tok, tmp_path / "out" / "en")
    ds = IndexedDataset(tmp_path / "out" / "en")
    assert result.documents == ds.num_documents == 100 and ds.dtype == np.uint16
    sep = tok.token_to_id("[SEP]")
    for i in (0, 37, 99):
        assert ds[i].tolist() == [*tok.encode(en[i], add_special_tokens=False), sep]
    zh_paths = expand_inputs([str(tmp_path / "*.parquet"), str(tmp_path / "c.jsonl")])
    tokenize_corpus(zh_paths, tok, tmp_path / "zh", text_col="body", append_eod=False)
    ds = IndexedDataset(tmp_path / "zh")
    assert ds.num_documents == 80
    assert ds[60].tolist() == tok.encode(zh[60], add_special_tokens=False)
    with pytest.raises(IndexedDatasetError, match="already exists"):
        tokenize_corpus(zh_paths, tok, tmp_path / "zh", text_col="body")


def test_bad_corpora_are_clear_errors(tmp_path):
    from megasense.tokenization import Tokenizer
    from megasense.zoo.embedded import find_embedded, package_path

    tok = Tokenizer.load(package_path(find_embedded("all-minilm-l6-v2")))
    with pytest.raises(TableError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.jsonl")])
    with pytest.raises(TableError, match="no such file"):
        tokenize_corpus(expand_inputs([str(tmp_path / "missing.txt")]), tok, tmp_path / "x")
    (tmp_path / "e.csv").write_text("title\nhello\n", encoding="utf-8")
    with pytest.raises(TableError, match=r"no column 'text'.*'title'"):
        tokenize_corpus([tmp_path / "e.csv"], tok, tmp_path / "x")
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob(".x.*"))
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(TableError, match="no non-empty documents"):
        tokenize_corpus([tmp_path / "blank.txt"], tok, tmp_path / "y")
    assert not list(tmp_path.glob("y.*"))
    with IndexedDatasetWriter(tmp_path / "t") as w:
        w.add_document([[1, 2, 3]])
    (tmp_path / "t.bin").write_bytes(b"\x00\x00")
    with pytest.raises(IndexedDatasetError, match="truncated"):
        IndexedDataset(tmp_path / "t")
    (tmp_path / "t.idx").write_bytes(b"garbage-garbage-garbage-garbage-garbage")
    with pytest.raises(IndexedDatasetError, match="bad magic"):
        IndexedDataset(tmp_path / "t")


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "unigram"])
def test_trained_tokenizers_handle_english_and_chinese(kind, tmp_path, en, zh):
    tok = train_tokenizer(iter(en + zh), kind=kind, vocab_size=800 if kind != "unigram" else 2500)
    assert tok.vocab_size >= 300
    if kind == "bpe":  # WordPiece keeps every character of the alphabet, past the requested size
        assert tok.vocab_size <= 800
    tok.save(tmp_path)
    again = type(tok).load(tmp_path)
    for text in (en[3], zh[3]):
        ids = again.encode(text)
        assert ids == tok.encode(text) and len(ids) > 2
        decoded = again.decode(ids)
        if kind == "bpe":
            assert decoded == text  # byte-level BPE is lossless
        else:  # lossless up to spaces (and NFKC for unigram, which normalises full-width digits)
            form = "NFKC" if kind == "unigram" else "NFC"
            assert unicodedata.normalize(form, decoded).replace(" ", "") == unicodedata.normalize(form, text).replace(
                " ", ""
            )


def test_too_small_a_vocabulary_is_a_clear_error(zh):
    with pytest.raises(ValueError, match="larger --vocab-size"):
        train_tokenizer(iter(zh[:50]), kind="unigram", vocab_size=100)


def test_cli_tokenize_and_train_tokenizer(tmp_path, en):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(en[:200]), encoding="utf-8")
    run = [sys.executable, "-m", "megasense.cli.main"]
    done = subprocess.run(
        [*run, "train-tokenizer", str(corpus), "-o", str(tmp_path / "tok"), "--vocab-size", "500"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [
            *run,
            "tokenize",
            str(corpus),
            "-o",
            str(tmp_path / "ds"),
            "--tokenizer",
            str(tmp_path / "tok"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "200 documents" in done.stdout
    assert IndexedDataset(tmp_path / "ds").num_documents == 200
    bad = subprocess.run(
        [*run, "tokenize", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "z")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "nope.txt: no such file" in bad.stderr


def test_split_sentences_gives_one_sequence_per_sentence(tmp_path):
    from megasense.tokenization import Tokenizer
    from megasense.zoo.embedded import find_embedded, package_path

    tok = Tokenizer.load(package_path(find_embedded("all-minilm-l6-v2")))
    (tmp_path / "d.txt").write_text("Great phone. Battery died! Why?\n房间很干净。服务很好！\n", encoding="utf-8")
    tokenize_corpus([tmp_path / "d.txt"], tok, tmp_path / "s", split_sentences=True)
    ds = IndexedDataset(tmp_path / "s")
    assert ds.num_documents == 2 and len(ds) == 5
    first = ds.document(0)
    assert first[0].tolist() == tok.encode("Great phone.", add_special_tokens=False)
    assert first[-1].tolist()[-1] == tok.token_to_id("[SEP]")  # the end-of-document token closes the last one
