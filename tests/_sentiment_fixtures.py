"""A tiny word-level tokenizer, a tiny BERT and a toy sentiment data set that such a model can learn in seconds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from megasense.config import HeadConfig
from megasense.config.presets import bert_tiny
from megasense.formats.release import LoadedModel, save_release
from megasense.models import BertModel, weights_for_saving
from megasense.tokenization import SpecialTokens, Tokenizer, wordpiece_backend

POSITIVE = ["good", "great", "love", "excellent", "happy", "nice"]
NEGATIVE = ["bad", "awful", "hate", "terrible", "sad", "poor"]
NEUTRAL = ["table", "tuesday", "report", "meeting", "train", "paper"]
FILLER = ["the", "a", "was", "is", "it", "this", "very", "today", "and", "we", "so", "of"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_tokenizer(tmp: Path) -> Tokenizer:
    vocab = tmp / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL, *POSITIVE, *NEGATIVE, *NEUTRAL, *FILLER, ".", "!"]) + "\n", encoding="utf-8")
    special = SpecialTokens(pad="[PAD]", unk="[UNK]", cls="[CLS]", sep="[SEP]", mask="[MASK]")
    return Tokenizer(wordpiece_backend(vocab), kind="wordpiece", special=special, model_max_length=64)


def tiny_base(tmp: Path, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    config = bert_tiny()
    model = BertModel(config)
    model.init_weights()
    return LoadedModel(
        model=model.eval(),
        config=config,
        head=HeadConfig(task="encoder"),
        tokenizer=tiny_tokenizer(tmp),
        path=tmp / "tiny-base",
        metadata={},
    )


def save_base(tmp: Path) -> Path:
    """The tiny base as a release directory, so ``load_model(path)`` and ``--base PATH`` can read it."""
    base = tiny_base(tmp)
    return save_release(
        tmp / "tiny-base",
        config=base.config,
        head=base.head,
        state_dict=weights_for_saving(base.model),
        tokenizer=base.tokenizer,
    )


def toy_sentence(label: str, rng: random.Random) -> str:
    words = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}[label]
    body = [rng.choice(FILLER) for _ in range(rng.randint(2, 5))]
    body.insert(rng.randrange(len(body) + 1), rng.choice(words))
    return " ".join(body)


def toy_rows(n: int, seed: int, labels=("negative", "neutral", "positive")) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(toy_sentence(label, rng), label) for label in (rng.choice(labels) for _ in range(n))]


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    import csv

    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and the CI machine is shared (import it into a test module)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
