"""Texts in, slots out: what an assistant must act on ("set an alarm for **seven**", "播放**周杰伦**的歌").

``SlotFiller`` runs a token-classification model (``HeadConfig(task="token_classification")``, its
labels a BIO or BIOES tag set): ``predictors.tagging`` turns texts into sub-tokens that know their
characters, the encoder engine runs them in length-sorted batches at the chosen precision, and each
text's tag scores are decoded with only valid transitions (Viterbi) into character spans. The answer
per text is a ``SlotResult``: the slots (name, value, character offsets, score) and one tag per
character, in the model's scheme.

``evaluate_slots`` is the one slot evaluation (what training validates with and writes into a card):
span-level micro precision, recall and F1 from ``seqeval`` in strict mode (a slot counts only with its
exact boundaries and name), the same per slot name, and the share of texts whose slots are all right.
``read_slot_examples`` reads a table of texts with character tags (or slot values, as JSON) and names
the file and row of any tag count that does not match its text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from megasense.errors import MegasenseInputError, TableError
from megasense.files.progress import Progress
from megasense.files.tables import read_table, require_column, table_format
from megasense.formats.release import LoadedModel
from megasense.inference.encoder import EncoderEngine, EncoderSettings
from megasense.inference.quantize import check_precision
from megasense.predictors.tagging import (
    Scheme,
    Span,
    TaggedTokens,
    Transitions,
    char_spans,
    convert_tags,
    parse_markup,
    spans_to_tags,
    split_tag,
    tag_scheme,
    tag_tokens,
    tags_to_spans,
)
from megasense.predictors.texts import check_texts, require_tokenizer


@dataclass(frozen=True)
class Slot:
    """One slot found in a text."""

    slot: str
    """The slot's name (``singer_name``)."""
    value: str
    """``text[start:end]``."""
    start: int
    """First character (0-based, in code points)."""
    end: int
    """One past the last character."""
    score: float
    """Mean probability of the slot's token tags (how sure the model is of the whole span)."""

    def to_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "value": self.value, "start": self.start, "end": self.end, "score": self.score}


@dataclass(frozen=True)
class SlotResult:
    """One text's slots and its character tags."""

    slots: tuple[Slot, ...]
    tags: tuple[str, ...]
    """One tag per character of the text, in the model's scheme (``O`` past a truncated text's end)."""

    def to_dict(self) -> dict[str, Any]:
        """``{"slots": [{"slot", "value", "start", "end", "score"}, ...], "tags": [...]}``."""
        return {"slots": [s.to_dict() for s in self.slots], "tags": list(self.tags)}

    def values(self) -> dict[str, list[str]]:
        """Slot name -> the values found, in text order (``{"singer_name": ["周杰伦"]}``)."""
        out: dict[str, list[str]] = {}
        for slot in self.slots:
            out.setdefault(slot.slot, []).append(slot.value)
        return out


class SlotFiller:
    """Texts -> slots with one token-classification model."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_length: int = 256,
        precision: str = "auto",
        settings: EncoderSettings | None = None,
        split_cjk: bool = True,
        name: str | None = None,
    ) -> None:
        if loaded.head.task != "token_classification":
            raise MegasenseInputError(
                f"{loaded.path}: is a {loaded.head.task!r} model, not a slot filler (token_classification); "
                "train one with megasense.training.slots.train_slots"
            )
        require_tokenizer(loaded)
        self.loaded = loaded
        self.name = name or str(loaded.metadata.get("name") or loaded.path)
        self.max_length = min(max_length, loaded.config.max_position_embeddings)
        self.split_cjk = split_cjk
        self.transitions = Transitions(loaded.head.labels)
        self.engine = EncoderEngine(
            loaded.model, pad_id=loaded.tokenizer.pad_id, settings=settings, precision=check_precision(precision)
        )

    @property
    def tags(self) -> tuple[str, ...]:
        return self.transitions.tags

    @property
    def scheme(self) -> Scheme:
        return self.transitions.scheme

    @property
    def precision(self) -> str:
        return self.engine.precision

    def tokens(self, texts: Sequence[str]) -> list[TaggedTokens]:
        """The sub-tokens the model reads for ``texts`` (what training labels, too)."""
        head = self.loaded.head
        return tag_tokens(
            self.loaded.tokenizer, texts, prefix=head.text_prefix, max_length=self.max_length, split_cjk=self.split_cjk
        )

    def predict(self, texts: Sequence[str] | str, *, progress: Progress | None = None) -> list[SlotResult]:
        texts = check_texts(texts)
        if not texts:
            return []
        encoded = self.tokens(texts)
        results: list[SlotResult | None] = [None] * len(texts)
        for indices, logits in self.engine.batches([e.ids for e in encoded]):  # logits (B, T, tags)
            log_probs = logits.log_softmax(dim=-1).numpy()
            for row, i in enumerate(indices):
                tagged = encoded[i].tagged
                results[i] = self._decode(texts[i], encoded[i], log_probs[row, tagged])  # (tagged tokens, tags)
            if progress is not None:
                progress(len(indices))
        return results

    def _decode(self, text: str, tokens: TaggedTokens, log_probs: np.ndarray) -> SlotResult:
        path = self.transitions.viterbi(log_probs)
        chosen = np.exp(log_probs[np.arange(len(path)), path]) if path else np.zeros(0)
        token_tags = [self.tags[k] for k in path]
        slots = []
        token_spans = tags_to_spans(token_tags)
        for span, chars in zip(token_spans, char_spans(text, tokens, token_tags)):
            score = float(chosen[span.start : span.end].mean())
            slots.append(Slot(chars.label, text[chars.start : chars.end], chars.start, chars.end, score))
        tags = spans_to_tags([Span(s.slot, s.start, s.end) for s in slots], len(text), self.scheme)
        return SlotResult(slots=tuple(slots), tags=tuple(tags))


# ------------------------------------------------------------------------------------------------
# Data and evaluation
# ------------------------------------------------------------------------------------------------
@dataclass
class SlotExamples:
    """Texts with one tag per character."""

    texts: list[str]
    tags: list[list[str]]
    source: str = ""
    skipped_empty: int = 0
    values_not_found: list[str] = field(default_factory=list)
    """Slot values (from a JSON ``slots`` column) that do not occur in their text, as ``row N: name=value``."""

    @property
    def scheme(self) -> Scheme:
        return tag_scheme(t for tags in self.tags for t in tags)

    @classmethod
    def from_markup(cls, annotated: Sequence[str], *, source: str = "markup") -> SlotExamples:
        """Examples written as ``"set an alarm for [seven](time)"`` (``tagging.parse_markup``; BIOES tags), e.g. an
        assistant catalogue's example sentences: how English (or any) slots get training data."""
        parsed = [parse_markup(line) for line in annotated]
        return cls(texts=[t for t, _ in parsed], tags=[tags for _, tags in parsed], source=source)

    @classmethod
    def concat(cls, parts: Sequence[SlotExamples], *, source: str = "") -> SlotExamples:
        """One set from several (each part's tags in its own scheme: training converts them to the model's)."""
        return cls(
            texts=[t for p in parts for t in p.texts],
            tags=[g for p in parts for g in p.tags],
            source=source or " + ".join(p.source for p in parts),
            skipped_empty=sum(p.skipped_empty for p in parts),
        )


def tags_from_values(text: str, values: dict[str, Any]) -> tuple[list[str], list[str]]:
    """BIOES character tags for ``{"name": "酷狗音乐"}`` (each value found by string search, first free
    occurrence; a list of values for a name is allowed), and the ``name=value`` pairs not found."""
    taken = [False] * len(text)
    spans, missing = [], []
    for name, found in values.items():
        for value in found if isinstance(found, list) else [found]:
            value = str(value)
            start = text.find(value) if value else -1
            while start >= 0 and any(taken[start : start + len(value)]):
                start = text.find(value, start + 1)
            if start < 0:
                missing.append(f"{name}={value}")
                continue
            taken[start : start + len(value)] = [True] * len(value)
            spans.append(Span(name, start, start + len(value)))
    return spans_to_tags(spans, len(text), "bioes"), missing


def read_slot_examples(path: str | Path, *, text_col: str = "text", tags_col: str = "slots") -> SlotExamples:
    """Texts and character tags from a table. ``tags_col`` holds space-separated tags, one per character
    of the text (``O O O B-singer_name E-singer_name``), or a JSON object of slot values
    (``{"name": "酷狗音乐"}``, found in the text by string search). Empty texts are skipped (counted)."""
    frame = read_table(path)
    require_column(frame, text_col, path)
    require_column(frame, tags_col, path, option="--tags-col")
    first_row = 2 if table_format(Path(path)) in ("csv", "tsv") else 1  # a CSV's header is row 1
    examples = SlotExamples(texts=[], tags=[], source=str(path))
    for i, (text, cell) in enumerate(zip(frame[text_col].tolist(), frame[tags_col].tolist())):
        text = "" if text is None or text != text else str(text)
        cell = "" if cell is None or cell != cell else str(cell).strip()
        where = f"{path}: row {first_row + i}"
        if not text.strip():
            examples.skipped_empty += 1
            continue
        if cell.startswith("{"):
            try:
                values = json.loads(cell)
            except ValueError as exc:
                raise TableError(f"{where}, column {tags_col!r}: not a JSON object of slot values ({exc})") from None
            tags, missing = tags_from_values(text, values)
            examples.values_not_found += [f"row {first_row + i}: {m}" for m in missing]
        else:
            tags = cell.split()
            if len(tags) != len(text):
                raise TableError(
                    f"{where}: {len(tags)} tags in column {tags_col!r} for the {len(text)} characters of "
                    f"{text!r}; give one tag per character (spaces and Latin letters included)"
                )
            for tag in tags:
                try:
                    split_tag(tag)
                except ValueError as exc:
                    raise TableError(f"{where}, column {tags_col!r}: {exc}") from None
        examples.texts.append(text)
        examples.tags.append(tags)
    if not examples.texts:
        raise TableError(f"{path}: no non-empty texts in column {text_col!r}")
    return examples


def check_tag_counts(texts: Sequence[str], tags: Sequence[Sequence[str]], *, source: str = "") -> None:
    """A ``MegasenseInputError`` naming the first text (0-based) whose tag count is not its length."""
    if len(texts) != len(tags):
        raise MegasenseInputError(f"{source or 'data'}: {len(texts)} texts but {len(tags)} tag sequences")
    for i, (text, row) in enumerate(zip(texts, tags)):
        if len(row) != len(text):
            where = f"{source}: " if source else ""
            raise MegasenseInputError(
                f"{where}text {i} ({text!r}) has {len(text)} characters but {len(row)} tags; give one tag per character"
            )


def evaluate_slots(
    filler: SlotFiller,
    texts: Sequence[str],
    gold_tags: Sequence[Sequence[str] | str],
    *,
    source: str = "",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Slot-level micro precision / recall / F1 (seqeval, strict: exact boundaries and name), per slot name,
    the share of texts with every slot right, and ``precision`` (the inference precision used)."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2, IOBES

    gold = [g.split() if isinstance(g, str) else list(g) for g in gold_tags]
    check_tag_counts(texts, gold, source=source)
    scheme = tag_scheme(t for row in gold for t in row)
    gold = [convert_tags(row, scheme) for row in gold]  # well-formed, as strict mode needs
    predicted = [convert_tags(r.tags, scheme) for r in filler.predict(list(texts), progress=progress)]
    report = classification_report(
        gold, predicted, mode="strict", scheme=IOBES if scheme == "bioes" else IOB2, output_dict=True, zero_division=0
    )
    micro = report.pop("micro avg")
    per_slot = {
        name: {k: float(v) if k != "support" else int(v) for k, v in row.items()}
        for name, row in report.items()
        if not name.endswith(" avg")
    }
    return {
        "slot_f1": float(micro["f1-score"]),
        "slot_precision": float(micro["precision"]),
        "slot_recall": float(micro["recall"]),
        "exact_match": float(np.mean([g == p for g, p in zip(gold, predicted)])) if gold else 0.0,
        "n": len(gold),
        "slots": int(micro["support"]),
        "per_slot": per_slot,
        "scheme": scheme,
        "precision": filler.precision,
        "model": filler.name,
        "source": source,
    }
