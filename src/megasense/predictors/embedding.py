"""Texts in, sentence vectors out: mean-pooled, L2-normalised embeddings from any BERT-family model.

``SentenceEmbedder`` takes a loaded model (``megasense.load_model``), never a name, so the caller
decides where weights come from and keeps one model for many calls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from megasense.files.progress import Progress
from megasense.formats.release import LoadedModel
from megasense.inference.encoder import EncoderEngine, EncoderSettings
from megasense.models import EmbeddingOutput, mean_pool
from megasense.predictors.texts import check_texts, require_text_model


class _MeanPooled(nn.Module):
    """Any BERT-family model (whatever its head) as a sentence embedder over its backbone's states."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> EmbeddingOutput:
        hidden = self.backbone.encode(input_ids, attention_mask).last_hidden_state  # (B, T, H)
        return EmbeddingOutput(embeddings=F.normalize(mean_pool(hidden, attention_mask), p=2, dim=-1))


class SentenceEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings from an encoder (sentence-transformers' recipe)."""

    def __init__(self, loaded: LoadedModel, *, settings: EncoderSettings | None = None, max_length: int = 256):
        require_text_model(loaded, arch="bert", needs="embeddings need an encoder")
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.prefix = loaded.head.text_prefix
        self.max_length = min(max_length, loaded.config.max_position_embeddings)
        self.engine = EncoderEngine(_MeanPooled(loaded.model), pad_id=self.tokenizer.pad_id, settings=settings)

    @property
    def dim(self) -> int:
        return self.loaded.config.hidden_size

    def encode(self, texts: Sequence[str] | str) -> list[list[int]]:
        """Token ids of each text as the model sees it (prefix added, truncated to ``max_length``)."""
        return self.tokenizer.encode_batch([self.prefix + t for t in check_texts(texts)], max_length=self.max_length)

    def encode_flagged(self, texts: Sequence[str] | str) -> tuple[list[list[int]], list[bool]]:
        """``encode``'s ids, and for each text whether ``max_length`` cut it (what a service tells its client)."""
        batch = self.tokenizer([self.prefix + t for t in check_texts(texts)], max_length=self.max_length)
        ids = [row[:n].tolist() for row, n in zip(batch.input_ids, batch.lengths)]
        return ids, list(batch.truncated)

    def embed(self, texts: Sequence[str] | str, *, progress: Progress | None = None) -> np.ndarray:
        """(N, hidden) float32 array, rows in the order of ``texts``; no texts give a (0, hidden) array."""
        return self.embed_ids(self.encode(texts), progress=progress)

    def embed_ids(self, ids: Sequence[Sequence[int]], *, progress: Progress | None = None) -> np.ndarray:
        """Embeddings of already tokenized texts (see ``encode``)."""
        result = np.zeros((len(ids), self.dim), dtype=np.float32)
        if not ids:
            return result
        for indices, out in self.engine.batches(ids):
            result[indices] = out.numpy()
            if progress is not None:
                progress(len(indices))
        return result
