"""BERT-family encoders (BERT, MiniLM, e5, Megatron-BERT) and their heads, for one device.

The backbone's parameter names are the module paths below (``layers.0.self_attention.linear_qkv``);
heads subclass the backbone and add their own modules, so every checkpoint key and every
tensor-parallel plan entry is relative to the same root whatever the head.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from megasense.config import ModelConfig
from megasense.errors import ConfigError
from megasense.models.layers import Embedding, TransformerLayer, activation_fn, init_weights, make_norm
from megasense.models.outputs import ClassifierOutput, EmbeddingOutput, EncoderOutput, MaskedLMOutput

# Module path -> parallel style. ``megasense.parallel`` turns these into PyTorch's
# ColwiseParallel / RowwiseParallel over a DeviceMesh; the model never reads them itself.
BERT_TP_PLAN: dict[str, str] = {
    "embedding.word_embeddings": "vocab_embedding",
    "layers.*.self_attention.linear_qkv": "colwise",
    "layers.*.self_attention.dense": "rowwise",
    "layers.*.mlp.dense_h_to_4h": "colwise",
    "layers.*.mlp.dense_4h_to_h": "rowwise",
}


def padding_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T) 1/0 mask -> (B, 1, 1, T) boolean mask for SDPA, or None when nothing is padded."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Average of the hidden states over real (unpadded) tokens: (B, T, H) -> (B, H)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def init_head(linear: nn.Linear, std: float) -> None:
    """A fresh classifier layer: small normal weights, zero bias (the sequence and the token heads alike)."""
    nn.init.normal_(linear.weight, std=std)
    nn.init.zeros_(linear.bias)


class Pooler(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class BertModel(nn.Module):
    """The encoder backbone: embeddings, bidirectional layers, optional final norm and pooler."""

    tp_plan = BERT_TP_PLAN

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch != "bert":
            raise ValueError(f"BertModel needs arch='bert', got {cfg.arch!r}")
        self.config = cfg
        self.embedding = Embedding(cfg)
        self.layers = nn.ModuleList(TransformerLayer(cfg, causal=False) for _ in range(cfg.num_layers))
        self.final_layernorm = make_norm(cfg) if cfg.final_norm else None
        self.pooler = Pooler(cfg) if cfg.add_pooler else None

    def init_weights(self) -> None:
        init_weights(self, self.config)

    def tied_parameters(self) -> dict[str, str]:
        """Parameters that alias another one: {alias: source}. Checkpoints store only the source."""
        return {}

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> EncoderOutput:
        mask = padding_mask(attention_mask)
        x = self.embedding(input_ids, token_type_ids=token_type_ids)  # (B, T, H)
        for layer in self.layers:
            x = layer(x, mask)
        if self.final_layernorm is not None:
            x = self.final_layernorm(x)
        pooled = self.pooler(x) if self.pooler is not None else None
        return EncoderOutput(last_hidden_state=x, pooled_output=pooled)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> EncoderOutput:
        return self.encode(input_ids, attention_mask, token_type_ids)


class BertForSentenceEmbedding(BertModel):
    """Mean pooling over real tokens, then L2 normalisation (sentence-transformers' recipe)."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> EmbeddingOutput:
        hidden = self.encode(input_ids, attention_mask, token_type_ids).last_hidden_state
        return EmbeddingOutput(embeddings=F.normalize(mean_pool(hidden, attention_mask), p=2, dim=-1))


class BertForSequenceClassification(BertModel):
    """A linear classifier over a pooled representation of the text.

    ``pooling`` picks the representation: ``mean`` (mean of token states, best for sentence
    encoders such as MiniLM and e5), ``cls`` (the first token's state) or ``pooler`` (BERT's
    ``tanh(dense(first token))``, as transformers' ``BertForSequenceClassification``).
    """

    def __init__(self, cfg: ModelConfig, *, num_labels: int, pooling: str = "mean", dropout: float = 0.1) -> None:
        super().__init__(cfg)
        if pooling not in ("mean", "cls", "pooler"):
            raise ConfigError(f"pooling={pooling!r} is not one of mean, cls, pooler")
        if pooling == "pooler" and self.pooler is None:
            raise ConfigError("pooling='pooler' needs a model with add_pooler=True")
        if num_labels < 1:
            raise ConfigError(f"num_labels={num_labels} must be at least 1")
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)

    def init_weights(self) -> None:
        super().init_weights()
        init_head(self.classifier, self.config.init_method_std)

    def pooled(self, out: EncoderOutput, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.pooling == "mean":
            return mean_pool(out.last_hidden_state, attention_mask)
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        return out.pooled_output

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        class_weights: torch.Tensor | None = None,
        label_mask: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        """``labels``: (B,) class indices (one label per text: softmax cross-entropy), or (B, num_labels)
        floats of 0/1 (multi-label: a binary cross-entropy per label, ``class_weights`` then weighting
        each label's positives).

        ``label_mask`` (B, num_labels) bool: the labels each row's loss may choose among. A row from a
        binary source (negative/positive only) then teaches nothing about the label it never had;
        the returned logits are not masked."""
        out = self.encode(input_ids, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(self.pooled(out, attention_mask)))  # (B, num_labels)
        loss = None
        if labels is not None and labels.dim() == 2:
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=class_weights)
        elif labels is not None:
            scored = logits.float()
            if label_mask is not None:
                scored = scored.masked_fill(~label_mask.bool(), float("-inf"))
            loss = F.cross_entropy(scored, labels, weight=class_weights)
        return ClassifierOutput(logits=logits, loss=loss)


class BertLMHead(nn.Module):
    """dense -> activation -> norm -> output layer tied to the word embeddings (+ its own bias)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = activation_fn("gelu" if cfg.activation == "swiglu" else cfg.activation)
        self.layernorm = make_norm(cfg)
        self.output_layer = nn.Linear(cfg.hidden_size, cfg.padded_vocab_size, bias=True)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.layernorm(self.act(self.dense(hidden))))


class BertForPreTraining(BertModel):
    """Masked-LM head (tied to the embedding) and, with ``binary_head``, a sentence-order head."""

    # The tied output layer must be split over the vocabulary like the embedding it shares.
    tp_plan: ClassVar[dict[str, str]] = {**BERT_TP_PLAN, "lm_head.output_layer": "vocab_output"}

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.lm_head = BertLMHead(cfg)
        self.binary_head = nn.Linear(cfg.hidden_size, 2) if cfg.binary_head else None
        self.tie_weights()

    def tie_weights(self) -> None:
        self.lm_head.output_layer.weight = self.embedding.word_embeddings.weight

    def tied_parameters(self) -> dict[str, str]:
        return {"lm_head.output_layer.weight": "embedding.word_embeddings.weight"}

    def init_weights(self) -> None:
        super().init_weights()
        nn.init.zeros_(self.lm_head.output_layer.bias)
        self.tie_weights()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        binary_labels: torch.Tensor | None = None,
    ) -> MaskedLMOutput:
        out = self.encode(input_ids, attention_mask, token_type_ids)
        binary_logits = self.binary_head(out.pooled_output) if self.binary_head is not None else None
        loss = None
        if labels is None:
            logits = self.lm_head(out.last_hidden_state)  # (B, T, V_padded)
        else:
            # Only the labelled positions (~15%) are scored: the output layer is the largest matrix
            # multiplication of a small BERT, and the loss needs no other rows.
            picked = labels != -100  # (B, T)
            logits = self.lm_head(out.last_hidden_state[picked])  # (N, V_padded)
            loss = F.cross_entropy(logits.float(), labels[picked])
            if binary_labels is not None and binary_logits is not None:
                loss = loss + F.cross_entropy(binary_logits.float(), binary_labels)
        return MaskedLMOutput(logits=logits, binary_logits=binary_logits, loss=loss)


class BertForTokenClassification(BertModel):
    """A linear classifier on every token's hidden state (slot filling, NER: one tag per token).

    ``forward`` returns ``ClassifierOutput`` whose ``logits`` are (B, T, num_labels); the loss is the mean
    cross-entropy over positions whose label is not -100 (padding, special tokens and the sub-tokens a
    tagging scheme leaves unlabelled).
    """

    def __init__(self, cfg: ModelConfig, *, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__(cfg)
        if num_labels < 2:
            raise ConfigError(f"num_labels={num_labels} must be at least 2 for token classification")
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)

    def init_weights(self) -> None:
        super().init_weights()
        init_head(self.classifier, self.config.init_method_std)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> ClassifierOutput:
        """``labels``: (B, T) tag indices, -100 where a position is not scored."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids).last_hidden_state  # (B, T, H)
        logits = self.classifier(self.dropout(hidden))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        return ClassifierOutput(logits=logits, loss=loss)
