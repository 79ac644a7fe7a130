"""Single-device BERT and GPT models in Megatron's parameter layout.

``build_model(config, head)`` constructs the right class; nothing here knows about devices,
process groups or files.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from megasense.config import HeadConfig, ModelConfig
from megasense.errors import ConfigError
from megasense.models.bert import (
    BertForPreTraining,
    BertForSentenceEmbedding,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    mean_pool,
)
from megasense.models.gpt import GPTModel
from megasense.models.kv_cache import KVCache
from megasense.models.outputs import (
    CausalLMOutput,
    ClassifierOutput,
    EmbeddingOutput,
    EncoderOutput,
    MaskedLMOutput,
)


def build_model(config: ModelConfig, head: HeadConfig | None = None) -> nn.Module:
    """The model class for ``config`` with ``head`` on top (parameters uninitialised)."""
    head = head or HeadConfig(task="causal_lm" if config.arch == "gpt" else "encoder")
    if config.arch == "gpt":
        if head.task != "causal_lm":
            raise ConfigError(f"a GPT model only has the causal_lm head, not head task={head.task!r}")
        return GPTModel(config)
    if head.task == "causal_lm":
        raise ConfigError(
            "a BERT model has no causal_lm head; use head task encoder, embedding, classification or pretraining"
        )
    if head.task == "embedding":
        return BertForSentenceEmbedding(config)
    if head.task == "classification":
        return BertForSequenceClassification(
            config, num_labels=len(head.labels), pooling=head.pooling, dropout=head.dropout
        )
    if head.task == "token_classification":
        return BertForTokenClassification(config, num_labels=len(head.labels), dropout=head.dropout)
    if head.task == "pretraining":
        return BertForPreTraining(config)
    return BertModel(config)


def load_weights(model: nn.Module, state_dict: dict, *, strict: bool = True) -> None:
    """Load a state dict that stores each tied parameter once (as checkpoints do)."""
    state_dict = dict(state_dict)
    for alias, source in model.tied_parameters().items():
        if alias not in state_dict and source in state_dict:
            state_dict[alias] = state_dict[source]
    model.load_state_dict(state_dict, strict=strict)
    if hasattr(model, "tie_weights"):
        model.tie_weights()


def reset_buffers(model: nn.Module) -> None:
    """Recompute buffers that checkpoints do not carry (rotary tables), e.g. after ``to_empty``."""
    from megasense.models.layers import RotaryEmbedding

    for module in model.modules():
        if isinstance(module, RotaryEmbedding):
            module.reset_parameters()


class _SkipInitialisers(TorchFunctionMode):
    """Calls to ``torch.nn.init``'s initialisers return their tensor untouched, in this thread only. On the meta
    device they would still run, through torch's Python reference kernels, and the first such call imports
    ``torch._dynamo`` (about a second at every process start, before any weight is read) for values that the
    loaded weights overwrite anyway."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def build_on_meta(config: ModelConfig, head: HeadConfig | None = None) -> nn.Module:
    """``build_model`` on the meta device, without running initialisers: a shape-only model to load into."""
    with torch.device("meta"), _SkipInitialisers():
        return build_model(config, head)


def materialize(
    config: ModelConfig, head: HeadConfig | None, state_dict: dict, *, device: str | torch.device = "cpu"
) -> nn.Module:
    """Build on the meta device (no wasted initialisation), then load ``state_dict`` on ``device``."""
    model = build_on_meta(config, head)
    model = model.to_empty(device=device)
    load_weights(model, state_dict)
    reset_buffers(model)
    return model.eval()


def weights_for_saving(model: nn.Module) -> dict:
    """The state dict without tied aliases, each tensor contiguous (safetensors refuses shared storage)."""
    aliases = set(model.tied_parameters())
    return {k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in aliases}


__all__ = [
    "BertForPreTraining",
    "BertForSentenceEmbedding",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "CausalLMOutput",
    "ClassifierOutput",
    "EmbeddingOutput",
    "EncoderOutput",
    "GPTModel",
    "KVCache",
    "MaskedLMOutput",
    "build_model",
    "load_weights",
    "materialize",
    "mean_pool",
    "reset_buffers",
    "weights_for_saving",
]
