"""``Redactor``: every detector over a text, overlaps resolved, each span replaced by its typed placeholder
(``[EMAIL]``, ``[PHONE]``, ``[URL]``, ``[CARD]``, ``[ID]``, ``[IP]``, ``[NAME]``).

The CLI (``--redact``, ``--redact-names FILE``), ``analyze`` and the service's logs all go through
``Redactor.redact_texts``, before anything is stored or shown.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from megasense.errors import MegasenseInputError
from megasense.privacy.detectors import Detector, NameDetector, Span, default_detectors

KINDS = ("EMAIL", "URL", "ID", "CARD", "IP", "PHONE", "NAME")
"""Every kind of span, in the order they win a tie (same start, same length)."""


def resolve(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans, left to right: of overlapping ones the longest wins (an e-mail address over the
    name inside it, a URL over the address in its query), then the earlier kind in ``KINDS``."""
    rank = {kind: i for i, kind in enumerate(KINDS)}
    ordered = sorted(spans, key=lambda s: (-(s.end - s.start), rank.get(s.kind, len(rank)), s.start))
    taken: list[Span] = []
    for span in ordered:
        if all(span.end <= t.start or span.start >= t.end for t in taken):
            taken.append(span)
    return sorted(taken, key=lambda s: s.start)


class Redactor:
    """Finds private data with ``detectors`` (default: every built-in one, plus ``names``) and replaces it.

    ``counts`` adds up the spans replaced so far by kind, for a run's summary (``3 EMAIL, 1 PHONE``)."""

    def __init__(self, detectors: Sequence[Detector] | None = None, *, names: Iterable[str] = ()) -> None:
        self.detectors: list[Detector] = list(default_detectors() if detectors is None else detectors)
        names = list(names)
        if names:
            self.detectors.append(NameDetector(names))
        self.counts: Counter[str] = Counter()

    def find(self, text: str) -> list[Span]:
        """The spans to replace in ``text``, left to right, not overlapping."""
        return resolve(span for detector in self.detectors for span in detector.find(text))

    def redact(self, text: str) -> str:
        """``text`` with each span replaced by ``[KIND]``."""
        if not text:
            return text
        parts, last = [], 0
        for span in self.find(text):
            parts += [text[last : span.start], f"[{span.kind}]"]
            last = span.end
            self.counts[span.kind] += 1
        return "".join(parts) + text[last:] if parts else text

    def redact_texts(self, texts: Sequence[str]) -> list[str]:
        return [self.redact(t) for t in texts]

    __call__ = redact_texts

    def summary(self) -> str:
        """``12 items redacted (8 EMAIL, 4 PHONE)``, or ``nothing redacted``."""
        total = sum(self.counts.values())
        if not total:
            return "nothing redacted"
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.counts.most_common())
        return f"{total:,} items redacted ({kinds})"


def read_names(path: str | Path) -> list[str]:
    """Names from a UTF-8 text file, one a line; blank lines and lines starting with ``#`` are skipped."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MegasenseInputError(f"{path}: the names file (--redact-names) does not exist") from None
    except OSError as exc:
        raise MegasenseInputError(f"{path}: cannot read the names file (--redact-names): {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise MegasenseInputError(
            f"{path}: line {line} is not UTF-8 (byte {raw[exc.start]:#04x}); save the names file as UTF-8"
        ) from None
    names = [line.strip() for line in text.splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise MegasenseInputError(f"{path}: the names file holds no names; expected one name a line")
    return names


def build_redactor(
    redact: bool = True, *, names: Iterable[str] = (), names_file: str | Path | None = None
) -> Redactor | None:
    """The redactor for ``--redact`` / ``--redact-names FILE`` (a names file implies ``--redact``); None when
    neither asks for one."""
    listed = list(names) + (read_names(names_file) if names_file is not None else [])
    if not redact and not listed:
        return None
    return Redactor(names=listed)
