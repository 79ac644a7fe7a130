"""Reading and writing tables of texts: formats, chunking, errors that name the row, atomic output."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest

from megasense.files.tables import TableError, TableWriter, read_chunks, read_table, require_column


def _frame():
    return pd.DataFrame(
        {
            "text": ['good, "quoted" text', "第二行 中文", "line\nbreak", "😀 emoji"],
            "label": ["positive", "neutral", "negative", "positive"],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_round_trip_every_format(tmp_path, suffix):
    out = tmp_path / f"t{suffix}"
    with TableWriter(out) as writer:
        writer.write(_frame().iloc[:2])
        writer.write(_frame().iloc[2:])
    back = read_table(out)
    pd.testing.assert_frame_equal(back.astype(str), _frame().astype(str))
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"


def test_chunks_are_bounded_and_rows_numbered(tmp_path):
    path = tmp_path / "big.csv"
    pd.DataFrame({"text": [f"row {i}" for i in range(1000)]}).to_csv(path, index=False)
    chunks = list(read_chunks(path, chunk_rows=128))
    assert max(len(c.frame) for c in chunks) == 128
    assert [c.first_row for c in chunks[:3]] == [2, 130, 258]
    assert sum(len(c.frame) for c in chunks) == 1000


def test_invalid_utf8_names_the_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"text\nfine\nalso fine\nbroken \xff\xfe here\n")
    with pytest.raises(TableError, match=r"row 4, column 'text': invalid UTF-8"):
        list(read_chunks(path))


def test_gzip_jsonl_and_bad_json_line(tmp_path):
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write('{"text": "a"}\n{"text": "b"}\n')
    assert read_table(path)["text"].tolist() == ["a", "b"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(TableError, match="line 2 is not valid JSON"):
        list(read_chunks(bad))


def test_missing_column_lists_the_columns(tmp_path):
    frame = _frame()
    with pytest.raises(TableError, match=r"no column 'body'.*'text', 'label'"):
        require_column(frame, "body", tmp_path / "x.csv")


@pytest.mark.parametrize("make", ["missing", "dir", "empty", "suffix"])
def test_unreadable_inputs(tmp_path, make):
    path = {
        "missing": tmp_path / "none.csv",
        "dir": tmp_path,
        "empty": tmp_path / "e.csv",
        "suffix": tmp_path / "x.xlsx",
    }[make]
    if make in ("empty", "suffix"):
        path.write_bytes(b"" if make == "empty" else b"x")
    with pytest.raises(TableError, match=str(path.name) if make != "dir" else "is a directory"):
        list(read_chunks(path))


def test_writer_refuses_to_overwrite_input_and_cleans_up_on_error(tmp_path):
    src = tmp_path / "in.csv"
    _frame().to_csv(src, index=False)
    with pytest.raises(TableError, match="refusing to overwrite the input"):
        TableWriter(src, protect=(src,))
    out = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), TableWriter(out) as writer:
        writer.write(_frame())
        raise RuntimeError("interrupted")
    assert not out.exists() and not list(tmp_path.glob(".out.csv.tmp*"))
    assert read_table(src)["text"].tolist() == _frame()["text"].tolist()
