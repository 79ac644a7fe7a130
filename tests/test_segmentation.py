"""Chinese word segmentation: words, tags, user dictionaries, the ``megasense segment`` command, and the
chosen engine's F1 on UD Chinese GSDSimp against jieba's. Engines load once per process (a few seconds)."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from _shared import shared_path
from megasense.cli.main import _register, app
from megasense.errors import MegasenseInputError
from megasense.segmentation import Segmentation, Segmenter, read_user_dict, resolve_engine, segment, to_upos
from megasense.segmentation.engines import load_engine
from megasense.segmentation.ud import read_conllu, score, spans

# The F1 gain over jieba's default cut that benchmarks/segmentation.py measured on the UD dev file.
MEASURED_GAIN = 0.045
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter()


def _cli(*args: str):
    if not any(c.name == "segment" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, list(args))


def test_the_default_engine_is_pkuseg_and_cuts_sentences_into_words(segmenter):
    assert segmenter.engine_name == "pkuseg" == resolve_engine("auto")
    assert segmenter.cut("我爱北京天安门") == ["我", "爱", "北京", "天安门"]
    words = segmenter.cut("配送速度很快，味道也不错。")
    assert {"配送", "速度", "味道", "不错", "，", "。"} <= set(words)
    assert segmenter.cut("") == [] and segmenter.cut("  \n ") == []


@pytest.mark.parametrize(
    "text",
    [
        "The iPhone 15 Pro costs 999 dollars",
        "我买了iPhone15，COVID-19期间涨了3.5%，共16,250元",
        "联系 a.b@example.com 或看 https://example.com/p?id=1 吧",
    ],
)
def test_nothing_is_lost_and_english_words_stay_whole(segmenter, text):
    words = segmenter.cut(text)
    assert "".join(words) == "".join(text.split())  # nothing lost, nothing changed
    assert all(w and not any(c.isspace() for c in w) for w in words)
    for token in text.split():
        if token.isascii():
            assert token in words, (token, words)


def test_latin_words_are_never_split(segmenter):
    assert segmenter.cut("The battery life is great") == ["The", "battery", "life", "is", "great"]
    assert segmenter.cut("我买了iPhone15，COVID-19期间涨了3.5%") == [
        "我",
        "买",
        "了",
        "iPhone15",
        "，",
        "COVID-19",
        "期间",
        "涨",
        "了",
        "3.5%",
    ]
    assert "https://example.com/p?id=1" in segmenter.cut("看 https://example.com/p?id=1 吧")


def test_a_user_dictionary_keeps_a_product_name_whole(tmp_path):
    text = "华为Mate60的续航比小米14好"
    assert "小米14" not in Segmenter().cut(text)
    dictionary = tmp_path / "products.txt"
    dictionary.write_text("# products\n小米14 10 nz\n华为Mate60 nz\n\n", encoding="utf-8")
    words = Segmenter(user_dict=dictionary).cut(text)
    assert "小米14" in words and "华为Mate60" in words
    tagged = Segmenter(user_dict=dictionary, engine="jieba").segment([text], pos=True)[0]
    assert dict(zip(tagged.words, tagged.tags))["小米14"] == "nz"
    assert "小米14" in Segmenter(user_dict=["小米14"]).cut(text)  # words given in Python


def test_pos_tags_native_and_upos(segmenter):
    result = segmenter.segment(["我买了小米14，价格是3999元。"], pos=True)[0]
    assert isinstance(result, Segmentation) and len(result.tags) == len(result.words)
    assert result.format().split() == [f"{w}/{t}" for w, t in zip(result.words, result.tags)]
    tags = dict(zip(result.words, result.tags))
    assert tags["我"] == "r" and tags["，"] == "w" and tags["3999"] == "m"
    upos = Segmenter(tagset="upos").segment(["我买了小米14，价格是3999元。"], pos=True)[0]
    assert {"我": "PRON", "是": "AUX", "3999": "NUM", "，": "PUNCT"}.items() <= dict(zip(upos.words, upos.tags)).items()
    assert segmenter.segment(["北京"])[0].tags is None and segmenter.segment(["北京"])[0].format() == "北京"
    assert to_upos("这", "r") == "DET" and to_upos("iPhone", "eng") == "X" and to_upos("¥", "w") == "SYM"


def test_segment_function_and_jieba_engine():
    [jieba_words] = segment(["我爱北京天安门"], engine="jieba")
    assert jieba_words.words == ("我", "爱", "北京", "天安门")
    with pytest.raises(MegasenseInputError, match="unknown segmentation engine 'thulac'"):
        Segmenter("thulac")
    with pytest.raises(MegasenseInputError, match="unknown tagset"):
        Segmenter(tagset="ctb")
    with pytest.raises(TypeError, match="not one string"):
        segment("我爱北京")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("小米 14 Pro nz extra", "has 5 fields"),
        ("小米14 0 nz", "frequency 0"),
        ("小米14 5 名词", "tag letters"),
        ("小米14 nz 5", "is not 'word [frequency] [tag]'"),
    ],
)
def test_a_bad_user_dictionary_names_the_file_and_line(tmp_path, line, fragment):
    path = tmp_path / "dict.txt"
    path.write_text(f"华为 nz\n{line}\n", encoding="utf-8")
    with pytest.raises(MegasenseInputError, match=re.escape(fragment)) as error:
        read_user_dict(path)
    assert f"{path}, line 2" in str(error.value)


def test_cli_on_a_text_and_a_txt_file(tmp_path):
    result = _cli("segment", "我买了小米14 Pro", "--pos", "--engine", "jieba")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().split()[:3] == ["我/r", "买/v", "了/ul"] and "Pro/eng" in result.stdout

    source = tmp_path / "reviews.txt"
    source.write_text("配送速度很快\n\nThe room was clean 房间干净\n", encoding="utf-8")
    dictionary = tmp_path / "dict.txt"
    dictionary.write_text("配送速度\n", encoding="utf-8")
    out = tmp_path / "words.txt"
    result = _cli("segment", str(source), "--dict", str(dictionary), "-o", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").split("\n")
    assert lines == ["配送速度 很 快", "", "The room was clean 房间 干净", ""]  # one line per input line

    printed = _cli("segment", str(source), "--pos", "--tagset", "upos")
    assert printed.exit_code == 0 and printed.stdout.splitlines()[2].startswith("The/X room/")


def test_cli_on_a_csv_adds_words_and_pos_columns(tmp_path):
    source = tmp_path / "posts.csv"
    pd.DataFrame({"id": [1, 2], "body": ["我买了小米14", "味道也不错"]}).to_csv(source, index=False)
    out = tmp_path / "posts.segmented.csv"
    result = _cli("segment", str(source), "--text-col", "body", "--pos", "-o", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["id", "body", "words", "pos"]
    assert frame["words"][1] == "味道 也 不错" and len(frame["pos"][1].split()) == 3
    missing = _cli("segment", str(source), "-o", str(tmp_path / "x.csv"))
    assert missing.exit_code == 2 and "no column 'text'" in missing.stderr and not (tmp_path / "x.csv").exists()


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "dict.txt"
    bad.write_text("好词\n坏 词 很 多 了\n", encoding="utf-8")
    result = _cli("segment", "你好", "--dict", str(bad))
    assert result.exit_code == 2 and result.stderr.strip() == (
        f"error: {bad}, line 2: '坏 词 很 多 了' has 5 fields; expected 'word [frequency] [tag]' "
        "(a word cannot contain spaces)"
    )
    missing = _cli("segment", str(tmp_path / "posts.csv"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_chosen_engine_beats_jieba_on_ud_chinese_gsd(segmenter):
    gold = read_conllu(shared_path("ud-chinese-gsdsimp/dev.conllu"))
    assert len(gold) == 500 and spans(["北京", "大学"]) == [(0, 2), (2, 4)]
    jieba = load_engine("jieba")  # jieba.Tokenizer().lcut(text, HMM=True): jieba's default cut
    baseline = score(gold, [jieba.cut(s.text) for s in gold])
    ours = score(gold, [segmenter.cut(s.text) for s in gold])
    assert 0.78 < baseline.f1 < 0.81  # jieba's default cut: 0.793
    assert ours.f1 - baseline.f1 >= MEASURED_GAIN - TOLERANCE, (ours.f1, baseline.f1)
