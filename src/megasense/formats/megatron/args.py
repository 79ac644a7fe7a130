"""Megatron-LM's training ``args`` <-> ModelConfig, including the padded vocabulary.

Megatron stores every architectural choice in the ``args`` Namespace it pickles beside the weights
(``num_attention_heads``, ``swiglu``, ``position_embedding_type``...); :class:`Facts` reads them once,
refuses variants megasense cannot compute exactly, and, with the merged tensors, builds a ModelConfig.
"""

from __future__ import annotations

import argparse
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from megasense.config import ConfigError, HeadConfig, ModelConfig
from megasense.config.model import padded_vocab_size
from megasense.errors import CheckpointError
from megasense.formats.megatron import keys


def arg(args: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` that ``args`` sets (Megatron renamed several), else ``default``."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            return value
    return default


@dataclass
class Facts:
    """What the args of one checkpoint say, checked; ``tp`` is the tensor-parallel size actually found."""

    source: Path
    args: Any
    version: float
    heads: int
    groups: int
    head_dim: int
    swiglu: bool
    layernorm_1p: bool
    tp: int = 1
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: Any, source: Path, *, version: float) -> Facts:
        if isinstance(args, dict):
            args = types.SimpleNamespace(**args)
        missing = [n for n in ("num_layers", "hidden_size", "num_attention_heads") if arg(args, n) is None]
        if missing:
            raise CheckpointError(source, f"its args lack {missing}; cannot tell the model's shape")
        refusals = {
            "apply_residual_connection_post_layernorm": "residuals taken after the norm",
            "squared_relu": "a squared-ReLU MLP",
            "rotary_interleaved": "interleaved rotary embeddings",
            "use_rope_scaling": "Llama-3.1 rope scaling",
            "qk_layernorm": "query/key norms",
            "multi_latent_attention": "multi-latent attention",
        }
        for flag, what in refusals.items():
            if getattr(args, flag, False) is True:
                raise CheckpointError(source, f"args.{flag}=True ({what}) is not supported by megasense")
        if arg(args, "num_experts") not in (None, 0, 1):
            raise CheckpointError(source, f"args.num_experts={args.num_experts}: mixture-of-experts is not supported")
        if float(arg(args, "rotary_percent", default=1.0)) != 1.0:
            raise CheckpointError(source, f"args.rotary_percent={args.rotary_percent}: only full rotary is supported")
        heads = int(args.num_attention_heads)
        gqa = bool(getattr(args, "group_query_attention", False))
        groups = int(arg(args, "num_query_groups", default=heads)) if gqa else heads
        head_dim = int(arg(args, "kv_channels", default=0) or args.hidden_size // heads)
        if version < 2 and groups != heads:
            raise CheckpointError(source, f"checkpoint_version={version:g} cannot hold grouped-query attention")
        return cls(
            source=source, args=args, version=version, heads=heads, groups=groups, head_dim=head_dim,
            swiglu=bool(getattr(args, "swiglu", False)), layernorm_1p=bool(getattr(args, "apply_layernorm_1p", False)),
        )  # fmt: skip

    # Parallel layout -----------------------------------------------------------------------------
    def check_parallel(self, tp: int, pp: int, *, single_file: bool) -> None:
        # Sizes the args do not state are taken from the directories found.
        args_tp = int(arg(self.args, "tensor_model_parallel_size", "model_parallel_size", default=tp))
        args_pp = int(arg(self.args, "pipeline_model_parallel_size", default=pp))
        if single_file and (args_tp, args_pp) != (1, 1):
            raise CheckpointError(
                self.source,
                f"is one shard of a checkpoint split tensor-parallel {args_tp} x pipeline {args_pp}; "
                "pass the checkpoint directory (the one holding latest_checkpointed_iteration.txt) instead",
            )
        if not single_file and (tp, pp) != (args_tp, args_pp):
            raise CheckpointError(
                self.source,
                f"found {tp} tensor x {pp} pipeline shards, but its args say tensor_model_parallel_size={args_tp}, "
                f"pipeline_model_parallel_size={args_pp}",
            )
        if self.groups % tp:
            raise CheckpointError(self.source, f"num_query_groups={self.groups} does not split over tp={tp}")
        self.tp = tp

    def check_qkv(self, name: str, t: torch.Tensor, source: Path) -> torch.Tensor:
        """One rank's fused QKV, shape-checked, rows reordered to ``[groups, q_per_group + 2, head_dim]``."""
        rows = self.groups // self.tp * (self.heads // self.groups + 2) * self.head_dim
        if t.shape[0] != rows:
            raise CheckpointError(
                source,
                f"{name} has {t.shape[0]} rows per rank; num_attention_heads={self.heads}, num_query_groups="
                f"{self.groups}, kv_channels={self.head_dim} and tp={self.tp} give {rows}",
            )
        return keys.qkv_to_current(t, self.version, heads=self.heads // self.tp)

    # ModelConfig --------------------------------------------------------------------------------------
    def _activation(self, has_bias: bool, bert: bool) -> str:
        args = self.args
        if self.swiglu:
            return "swiglu"
        if getattr(args, "openai_gelu", False):
            return "gelu_tanh"
        if getattr(args, "onnx_safe", False):
            return "gelu"
        if getattr(args, "bias_gelu_fusion", False) and has_bias:
            # Megatron's fused bias-GeLU kernel computes the tanh approximation (its BERT LM head does not).
            if bert:
                self.notes.append("bias_gelu_fusion: the MLPs used tanh-GeLU; the LM head now does too (Megatron: erf)")
            return "gelu_tanh"
        return "gelu"

    def _positions(self, state: dict[str, torch.Tensor]) -> tuple[str, int]:
        args = self.args
        kind = str(arg(args, "position_embedding_type", default="learned_absolute"))
        rope = kind == "rope" or bool(getattr(args, "use_rotary_position_embeddings", False))
        table = state.get("embedding.position_embeddings.weight")
        if rope and table is None:
            return "rope", int(arg(args, "max_position_embeddings", "seq_length", default=2048))
        if table is not None and not rope:
            return "learned", table.shape[0]
        raise CheckpointError(
            self.source,
            f"args.position_embedding_type={kind!r} but the checkpoint "
            f"{'has' if table is not None else 'has no'} a position table; megasense needs learned or rope",
        )

    def _vocab(self, rows: int, vocab_size: int | None) -> tuple[int, int]:
        """(real vocabulary size, make_vocab_size_divisible_by) that pad to the ``rows`` stored."""
        args = self.args
        stored = arg(args, "padded_vocab_size")
        if stored is not None and int(stored) != rows:
            self.notes.append(f"args.padded_vocab_size={stored} but the word embeddings have {rows} rows; used {rows}")
        if vocab_size is None:
            saved = arg(args, "vocab_size")  # megasense's exporter records the real size here
            if isinstance(saved, int) and 0 < saved <= rows:
                vocab_size = saved
            else:
                vocab_size = rows
                self.notes.append(
                    f"vocab_size set to the padded {rows}: pass vocab_file= (or put vocab.txt / vocab.json beside the "
                    "checkpoint) for the real size and a tokenizer"
                )
        if vocab_size > rows:
            raise CheckpointError(self.source, f"the tokenizer has {vocab_size} tokens but the embeddings only {rows}")
        divisor = int(arg(args, "make_vocab_size_divisible_by", default=128))
        args_tp = int(arg(args, "tensor_model_parallel_size", "model_parallel_size", default=1))
        for multiple in (divisor * args_tp, divisor, rows):
            if padded_vocab_size(vocab_size, multiple) == rows:
                return vocab_size, multiple
        raise AssertionError("unreachable: padding to `rows` always gives `rows`")

    def model_config(
        self, state: dict[str, torch.Tensor], *, name: str, vocab_size: int | None
    ) -> tuple[ModelConfig, HeadConfig, list[str]]:
        args = self.args
        bert = any(k.startswith(("lm_head.", "binary_head.", "pooler.", "embedding.tokentype")) for k in state)
        layers = {int(k.split(".")[1]) for k in state if k.startswith("layers.")}
        if len(layers) != int(args.num_layers) or (layers and max(layers) != len(layers) - 1):
            raise CheckpointError(self.source, f"holds layers {sorted(layers)} but args.num_layers={args.num_layers}")
        words = state.get("embedding.word_embeddings.weight")
        if words is None or words.shape[1] != int(args.hidden_size):
            raise CheckpointError(self.source, f"no word embeddings of width hidden_size={args.hidden_size}")
        has_bias = "layers.0.self_attention.dense.bias" in state
        position, max_positions = self._positions(state)
        norm = str(arg(args, "normalization", default="LayerNorm"))
        if norm not in ("LayerNorm", "RMSNorm"):
            raise CheckpointError(self.source, f"args.normalization={norm!r}: expected LayerNorm or RMSNorm")
        real_vocab, multiple = self._vocab(words.shape[0], vocab_size)
        types_table = state.get("embedding.tokentype_embeddings.weight")
        tokenizer_type = arg(args, "tokenizer_type")
        config = ModelConfig(
            arch="bert" if bert else "gpt",
            name=name,
            vocab_size=real_vocab,
            hidden_size=int(args.hidden_size),
            num_layers=int(args.num_layers),
            num_attention_heads=self.heads,
            num_query_groups=self.groups if self.groups != self.heads else None,
            kv_channels=self.head_dim if self.head_dim * self.heads != int(args.hidden_size) else None,
            ffn_hidden_size=state["layers.0.mlp.dense_4h_to_h.weight"].shape[1] if layers else None,
            max_position_embeddings=max_positions,
            position_embedding=position,
            rotary_base=float(arg(args, "rotary_base", default=10000)),
            normalization="rmsnorm" if norm == "RMSNorm" else "layernorm",
            norm_eps=float(arg(args, "norm_epsilon", "layernorm_epsilon", default=1e-5)),
            activation=self._activation(has_bias, bert),
            add_bias_linear=has_bias,
            add_qkv_bias="layers.0.self_attention.linear_qkv.bias" in state,
            num_tokentypes=types_table.shape[0] if types_table is not None else 0,
            add_pooler="pooler.dense.weight" in state,
            binary_head="binary_head.weight" in state,
            tie_word_embeddings="output_layer.weight" not in state,
            make_vocab_size_divisible_by=multiple,
            hidden_dropout=float(arg(args, "hidden_dropout", default=0.1)),
            attention_dropout=float(arg(args, "attention_dropout", default=0.1)),
            init_method_std=float(arg(args, "init_method_std", default=0.02)),
            extra={"megatron_checkpoint_version": self.version, "megatron_tokenizer_type": str(tokenizer_type)},
        )
        if bert:
            head = HeadConfig(task="pretraining" if "lm_head.dense.weight" in state else "encoder")
        else:
            head = HeadConfig(task="causal_lm")
        return config, head, self.notes


# ---------------------------------------------------------------------------------------------
# ModelConfig -> args (export)
# ---------------------------------------------------------------------------------------------
def _check_exportable(cfg: ModelConfig, head: HeadConfig, tp: int) -> None:
    if cfg.arch == "bert" and not (cfg.pre_norm and cfg.final_norm and not cfg.embedding_norm):
        raise ConfigError(
            "this BERT is post-norm with an embedding LayerNorm (the original BERT); Megatron-BERT is pre-norm "
            "with a final norm and no embedding norm, so no Megatron-LM layout computes it. Export it to Hugging Face"
        )
    if cfg.activation == "relu":
        raise ConfigError("activation='relu': Megatron-LM's MLP has no plain ReLU (GeLU, SwiGLU or squared ReLU)")
    if head.task == "classification":
        raise ConfigError("Megatron-LM checkpoints have no place for a classification head and its labels")
    if not isinstance(tp, int) or tp < 1:
        raise ConfigError(f"tp={tp!r} must be a positive integer")
    problems = []
    if cfg.query_groups % tp:
        what = "num_attention_heads" if cfg.query_groups == cfg.num_attention_heads else "num_query_groups"
        problems.append(f"{what}={cfg.query_groups} is not divisible by tp={tp}")
    if cfg.ffn_size % tp:
        problems.append(f"ffn_hidden_size={cfg.ffn_size} is not divisible by tp={tp}")
    if cfg.padded_vocab_size % tp:
        problems.append(
            f"the padded vocabulary ({cfg.vocab_size} padded to a multiple of {cfg.make_vocab_size_divisible_by} = "
            f"{cfg.padded_vocab_size}) is not divisible by tp={tp}; use a make_vocab_size_divisible_by that tp divides"
        )
    if problems:
        raise ConfigError("; ".join(problems))


def _megatron_multiple(cfg: ModelConfig, tp: int) -> int:
    """make_vocab_size_divisible_by for Megatron, which pads to a multiple of (that x tp)."""
    m = cfg.make_vocab_size_divisible_by
    for candidate in ([m // tp] if m % tp == 0 else []) + [m, cfg.padded_vocab_size // tp]:
        if padded_vocab_size(cfg.vocab_size, candidate * tp) == cfg.padded_vocab_size:
            return candidate
    raise AssertionError("unreachable: padded_vocab_size // tp always works")


def args_for(cfg: ModelConfig, head: HeadConfig, *, tp: int, dtype: torch.dtype) -> argparse.Namespace:
    """The training args Megatron-LM would have saved for this model (plain values only)."""
    _check_exportable(cfg, head, tp)
    rope = cfg.position_embedding == "rope"
    tokenizer_type = cfg.extra.get("megatron_tokenizer_type")
    if not isinstance(tokenizer_type, str) or tokenizer_type == "None":  # what Megatron would have used
        tokenizer_type = "HuggingFaceTokenizer" if rope else "GPT2BPETokenizer"
        tokenizer_type = "BertWordPieceLowerCase" if cfg.arch == "bert" else tokenizer_type
    base = int(cfg.rotary_base) if float(cfg.rotary_base).is_integer() else cfg.rotary_base
    return argparse.Namespace(
        num_layers=cfg.num_layers,
        hidden_size=cfg.hidden_size,
        ffn_hidden_size=cfg.ffn_size,
        num_attention_heads=cfg.num_attention_heads,
        kv_channels=cfg.head_dim,
        group_query_attention=cfg.query_groups != cfg.num_attention_heads,
        num_query_groups=cfg.query_groups,
        max_position_embeddings=cfg.max_position_embeddings,
        seq_length=cfg.max_position_embeddings,
        encoder_seq_length=cfg.max_position_embeddings,
        position_embedding_type="rope" if rope else "learned_absolute",
        add_position_embedding=not rope,
        use_rotary_position_embeddings=rope,
        rotary_base=base,
        rotary_percent=1.0,
        rotary_interleaved=False,
        normalization="RMSNorm" if cfg.normalization == "rmsnorm" else "LayerNorm",
        norm_epsilon=cfg.norm_eps,
        layernorm_epsilon=cfg.norm_eps,
        apply_layernorm_1p=False,
        apply_residual_connection_post_layernorm=False,
        swiglu=cfg.activation == "swiglu",
        openai_gelu=cfg.activation == "gelu_tanh",
        bias_gelu_fusion=False,
        squared_relu=False,
        add_bias_linear=cfg.add_bias_linear,
        disable_bias_linear=not cfg.add_bias_linear,
        add_qkv_bias=cfg.add_qkv_bias,
        untie_embeddings_and_output_weights=cfg.arch == "gpt" and not cfg.tie_word_embeddings,
        bert_binary_head=cfg.binary_head,
        tokenizer_type=tokenizer_type,
        vocab_size=cfg.vocab_size,
        padded_vocab_size=cfg.padded_vocab_size,
        make_vocab_size_divisible_by=_megatron_multiple(cfg, tp),
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=1,
        virtual_pipeline_model_parallel_size=None,
        hidden_dropout=cfg.hidden_dropout,
        attention_dropout=cfg.attention_dropout,
        init_method_std=cfg.init_method_std,
        params_dtype=dtype,
        fp16=dtype == torch.float16,
        bf16=dtype == torch.bfloat16,
        iteration=0,
        consumed_train_samples=0,
        consumed_valid_samples=0,
    )
