"""Which words drove a classifier's prediction: word-level attributions for the predicted label.

Two methods, both measuring the predicted label's probability:

- ``occlusion`` (the default): delete each word, predict again, and the word's attribution is how much the
  probability fell (negative: the word spoke against the label). It runs through the predictor's own
  ``predict`` (windows, routing, any precision), needs no gradients, and measures exactly what the
  deletion check (``faithfulness``) asks of an explanation; ``benchmarks/explain_faithfulness.py`` finds it
  the more faithful of the two on tweets. One forward pass per word: for short texts (posts, reviews).
- ``ig``: integrated gradients on the encoder's input (word) embeddings, from a baseline of padding
  embeddings to the text's, in ``steps`` interpolation steps run as one batch; token attributions are
  summed into words. Written here (about 30 lines) rather than taken from captum, whose package pulls in
  matplotlib and four more dependencies for this one loop; a forward hook on the word-embedding table feeds
  the interpolated embeddings, as captum's ``LayerIntegratedGradients`` does. It reads the first
  ``max_length`` tokens of a text.

Words are runs of letters, digits and apostrophes; Chinese runs are cut into words by
``megasense.segmentation`` (jieba). Punctuation and emoji stay in the text but get no attribution.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from megasense.errors import MegasenseInputError
from megasense.predictors.language import needs_multilingual

METHODS = ("occlusion", "ig")
_LATIN_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class WordAttribution:
    word: str
    start: int
    end: int
    """``text[start:end] == word``."""
    attribution: float
    """How much the word raised the predicted label's probability (negative: lowered it)."""

    def to_dict(self) -> dict[str, object]:
        return {"word": self.word, "start": self.start, "end": self.end, "attribution": round(self.attribution, 6)}


@dataclass
class Explanation:
    text: str
    label: str
    score: float
    """The predicted label's probability for the whole text."""
    method: str
    words: list[WordAttribution] = field(default_factory=list)
    truncated: bool = False
    """More words than the explainer reads (``max_words``, or ``max_length`` tokens for ig): the rest get 0."""
    target: int = field(default=0, repr=False)
    """The label's column in the predictor's probabilities."""

    def top(self, n: int = 5) -> list[WordAttribution]:
        """The ``n`` words that most raised the label's probability, most first (only positive ones)."""
        ranked = sorted(self.words, key=lambda w: -w.attribution)
        return [w for w in ranked[:n] if w.attribution > 0]

    def to_dict(self, top: int | None = None) -> dict[str, object]:
        out: dict[str, object] = {"text": self.text, "label": self.label, "score": round(self.score, 6)}
        out["method"] = self.method
        out["words"] = [w.to_dict() for w in self.words]
        out["top"] = [w.word for w in self.top(top or 5)]
        out["truncated"] = self.truncated
        return out

    def to_html(self) -> str:
        """The text, HTML-escaped, each word on a background whose strength is its attribution: green for
        words that raised the label, red for those that lowered it (the ``title`` says by how much)."""
        scale = max((abs(w.attribution) for w in self.words), default=0.0) or 1.0
        parts, last = [], 0
        for w in self.words:
            parts.append(html.escape(self.text[last : w.start]))
            alpha = min(1.0, abs(w.attribution) / scale) * 0.6
            rgb = "34,160,80" if w.attribution >= 0 else "210,50,50"
            parts.append(
                f'<span class="attr" style="background:rgba({rgb},{alpha:.2f})" '
                f'title="{w.attribution:+.3f}">{html.escape(w.word)}</span>'
            )
            last = w.end
        parts.append(html.escape(self.text[last:]))
        return "".join(parts)


def word_spans(text: str, segmenter=None) -> list[tuple[int, int]]:
    """(start, end) of each word: Latin runs whole, Chinese runs cut by ``segmenter`` (a jieba
    ``megasense.segmentation.Segmenter``, made when first needed)."""
    spans = []
    for m in _LATIN_WORD.finditer(text):
        if not _CJK.search(m.group()):
            spans.append((m.start(), m.end()))
            continue
        segmenter = segmenter or _segmenter()
        position = m.start()
        for word in segmenter.cut(m.group()):
            start = text.find(word, position, m.end())
            if start < 0:  # the engine normalised the word; fall back to its characters' span
                continue
            spans.append((start, start + len(word)))
            position = start + len(word)
    return spans


def _segmenter():
    from megasense.segmentation import Segmenter

    return Segmenter("jieba")


def delete_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the words at ``spans``, the spaces around each gap closed to one."""
    keep, last = [], 0
    for start, end in sorted(spans):
        keep.append(text[last:start])
        last = end
    keep.append(text[last:])
    joined = keep[0]
    for piece in keep[1:]:
        joined = joined.rstrip(" ") + (" " if joined.strip() and piece.startswith(" ") else "") + piece.lstrip(" ")
    return joined


class Explainer:
    """Word attributions for a predictor's predictions (``predictors.sentiment.load_predictor``)."""

    def __init__(
        self, predictor, *, method: str = "occlusion", steps: int = 32, max_words: int = 128, batch_size: int = 64
    ) -> None:
        if method not in METHODS:
            raise MegasenseInputError(f"method {method!r} (--method): expected one of {', '.join(METHODS)}")
        if steps < 2 or max_words < 1 or batch_size < 1:
            raise MegasenseInputError(
                f"steps={steps} must be at least 2, max_words={max_words} and batch_size={batch_size} at least 1"
            )
        self.predictor, self.method, self.steps, self.max_words = predictor, method, steps, max_words
        self.batch_size = batch_size
        """The most texts one predictor call sees (occlusion predicts one variant per word)."""
        self._segmenter = None

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(N, labels) the predictor's probabilities; the gap each deleted word leaves is measured on these."""
        texts = list(texts)
        parts = [
            np.asarray(self.predictor.predict(texts[i : i + self.batch_size]).probs, dtype=np.float64)
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 0))

    def explain(self, texts: Sequence[str] | str) -> list[Explanation]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = []
        for i, text in enumerate(texts):
            if i % self.batch_size == 0:
                batch = self.predictor.predict(texts[i : i + self.batch_size])
            probs = np.asarray(batch.probs[i % self.batch_size], dtype=np.float64)
            target = int(np.argmax(probs)) if len(probs) else 0
            label = batch.label_names[target] if len(probs) else ""
            score = float(probs[target]) if len(probs) else 0.0
            explanation = Explanation(text, label, score, self.method, target=target)
            spans = self._spans(text)
            explanation.truncated = len(spans) > self.max_words
            spans = spans[: self.max_words]
            if spans:
                if self.method == "occlusion":
                    scores = self._occlusion(text, spans, target, float(probs[target]))
                else:
                    scores, cut = self._integrated_gradients(text, spans, target)
                    explanation.truncated |= cut
                explanation.words = [WordAttribution(text[s:e], s, e, float(a)) for (s, e), a in zip(spans, scores)]
            out.append(explanation)
        return out

    def _spans(self, text: str) -> list[tuple[int, int]]:
        if _CJK.search(text) and self._segmenter is None:
            self._segmenter = _segmenter()
        return word_spans(text, self._segmenter)

    def _occlusion(self, text: str, spans, target: int, full: float) -> np.ndarray:
        variants = [delete_spans(text, [span]) for span in spans]
        return full - self.probabilities(variants)[:, target]

    def _classifier(self, text: str):
        """The one classification model that reads ``text`` (the router's English or multilingual one)."""
        router = self.predictor
        if hasattr(router, "english"):
            return router.multilingual if needs_multilingual(text) else router.english
        return router

    def _integrated_gradients(self, text: str, spans, target: int) -> tuple[np.ndarray, bool]:
        classifier = self._classifier(text)
        loaded, task = classifier.loaded, classifier.task
        tok, model = loaded.tokenizer, loaded.model
        encoding = tok.backend.encode(text, add_special_tokens=False)
        frame = tok.encode("")
        prefix = tok.encode(task.prefix, add_special_tokens=False) if task.prefix else []
        room = task.max_length - len(frame) - len(prefix)
        ids, offsets = encoding.ids[:room], encoding.offsets[:room]
        first = len(frame[:1]) + len(prefix)  # where the text's tokens start
        device = next(model.parameters()).device
        input_ids = torch.tensor([frame[:1] + prefix + ids + frame[1:]], device=device)  # (1, T)
        table = model.embedding.word_embeddings
        with torch.no_grad():
            x = table(input_ids)  # (1, T, H)
            baseline = x.clone()
            baseline[:, first : first + len(ids)] = table.weight[tok.pad_id]
        alphas = (torch.arange(self.steps, device=device, dtype=x.dtype) + 0.5) / self.steps  # midpoint rule
        path = (baseline + alphas[:, None, None] * (x - baseline)).requires_grad_(True)  # (steps, T, H)
        hook = table.register_forward_hook(lambda module, args, output: path)
        try:
            with torch.enable_grad():
                logits = model(input_ids.expand(self.steps, -1)).logits.float()  # (steps, labels)
                probs = torch.sigmoid(logits) if task.multi_label else torch.softmax(logits, dim=-1)
                (grads,) = torch.autograd.grad(probs[:, target].sum(), path)  # (steps, T, H)
        finally:
            hook.remove()
        tokens = ((x - baseline)[0] * grads.mean(0)).sum(-1)[first : first + len(ids)]  # (tokens,)
        words = np.zeros(len(spans))
        starts = np.array([s for s, _ in spans])
        for value, (start, _) in zip(tokens.detach().cpu().numpy(), offsets):
            w = int(np.searchsorted(starts, start, side="right")) - 1
            if w >= 0 and start < spans[w][1]:
                words[w] += value
        return words, len(encoding.ids) > room


@dataclass
class Faithfulness:
    """Mean drop of the predicted label's probability when the ``k`` top words are deleted, and when ``k``
    random words are (the baseline an explanation must beat)."""

    k: int
    texts: int
    top_drop: float
    random_drop: float
    wins: int
    """Texts where deleting the top words dropped the probability more than deleting random ones."""

    @property
    def ratio(self) -> float:
        return self.top_drop / self.random_drop if self.random_drop > 0 else float("inf")


def faithfulness(
    explainer: Explainer, explanations: Sequence[Explanation], *, k: int = 2, draws: int = 5, seed: int = 0
) -> Faithfulness:
    """The deletion check over ``explanations`` of texts with more than ``k`` words: the top-``k`` words (by
    attribution) against ``draws`` random choices of ``k`` words."""
    rng = np.random.default_rng(seed)
    usable = [e for e in explanations if len(e.words) > k]
    if not usable:
        raise MegasenseInputError(f"no text has more than k={k} words to delete")
    variants = []
    for e in usable:
        top = sorted(e.words, key=lambda w: -w.attribution)[:k]
        variants.append(delete_spans(e.text, [(w.start, w.end) for w in top]))
        for _ in range(draws):
            picked = rng.choice(len(e.words), size=k, replace=False)
            variants.append(delete_spans(e.text, [(e.words[j].start, e.words[j].end) for j in picked]))
    probs = explainer.probabilities(variants)
    top_drops, random_drops = [], []
    for i, e in enumerate(usable):
        rows = probs[i * (draws + 1) : (i + 1) * (draws + 1), e.target]
        top_drops.append(e.score - rows[0])
        random_drops.append(e.score - rows[1:].mean())
    top, rand = np.array(top_drops), np.array(random_drops)
    return Faithfulness(k, len(usable), float(top.mean()), float(rand.mean()), int((top > rand).sum()))
