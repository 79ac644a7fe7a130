"""Text in, results out: the steps between a user's strings and the engines that see only token ids.

``SentenceEmbedder`` turns texts into L2-normalised sentence vectors with any BERT-family model;
``TextGenerator`` turns prompts (or chat messages) into continuations with any GPT-family model,
whole or streamed. Both take a loaded model (``megasense.load_model``), never a name, so the caller
decides where weights come from and keeps one model for many calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from megasense.checkpoints.atomic import atomic_file
from megasense.checkpoints.release import LoadedModel
from megasense.config import GenerationConfig
from megasense.data.tables import TableWriter, read_chunks, require_column
from megasense.inference.encoder import EncoderEngine, EncoderSettings
from megasense.inference.generation import Generation, GenerationEngine
from megasense.models import EmbeddingOutput, mean_pool

Progress = Callable[[int], None]
"""Called with the number of texts just finished."""


def require_tokenizer(loaded: LoadedModel) -> None:
    if loaded.tokenizer is None:
        raise ValueError(f"{loaded.path}: the model has no tokenizer files (tokenizer.json); it cannot read text")


def check_texts(texts: Sequence[str] | str) -> list[str]:
    """A list of strings, or a TypeError naming the first item that is not one."""
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is a {type(text).__name__}, expected a string")
    return texts


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
        if loaded.config.arch != "bert":
            raise ValueError(f"{loaded.path}: embeddings need an encoder (arch bert), not arch {loaded.config.arch}")
        require_tokenizer(loaded)
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


class TextGenerator:
    """Prompts (plain or chat) -> generated text, with the tokenizer's end tokens as stop tokens."""

    def __init__(self, loaded: LoadedModel) -> None:
        if loaded.config.arch != "gpt":
            raise ValueError(f"{loaded.path}: generation needs a decoder (arch gpt), not arch {loaded.config.arch}")
        require_tokenizer(loaded)
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        stops = {i for i in (self.tokenizer.eos_id,) if i is not None}
        chat_end = self.tokenizer.token_to_id("<|im_end|>")  # ChatML models end a turn with it
        if chat_end is not None:
            stops.add(chat_end)
        self.engine = GenerationEngine(loaded.model, eos_token_ids=sorted(stops), pad_token_id=self.tokenizer.pad_id)

    @property
    def has_chat_template(self) -> bool:
        return bool(self.tokenizer.chat_template)

    def prompt_ids(self, prompt: str, *, chat: bool | None = None, system: str | None = None) -> list[int]:
        """Token ids of a prompt; ``chat`` (default: when the model has a template) wraps it as a user turn."""
        if chat is None:
            chat = self.has_chat_template
        if chat:
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}
            ]
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
            return self.tokenizer.encode(text, add_special_tokens=False)
        ids = self.tokenizer.encode(prompt)  # the tokenizer's post-processor adds BOS where the model wants it
        if not ids:
            raise ValueError("the prompt is empty: give at least one character of text")
        return ids

    def generate(
        self, prompts: Sequence[str] | str, config: GenerationConfig, *, chat: bool | None = None
    ) -> list[tuple[str, Generation]]:
        """(text, generation) for each prompt; the text excludes the prompt and the stop token."""
        prompts = check_texts(prompts)
        ids = [self.prompt_ids(p, chat=chat) for p in prompts]
        generations = self.engine.generate(ids, config)
        return [(self.tokenizer.decode(g.tokens), g) for g in generations]

    def stream(self, prompt: str, config: GenerationConfig, *, chat: bool | None = None) -> Iterator[str]:
        """Yield pieces of text as tokens arrive; joined, they equal the full generation's text.

        Decoding token by token would split multi-byte characters (a Chinese character is often
        two or three byte-level tokens), so each step decodes everything so far and yields only the
        new suffix, holding back a trailing replacement character until it completes.
        """
        ids = [self.prompt_ids(prompt, chat=chat)]
        tokens: list[int] = []
        shown = ""
        for step in self.engine.stream(ids, config):
            if step[0] is None:
                break
            tokens.append(step[0])
            text = self.tokenizer.decode(tokens)
            if text.endswith("\ufffd"):
                continue
            if text.startswith(shown):
                yield text[len(shown) :]
                shown = text
        final = self.tokenizer.decode(tokens)
        if final != shown and final.startswith(shown):
            yield final[len(shown) :]


def embed_file(
    embedder: SentenceEmbedder,
    source: str | Path,
    output: str | Path,
    *,
    text_col: str = "text",
    chunk_rows: int = 4096,
    progress: Progress | None = None,
) -> int:
    """Embed the ``text_col`` of a table into ``output``; returns the number of rows written.

    ``.npy`` output holds an (N, hidden) float32 matrix; a table output (CSV, TSV, JSONL, Parquet)
    holds the input columns plus ``embedding`` (a list of floats). Written atomically; the input is
    never overwritten.
    """
    source, output = Path(source), Path(output)
    as_matrix = output.suffix.lower() == ".npy"
    rows: list[np.ndarray] = []
    total = 0
    writer = None if as_matrix else TableWriter(output, protect=(source,))
    try:
        for chunk in read_chunks(source, chunk_rows=chunk_rows):
            require_column(chunk.frame, text_col, source)
            texts = text_column(chunk.frame, text_col)
            vectors = embedder.embed(texts, progress=progress)
            total += len(texts)
            if as_matrix:
                rows.append(vectors)
            else:
                frame = chunk.frame.copy()
                frame["embedding"] = [v.tolist() for v in vectors]
                writer.write(frame)
        if as_matrix:
            matrix = np.concatenate(rows) if rows else np.zeros((0, embedder.dim), dtype=np.float32)
            with atomic_file(output) as handle:
                np.save(handle, matrix, allow_pickle=False)
        else:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return total


def text_column(frame, column: str) -> list[str]:
    """The column as strings: missing values become empty texts, numbers their decimal form."""
    return ["" if value is None or value != value else str(value) for value in frame[column].tolist()]
