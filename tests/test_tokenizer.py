"""The tokenizer adapter against transformers' tokenizers, and its files on disk."""

from __future__ import annotations

import json

import pytest
import tokenizers
from tokenizers import models, pre_tokenizers, trainers

from megasense.tokenization import SpecialTokens, Tokenizer, TokenizerError, wordpiece_backend
from megasense.zoo.embedded import find_embedded, package_path

transformers = pytest.importorskip("transformers")

TEXTS = [
    "Hello World! I can't believe it's $AAPL 🚀🚀",
    "这家酒店的服务很好，房间干净，下次还来。",
    "Café naïve résumé — déjà vu",
    "  lots   of\tspace\nand lines  ",
    "mixed 中文 and English 123.45%",
    "",
]


@pytest.fixture(scope="module")
def minilm_dir():
    return package_path(find_embedded("all-minilm-l6-v2"))


def test_wordpiece_matches_transformers_including_chinese(minilm_dir):
    ours = Tokenizer.load(minilm_dir)
    ref = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    assert ours.kind == "wordpiece" and ours.special.cls == "[CLS]" and ours.pad_id == 0
    for text in TEXTS:
        assert ours.encode(text) == ref(text)["input_ids"], text
    # From vocab.txt alone (the Megatron-BERT case) the ids are the same.
    from_vocab = Tokenizer(wordpiece_backend(minilm_dir / "vocab.txt"), kind="wordpiece", special=ours.special)
    assert [from_vocab.encode(t) for t in TEXTS] == [ours.encode(t) for t in TEXTS]


def test_batch_padding_and_truncation_keep_the_closing_token(minilm_dir):
    ours = Tokenizer.load(minilm_dir)
    ref = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    batch = ours(TEXTS, max_length=8)
    expected = ref(TEXTS, max_length=8, truncation=True, padding=True)
    assert batch.input_ids.tolist() == expected["input_ids"]
    assert batch.attention_mask.tolist() == expected["attention_mask"]
    assert batch.truncated[:2] == [True, True] and batch.truncated[-1] is False
    assert batch.lengths == [sum(row) for row in expected["attention_mask"]]
    left = ours(TEXTS[:2], padding_side="left")
    assert left.attention_mask[:, -1].tolist() == [1, 1]


def test_save_load_round_trip_and_transformers_reads_it(minilm_dir, tmp_path):
    ours = Tokenizer.load(minilm_dir)
    ours.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.special == ours.special and again.kind == "wordpiece"
    assert [again.encode(t) for t in TEXTS] == [ours.encode(t) for t in TEXTS]
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert ref(TEXTS[1])["input_ids"] == ours.encode(TEXTS[1])
    assert ours.decode(ours.encode("hello world")) == "hello world"


def _tiny_bpe() -> tokenizers.Tokenizer:
    backend = tokenizers.Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders

    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(TEXTS * 20, trainer)
    return backend


TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_byte_level_bpe_round_trips_unicode_and_renders_chat(tmp_path):
    tok = Tokenizer(
        _tiny_bpe(), kind="bpe", special=SpecialTokens(eos="<|endoftext|>", pad="<|endoftext|>"), chat_template=TEMPLATE
    )
    for text in TEXTS:
        assert tok.decode(tok.encode(text)) == text
    rendered = tok.apply_chat_template([{"role": "user", "content": "你好"}])
    assert rendered == "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    tok.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.chat_template == TEMPLATE and again.eos_id == tok.eos_id
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert ref.apply_chat_template(
        [{"role": "user", "content": "你好"}], tokenize=False, add_generation_prompt=True
    ) == (rendered)


def test_bad_tokenizer_files_name_the_file(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer files"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"tokenizer\.json"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"vocab\.txt.*\[UNK\]"):
        Tokenizer.load(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json: expected a JSON object"):
        Tokenizer.load(tmp_path)
    with pytest.raises(TokenizerError, match="not in the vocabulary"):
        Tokenizer(_tiny_bpe(), kind="bpe", special=SpecialTokens(eos="<nope>"))
    with pytest.raises(TokenizerError, match="no chat template"):
        Tokenizer(_tiny_bpe(), kind="bpe", special=SpecialTokens()).apply_chat_template(
            [{"role": "user", "content": "x"}]
        )
