"""Study summaries: a document in, an abstract, bullet points or Markdown study notes out.

The steps, for every style: split the text into units (sentences, or a dialogue's turns); let the encoder score
them by centrality; give the decoder the most central units (extractive pre-selection) with a worked example;
split what it writes into sentences and keep only those the source supports (embedding cosine with the closest
source unit, ``extract.SUPPORT_THRESHOLD``, and for English most content words found in the source); if none is left,
fall back to the central units themselves and say so. A dialogue's statements are candidates in reported speech.
A text longer than the prompt budget is split on unit boundaries into chunks; each chunk is summarized and the
partial summaries are summarized again (map-reduce). Nothing is cut silently: ``Summary.notes`` says what was.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from megasense.config import GenerationConfig
from megasense.errors import MegasenseInputError
from megasense.summaries import prompts
from megasense.summaries.dialogue import reported_sentences
from megasense.summaries.extract import (
    LEXICAL_SUPPORT,
    SUPPORT_THRESHOLD,
    Embedder,
    check_support,
    defining_unit,
    headline,
    key_phrases,
    lexical_support,
    select_central,
)
from megasense.summaries.text import (
    chunk_units,
    count_words,
    cut_to_words,
    detect_lang,
    is_dialogue,
    split_sentences,
    split_units,
)
from megasense.training.chat_data import pair_messages

STYLES = ("study", "brief", "bullets")
STRATEGIES = ("greedy", "beam", "sample")
METHODS = ("auto", "generate", "extract")
DEFAULT_MAX_WORDS = {"brief": 60, "bullets": 80, "study": 200}
HEADLINE_WORDS = 24
"""A Chinese extractive abstract this short (in characters) is a headline: the key words in order (``headline``)."""
AUTO_METHOD = {"en": "generate", "zh": "extract"}
"""What ``method="auto"`` uses per language for prose (a dialogue is always extracted, in reported speech: on DialogSum
that beats lead and the decoder's own summaries, ``benchmarks/summaries.py``). On Chinese the 135M decoder writes
little that the source supports, so central sentences (or, title-short, a headline) are the summary; English prose is
generated from the central sentences and checked (no English prose reference set here to measure it on)."""


@dataclass(frozen=True)
class KeyTerm:
    term: str
    definition: str
    """One line from the source that defines or uses the term (extracted, so it is the source's own words)."""


@dataclass
class Summary:
    text: str
    """The summary as shown: plain text (brief), a ``- `` list (bullets) or Markdown study notes (study)."""
    style: str
    lang: str
    method: str
    """``generated`` (the decoder's sentences, each supported by the source), ``extracted`` (source units, a dialogue's
    in reported speech) or ``headline`` (key words in order, for a Chinese abstract of at most ``HEADLINE_WORDS``)."""
    abstract: list[str] = field(default_factory=list)
    key_points: list[str] = field(default_factory=list)
    key_terms: list[KeyTerm] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    chunks: int = 1
    """Prompts the document was split into (map); more than one means partial summaries were merged (reduce)."""
    dropped: list[str] = field(default_factory=list)
    """Generated sentences left out because the source does not support them."""
    notes: list[str] = field(default_factory=list)
    """Everything cut or substituted: chunks, units cut to fit, words beyond --max-words, fallbacks."""

    @property
    def words(self) -> int:
        return count_words(self.text)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["words"] = self.words
        return out


def generation_config(strategy: str, max_new_tokens: int, *, seed: int | None = None) -> GenerationConfig:
    """The decoding each ``--strategy`` names: greedy; beam search of 4; or nucleus sampling (T 0.7, top-p 0.9).
    A mild repetition penalty keeps the small model from looping."""
    if strategy not in STRATEGIES:
        raise MegasenseInputError(f"strategy={strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if strategy == "beam":
        return GenerationConfig(max_new_tokens=max_new_tokens, num_beams=4, repetition_penalty=1.1)
    if strategy == "sample":
        return GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=True, temperature=0.7, top_p=0.9, repetition_penalty=1.1, seed=seed
        )
    return GenerationConfig(max_new_tokens=max_new_tokens, repetition_penalty=1.1)


class Summarizer:
    """A decoder (``TextGenerator``; None: extractive only) and an encoder per language, kept for many calls."""

    def __init__(
        self,
        generator: Any | None,
        embedders: Mapping[str, Embedder],
        *,
        prompt_tokens: int = 1024,
        preselect_words: int = 180,
        lead_bias: float = 0.0,
        pair_prompt: bool | None = None,
        auto_method: Mapping[str, str] = AUTO_METHOD,
    ) -> None:
        """``prompt_tokens``: the most tokens of source text per prompt (longer texts are split, map-reduce).
        ``preselect_words``: how many words of the most central units the decoder is given per prompt."""
        self.generator = generator
        self.embedders = dict(embedders)
        self.prompt_tokens = prompt_tokens
        self.preselect_words = preselect_words
        self.lead_bias = lead_bias
        if pair_prompt is None:  # a decoder fine-tuned by `megasense train --task generate` is asked as it was trained
            metadata = getattr(getattr(generator, "loaded", None), "metadata", None) or {}
            pair_prompt = metadata.get("task") == "generate"
        self.pair_prompt = pair_prompt
        self.auto_method = dict(auto_method)

    # ------------------------------------------------------------------------------------------
    def summarize(
        self,
        text: str,
        *,
        style: str = "brief",
        max_words: int | None = None,
        lang: str = "auto",
        strategy: str = "greedy",
        method: str = "auto",
        seed: int | None = None,
    ) -> Summary:
        """One text's summary in ``style`` (``study``, ``brief`` or ``bullets``) of at most ``max_words`` words."""
        if style not in STYLES:
            raise MegasenseInputError(f"style={style!r}: expected one of {', '.join(STYLES)}")
        if method not in METHODS:
            raise MegasenseInputError(f"method={method!r}: expected one of {', '.join(METHODS)}")
        if not isinstance(text, str) or not text.strip():
            raise MegasenseInputError("the text is empty: give at least one sentence to summarize")
        max_words = DEFAULT_MAX_WORDS[style] if max_words is None else max_words
        if max_words < 1:
            raise MegasenseInputError(f"max_words={max_words} must be at least 1")
        lang = detect_lang(text, lang)
        if method == "auto":  # a dialogue's statements in reported speech measure best (benchmarks/summaries.py)
            method = "extract" if is_dialogue(text) else self.auto_method.get(lang, "extract")
        if method == "generate" and self.generator is None:
            raise MegasenseInputError("method='generate' needs a decoder; this summarizer was made without one")
        job = _Job(self, text, lang, strategy, method, seed)
        if style == "brief":
            return job.brief(max_words)
        if style == "bullets":
            return job.bullets(max_words)
        return job.study(max_words)

    def embedder(self, lang: str) -> Embedder:
        try:
            return self.embedders[lang]
        except KeyError:
            raise MegasenseInputError(
                f"no sentence encoder for lang={lang!r}; this summarizer has {sorted(self.embedders)}"
            ) from None

    def count_tokens(self, text: str) -> int:
        if self.generator is None:
            return count_words(text) * 2  # no tokenizer: about two tokens a word, or per Chinese character
        return len(self.generator.tokenizer.encode(text, add_special_tokens=False))


class _Job:
    """One call's state: the text, its units and their vectors, and the notes gathered on the way."""

    def __init__(self, owner: Summarizer, text: str, lang: str, strategy: str, method: str, seed: int | None) -> None:
        self.owner, self.text, self.lang, self.strategy, self.method, self.seed = (
            owner,
            text,
            lang,
            strategy,
            method,
            seed,
        )
        self.dialogue = is_dialogue(text)
        self.units = split_units(text, lang)
        if not self.units:
            raise MegasenseInputError("the text has no sentence to summarize")
        self.embedder = owner.embedder(lang)
        # what extraction picks from: a dialogue's statements in reported speech (its turns when none can be), or the
        # sentences; the support check compares with the turns and these
        reported = [r.text for r in reported_sentences(self.units)] if self.dialogue else []
        self.candidates = reported or self.units
        self.vectors = self.embedder.embed(self.candidates)
        self.source = self.units + reported
        self.notes: list[str] = []
        self.dropped: list[str] = []
        self.chunks = 1
        self.used = "extracted" if method == "extract" else "generated"

    def summary(self, text: str, style: str, **parts: Any) -> Summary:
        return Summary(
            text=text,
            style=style,
            lang=self.lang,
            method=self.used,
            chunks=self.chunks,
            dropped=self.dropped,
            notes=self.notes,
            **parts,
        )

    # ------------------------------------------------------------------------------------------
    def brief(self, max_words: int) -> Summary:
        sentences = self.abstract(max_words)
        return self.summary(_join(sentences, self.lang), "brief", abstract=sentences)

    def bullets(self, max_words: int) -> Summary:
        points = self.key_points(max_words)
        return self.summary("\n".join(f"- {p}" for p in points), "bullets", key_points=points)

    def study(self, max_words: int) -> Summary:
        abstract = self.abstract(max(20, max_words // 4))
        points = self.key_points(max(30, max_words // 2))
        terms = self.key_terms(4)
        questions = self.questions(points, terms, 3)
        return self.summary(
            render_notes(abstract, points, terms, questions, self.lang),
            "study",
            abstract=abstract,
            key_points=points,
            key_terms=terms,
            questions=questions,
        )

    # ------------------------------------------------------------------------------------------
    def central(self, max_words: int) -> list[str]:
        """The most central candidates within ``max_words`` words, in source order."""
        picked = select_central(self.candidates, self.vectors, max_words=max_words, lead_bias=self.owner.lead_bias)
        return [self.candidates[i] for i in picked]

    def abstract(self, max_words: int) -> list[str]:
        if self.method == "extract":
            if self.lang == "zh" and max_words <= HEADLINE_WORDS and not self.dialogue:
                self.used = "headline"
                return self.fit([headline(self.text, self.lang, max_words=max_words)], max_words)
            return self.fit(self.central(max_words), max_words)
        if self.owner.pair_prompt and self.owner.count_tokens(self.text) <= self.owner.prompt_tokens:
            sentences = self.generate_checked([self.text], max_words)  # the whole text, as the model was trained
        else:
            sentences = self.map_reduce(list(self.candidates), self.vectors, max_words)
        if not sentences:
            self.used = "extracted"
            self.notes.append("no generated sentence was supported by the source: the central sentences are shown")
            sentences = self.central(max_words)
        return self.fit(sentences, max_words)

    def map_reduce(self, units: list[str], vectors, max_words: int, depth: int = 0) -> list[str]:
        """Generated, supported sentences for ``units``: in one prompt when its central units fit, else chunk by chunk
        (map) and then over the chunks' sentences (reduce)."""
        chosen = select_central(units, vectors, max_words=self.owner.preselect_words, lead_bias=self.owner.lead_bias)
        picked = [units[i] for i in chosen]
        if sum(map(self.owner.count_tokens, picked)) <= self.owner.prompt_tokens or depth >= 3:
            return self.generate_checked(picked, max_words)
        chunks = chunk_units(units, self.owner.count_tokens, self.owner.prompt_tokens)
        self.chunks += len(chunks) - (1 if depth == 0 else 0)
        for chunk in chunks:
            if chunk.cut:
                self.notes.append(f"a unit of {chunk.tokens}+ tokens was longer than a prompt; only its start was read")
        partial: list[str] = []
        for chunk in chunks:
            chunk_vectors = self.embedder.embed(list(chunk.units))
            partial.extend(self.map_reduce(list(chunk.units), chunk_vectors, max_words, depth + 1))
        partial = list(dict.fromkeys(partial))  # parts often agree word for word: merge each sentence once
        if not partial:
            return []
        self.notes.append(f"the text was summarized in {len(chunks)} parts, then the parts' summaries together")
        return self.map_reduce(partial, self.embedder.embed(partial), max_words, depth + 1)

    def generate_checked(self, units: Sequence[str], max_words: int) -> list[str]:
        kind = ("reported" if self.candidates is not self.units else "dialogue") if self.dialogue else "text"
        source = "\n".join(units) if kind == "dialogue" else " ".join(units)
        if self.owner.pair_prompt:
            messages = pair_messages("\n".join(units), summary=True)
        else:
            messages = prompts.abstract_messages(source, lang=self.lang, kind=kind, max_words=max_words)
        reply = self.chat(messages, max_new_tokens=int(max_words * (2.2 if self.lang == "zh" else 1.7)) + 8)
        return self.supported(split_sentences(_strip_list(reply), self.lang))

    def chat(self, messages: list[dict[str, str]], *, max_new_tokens: int) -> str:
        config = generation_config(self.strategy, max_new_tokens, seed=self.seed)
        reply = self.owner.generator.chat(messages, config)
        if reply.finish_reason == "length":  # the last sentence may be unfinished: keep whole sentences only
            text = reply.text.rstrip()
            whole = re.match(r"(?s).*[.!?。！？]", text)
            return whole.group(0) if whole else text
        return reply.text

    def supported(self, sentences: Sequence[str]) -> list[str]:
        """``sentences`` the source supports, without repeats; the others are recorded in ``dropped``."""
        kept: list[str] = []
        threshold = SUPPORT_THRESHOLD[self.lang]
        for check in check_support(sentences, self.source, self.embedder, threshold=threshold):
            normal = check.sentence.lower().strip(" .。")
            if not normal or any(normal == k.lower().strip(" .。") for k in kept):
                continue
            words_found = self.lang != "en" or lexical_support(check.sentence, self.text) >= LEXICAL_SUPPORT
            if check.supported and words_found:
                kept.append(check.sentence)
            else:
                self.dropped.append(check.sentence)
        return kept

    def fit(self, sentences: list[str], max_words: int) -> list[str]:
        kept, cut = cut_to_words(sentences, max_words)
        if cut:
            self.notes.append(f"{cut} words beyond max_words={max_words} were left out")
        return kept

    # ------------------------------------------------------------------------------------------
    def key_points(self, max_words: int) -> list[str]:
        central = self.central(max_words)
        if self.method == "extract" or self.lang != "en":
            return self.fit(central, max_words)
        source = "\n".join(self.central(self.owner.preselect_words))
        reply = self.chat(
            prompts.bullets_messages(source, points=min(5, max(2, len(central)))), max_new_tokens=max_words * 2
        )
        points = self.supported([_strip_bullet(line) for line in reply.splitlines() if _strip_bullet(line)])
        if len(points) < 2:
            self.notes.append("too few generated key points were supported by the source: central sentences added")
            points += [c for c in central if c not in points]
        return self.fit(points, max_words)

    def key_terms(self, k: int) -> list[KeyTerm]:
        terms = []
        for term in key_phrases(self.text, self.lang, self.embedder, k=k * 2):
            where = defining_unit(term, self.units)
            if where is None:
                continue
            found = self.text.lower().find(term.lower())  # the term as the text writes it ("Calvin cycle")
            terms.append(KeyTerm(self.text[found : found + len(term)], _one_line(self.units[where], self.lang)))
            if len(terms) == k:
                break
        return terms

    def questions(self, points: Sequence[str], terms: Sequence[KeyTerm], n: int) -> list[str]:
        """Review questions: the decoder asks one per key point (kept when it is a question about the point's words);
        otherwise one per key term."""
        questions: list[str] = []
        if self.method == "generate" and self.lang == "en":
            for point in points[:n]:
                reply = self.chat(prompts.question_messages(point), max_new_tokens=40).strip().splitlines()
                question = reply[0].strip() if reply else ""
                if question.endswith("?") and _shares_content(question, point) and question not in questions:
                    questions.append(question)
        for term in terms:
            if len(questions) >= n:
                break
            questions.append(
                f"{term.term}是什么？" if self.lang == "zh" else f"What does the text say about {term.term}?"
            )
        return questions[:n]


def render_notes(
    abstract: Sequence[str], points: Sequence[str], terms: Sequence[KeyTerm], questions: Sequence[str], lang: str
) -> str:
    """Study notes in Markdown: summary, key points, key terms with one-line definitions, review questions."""
    heads = (
        ("摘要", "要点", "关键术语", "复习题")
        if lang == "zh"
        else ("Summary", "Key points", "Key terms", "Review questions")
    )
    lines = [f"## {heads[0]}", "", _join(abstract, lang), "", f"## {heads[1]}", ""]
    lines += [f"- {p}" for p in points]
    if terms:
        lines += ["", f"## {heads[2]}", ""]
        lines += [f"- **{t.term}**: {t.definition}" for t in terms]
    if questions:
        lines += ["", f"## {heads[3]}", ""]
        lines += [f"{i}. {q}" for i, q in enumerate(questions, start=1)]
    return "\n".join(lines)


def _join(sentences: Sequence[str], lang: str) -> str:
    return ("" if lang == "zh" else " ").join(sentences)


def _strip_bullet(line: str) -> str:
    return re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip()


def _strip_list(text: str) -> str:
    return "\n".join(_strip_bullet(line) for line in text.splitlines())


def _one_line(unit: str, lang: str, max_words: int = 30) -> str:
    kept, _ = cut_to_words([unit], max_words)
    return kept[0]


def _shares_content(question: str, point: str) -> bool:
    words = {w for w in re.findall(r"[a-z]{4,}", point.lower())}
    return len(words & set(re.findall(r"[a-z]{4,}", question.lower()))) >= 1


def load_summarizer(
    model: str | None = "smollm2-135m-instruct",
    *,
    encoder_en: str = "all-minilm-l6-v2",
    encoder_zh: str = "multilingual-e5-small",
    loader: Callable[[str], Any] | None = None,
    **options: Any,
) -> Summarizer:
    """A ``Summarizer`` with the embedded decoder (None: extractive only) and encoders, each loaded when first used."""
    from megasense.predictors.embedding import SentenceEmbedder
    from megasense.predictors.generation import TextGenerator
    from megasense.zoo.load import load_model

    load = loader or load_model
    generator = TextGenerator(load(model)) if model else None
    embedders = {
        "en": _LazyEmbedder(lambda: SentenceEmbedder(load(encoder_en))),
        "zh": _LazyEmbedder(lambda: SentenceEmbedder(load(encoder_zh))),
    }
    return Summarizer(generator, embedders, **options)


class _LazyEmbedder:
    """An encoder loaded on first use (a Chinese encoder is not loaded to summarize English)."""

    def __init__(self, make: Callable[[], Embedder]) -> None:
        self._make = make
        self._embedder: Embedder | None = None

    def embed(self, texts: Sequence[str]):
        if self._embedder is None:
            self._embedder = self._make()
        return self._embedder.embed(list(texts))
