"""Redaction precision and recall per kind on the labelled sample tests/data/privacy/sample.jsonl.

220 hand-written English and Chinese lines (124 gold spans; half the lines hold none), mixed with hard
negatives: order and tracking numbers, dates, times, prices, version and section numbers, card and ID numbers
with a wrong check digit, names inside longer words. A span counts when its start, end and kind are exact.
The names detector gets the sample's own names (as a user's list would be). The baseline is the same patterns
without their validation (no Luhn, no ID checksum or birth date, no ``ipaddress``, no numbering plan, no
context words), to show what the checks buy. The last line is the summary.

    python benchmarks/redaction.py
    python benchmarks/redaction.py --errors      # every miss and false alarm
    python benchmarks/redaction.py --sentiment default   # + how often redacting changes the predicted label
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from megasense.privacy import Redactor
from megasense.privacy.detectors import (
    CardDetector,
    ChineseIdDetector,
    ChineseMobileDetector,
    EmailDetector,
    IpDetector,
    RegexDetector,
    UrlDetector,
)
from megasense.privacy.evaluation import read_sample, score_sample

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "privacy" / "sample.jsonl"


class _Unchecked(RegexDetector):
    """A detector's pattern with every candidate kept."""

    def __init__(self, detector: RegexDetector) -> None:
        self.kind, self.pattern = detector.kind, detector.pattern


class _AnyPhone(RegexDetector):
    kind = "PHONE"
    pattern = re.compile(r"(?<![0-9])\+?\d[\d ()\-]{7,16}\d(?![0-9])")


def baseline(names: list[str]) -> Redactor:
    detectors = [EmailDetector(), UrlDetector(), *(_Unchecked(d) for d in (ChineseIdDetector(), CardDetector()))]
    detectors += [_Unchecked(IpDetector()), _Unchecked(ChineseMobileDetector()), _AnyPhone()]
    return Redactor(detectors, names=names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument("--errors", action="store_true", help="print every miss and false alarm of megasense")
    parser.add_argument("--sentiment", help="a sentiment model: label agreement, original vs redacted lines")
    args = parser.parse_args()
    examples = read_sample(args.sample)
    names = sorted({e.text[s.start : s.end] for e in examples for s in e.spans if s.kind == "NAME"})
    ours = Redactor(names=names)
    started = time.perf_counter()
    score = score_sample(ours, examples)
    seconds = time.perf_counter() - started
    base = score_sample(baseline(names), examples)
    gold = sum(len(e.spans) for e in examples)
    print(f"{len(examples)} lines ({sum(e.lang == 'zh' for e in examples)} Chinese), {gold} gold spans")
    print(f"{'kind':6} {'gold':>5} {'P':>6} {'R':>6} {'F1':>6}   {'P base':>7} {'R base':>7}")
    for kind, s in score.kinds.items():
        b = base.kinds[kind]
        n = s.true_positives + s.false_negatives
        print(f"{kind:6} {n:5d} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f}   {b.precision:7.3f} {b.recall:7.3f}")
    if args.errors:
        print("\n".join(score.errors))
    if args.sentiment:
        _agreement(args.sentiment, [e.text for e in examples if e.spans], ours)
    o, b = score.overall, base.overall
    print(
        f"summary: megasense precision {o.precision:.3f} recall {o.recall:.3f} F1 {o.f1:.3f} "
        f"(unvalidated patterns: precision {b.precision:.3f} recall {b.recall:.3f} F1 {b.f1:.3f}); "
        f"{len(examples) / seconds:,.0f} lines/s"
    )


def _agreement(model: str, texts: list[str], redactor: Redactor) -> None:
    """Does the model read the redacted line as it read the original? (``predict --redact`` scores the former.)"""
    import numpy as np

    from megasense.predictors.sentiment import load_predictor

    predictor = load_predictor(model, precision="fp32")
    before, after = predictor.predict(texts), predictor.predict(redactor.redact_texts(texts))
    same = np.mean([a == b for a, b in zip(before.labels, after.labels)])
    shift = np.abs(np.asarray(before.probs) - np.asarray(after.probs)).max(axis=1).mean()
    print(
        f"sentiment ({model}) on the {len(texts)} lines with private data: same label {same:.1%}, "
        f"mean largest probability change {shift:.3f}"
    )


if __name__ == "__main__":
    main()
