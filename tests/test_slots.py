"""Slot filling: character tags <-> sub-tokens, BIO/BIOES decoding with repair, a tiny token classifier that
learns ten sentences, row-exact errors for tags that do not fit their text, and the saved model loading back."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from unittest.mock import ANY

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers, processors

from _sentiment_fixtures import one_thread  # noqa: F401 (an autouse fixture)
from megasense.config import HeadConfig
from megasense.config.presets import bert_tiny
from megasense.errors import MegasenseInputError, TableError
from megasense.formats.adapter import load_adapter
from megasense.formats.release import LoadedModel, load_release
from megasense.models import BertForTokenClassification, BertModel, build_model
from megasense.predictors.slots import SlotExamples, SlotFiller, evaluate_slots, read_slot_examples, tags_from_values
from megasense.predictors.tagging import (
    Span,
    Transitions,
    char_spans,
    convert_tags,
    parse_markup,
    spans_to_tags,
    tag_set,
    tag_tokens,
    tags_to_spans,
    token_labels,
    unreachable_slots,
)
from megasense.tokenization import SpecialTokens, Tokenizer, wordpiece_backend
from megasense.training.slots import finetune_slots, slot_config, train_slots

MARKUP = [
    "播放[周杰伦](singer_name)的歌",
    "我要听[稻香](song_name)",
    "我要听[tfboys](singer_name)唱的歌",
    "播放[王菲](singer_name)的[红豆](song_name)",
    "来一首[晴天](song_name)",
    "[周杰伦](singer_name)的[晴天](song_name)",
    "我想听[王菲](singer_name)",
    "播放[tfboys](singer_name)的[稻香](song_name)",
    "set an alarm for [seven](time)",
    "我要听歌",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def rows() -> tuple[list[str], list[list[str]]]:
    parsed = [parse_markup(m) for m in MARKUP]
    return [t for t, _ in parsed], [tags for _, tags in parsed]


def wordpiece(tmp: Path) -> Tokenizer:
    texts, _ = rows()
    chars = sorted({c for t in texts for c in t if not c.isascii()})
    vocab = tmp / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL, *chars, "tf", "##boys", "set", "an", "alarm", "for", "seven"]) + "\n")
    special = SpecialTokens(pad="[PAD]", unk="[UNK]", cls="[CLS]", sep="[SEP]", mask="[MASK]")
    return Tokenizer(wordpiece_backend(vocab), kind="wordpiece", special=special, model_max_length=64)


def sentencepiece() -> Tokenizer:
    """A unigram (SentencePiece-style) tokenizer that merges 播放 and 的歌, as XLM-R's vocabulary does."""
    pieces = ["<pad>", "<unk>", "<s>", "</s>", "▁", "播放", "的歌", "播", "放", "周", "杰", "伦", "的", "歌"]
    scores = [0.0, 0.0, 0.0, 0.0, -2.0, -1.0, -1.0, -8.0, -8.0, -3.0, -3.0, -3.0, -8.0, -8.0]
    backend = HFTokenizer(models.Unigram(list(zip(pieces, scores)), unk_id=1))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
    )
    special = SpecialTokens(pad="<pad>", unk="<unk>", bos="<s>", eos="</s>", cls="<s>", sep="</s>")
    return Tokenizer(backend, kind="unigram", special=special, model_max_length=64)


def tiny_base(tmp: Path) -> LoadedModel:
    torch.manual_seed(0)
    tokenizer = wordpiece(tmp)
    config = dataclasses.replace(bert_tiny(), vocab_size=tokenizer.vocab_size)
    model = BertModel(config)
    model.init_weights()
    head = HeadConfig(task="encoder")
    return LoadedModel(
        model=model.eval(), config=config, head=head, tokenizer=tokenizer, path=tmp / "base", metadata={}
    )


# ------------------------------------------------------------------------------------------------
# Tags and spans
# ------------------------------------------------------------------------------------------------
def test_markup_gives_one_bioes_tag_per_character():
    text, tags = parse_markup("set an alarm for [seven](time)")
    assert text == "set an alarm for seven" and len(tags) == len(text)
    assert tags[17:] == ["B-time", "I-time", "I-time", "I-time", "E-time"] and set(tags[:17]) == {"O"}
    singer = ["B-singer_name", "I-singer_name", "E-singer_name"]
    assert parse_markup("播放[周杰伦](singer_name)的歌")[1] == ["O", "O", *singer, "O", "O"]
    with pytest.raises(ValueError, match="not closed"):
        parse_markup("play [seven")


def test_spans_from_bio_and_bioes_and_repair():
    assert tags_to_spans(["O", "B-a", "I-a", "E-a", "S-b", "O"]) == [Span("a", 1, 4), Span("b", 4, 5)]
    assert tags_to_spans(["B-a", "I-a", "O", "B-b", "B-b"]) == [Span("a", 0, 2), Span("b", 3, 4), Span("b", 4, 5)]
    # Repairs: I- without B- starts a slot, a change of name cuts one, a lone E- is a slot of one.
    assert tags_to_spans(["I-a", "I-a", "O"]) == [Span("a", 0, 2)]
    assert tags_to_spans(["B-a", "I-b", "E-b"]) == [Span("a", 0, 1), Span("b", 1, 3)]
    assert tags_to_spans(["O", "E-a", "S-a", "I-a"]) == [Span("a", 1, 2), Span("a", 2, 3), Span("a", 3, 4)]
    assert tags_to_spans(["B-a", "I-a"]) == [Span("a", 0, 2)]  # BIOES without its E-: still the slot
    assert convert_tags(["B-a", "I-a", "O", "B-b"], "bioes") == ["B-a", "E-a", "O", "S-b"]
    assert convert_tags(["S-b", "B-a", "E-a"], "bio") == ["B-b", "B-a", "I-a"]
    assert spans_to_tags([Span("a", 1, 2)], 3, "bio") == ["O", "B-a", "O"]
    with pytest.raises(ValueError, match="X-a"):
        tags_to_spans(["X-a"])


@pytest.mark.parametrize("scheme", ["bio", "bioes"])
def test_viterbi_keeps_to_valid_transitions(scheme):
    tags = tag_set(["a", "b"], scheme)
    index = {t: i for i, t in enumerate(tags)}
    # Per-position argmax would be I-a, I-b, O: invalid in both schemes.
    wanted = ["I-a", "I-b", "O"]
    scores = np.full((3, len(tags)), -5.0, dtype=np.float32)
    for t, tag in enumerate(wanted):
        scores[t, index[tag]] = -0.1
    scores[0, index["B-a"]] = -0.5
    scores[1, index["I-a"] if scheme == "bio" else index["E-a"]] = -0.6
    path = [tags[k] for k in Transitions(tags).viterbi(scores)]
    assert path == (["B-a", "I-a", "O"] if scheme == "bio" else ["B-a", "E-a", "O"])


# ------------------------------------------------------------------------------------------------
# Characters <-> sub-tokens
# ------------------------------------------------------------------------------------------------
def test_alignment_of_chinese_and_latin_characters(tmp_path):
    tokenizer = wordpiece(tmp_path)
    text, tags = parse_markup("我要听[tfboys](singer_name)唱的歌")
    (tokens,) = tag_tokens(tokenizer, [text])
    pieces = [tokenizer.id_to_token(i) for i in tokens.ids]
    assert pieces == ["[CLS]", *"我要听", "tf", "##boys", *"唱的歌", "[SEP]"]
    assert tokens.chars[0] is None and tokens.chars[-1] is None
    assert tokens.chars[4:6] == [(3, 5), (5, 9)]
    tagset = tag_set(["singer_name"], "bioes")
    index = {t: i for i, t in enumerate(tagset)}
    labels = token_labels(tokens, tags, index, "bioes")
    named = [tagset[k] if k >= 0 else None for k in labels]
    assert named == [None, "O", "O", "O", "B-singer_name", "E-singer_name", "O", "O", "O", None]
    token_tags = [tagset[labels[k]] for k in tokens.tagged]
    assert char_spans(text, tokens, token_tags) == [Span("singer_name", 3, 9)]
    # An English text: tokens anchor at their first letter, not the space before it.
    text, tags = parse_markup("set an alarm for [seven](time)")
    (tokens,) = tag_tokens(tokenizer, [text], prefix="query: ")
    assert [c for c in tokens.chars if c is not None] == [(0, 3), (4, 6), (7, 12), (13, 16), (17, 22)]


def test_sentencepiece_merges_are_split_per_character():
    tokenizer = sentencepiece()
    text, tags = "播放周杰伦的歌", ["O", "O", "B-singer_name", "I-singer_name", "E-singer_name", "O", "O"]
    (merged,) = tag_tokens(tokenizer, [text], split_cjk=False)
    assert [tokenizer.id_to_token(i) for i in merged.ids if i > 3] == ["▁", "播放", "周", "杰", "伦", "的歌"]
    assert next(c for c in merged.chars if c is not None) == (0, 2)  # "▁" gives its anchor to "播放"
    (split,) = tag_tokens(tokenizer, [text])
    assert [tokenizer.id_to_token(i) for i in split.ids] == [
        "<s>",
        "▁",
        "播",
        "放",
        "周",
        "杰",
        "伦",
        "的",
        "歌",
        "</s>",
    ]
    assert [c for c in split.chars if c is not None] == [(i, i + 1) for i in range(7)]
    # A slot that starts inside a merged token cannot be learned without the split.
    tags = ["O", "S-x", "O", "O", "O", "O", "O"]
    assert unreachable_slots(merged, tags) == 1 and unreachable_slots(split, tags) == 0


def test_values_from_json_become_character_tags():
    tags, missing = tags_from_values("打开酷狗音乐播放音乐", {"name": "酷狗音乐", "song": "晴天"})
    assert tags_to_spans(tags) == [Span("name", 2, 6)] and missing == ["song=晴天"]


# ------------------------------------------------------------------------------------------------
# The model, training, errors, saving
# ------------------------------------------------------------------------------------------------
def test_token_classifier_loss_ignores_unscored_positions():
    config = bert_tiny()
    model = build_model(config, HeadConfig(task="token_classification", labels=("O", "B-a", "I-a")))
    assert isinstance(model, BertForTokenClassification)
    model.init_weights()
    ids = torch.randint(5, 90, (2, 6))
    labels = torch.tensor([[-100, 0, 1, 2, -100, -100], [-100, 0, 0, -100, -100, -100]])
    out = model.eval()(ids, attention_mask=torch.ones_like(ids), labels=labels)
    assert out.logits.shape == (2, 6, 3)
    picked = labels != -100
    expected = torch.nn.functional.cross_entropy(out.logits[picked], labels[picked])
    torch.testing.assert_close(out.loss, expected)


def test_tiny_model_learns_ten_sentences(tmp_path):
    base = tiny_base(tmp_path)
    texts, tags = rows()
    examples = SlotExamples.concat([SlotExamples.from_markup(MARKUP[:5]), SlotExamples.from_markup(MARKUP[5:])])
    assert examples.texts == texts and examples.tags == tags and examples.scheme == "bioes"
    config = slot_config(epochs=60, batch_size=10, lr=3e-3, warmup_ratio=0.0, bf16=False, patience=None, monitor=None)
    result = finetune_slots(base, examples, None, config)
    filler = SlotFiller(result.loaded, precision="fp32")
    assert filler.scheme == "bioes" and filler.tags == tag_set(["singer_name", "song_name", "time"], "bioes")
    report = evaluate_slots(filler, texts, tags)
    assert report["slot_f1"] == 1.0 and report["exact_match"] == 1.0
    assert set(report["per_slot"]) == {"singer_name", "song_name", "time"}
    answer = filler.predict("播放王菲的红豆")[0]
    assert [(s.slot, s.value, s.start, s.end) for s in answer.slots] == [
        ("singer_name", "王菲", 2, 4),
        ("song_name", "红豆", 5, 7),
    ]
    assert all(0.5 < s.score <= 1.0 for s in answer.slots)
    assert answer.to_dict()["tags"] == ["O", "O", "B-singer_name", "E-singer_name", "O", "B-song_name", "E-song_name"]
    assert answer.values() == {"singer_name": ["王菲"], "song_name": ["红豆"]}
    assert filler.predict([]) == []
    (english,) = filler.predict(["set an alarm for seven"])
    assert [(s.slot, s.value, s.start, s.end) for s in english.slots] == [("time", "seven", 17, 22)]


def write_table(path: Path, texts: list[str], tags: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "intent", "slots"])
        writer.writerows([t, "PlayMusic", " ".join(g)] for t, g in zip(texts, tags))
    return path


def test_tag_count_that_does_not_fit_its_text_names_file_and_row(tmp_path):
    texts, tags = rows()
    tags = [list(g) for g in tags]
    tags[2] = tags[2][:-1]  # the third data row, row 4 of the file (the header is row 1)
    path = write_table(tmp_path / "bad.csv", texts, tags)
    with pytest.raises(TableError, match=r"bad\.csv: row 4: 11 tags in column 'slots' for the 12 characters"):
        read_slot_examples(path)
    with pytest.raises(TableError, match="row 4"):
        train_slots(path, None, base=tiny_base(tmp_path), output=tmp_path / "never")
    assert not (tmp_path / "never").exists()
    with pytest.raises(MegasenseInputError, match="text 2"):
        evaluate_slots(None, texts, tags)


def test_release_and_adapter_load_back_as_slot_fillers(tmp_path):
    base = tiny_base(tmp_path)
    texts, tags = rows()
    train = write_table(tmp_path / "train.csv", texts, tags)
    output = tmp_path / "slots-model"
    options = {"epochs": 2, "batch_size": 5, "bf16": False, "lora": True, "lora_rank": 4}
    result = train_slots(train, train, base=base, output=output, **options)
    assert result.report is not None and (output / "README.md").read_text().count("singer_name") >= 2
    release = load_release(output)
    assert release.head.task == "token_classification" and release.head.labels == result.loaded.head.labels
    adapter = load_adapter(output / "adapter", base)
    assert adapter.head == release.head
    ids = torch.tensor([release.tokenizer.encode(texts[3])])
    expected = result.loaded.model(ids).logits
    torch.testing.assert_close(release.model(ids).logits, expected)
    torch.testing.assert_close(adapter.model(ids).logits, expected, atol=5e-3, rtol=0)  # fp16 adapter file
    assert SlotFiller(release, precision="fp32").predict(texts) == SlotFiller(result.loaded, precision="fp32").predict(
        texts
    )


def test_cli_trains_predicts_and_evaluates_a_slot_model(tmp_path):
    from typer.testing import CliRunner

    from megasense.cli.main import _register, app
    from megasense.formats.release import save_release
    from megasense.models import weights_for_saving

    if not any(c.name == "train" for c in app.registered_commands):
        _register()
    base = tiny_base(tmp_path)
    base_dir = save_release(
        tmp_path / "base-release",
        config=base.config,
        head=base.head,
        state_dict=weights_for_saving(base.model),
        tokenizer=base.tokenizer,
    )
    texts, tags = rows()
    data = write_table(tmp_path / "train.csv", texts, tags)
    out = tmp_path / "cli-slots"
    args = ["train", str(data), "--val", str(data), "--task", "slots", "--base", str(base_dir), "--output", str(out)]
    args += ["--epochs", "60", "--batch-size", "10", "--lr", "3e-3", "--no-bf16", "--no-lora", "--patience", "100"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "slot F1" in result.output
    pred = tmp_path / "pred.csv"
    result = CliRunner().invoke(app, ["predict", str(data), "--model", str(out), "-o", str(pred), "--no-progress"])
    assert result.exit_code == 0, result.output
    with open(pred, encoding="utf-8") as handle:
        first = next(csv.DictReader(handle))
    assert json.loads(first["slots"]) == [
        {"slot": "singer_name", "value": "周杰伦", "start": 2, "end": 5, "score": ANY}
    ]
    report = tmp_path / "report.json"
    args = ["evaluate", str(data), "--model", str(out), "--report", str(report), "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text(encoding="utf-8"))["slot_f1"] > 0.9
    result = CliRunner().invoke(app, ["train", str(data), "--task", "tags", "--base", str(base_dir), "-o", str(out)])
    assert result.exit_code == 2 and "choose classify or slots" in result.output
