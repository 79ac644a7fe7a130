"""Scoring a segmenter against Universal Dependencies treebanks (CoNLL-U): word F1 and UPOS accuracy.

Words are compared as character spans of the sentence without its whitespace (the standard SIGHAN
measure): a predicted word is correct when a gold word covers exactly the same characters. POS
accuracy counts, among the correctly segmented words, those whose UPOS matches the gold UPOS.
Multi-word token ranges (``1-2``) and empty nodes (``1.1``) are skipped; UD Chinese has neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from megasense.errors import MegasenseInputError


@dataclass(frozen=True)
class GoldSentence:
    text: str
    words: tuple[str, ...]
    upos: tuple[str, ...]
    xpos: tuple[str, ...]
    deprel: tuple[str, ...]


@dataclass(frozen=True)
class SegmentationScore:
    precision: float
    recall: float
    f1: float
    pos_accuracy: float | None
    """UPOS accuracy on correctly segmented words; None when the system gave no tags."""
    words_gold: int
    words_predicted: int
    words_correct: int


def read_conllu(path: str | Path) -> list[GoldSentence]:
    """The sentences of a CoNLL-U file: its ``# text`` (or the words joined) and each word's columns."""
    path = Path(path)
    sentences: list[GoldSentence] = []
    text: str | None = None
    rows: list[list[str]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if line.startswith("# text = "):
                text = line[len("# text = ") :]
            elif not line.strip():
                if rows:
                    sentences.append(_sentence(text, rows))
                text, rows = None, []
            elif not line.startswith("#"):
                fields = line.split("\t")
                if len(fields) != 10:
                    raise MegasenseInputError(f"{path}, line {number}: {len(fields)} columns, CoNLL-U has 10")
                if fields[0].isdigit():
                    rows.append(fields)
    if rows:
        sentences.append(_sentence(text, rows))
    return sentences


def spans(words: Iterable[str]) -> list[tuple[int, int]]:
    """(start, end) of each word over the characters that are not whitespace; empty words are skipped."""
    out = []
    position = 0
    for word in words:
        length = sum(not c.isspace() for c in word)
        if length:
            out.append((position, position + length))
            position += length
    return out


def score(
    gold: Sequence[GoldSentence],
    predicted_words: Sequence[Sequence[str]],
    predicted_upos: Sequence[Sequence[str]] | None = None,
) -> SegmentationScore:
    """Span precision, recall and F1 of ``predicted_words`` against ``gold``, and UPOS accuracy when tagged."""
    if len(predicted_words) != len(gold):
        raise ValueError(f"{len(predicted_words)} predicted sentences for {len(gold)} gold ones")
    correct = n_pred = n_gold = tags_right = 0
    for i, sentence in enumerate(gold):
        gold_spans = dict(zip(spans(sentence.words), sentence.upos))
        words = [w for w in predicted_words[i] if w.strip()]
        pred = spans(words)
        tags = [t for w, t in zip(predicted_words[i], predicted_upos[i]) if w.strip()] if predicted_upos else None
        n_gold += len(gold_spans)
        n_pred += len(pred)
        for j, span in enumerate(pred):
            if span in gold_spans:
                correct += 1
                tags_right += tags is not None and tags[j] == gold_spans[span]
    precision = correct / n_pred if n_pred else 0.0
    recall = correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    pos = tags_right / correct if predicted_upos is not None and correct else None
    return SegmentationScore(precision, recall, f1, pos, n_gold, n_pred, correct)


def merge_ud_splits(sentence: GoldSentence) -> tuple[str, ...]:
    """The gold words with three UD Chinese splits undone: a classifier joined to its number (一/个 -> 一个),
    a given name to the surname (李/南星), a suffix to its word (加速/度). Dictionary segmenters keep
    these together; scoring against these words shows how much of the gap is convention."""
    out: list[str] = []
    for word, xpos, deprel in zip(sentence.words, sentence.xpos, sentence.deprel):
        if out and (deprel in ("clf", "flat:name") or xpos == "SFN"):
            out[-1] += word
        else:
            out.append(word)
    return tuple(out)


def _sentence(text: str | None, rows: list[list[str]]) -> GoldSentence:
    words = tuple(r[1] for r in rows)
    return GoldSentence(
        text=text if text is not None else "".join(words),
        words=words,
        upos=tuple(r[3] for r in rows),
        xpos=tuple(r[4] for r in rows),
        deprel=tuple(r[7] for r in rows),
    )
