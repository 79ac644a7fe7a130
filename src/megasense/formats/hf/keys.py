"""Hugging Face checkpoints <-> megasense: BERT, MegatronBERT, GPT-2 and Llama.

Pure functions from (HF config dict, HF state dict) to (ModelConfig, HeadConfig, our state dict)
and back. Reading and writing directories lives in ``megasense.formats.hf.directory``.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from megasense.config import ConfigError, HeadConfig, ModelConfig
from megasense.errors import CheckpointError
from megasense.formats.qkv import fuse_qkv, pad_rows, split_qkv

StateDict = dict[str, torch.Tensor]

_HF_ACT = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
    "silu": "swiglu",
}
_OUR_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "swiglu": "silu"}


def hf_model_type(hf_config: dict[str, Any]) -> str:
    model_type = hf_config.get("model_type", "")
    if model_type in ("bert", "megatron-bert", "gpt2", "llama"):
        return model_type
    if model_type in ("xlm-roberta", "roberta"):
        raise ConfigError(
            f"model_type={model_type!r}: RoBERTa-style checkpoints (position offset 2) are not "
            "supported yet; BERT, MegatronBERT, GPT-2 and Llama are"
        )
    raise ConfigError(
        f"unknown architecture model_type={model_type!r} (architectures="
        f"{hf_config.get('architectures')}); megasense imports bert, megatron-bert, gpt2 and llama"
    )


def _act(hf_config: dict[str, Any], key: str, default: str) -> str:
    name = hf_config.get(key, default)
    if name not in _HF_ACT:
        raise ConfigError(f"{key}={name!r} is not supported; known activations: {sorted(_HF_ACT)}")
    return _HF_ACT[name]


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------
def model_config_from_hf(hf: dict[str, Any], sd: StateDict, *, name: str = "") -> ModelConfig:
    kind = hf_model_type(hf)
    if kind in ("bert", "megatron-bert"):
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(
                f"position_embedding_type={hf['position_embedding_type']!r}: only 'absolute' is supported"
            )
        pooler = any(k.endswith("pooler.dense.weight") for k in sd)
        binary = any(k.endswith("seq_relationship.weight") for k in sd)
        pre = kind == "megatron-bert"
        return ModelConfig(
            arch="bert",
            name=name or kind,
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            num_layers=hf["num_hidden_layers"],
            num_attention_heads=hf["num_attention_heads"],
            ffn_hidden_size=hf["intermediate_size"],
            max_position_embeddings=hf["max_position_embeddings"],
            num_tokentypes=hf.get("type_vocab_size", 2),
            norm_eps=hf.get("layer_norm_eps", 1e-12),
            activation=_act(hf, "hidden_act", "gelu"),
            pre_norm=pre,
            embedding_norm=not pre,
            final_norm=pre,
            add_pooler=pooler,
            binary_head=binary and pooler,
            hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
            attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
            init_method_std=hf.get("initializer_range", 0.02),
            extra={"hf_model_type": kind},
        )
    if kind == "gpt2":
        return ModelConfig(
            arch="gpt",
            name=name or "gpt2",
            vocab_size=hf["vocab_size"],
            hidden_size=hf["n_embd"],
            num_layers=hf["n_layer"],
            num_attention_heads=hf["n_head"],
            ffn_hidden_size=hf.get("n_inner") or 4 * hf["n_embd"],
            max_position_embeddings=hf["n_positions"],
            norm_eps=hf.get("layer_norm_epsilon", 1e-5),
            activation=_act(hf, "activation_function", "gelu_new"),
            tie_word_embeddings=hf.get("tie_word_embeddings", True),
            hidden_dropout=hf.get("resid_pdrop", 0.1),
            attention_dropout=hf.get("attn_pdrop", 0.1),
            init_method_std=hf.get("initializer_range", 0.02),
            extra={"hf_model_type": kind},
        )
    # llama
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or ({} if rope.get("rope_type", "default") == "default" else rope)
    if scaling and scaling.get("rope_type", scaling.get("type", "default")) != "default":
        raise ConfigError(f"rope scaling {scaling} is not supported; only plain rotary embeddings are")
    if _act(hf, "hidden_act", "silu") != "swiglu":
        raise ConfigError(f"llama hidden_act={hf.get('hidden_act')!r}: only silu (SwiGLU) is supported")
    if hf.get("mlp_bias") or hf.get("attention_bias"):
        raise ConfigError("llama checkpoints with attention_bias or mlp_bias are not supported")
    return ModelConfig(
        arch="gpt",
        name=name or "llama",
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_attention_heads=hf["num_attention_heads"],
        num_query_groups=hf.get("num_key_value_heads") or hf["num_attention_heads"],
        kv_channels=hf.get("head_dim"),
        ffn_hidden_size=hf["intermediate_size"],
        max_position_embeddings=hf.get("max_position_embeddings", 2048),
        position_embedding="rope",
        rotary_base=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        normalization="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        activation="swiglu",
        add_bias_linear=False,
        add_qkv_bias=False,
        tie_word_embeddings=hf.get("tie_word_embeddings", False),
        hidden_dropout=0.0,
        attention_dropout=float(hf.get("attention_dropout", 0.0)),
        init_method_std=hf.get("initializer_range", 0.02),
        extra={"hf_model_type": kind},
    )


def head_config_from_hf(hf: dict[str, Any], sd: StateDict) -> HeadConfig:
    if hf_model_type(hf) in ("gpt2", "llama"):
        return HeadConfig(task="causal_lm")
    if "classifier.weight" in sd:
        n = sd["classifier.weight"].shape[0]
        id2label = hf.get("id2label") or {}
        labels = tuple(str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n))
        return HeadConfig(
            task="classification",
            labels=labels,
            pooling="pooler",
            dropout=hf.get("classifier_dropout") or hf.get("hidden_dropout_prob", 0.1),
        )
    if any(k.startswith("cls.predictions.") for k in sd):
        return HeadConfig(task="pretraining")
    return HeadConfig(task="encoder")


def model_config_to_hf(cfg: ModelConfig, head: HeadConfig) -> dict[str, Any]:
    kind = hf_kind_for(cfg)
    common = {"vocab_size": cfg.vocab_size, "torch_dtype": "float32"}
    if kind in ("bert", "megatron-bert"):
        arch = {
            "encoder": "Model",
            "embedding": "Model",
            "classification": "ForSequenceClassification",
            "pretraining": "ForPreTraining",
        }[head.task]
        out = {
            **common,
            "model_type": kind,
            "architectures": [("MegatronBert" if kind != "bert" else "Bert") + arch],
            "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "intermediate_size": cfg.ffn_size,
            "max_position_embeddings": cfg.max_position_embeddings,
            "type_vocab_size": cfg.num_tokentypes or 1,
            "layer_norm_eps": cfg.norm_eps,
            "hidden_act": _OUR_ACT[cfg.activation],
            "hidden_dropout_prob": cfg.hidden_dropout,
            "attention_probs_dropout_prob": cfg.attention_dropout,
            "initializer_range": cfg.init_method_std,
            "position_embedding_type": "absolute",
            "pad_token_id": 0,
        }
        if head.task == "classification":
            out["id2label"] = {str(i): label for i, label in enumerate(head.labels)}
            out["label2id"] = {label: i for i, label in enumerate(head.labels)}
        return out
    if kind == "gpt2":
        return {
            **common,
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            "n_embd": cfg.hidden_size,
            "n_layer": cfg.num_layers,
            "n_head": cfg.num_attention_heads,
            "n_inner": cfg.ffn_size,
            "n_positions": cfg.max_position_embeddings,
            "n_ctx": cfg.max_position_embeddings,
            "layer_norm_epsilon": cfg.norm_eps,
            "activation_function": _OUR_ACT[cfg.activation],
            "resid_pdrop": cfg.hidden_dropout,
            "embd_pdrop": cfg.hidden_dropout,
            "attn_pdrop": cfg.attention_dropout,
            "initializer_range": cfg.init_method_std,
            "tie_word_embeddings": cfg.tie_word_embeddings,
        }
    return {
        **common,
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.query_groups,
        "head_dim": cfg.head_dim,
        "intermediate_size": cfg.ffn_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rope_theta": cfg.rotary_base,
        "rms_norm_eps": cfg.norm_eps,
        "hidden_act": "silu",
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": cfg.init_method_std,
    }


def hf_kind_for(cfg: ModelConfig) -> str:
    """The Hugging Face architecture that computes exactly what ``cfg`` computes, or an error."""
    if cfg.arch == "bert":
        if cfg.normalization != "layernorm" or cfg.position_embedding != "learned" or cfg.activation == "swiglu":
            raise ConfigError("only LayerNorm, learned-position, non-gated BERT models export to Hugging Face")
        if not cfg.pre_norm and cfg.embedding_norm and not cfg.final_norm:
            return "bert"
        if cfg.pre_norm and not cfg.embedding_norm and cfg.final_norm:
            return "megatron-bert"
        raise ConfigError("this BERT variant (pre_norm/embedding_norm/final_norm mix) has no Hugging Face equivalent")
    if (cfg.position_embedding, cfg.normalization) == ("learned", "layernorm") and cfg.activation != "swiglu":
        if not (cfg.add_bias_linear and cfg.add_qkv_bias and cfg.query_groups == cfg.num_attention_heads):
            raise ConfigError("GPT-2 export needs biases everywhere and no grouped-query attention")
        return "gpt2"
    if (cfg.position_embedding, cfg.normalization, cfg.activation) == ("rope", "rmsnorm", "swiglu"):
        if cfg.add_bias_linear or cfg.add_qkv_bias:
            raise ConfigError("Llama export needs a model without linear biases")
        return "llama"
    raise ConfigError(
        f"no Hugging Face architecture matches position={cfg.position_embedding}, "
        f"norm={cfg.normalization}, activation={cfg.activation}"
    )


# ---------------------------------------------------------------------------------------------
# State dicts: Hugging Face -> megasense
# ---------------------------------------------------------------------------------------------
def _strip(sd: StateDict, prefixes: tuple[str, ...]) -> StateDict:
    out = {}
    for key, value in sd.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        out[key] = value
    return out


def state_dict_from_hf(hf: dict[str, Any], sd: StateDict, cfg: ModelConfig) -> StateDict:
    """Rename and fuse; tensors left over afterwards (other than tied copies) are an error."""
    kind = hf_model_type(hf)
    if kind in ("bert", "megatron-bert"):
        rest = drop_buffers(_strip(sd, ("bert.",)))
        out = _bert_from_hf(rest, cfg, megatron=kind == "megatron-bert")
        rest.pop("cls.predictions.decoder.weight", None)  # tied to the word embeddings
    elif kind == "gpt2":
        rest = drop_buffers(_strip(sd, ("transformer.",)))
        out = _gpt2_from_hf(rest, cfg)
        if cfg.tie_word_embeddings:
            rest.pop("lm_head.weight", None)
    else:
        rest = drop_buffers(_strip(sd, ("model.",)))
        out = _llama_from_hf(rest, cfg)
        if cfg.tie_word_embeddings:
            rest.pop("lm_head.weight", None)
    if rest:
        raise CheckpointError(None, f"{len(rest)} tensors have no place in a {kind} model: {sorted(rest)[:10]}")
    return out


def _take(sd: StateDict, key: str, source: str = "checkpoint") -> torch.Tensor:
    try:
        return sd.pop(key)
    except KeyError:
        raise CheckpointError(None, f"{source} is missing tensor {key!r}") from None


def _bert_from_hf(sd: StateDict, cfg: ModelConfig, *, megatron: bool) -> StateDict:
    V = cfg.padded_vocab_size
    out: StateDict = {
        "embedding.word_embeddings.weight": pad_rows(_take(sd, "embeddings.word_embeddings.weight"), V),
        "embedding.position_embeddings.weight": _take(sd, "embeddings.position_embeddings.weight"),
    }
    if cfg.num_tokentypes:
        out["embedding.tokentype_embeddings.weight"] = _take(sd, "embeddings.token_type_embeddings.weight")
    if cfg.embedding_norm:
        for p in ("weight", "bias"):
            out[f"embedding.layernorm.{p}"] = _take(sd, f"embeddings.LayerNorm.{p}")
    for i in range(cfg.num_layers):
        src, dst = f"encoder.layer.{i}.", f"layers.{i}."
        for p in ("weight", "bias"):
            q, k, v = (_take(sd, f"{src}attention.self.{n}.{p}") for n in ("query", "key", "value"))
            out[f"{dst}self_attention.linear_qkv.{p}"] = fuse_qkv(
                q, k, v, num_heads=cfg.num_attention_heads, num_groups=cfg.query_groups
            )
            out[f"{dst}self_attention.dense.{p}"] = _take(sd, f"{src}attention.output.dense.{p}")
            out[f"{dst}mlp.dense_h_to_4h.{p}"] = _take(sd, f"{src}intermediate.dense.{p}")
            out[f"{dst}mlp.dense_4h_to_h.{p}"] = _take(sd, f"{src}output.dense.{p}")
            if megatron:
                out[f"{dst}input_layernorm.{p}"] = _take(sd, f"{src}attention.ln.{p}")
                out[f"{dst}post_attention_layernorm.{p}"] = _take(sd, f"{src}ln.{p}")
            else:
                out[f"{dst}post_attention_layernorm.{p}"] = _take(sd, f"{src}attention.output.LayerNorm.{p}")
                out[f"{dst}post_mlp_layernorm.{p}"] = _take(sd, f"{src}output.LayerNorm.{p}")
    has_lm_head = "cls.predictions.transform.dense.weight" in sd
    has_binary = cfg.binary_head and "cls.seq_relationship.weight" in sd
    has_classifier = "classifier.weight" in sd
    for p in ("weight", "bias"):
        if cfg.final_norm:
            out[f"final_layernorm.{p}"] = _take(sd, f"encoder.ln.{p}")
        if cfg.add_pooler:
            out[f"pooler.dense.{p}"] = _take(sd, f"pooler.dense.{p}")
        if has_lm_head:
            out[f"lm_head.dense.{p}"] = _take(sd, f"cls.predictions.transform.dense.{p}")
            out[f"lm_head.layernorm.{p}"] = _take(sd, f"cls.predictions.transform.LayerNorm.{p}")
        if has_binary:
            out[f"binary_head.{p}"] = _take(sd, f"cls.seq_relationship.{p}")
        if has_classifier:
            out[f"classifier.{p}"] = _take(sd, f"classifier.{p}")
    if "cls.predictions.bias" in sd or "cls.predictions.decoder.bias" in sd:
        bias = sd.pop("cls.predictions.bias", None)
        bias = sd.pop("cls.predictions.decoder.bias", bias)
        out["lm_head.output_layer.bias"] = pad_rows(bias, V)
    return out


def _gpt2_from_hf(sd: StateDict, cfg: ModelConfig) -> StateDict:
    V, H = cfg.padded_vocab_size, cfg.hidden_size
    out: StateDict = {
        "embedding.word_embeddings.weight": pad_rows(_take(sd, "wte.weight"), V),
        "embedding.position_embeddings.weight": _take(sd, "wpe.weight"),
    }
    for i in range(cfg.num_layers):
        src, dst = f"h.{i}.", f"layers.{i}."
        w, b = _take(sd, f"{src}attn.c_attn.weight").t(), _take(sd, f"{src}attn.c_attn.bias")  # Conv1D: (in, out)
        n = dict(num_heads=cfg.num_attention_heads, num_groups=cfg.query_groups)
        out[f"{dst}self_attention.linear_qkv.weight"] = fuse_qkv(w[:H], w[H : 2 * H], w[2 * H :], **n)
        out[f"{dst}self_attention.linear_qkv.bias"] = fuse_qkv(b[:H], b[H : 2 * H], b[2 * H :], **n)
        out[f"{dst}self_attention.dense.weight"] = _take(sd, f"{src}attn.c_proj.weight").t()
        out[f"{dst}self_attention.dense.bias"] = _take(sd, f"{src}attn.c_proj.bias")
        out[f"{dst}mlp.dense_h_to_4h.weight"] = _take(sd, f"{src}mlp.c_fc.weight").t()
        out[f"{dst}mlp.dense_h_to_4h.bias"] = _take(sd, f"{src}mlp.c_fc.bias")
        out[f"{dst}mlp.dense_4h_to_h.weight"] = _take(sd, f"{src}mlp.c_proj.weight").t()
        out[f"{dst}mlp.dense_4h_to_h.bias"] = _take(sd, f"{src}mlp.c_proj.bias")
        for p in ("weight", "bias"):
            out[f"{dst}input_layernorm.{p}"] = _take(sd, f"{src}ln_1.{p}")
            out[f"{dst}post_attention_layernorm.{p}"] = _take(sd, f"{src}ln_2.{p}")
    for p in ("weight", "bias"):
        out[f"final_layernorm.{p}"] = _take(sd, f"ln_f.{p}")
    if not cfg.tie_word_embeddings:
        out["output_layer.weight"] = pad_rows(_take(sd, "lm_head.weight"), V)
    return {k: v.contiguous() for k, v in out.items()}


def _llama_from_hf(sd: StateDict, cfg: ModelConfig) -> StateDict:
    V = cfg.padded_vocab_size
    out: StateDict = {"embedding.word_embeddings.weight": pad_rows(_take(sd, "embed_tokens.weight"), V)}
    for i in range(cfg.num_layers):
        src, dst = f"layers.{i}.", f"layers.{i}."
        q, k, v = (_take(sd, f"{src}self_attn.{n}_proj.weight") for n in ("q", "k", "v"))
        out[f"{dst}self_attention.linear_qkv.weight"] = fuse_qkv(
            q, k, v, num_heads=cfg.num_attention_heads, num_groups=cfg.query_groups
        )
        out[f"{dst}self_attention.dense.weight"] = _take(sd, f"{src}self_attn.o_proj.weight")
        out[f"{dst}mlp.dense_h_to_4h_gate.weight"] = _take(sd, f"{src}mlp.gate_proj.weight")
        out[f"{dst}mlp.dense_h_to_4h.weight"] = _take(sd, f"{src}mlp.up_proj.weight")
        out[f"{dst}mlp.dense_4h_to_h.weight"] = _take(sd, f"{src}mlp.down_proj.weight")
        out[f"{dst}input_layernorm.weight"] = _take(sd, f"{src}input_layernorm.weight")
        out[f"{dst}post_attention_layernorm.weight"] = _take(sd, f"{src}post_attention_layernorm.weight")
    out["final_layernorm.weight"] = _take(sd, "norm.weight")
    if not cfg.tie_word_embeddings:
        out["output_layer.weight"] = pad_rows(_take(sd, "lm_head.weight"), V)
    return out


# ---------------------------------------------------------------------------------------------
# State dicts: megasense -> Hugging Face
# ---------------------------------------------------------------------------------------------
def state_dict_to_hf(sd: StateDict, cfg: ModelConfig, head: HeadConfig) -> StateDict:
    kind = hf_kind_for(cfg)
    sd = {k: v for k, v in sd.items()}
    if kind in ("bert", "megatron-bert"):
        return _bert_to_hf(sd, cfg, head, megatron=kind == "megatron-bert")
    if kind == "gpt2":
        return _gpt2_to_hf(sd, cfg)
    return _llama_to_hf(sd, cfg)


def _bert_to_hf(sd: StateDict, cfg: ModelConfig, head: HeadConfig, *, megatron: bool) -> StateDict:
    V = cfg.vocab_size
    prefix = "" if head.task in ("encoder", "embedding") else "bert."
    out: StateDict = {
        "embeddings.word_embeddings.weight": sd["embedding.word_embeddings.weight"][:V],
        "embeddings.position_embeddings.weight": sd["embedding.position_embeddings.weight"],
    }
    out["embeddings.token_type_embeddings.weight"] = sd.get(
        "embedding.tokentype_embeddings.weight", torch.zeros(1, cfg.hidden_size)
    )
    if cfg.embedding_norm:
        for p in ("weight", "bias"):
            out[f"embeddings.LayerNorm.{p}"] = sd[f"embedding.layernorm.{p}"]
    for i in range(cfg.num_layers):
        src, dst = f"layers.{i}.", f"encoder.layer.{i}."
        for p in ("weight", "bias"):
            q, k, v = split_qkv(
                sd[f"{src}self_attention.linear_qkv.{p}"],
                num_heads=cfg.num_attention_heads,
                num_groups=cfg.query_groups,
            )
            out[f"{dst}attention.self.query.{p}"], out[f"{dst}attention.self.key.{p}"] = q, k
            out[f"{dst}attention.self.value.{p}"] = v
            out[f"{dst}attention.output.dense.{p}"] = sd[f"{src}self_attention.dense.{p}"]
            out[f"{dst}intermediate.dense.{p}"] = sd[f"{src}mlp.dense_h_to_4h.{p}"]
            out[f"{dst}output.dense.{p}"] = sd[f"{src}mlp.dense_4h_to_h.{p}"]
            if megatron:
                out[f"{dst}attention.ln.{p}"] = sd[f"{src}input_layernorm.{p}"]
                out[f"{dst}ln.{p}"] = sd[f"{src}post_attention_layernorm.{p}"]
            else:
                out[f"{dst}attention.output.LayerNorm.{p}"] = sd[f"{src}post_attention_layernorm.{p}"]
                out[f"{dst}output.LayerNorm.{p}"] = sd[f"{src}post_mlp_layernorm.{p}"]
    for p in ("weight", "bias"):
        if cfg.final_norm:
            out[f"encoder.ln.{p}"] = sd[f"final_layernorm.{p}"]
        if cfg.add_pooler:
            out[f"pooler.dense.{p}"] = sd[f"pooler.dense.{p}"]
    out = {prefix + k: v for k, v in out.items()}
    if head.task == "classification":
        out["classifier.weight"], out["classifier.bias"] = sd["classifier.weight"], sd["classifier.bias"]
    if head.task == "pretraining":
        for p in ("weight", "bias"):
            out[f"cls.predictions.transform.dense.{p}"] = sd[f"lm_head.dense.{p}"]
            out[f"cls.predictions.transform.LayerNorm.{p}"] = sd[f"lm_head.layernorm.{p}"]
            if cfg.binary_head:
                out[f"cls.seq_relationship.{p}"] = sd[f"binary_head.{p}"]
        out["cls.predictions.bias"] = sd["lm_head.output_layer.bias"][:V]
        out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"]
        out["cls.predictions.decoder.weight"] = sd["embedding.word_embeddings.weight"][:V]
    return {k: v.contiguous() for k, v in out.items()}


def _gpt2_to_hf(sd: StateDict, cfg: ModelConfig) -> StateDict:
    V = cfg.vocab_size
    out: StateDict = {
        "transformer.wte.weight": sd["embedding.word_embeddings.weight"][:V],
        "transformer.wpe.weight": sd["embedding.position_embeddings.weight"],
    }
    n = dict(num_heads=cfg.num_attention_heads, num_groups=cfg.query_groups)
    for i in range(cfg.num_layers):
        src, dst = f"layers.{i}.", f"transformer.h.{i}."
        out[f"{dst}attn.c_attn.weight"] = torch.cat(split_qkv(sd[f"{src}self_attention.linear_qkv.weight"], **n)).t()
        out[f"{dst}attn.c_attn.bias"] = torch.cat(split_qkv(sd[f"{src}self_attention.linear_qkv.bias"], **n))
        out[f"{dst}attn.c_proj.weight"] = sd[f"{src}self_attention.dense.weight"].t()
        out[f"{dst}attn.c_proj.bias"] = sd[f"{src}self_attention.dense.bias"]
        out[f"{dst}mlp.c_fc.weight"] = sd[f"{src}mlp.dense_h_to_4h.weight"].t()
        out[f"{dst}mlp.c_fc.bias"] = sd[f"{src}mlp.dense_h_to_4h.bias"]
        out[f"{dst}mlp.c_proj.weight"] = sd[f"{src}mlp.dense_4h_to_h.weight"].t()
        out[f"{dst}mlp.c_proj.bias"] = sd[f"{src}mlp.dense_4h_to_h.bias"]
        for p in ("weight", "bias"):
            out[f"{dst}ln_1.{p}"] = sd[f"{src}input_layernorm.{p}"]
            out[f"{dst}ln_2.{p}"] = sd[f"{src}post_attention_layernorm.{p}"]
    for p in ("weight", "bias"):
        out[f"transformer.ln_f.{p}"] = sd[f"final_layernorm.{p}"]
    out["lm_head.weight"] = (
        sd["embedding.word_embeddings.weight"] if cfg.tie_word_embeddings else sd["output_layer.weight"]
    )[:V]
    return {k: v.contiguous() for k, v in out.items()}


def _llama_to_hf(sd: StateDict, cfg: ModelConfig) -> StateDict:
    V = cfg.vocab_size
    out: StateDict = {"model.embed_tokens.weight": sd["embedding.word_embeddings.weight"][:V]}
    for i in range(cfg.num_layers):
        src, dst = f"layers.{i}.", f"model.layers.{i}."
        q, k, v = split_qkv(
            sd[f"{src}self_attention.linear_qkv.weight"], num_heads=cfg.num_attention_heads, num_groups=cfg.query_groups
        )
        out[f"{dst}self_attn.q_proj.weight"], out[f"{dst}self_attn.k_proj.weight"] = q, k
        out[f"{dst}self_attn.v_proj.weight"] = v
        out[f"{dst}self_attn.o_proj.weight"] = sd[f"{src}self_attention.dense.weight"]
        out[f"{dst}mlp.gate_proj.weight"] = sd[f"{src}mlp.dense_h_to_4h_gate.weight"]
        out[f"{dst}mlp.up_proj.weight"] = sd[f"{src}mlp.dense_h_to_4h.weight"]
        out[f"{dst}mlp.down_proj.weight"] = sd[f"{src}mlp.dense_4h_to_h.weight"]
        out[f"{dst}input_layernorm.weight"] = sd[f"{src}input_layernorm.weight"]
        out[f"{dst}post_attention_layernorm.weight"] = sd[f"{src}post_attention_layernorm.weight"]
    out["model.norm.weight"] = sd["final_layernorm.weight"]
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = sd["output_layer.weight"][:V]
    return {k: v.contiguous() for k, v in out.items()}


_IGNORED_HF_KEYS = re.compile(r"(^|\.)(position_ids|attn\.bias|attn\.masked_bias|rotary_emb\.inv_freq)$")


def drop_buffers(sd: StateDict) -> StateDict:
    """Remove non-parameter buffers that some HF checkpoints carry (position ids, causal masks)."""
    return {k: v for k, v in sd.items() if not _IGNORED_HF_KEYS.search(k)}
