"""Megatron-LM checkpoints: synthetic files in the exact layouts Megatron-LM wrote (checkpoint versions 0,
1, 2 and 3; tensor and pipeline splits; 2020, 2021 and 2023 key names; Megatron-Core names) load into
models that compute what the source model computed; export round-trips; bad files fail by name.

The writer below is written from Megatron-LM's save code, independently of megasense's exporter, so
the two check each other.
"""

from __future__ import annotations

import argparse
import enum
import io
import json
import os
import pickle
import random
import sys
import types

import numpy as np
import pytest
import torch

from megasense.config import HeadConfig
from megasense.config.presets import bert_tiny, gpt_tiny, llama_tiny, megatron_bert_tiny
from megasense.errors import CheckpointError
from megasense.formats.convert import import_weights
from megasense.formats.megatron.checkpoint import read_megatron, write_megatron
from megasense.formats.torch_load import safe_torch_load
from megasense.models import build_model, materialize, weights_for_saving

ATOL = 1e-6
ERAS = {  # encoder key, attention key, norm spelling
    "2020": ("transformer", "attention", "layernorm"),
    "2021": ("encoder", "self_attention", "layernorm"),
    "2023": ("encoder", "self_attention", "norm"),
}


def _source(cfg, task: str, seed: int = 0):
    torch.manual_seed(seed)
    head = HeadConfig(task=task)
    model = build_model(cfg, head)
    model.init_weights()
    with torch.no_grad():  # make norms and biases non-trivial so a mix-up cannot hide
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval(), head, weights_for_saving(model)


# ---------------------------------------------------------------------------------------------
# What Megatron-LM saved (legacy models), written from its save code
# ---------------------------------------------------------------------------------------------
def _to_version(t: torch.Tensor, version: float, heads: int) -> torch.Tensor:
    """Our per-rank QKV rows [heads, 3, head_dim] -> the order checkpoint ``version`` stored."""
    if version >= 2:
        return t.clone()
    rest = t.shape[1:]
    x = t.reshape(heads, 3, -1, *rest)
    x = x.transpose(0, 1) if version == 0 else x.transpose(1, 2)  # v0: [3, heads, hd]; v1: [heads, hd, 3]
    return x.reshape(t.shape).contiguous()


def _legacy_model(cfg, sd, *, version, tp, rank, era, layers, first, last):
    enc_key, attn, norm = ERAS[era]
    heads_per_rank = cfg.num_attention_heads // tp

    def part(t, dim=0):
        return torch.chunk(t, tp, dim=dim)[rank].clone()

    lm: dict = {}
    if first:
        emb = {"word_embeddings": {"weight": part(sd["embedding.word_embeddings.weight"])}}
        if cfg.position_embedding == "learned":
            emb["position_embeddings"] = {"weight": sd["embedding.position_embeddings.weight"].clone()}
        if cfg.num_tokentypes:
            emb["tokentype_embeddings"] = {"weight": sd["embedding.tokentype_embeddings.weight"].clone()}
        lm["embedding"] = emb
    enc = {}
    for local, i in enumerate(layers):
        src, dst = f"layers.{i}.", f"layers.{local}."
        for p in ("weight", "bias") if cfg.normalization == "layernorm" else ("weight",):
            enc[f"{dst}input_{norm}.{p}"] = sd[f"{src}input_layernorm.{p}"].clone()
            enc[f"{dst}post_attention_{norm}.{p}"] = sd[f"{src}post_attention_layernorm.{p}"].clone()
        for p in ("weight", "bias") if cfg.add_bias_linear else ("weight",):
            qkv = part(sd[f"{src}self_attention.linear_qkv.{p}"])
            enc[f"{dst}{attn}.query_key_value.{p}"] = _to_version(qkv, version, heads_per_rank)
            up = part(sd[f"{src}mlp.dense_h_to_4h.{p}"])
            if cfg.activation == "swiglu":
                up = torch.cat([part(sd[f"{src}mlp.dense_h_to_4h_gate.{p}"]), up])
            enc[f"{dst}mlp.dense_h_to_4h.{p}"] = up
        enc[f"{dst}{attn}.dense.weight"] = part(sd[f"{src}self_attention.dense.weight"], 1)
        enc[f"{dst}mlp.dense_4h_to_h.weight"] = part(sd[f"{src}mlp.dense_4h_to_h.weight"], 1)
        if cfg.add_bias_linear:
            enc[f"{dst}{attn}.dense.bias"] = sd[f"{src}self_attention.dense.bias"].clone()
            enc[f"{dst}mlp.dense_4h_to_h.bias"] = sd[f"{src}mlp.dense_4h_to_h.bias"].clone()
    model: dict = {"language_model": lm}
    if last:
        for p in ("weight", "bias") if cfg.normalization == "layernorm" else ("weight",):
            enc[f"final_{norm}.{p}"] = sd[f"final_layernorm.{p}"].clone()
        if cfg.add_pooler:
            lm["pooler"] = {f"dense.{p}": sd[f"pooler.dense.{p}"].clone() for p in ("weight", "bias")}
        if cfg.arch == "gpt" and not cfg.tie_word_embeddings:
            lm["output_layer"] = {"weight": part(sd["output_layer.weight"])}
        if "lm_head.dense.weight" in sd:
            model["lm_head"] = {"bias": part(sd["lm_head.output_layer.bias"])}
            for p in ("weight", "bias"):
                model["lm_head"][f"dense.{p}"] = sd[f"lm_head.dense.{p}"].clone()
                model["lm_head"][f"{norm}.{p}"] = sd[f"lm_head.layernorm.{p}"].clone()
        if cfg.binary_head:
            model["binary_head"] = {p: sd[f"binary_head.{p}"].clone() for p in ("weight", "bias")}
        if not first and (cfg.arch == "bert" or cfg.tie_word_embeddings):
            model["word_embeddings_for_head"] = {"weight": part(sd["embedding.word_embeddings.weight"])}
    lm[enc_key] = enc
    return model


def _legacy_args(cfg, *, version, tp, pp, **extra):
    args = argparse.Namespace(
        num_layers=cfg.num_layers, hidden_size=cfg.hidden_size, ffn_hidden_size=cfg.ffn_size,
        num_attention_heads=cfg.num_attention_heads, max_position_embeddings=cfg.max_position_embeddings,
        seq_length=cfg.max_position_embeddings, padded_vocab_size=cfg.padded_vocab_size,
        make_vocab_size_divisible_by=cfg.make_vocab_size_divisible_by // tp, hidden_dropout=0.1,
        attention_dropout=0.1, init_method_std=0.02, openai_gelu=cfg.activation == "gelu_tanh",
        tokenizer_type="BertWordPieceLowerCase" if cfg.arch == "bert" else "GPT2BPETokenizer",
        bert_binary_head=cfg.binary_head, fp16=False, bf16=False, params_dtype=torch.float32,
    )  # fmt: skip
    if version < 3:  # before checkpoint_version 3 the tensor-parallel size was called model_parallel_size
        args.model_parallel_size, args.layernorm_epsilon = tp, cfg.norm_eps
    else:
        args.tensor_model_parallel_size, args.pipeline_model_parallel_size = tp, pp
        args.norm_epsilon = cfg.norm_eps
        args.untie_embeddings_and_output_weights = cfg.arch == "gpt" and not cfg.tie_word_embeddings
        if cfg.position_embedding == "rope":
            args.position_embedding_type, args.rotary_base = "rope", int(cfg.rotary_base)
        if cfg.normalization == "rmsnorm":
            args.normalization = "RMSNorm"
        args.swiglu = cfg.activation == "swiglu"
        args.add_bias_linear = cfg.add_bias_linear
        if cfg.query_groups != cfg.num_attention_heads:
            args.group_query_attention, args.num_query_groups = True, cfg.query_groups
    for key, value in extra.items():
        setattr(args, key, value)
    return args


def write_legacy(root, cfg, sd, *, version=3, tp=1, pp=1, era="2023", iteration=None, payload=None, **args_extra):
    """Save ``sd`` as Megatron-LM would have: tracker file, iteration dir, one file per (tp, pp) rank."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "latest_checkpointed_iteration.txt").write_text("release" if iteration is None else str(iteration))
    it_dir = root / ("release" if iteration is None else f"iter_{iteration:07d}")
    per_stage = cfg.num_layers // pp
    args = _legacy_args(cfg, version=version, tp=tp, pp=pp, **args_extra)
    for stage in range(pp):
        layers = range(stage * per_stage, (stage + 1) * per_stage)
        for rank in range(tp):
            model = _legacy_model(
                cfg, sd, version=version, tp=tp, rank=rank, era=era, layers=layers,
                first=stage == 0, last=stage == pp - 1,
            )  # fmt: skip
            name = f"mp_rank_{rank:02d}" + (f"_{stage:03d}" if pp > 1 else "")
            (it_dir / name).mkdir(parents=True)
            state = {"model": model, "args": args, "iteration": iteration or 0, **(payload or {})}
            if version > 0:  # version-0 files carried no checkpoint_version at all
                state["checkpoint_version"] = float(version)
            torch.save(state, it_dir / name / "model_optim_rng.pt")
    return root


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------
def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 99, (2, 9), generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    return ids, mask, torch.randint(0, 2, (2, 9), generator=g)


def assert_same_model(source, imported):
    ours = weights_for_saving(source)
    assert set(imported.state_dict) == set(ours)
    for key, value in ours.items():
        torch.testing.assert_close(imported.state_dict[key].float(), value, atol=ATOL, rtol=0, msg=key)
    model = materialize(imported.config, imported.head, imported.state_dict)
    ids, mask, types_ = _batch()
    with torch.no_grad():
        if imported.config.arch == "bert":
            a, b = source(ids, mask, types_), model(ids, mask, types_)
            if a.binary_logits is not None:
                torch.testing.assert_close(b.binary_logits, a.binary_logits, atol=ATOL, rtol=0)
        else:
            a, b = source(ids), model(ids)
    torch.testing.assert_close(b.logits, a.logits, atol=ATOL, rtol=0)


BERT_CASES = [(0, 1, "2020"), (1, 2, "2020"), (2, 2, "2021"), (3, 4, "2023")]
GPT_CASES = [(0, 2, "2020"), (1, 4, "2020"), (3, 1, "2021"), (3, 4, "2023")]


@pytest.mark.parametrize(("version", "tp", "era"), BERT_CASES)
def test_megatron_bert_with_binary_head(tmp_path, version, tp, era):
    source, _, sd = _source(megatron_bert_tiny(), "pretraining")
    write_legacy(tmp_path / "ck", megatron_bert_tiny(), sd, version=version, tp=tp, era=era)
    imported = read_megatron(tmp_path / "ck")
    assert imported.head.task == "pretraining"
    cfg = imported.config
    assert (cfg.arch, cfg.pre_norm, cfg.final_norm, cfg.embedding_norm) == ("bert", True, True, False)
    assert cfg.binary_head and cfg.add_pooler and cfg.num_tokentypes == 2
    assert cfg.padded_vocab_size == 104 and cfg.vocab_size == 104  # no vocab file: the padded size stands in
    assert any("vocab_file" in note for note in imported.notes)
    assert_same_model(source, imported)


@pytest.mark.parametrize(("version", "tp", "era"), GPT_CASES)
def test_gpt_with_untied_output_layer(tmp_path, version, tp, era):
    cfg = gpt_tiny().replace(tie_word_embeddings=False)
    source, _, sd = _source(cfg, "causal_lm", seed=1)
    write_legacy(tmp_path / "ck", cfg, sd, version=version, tp=tp, era=era)
    imported = read_megatron(tmp_path / "ck")
    assert imported.head.task == "causal_lm"
    assert (imported.config.tie_word_embeddings, imported.config.activation) == (False, "gelu_tanh")
    assert_same_model(source, imported)


@pytest.mark.parametrize("preset", [gpt_tiny, megatron_bert_tiny])
def test_pipeline_and_tensor_parallel_iteration_checkpoint(tmp_path, monkeypatch, preset):
    """TP 2 x PP 2 at iteration 100, with the optimizer, RNG states and an enum in args, as training saves."""
    cfg = preset()
    source, _, sd = _source(cfg, "causal_lm" if cfg.arch == "gpt" else "pretraining", seed=2)

    class ModelType(enum.Enum):
        encoder_or_decoder = 1

    ModelType.__module__, ModelType.__qualname__ = "megatron.core.enums", "ModelType"
    fake = types.ModuleType("megatron.core.enums")
    fake.ModelType = ModelType
    for name in ("megatron", "megatron.core"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "megatron.core.enums", fake)
    payload = {
        "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]},
        "random_rng_state": random.getstate(),
        "np_rng_state": np.random.get_state(),
        "torch_rng_state": torch.get_rng_state(),
        "rng_tracker_states": {"model-parallel-rng": torch.get_rng_state()},
    }
    write_legacy(
        tmp_path / "ck", cfg, sd, tp=2, pp=2, iteration=100, payload=payload,
        model_type=ModelType.encoder_or_decoder,
    )  # fmt: skip
    monkeypatch.delitem(sys.modules, "megatron.core.enums")  # reading must not need Megatron installed
    imported = read_megatron(tmp_path / "ck")
    assert any("iteration 100" in note for note in imported.notes)
    assert_same_model(source, imported)


def test_entry_points_iteration_dir_single_file_and_import_weights(tmp_path):
    source, _, sd = _source(megatron_bert_tiny(), "pretraining", seed=3)
    root = write_legacy(tmp_path / "ck", megatron_bert_tiny(), sd, iteration=7)
    single = root / "iter_0000007" / "mp_rank_00" / "model_optim_rng.pt"
    for path in (root, root / "iter_0000007", single, single.parent):
        assert_same_model(source, read_megatron(path))
    assert_same_model(source, import_weights(root))
    assert_same_model(source, import_weights(single))
    assert import_weights(root).config.name == "ck"


def test_one_shard_of_a_split_checkpoint_is_refused(tmp_path):
    _, _, sd = _source(gpt_tiny(), "causal_lm")
    root = write_legacy(tmp_path / "ck", gpt_tiny(), sd, tp=2)
    with pytest.raises(CheckpointError, match="one shard of a checkpoint split tensor-parallel 2") as err:
        read_megatron(root / "release" / "mp_rank_01" / "model_optim_rng.pt")
    assert err.value.path.name == "model_optim_rng.pt"


def test_missing_shard_is_named(tmp_path):
    _, _, sd = _source(gpt_tiny(), "causal_lm")
    root = write_legacy(tmp_path / "ck", gpt_tiny(), sd, tp=2, pp=2)
    (root / "release" / "mp_rank_01_001" / "model_optim_rng.pt").unlink()
    (root / "release" / "mp_rank_01_001").rmdir()
    with pytest.raises(CheckpointError, match="is missing") as err:
        read_megatron(root)
    assert err.value.path.name == "mp_rank_01_001"


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "task"),
    [(megatron_bert_tiny, "pretraining"), (lambda: gpt_tiny().replace(tie_word_embeddings=False), "causal_lm")],
)
def test_write_then_read_round_trip_tp2(tmp_path, preset, task):
    cfg = preset()
    source, head, sd = _source(cfg, task, seed=4)
    out = write_megatron(cfg, head, sd, tmp_path / "out", tp=2)
    assert (out / "latest_checkpointed_iteration.txt").read_text() == "release"
    assert sorted(p.name for p in (out / "release").iterdir()) == ["mp_rank_00", "mp_rank_01"]
    raw = safe_torch_load(out / "release" / "mp_rank_01" / "model_optim_rng.pt")
    assert raw["checkpoint_version"] == 3.0 and raw["args"].tensor_model_parallel_size == 2
    words = raw["model"]["language_model"]["embedding"]["word_embeddings"]["weight"]
    torch.testing.assert_close(words, sd["embedding.word_embeddings.weight"][52:], atol=0, rtol=0)
    imported = read_megatron(out)
    assert imported.config.replace(name=cfg.name) == cfg  # the real vocab size travels in args.vocab_size
    assert imported.head == head
    assert_same_model(source, imported)


def test_llama_style_export_fuses_gate_and_up_per_rank(tmp_path):
    cfg = llama_tiny()
    source, head, sd = _source(cfg, "causal_lm", seed=5)
    out = write_megatron(cfg, head, sd, tmp_path / "out", tp=2)
    for rank in range(2):
        raw = safe_torch_load(out / "release" / f"mp_rank_{rank:02d}" / "model_optim_rng.pt")
        fc1 = raw["model"]["language_model"]["encoder"]["layers.1.mlp.dense_h_to_4h.weight"]
        gate = sd["layers.1.mlp.dense_h_to_4h_gate.weight"].chunk(2)[rank]
        up = sd["layers.1.mlp.dense_h_to_4h.weight"].chunk(2)[rank]
        torch.testing.assert_close(fc1, torch.cat([gate, up]), atol=0, rtol=0)
        assert raw["args"].swiglu and raw["args"].normalization == "RMSNorm" and raw["args"].num_query_groups == 2
    imported = read_megatron(out)
    assert imported.config.replace(name=cfg.name) == cfg
    assert_same_model(source, imported)
    # The same model in the independent legacy writer's layout reads back too.
    write_legacy(tmp_path / "legacy", cfg, sd, tp=2)
    assert_same_model(source, read_megatron(tmp_path / "legacy"))


def test_export_refusals_name_the_numbers(tmp_path):
    _, head, sd = _source(megatron_bert_tiny(), "pretraining")
    with pytest.raises(CheckpointError, match=r"num_attention_heads=4 is not divisible by tp=3") as err:
        write_megatron(megatron_bert_tiny(), head, sd, tmp_path / "a", tp=3)
    assert "ffn_hidden_size=64 is not divisible by tp=3" in str(err.value)
    assert "104" in str(err.value) and not (tmp_path / "a").exists()
    cfg = megatron_bert_tiny().replace(make_vocab_size_divisible_by=1, vocab_size=99)
    _, _, sd99 = _source(cfg, "pretraining")
    with pytest.raises(CheckpointError, match=r"vocabulary.*99.*not divisible by tp=2"):
        write_megatron(cfg, head, sd99, tmp_path / "b", tp=2)
    _, bert_head, bert_sd = _source(bert_tiny(), "pretraining")
    with pytest.raises(CheckpointError, match="post-norm"):
        write_megatron(bert_tiny(), bert_head, bert_sd, tmp_path / "c")
    write_megatron(megatron_bert_tiny(), head, sd, tmp_path / "d")
    with pytest.raises(CheckpointError, match="overwrite"):
        write_megatron(megatron_bert_tiny(), head, sd, tmp_path / "d")
    write_megatron(megatron_bert_tiny(), head, sd, tmp_path / "d", overwrite=True, tp=2)
    assert (tmp_path / "d" / "release" / "mp_rank_01").is_dir()


# ---------------------------------------------------------------------------------------------
# Vocabulary, tokenizers, args variants
# ---------------------------------------------------------------------------------------------
def test_wordpiece_vocab_sets_real_vocab_size_and_tokenizer(tmp_path):
    source, _, sd = _source(megatron_bert_tiny(), "pretraining", seed=6)
    root = write_legacy(tmp_path / "ck", megatron_bert_tiny(), sd, tp=2)
    words = ["hello", "world", "##s", "mega", "##tron"] + [f"w{i}" for i in range(89)]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    imported = read_megatron(root, vocab_file=vocab)
    assert (imported.config.vocab_size, imported.config.padded_vocab_size) == (99, 104)
    assert imported.config.make_vocab_size_divisible_by == 8  # Megatron's 4 x tp 2
    assert imported.tokenizer.backend.encode("Hello worlds MEGATRON").ids == [2, 5, 6, 7, 8, 9, 3]
    assert_same_model(source, imported)


def test_gpt2_bpe_vocab_beside_the_checkpoint(tmp_path):
    source, _, sd = _source(gpt_tiny(), "causal_lm", seed=7)
    root = write_legacy(tmp_path / "ck", gpt_tiny(), sd)
    base = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ"]
    merged = ["he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld"]
    tokens = base + merged + [f"x{i}" for i in range(99 - len(base) - len(merged) - 1)] + ["<|endoftext|>"]
    (root / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (root / "merges.txt").write_text("#version: 0.2\nh e\nl l\nhe ll\nhell o\nĠ w\no r\nĠw or\nl d\nĠwor ld\n")
    imported = read_megatron(root)
    assert imported.config.vocab_size == 99 and imported.tokenizer.special.eos == "<|endoftext|>"
    assert imported.tokenizer.backend.encode("hello world").ids == [tokens.index("hello"), tokens.index("Ġworld")]
    assert any("vocab.json found beside the checkpoint" in note for note in imported.notes)
    assert_same_model(source, imported)


def test_fused_bias_gelu_reads_as_tanh_gelu_and_layernorm_1p_adds_one(tmp_path):
    cfg = gpt_tiny().replace(activation="gelu")
    _, _, sd = _source(cfg, "causal_lm")
    shifted = {k: (v - 1 if k.endswith("layernorm.weight") else v) for k, v in sd.items()}
    write_legacy(tmp_path / "ck", cfg, shifted, bias_gelu_fusion=True, apply_layernorm_1p=True)
    imported = read_megatron(tmp_path / "ck")
    assert imported.config.activation == "gelu_tanh"  # Megatron's fused kernel is the tanh approximation
    torch.testing.assert_close(imported.state_dict["final_layernorm.weight"], sd["final_layernorm.weight"])


def test_megatron_core_names_with_transformer_engine_extra_state(tmp_path):
    cfg = llama_tiny()
    source, _, sd = _source(cfg, "causal_lm", seed=8)
    it = tmp_path / "ck" / "release"
    for rank in range(2):
        model = {"embedding.word_embeddings.weight": sd["embedding.word_embeddings.weight"].chunk(2)[rank].clone()}
        for i in range(cfg.num_layers):
            src, dst = f"layers.{i}.", f"decoder.layers.{i}."
            model[dst + "self_attention.linear_qkv.layer_norm_weight"] = sd[src + "input_layernorm.weight"]
            model[dst + "self_attention.linear_qkv.weight"] = sd[src + "self_attention.linear_qkv.weight"].chunk(2)[
                rank
            ]
            model[dst + "self_attention.linear_qkv._extra_state"] = io.BytesIO(b"fp8 metadata")
            model[dst + "self_attention.linear_proj.weight"] = sd[src + "self_attention.dense.weight"].chunk(2, 1)[rank]
            model[dst + "self_attention.linear_proj._extra_state"] = None
            model[dst + "mlp.linear_fc1.layer_norm_weight"] = sd[src + "post_attention_layernorm.weight"]
            gate, up = sd[src + "mlp.dense_h_to_4h_gate.weight"], sd[src + "mlp.dense_h_to_4h.weight"]
            model[dst + "mlp.linear_fc1.weight"] = torch.cat([gate.chunk(2)[rank], up.chunk(2)[rank]])
            model[dst + "mlp.linear_fc2.weight"] = sd[src + "mlp.dense_4h_to_h.weight"].chunk(2, 1)[rank]
        model["decoder.final_layernorm.weight"] = sd["final_layernorm.weight"]
        model["output_layer.weight"] = sd["output_layer.weight"].chunk(2)[rank]
        model = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in model.items()}
        args = _legacy_args(cfg, version=3, tp=2, pp=1)
        (it / f"mp_rank_{rank:02d}").mkdir(parents=True)
        torch.save({"model": model, "args": args, "checkpoint_version": 3.0}, it / f"mp_rank_{rank:02d}" / "m.pt")
    assert_same_model(source, read_megatron(tmp_path / "ck"))


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
def test_truncated_file_is_named(tmp_path):
    _, _, sd = _source(gpt_tiny(), "causal_lm")
    root = write_legacy(tmp_path / "ck", gpt_tiny(), sd)
    file = root / "release" / "mp_rank_00" / "model_optim_rng.pt"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint") as err:
        read_megatron(root)
    assert err.value.path == file


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch.save", "legacy torch.save", "plain pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "PWNED"
    file = tmp_path / "mp_rank_00" / "model_optim_rng.pt"
    file.parent.mkdir()
    payload = {"model": {"x": _Exploit(marker)}, "args": argparse.Namespace(num_layers=1)}
    if how == "plain pickle":
        file.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, file, _use_new_zipfile_serialization=how == "torch.save")
    with pytest.raises(CheckpointError, match=r"refuses to unpickle posix\.system") as err:
        import_weights(file)
    assert err.value.path == file
    assert not marker.exists()


def test_empty_and_foreign_directories(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty directory"):
        read_megatron(tmp_path / "empty")
    (tmp_path / "ck" / "iter_0000005").mkdir(parents=True)
    (tmp_path / "ck" / "latest_checkpointed_iteration.txt").write_text("9")
    with pytest.raises(CheckpointError, match="iter_0000009"):
        read_megatron(tmp_path / "ck")
    dist = tmp_path / "dist" / "iter_0000005"
    dist.mkdir(parents=True)
    (dist / ".metadata").write_bytes(b"")
    (dist / "__0_0.distcp").write_bytes(b"")
    with pytest.raises(CheckpointError, match="torch_dist"):
        read_megatron(tmp_path / "dist")


def test_unknown_tensor_is_named_with_the_file(tmp_path):
    _, _, sd = _source(gpt_tiny(), "causal_lm")
    root = write_legacy(tmp_path / "ck", gpt_tiny(), sd)
    file = root / "release" / "mp_rank_00" / "model_optim_rng.pt"
    state = safe_torch_load(file)
    state["model"]["language_model"]["encoder"]["layers.0.self_attention.q_layernorm.weight"] = torch.ones(8)
    torch.save(state, file)
    with pytest.raises(CheckpointError, match=r"layers\.0\.self_attention\.q_layernorm\.weight") as err:
        import_weights(root)
    assert err.value.path == file


def test_wrong_layer_count_and_missing_args(tmp_path):
    _, _, sd = _source(gpt_tiny(), "causal_lm")
    write_legacy(tmp_path / "ck", gpt_tiny(), sd, num_layers=3)
    with pytest.raises(CheckpointError, match=r"layers \[0, 1\] but args.num_layers=3"):
        read_megatron(tmp_path / "ck")
    file = tmp_path / "noargs.pt"
    torch.save({"model": {"language_model": {}}}, file)
    with pytest.raises(CheckpointError, match="no 'args'"):
        read_megatron(file)


def test_bfloat16_checkpoint_keeps_its_dtype_and_says_so(tmp_path):
    _, head, sd = _source(gpt_tiny(), "causal_lm", seed=9)
    half = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    out = write_megatron(gpt_tiny(), head, half, tmp_path / "out", tp=2)
    assert safe_torch_load(out / "release" / "mp_rank_00" / "model_optim_rng.pt")["args"].bf16 is True
    imported = read_megatron(out)
    assert imported.state_dict["layers.0.mlp.dense_h_to_4h.weight"].dtype == torch.bfloat16
    assert any("bfloat16" in note for note in imported.notes)
    for key, value in half.items():
        assert torch.equal(imported.state_dict[key], value), key
