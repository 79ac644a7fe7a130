"""Precision and recall of a redactor per kind, against a labelled sample (JSONL: ``text`` and gold ``spans``,
each ``{"start", "end", "kind"}``). A found span counts only when its start, end and kind equal a gold span's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from megasense.errors import MegasenseInputError
from megasense.privacy.detectors import Span
from megasense.privacy.redactor import KINDS, Redactor


@dataclass(frozen=True)
class Example:
    text: str
    spans: tuple[Span, ...]
    lang: str = ""


@dataclass
class KindScore:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        gold = self.true_positives + self.false_negatives
        return self.true_positives / gold if gold else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class SampleScore:
    kinds: dict[str, KindScore] = field(default_factory=lambda: {k: KindScore() for k in KINDS})
    errors: list[str] = field(default_factory=list)
    """``missed PHONE '...' in: ...`` / ``wrong ...``: each mistake, to read."""

    @property
    def overall(self) -> KindScore:
        total = KindScore()
        for s in self.kinds.values():
            total.true_positives += s.true_positives
            total.false_positives += s.false_positives
            total.false_negatives += s.false_negatives
        return total


def read_sample(path: str | Path) -> list[Example]:
    """The labelled lines of ``path``; an error names the line and the field that is wrong."""
    path = Path(path)
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text = row["text"]
            spans = tuple(Span(int(s["start"]), int(s["end"]), str(s["kind"])) for s in row.get("spans", []))
        except (ValueError, KeyError, TypeError) as exc:
            raise MegasenseInputError(
                f"{path}: line {number}: expected {{'text': str, 'spans': [{{'start', 'end', 'kind'}}]}} ({exc})"
            ) from None
        for s in spans:
            if s.kind not in KINDS or not 0 <= s.start < s.end <= len(text):
                raise MegasenseInputError(
                    f"{path}: line {number}: span {s.to_dict()} is outside the text ({len(text)} characters) "
                    f"or of an unknown kind (expected one of {', '.join(KINDS)})"
                )
        examples.append(Example(text, spans, str(row.get("lang", ""))))
    return examples


def score_sample(redactor: Redactor, examples: Sequence[Example]) -> SampleScore:
    """Exact-match precision and recall per kind of ``redactor`` on ``examples``."""
    score = SampleScore()
    for example in examples:
        gold, found = set(example.spans), set(redactor.find(example.text))
        for span in gold | found:
            kind = score.kinds.setdefault(span.kind, KindScore())
            piece = example.text[span.start : span.end]
            if span in gold and span in found:
                kind.true_positives += 1
            elif span in found:
                kind.false_positives += 1
                score.errors.append(f"wrong  {span.kind:5} {piece!r} in: {example.text}")
            else:
                kind.false_negatives += 1
                score.errors.append(f"missed {span.kind:5} {piece!r} in: {example.text}")
    return score
