"""Aspects and brands in a corpus: what people talk about, how they feel about each, who is compared with whom.

Two passes over the stored texts, chunk by chunk (memory holds the phrase counts and one small row per
mention, never the texts):

1. discovery (unless the user lists the aspects): each document's candidate phrases
   (``phrases.PhraseExtractor``: English noun phrases, Chinese nouns) counted once per document; the most
   frequent are embedded and merged by agglomerative clustering on cosine distance (average linkage:
   "battery" and "battery life" become one aspect named by its most frequent form);
2. mentions: every sentence is searched for every aspect's and brand's forms (``terms.TermMatcher``), and
   each (sentence, form) mention is scored by an ``AspectScorer``: the sentiment toward that aspect. Where a
   sentence compares two of the terms it names ("X is better than Y", "X比Y好", ``comparatives.compare``),
   the comparison decides their labels (X positive, Y negative) instead of the model; the mention's
   ``comparison`` column names the construction, and its ``score`` is empty (no model probability).

The tables (``aspect_tables``): ``aspects`` and ``brands`` (mentions, documents, sentiment shares, net
sentiment, example sentences; brands also share of voice), ``aspect_mentions`` and ``brand_mentions``
(one row per mention, with the ``comparison`` that decided it, if any), ``brand_timeseries`` (share of
voice and net sentiment per period) and ``brand_comentions`` (documents naming both brands).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from megasense.analytics.comparatives import OPPOSITE, Verdict, compare
from megasense.analytics.phrases import PhraseExtractor, split_sentences
from megasense.analytics.protocols import POLARITY, Embedder, Progress, SentimentScorer, no_progress
from megasense.analytics.terms import Term, TermMatcher
from megasense.predictors.language import needs_multilingual

LABELS = ("positive", "neutral", "negative")
MAX_SENTENCE_CHARS = 400
"""A mention's sentence is cut to this many characters around the form (long run-on posts)."""
_CLAUSE = re.compile(r"[,，;；:：]|\b(?:but|however|although|though|whereas|while)\b|但是|不过|可是|然而|但", re.I)

TextChunks = Callable[[], Iterable[tuple[Sequence[int], Sequence[str]]]]
"""A fresh iterator over (doc_ids, texts) chunks of the corpus each time it is called."""


@dataclass
class AspectSettings:
    aspects: list[Term] | None = None
    """The user's aspects (``--aspects aspects.toml``); None: discovered."""
    brands: list[Term] | None = None
    """The user's brands (``--brands brands.toml``); None: no brand tables."""
    discover: bool = True
    """Discover aspects when none are listed."""
    max_aspects: int = 25
    """Discovered aspects kept, the most mentioned first."""
    min_documents: int = 3
    """A discovered phrase must occur in this many documents."""
    candidates: int = 200
    """The most frequent phrases embedded and merged."""
    merge_similarity: float = 0.8
    """Phrases at least this cosine-similar (by the analysis's embedder) are one aspect."""
    examples: int = 2
    """Example sentences kept per aspect and sentiment."""
    batch_size: int = 256


class AspectScorer:
    """Sentiment toward an aspect in a sentence.

    ``pair``: a pair classifier (``predict(texts, aspects=...)``, such as ``aspect-sentiment-en``) for
    sentences it reads (Latin script, or every sentence with ``pair_reads_all``). ``zh_pair``: a pair
    classifier for the other sentences (Chinese and other non-Latin scripts; ``aspect-sentiment-multilingual``),
    or a function that loads one when the first such sentence comes. ``sentence``: a plain sentiment scorer
    for the sentences neither pair model reads. Both read the clause that names the aspect (cut at commas,
    semicolons and but/但是), so a contrast still splits: on Chinese review sentences the multilingual pair
    model reads clauses better than whole sentences (0.884 vs 0.744 of 86 pairs, 0.82 vs 0.68 of 50 more;
    the sentence model on the clause 0.837 and 0.70; its card). None: no sentiment.

    ``comparisons``: a sentence that compares two of its targets ("X is better than Y") is labelled by the
    comparison rules (``comparatives.compare``) before any model sees it (``compare``)."""

    def __init__(
        self,
        pair=None,
        sentence: SentimentScorer | None = None,
        *,
        zh_pair=None,
        pair_reads_all: bool = False,
        comparisons: bool = True,
    ) -> None:
        self.pair, self.sentence, self.zh_pair, self.pair_reads_all = pair, sentence, zh_pair, pair_reads_all
        self.comparisons = comparisons

    @property
    def scores(self) -> bool:
        return any(m is not None for m in (self.pair, self.zh_pair, self.sentence))

    def compare(self, sentence: str, targets: dict[int, str]) -> dict[int, Verdict]:
        """Verdicts for the targets (key -> form as written) that ``sentence`` compares; none when the scorer
        scores nothing or comparisons are off."""
        if not self.comparisons or not self.scores or len(targets) < 2:
            return {}
        return compare(sentence, targets)

    def _route(self, sentence: str) -> str:
        """Which model reads ``sentence``: ``pair``, ``zh_pair`` or ``sentence`` (its clause); "" for none."""
        if self.pair is not None and (self.pair_reads_all or not needs_multilingual(sentence)):
            return "pair"
        if self.zh_pair is not None and needs_multilingual(sentence):
            return "zh_pair"
        return "sentence" if self.sentence is not None else ""

    def _zh_pair(self):
        if callable(self.zh_pair) and not hasattr(self.zh_pair, "predict"):
            self.zh_pair = self.zh_pair()  # loaded on the first sentence that needs it
        return self.zh_pair

    def predict(self, sentences: Sequence[str], aspects: Sequence[str]) -> tuple[list[str], np.ndarray]:
        labels, scores = [""] * len(sentences), np.full(len(sentences), np.nan)
        routes = [self._route(s) for s in sentences]
        for route in ("pair", "zh_pair", "sentence"):
            picked = [i for i, r in enumerate(routes) if r == route]
            if not picked:
                continue
            if route == "sentence":
                result = self.sentence.predict([clause_of(sentences[i], aspects[i]) for i in picked])
            elif route == "zh_pair":
                clauses = [clause_of(sentences[i], aspects[i]) for i in picked]
                result = self._zh_pair().predict(clauses, aspects=[aspects[i] for i in picked])
            else:
                result = self.pair.predict([sentences[i] for i in picked], aspects=[aspects[i] for i in picked])
            for i, label, score in zip(picked, result.labels, np.asarray(result.scores, dtype=float)):
                labels[i], scores[i] = str(label), score
        return labels, scores


def clause_of(sentence: str, form: str) -> str:
    """The clause of ``sentence`` that holds ``form`` (the whole sentence when none does)."""
    lowered = form.lower()
    for clause in _CLAUSE.split(sentence):
        if clause and lowered in clause.lower():
            return clause.strip()
    return sentence


def discover_aspects(
    texts: TextChunks,
    embedder: Embedder,
    settings: AspectSettings,
    *,
    extractor: Callable[[str], list[str]] | None = None,
    exclude: Iterable[str] = (),
    progress: Progress = no_progress,
) -> list[Term]:
    """The corpus's most discussed aspects: frequent candidate phrases merged by embedding similarity."""
    extractor = extractor or PhraseExtractor()
    banned = {e.lower() for e in exclude}
    counts: Counter[str] = Counter()
    with progress("aspect phrases", None) as advance:
        for _, chunk in texts():
            for text in chunk:
                counts.update(filter(None, (_without(p, banned) for p in extractor(text))))
            advance(len(chunk))
    candidates = [p for p, c in counts.most_common(settings.candidates) if c >= settings.min_documents]
    if not candidates:
        return []
    groups = _merge(np.asarray(embedder.embed(candidates), dtype=np.float32), settings.merge_similarity)
    members: dict[int, list[str]] = defaultdict(list)
    for phrase, group in zip(candidates, groups):
        members[int(group)].append(phrase)  # candidates come most frequent first: so does each group
    ranked = sorted(members.values(), key=lambda forms: -sum(counts[f] for f in forms))
    return [Term(forms[0], tuple(forms)) for forms in ranked[: settings.max_aspects]]


def _without(phrase: str, banned: set[str]) -> str:
    """The phrase less its words that are brand names ("apple screen" -> "screen"): a brand is not an aspect."""
    if not banned:
        return phrase
    if phrase.lower() in banned:
        return ""
    return " ".join(w for w in phrase.split(" ") if w.lower() not in banned)


def _merge(vectors: np.ndarray, similarity: float) -> np.ndarray:
    """A group id per vector: scikit-learn's agglomerative clustering, average linkage, cosine distance."""
    if len(vectors) == 1:
        return np.zeros(1, dtype=int)
    from sklearn.cluster import AgglomerativeClustering

    clustering = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=1.0 - similarity
    )
    return clustering.fit_predict(vectors)


@dataclass
class _Mentions:
    """The mentions of one kind of term (aspects or brands) found so far, one small row each."""

    terms: list[Term]
    rows: list[tuple[int, int, str]]
    """(doc_id, term index, form as written)."""
    sentences: list[str]
    labels: list[str]
    scores: list[float]
    rules: list[str]
    """The comparison construction that decided the label ("than", "比", ...); "" for the model's own."""

    def add(self, doc_id: int, term: int, form: str, sentence: str) -> int:
        self.rows.append((doc_id, term, form))
        self.sentences.append(_around(sentence, form))
        self.labels.append("")
        self.scores.append(float("nan"))
        self.rules.append("")
        return len(self.rows) - 1


def collect_mentions(
    texts: TextChunks,
    kinds: dict[str, list[Term]],
    scorer: AspectScorer,
    *,
    batch_size: int = 256,
    progress: Progress = no_progress,
) -> dict[str, pd.DataFrame]:
    """Per kind (``aspect``, ``brand``), a frame of mentions: doc_id, term, form, sentiment, score, sentence,
    comparison.

    A term named twice in one sentence is one mention; its sentiment is the scorer's for that sentence, or
    the comparison's where the sentence compares it with another term of its kind (``AspectScorer.compare``)."""
    matchers = {kind: TermMatcher(terms) for kind, terms in kinds.items()}
    found = {kind: _Mentions(terms, [], [], [], [], []) for kind, terms in kinds.items()}
    with progress("aspect and brand mentions", None) as advance:
        for doc_ids, chunk in texts():
            pending: list[tuple[str, int]] = []  # (kind, index into its rows) awaiting a score
            linked: list[tuple[str, int, int]] = []  # (kind, row, row whose label it takes the opposite of)
            for doc_id, text in zip(doc_ids, chunk):
                for sentence in split_sentences(text):
                    for kind, matcher in matchers.items():
                        got, first = found[kind], {}
                        for term, form in matcher.find(sentence):
                            if term not in first:
                                first[term] = got.add(int(doc_id), term, form, sentence)
                        verdicts = scorer.compare(sentence, {t: got.rows[i][2] for t, i in first.items()})
                        for term, row in first.items():
                            verdict = verdicts.get(term)
                            got.rules[row] = verdict.rule if verdict else ""
                            if verdict is not None and verdict.label is not None:
                                got.labels[row] = verdict.label
                            elif verdict is not None and verdict.opposite_of is not None:
                                linked.append((kind, row, first[verdict.opposite_of]))
                            else:
                                pending.append((kind, row))
            _score(pending, found, scorer, batch_size)
            for kind, row, other in linked:  # "unlike Y, X ...": Y fares the other way from X
                got = found[kind]
                got.labels[row], got.scores[row] = OPPOSITE.get(got.labels[other], ""), got.scores[other]
            advance(len(chunk))
    return {kind: _frame(got) for kind, got in found.items()}


def _around(sentence: str, form: str) -> str:
    if len(sentence) <= MAX_SENTENCE_CHARS:
        return sentence
    at = max(0, sentence.lower().find(form.lower()) - MAX_SENTENCE_CHARS // 2)
    return sentence[at : at + MAX_SENTENCE_CHARS]


def _score(pending: list[tuple[str, int]], found: dict[str, _Mentions], scorer: AspectScorer, batch_size: int):
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        sentences = [found[k].sentences[i] for k, i in batch]
        forms = [found[k].rows[i][2] for k, i in batch]
        labels, scores = scorer.predict(sentences, forms)
        for (kind, row), label, score in zip(batch, labels, scores):
            found[kind].labels[row], found[kind].scores[row] = label, float(score)


def _frame(got: _Mentions) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "doc_id": pd.Series([r[0] for r in got.rows], dtype="int64"),
            "term": pd.Series([got.terms[r[1]].name for r in got.rows], dtype="string"),
            "form": pd.Series([r[2] for r in got.rows], dtype="string"),
            "sentiment": pd.Series(got.labels, dtype="string"),
            "score": pd.Series(got.scores, dtype="float64"),
            "sentence": pd.Series(got.sentences, dtype="string"),
            "comparison": pd.Series(got.rules, dtype="string"),
        }
    )


def summary_table(mentions: pd.DataFrame, terms: list[Term], name: str, *, examples: int = 2) -> pd.DataFrame:
    """One row per term: mentions, documents, sentiment shares (of the scored mentions), net sentiment
    (positive share - negative share) and example sentences (JSON: [{"sentence", "sentiment"}, ...])."""
    rows = []
    total = max(len(mentions), 1)
    for term in terms:
        part = mentions[mentions["term"] == term.name]
        scored = part[part["sentiment"].isin(LABELS)]
        shares = {label: (scored["sentiment"] == label).mean() if len(scored) else np.nan for label in LABELS}
        picked = []
        for label in LABELS:
            for sentence in scored.loc[scored["sentiment"] == label, "sentence"].drop_duplicates().head(examples):
                picked.append({"sentence": str(sentence), "sentiment": label})
        rows.append(
            {
                name: term.name,
                "forms": ", ".join(term.forms),
                "mentions": len(part),
                "documents": part["doc_id"].nunique(),
                "share_of_voice": len(part) / total,
                **shares,
                "net_sentiment": shares["positive"] - shares["negative"],
                "examples": json.dumps(picked, ensure_ascii=False),
            }
        )
    columns = [name, "forms", "mentions", "documents", "share_of_voice", *LABELS, "net_sentiment", "examples"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("mentions", ascending=False, kind="stable").reset_index(drop=True)


def brand_timeseries(mentions: pd.DataFrame, periods: pd.DataFrame) -> pd.DataFrame:
    """Per period and brand: mentions, share of voice (of all brand mentions that period), net sentiment."""
    columns = ["period", "brand", "mentions", "share_of_voice", "net_sentiment"]
    timed = mentions.merge(periods[["doc_id", "period"]], on="doc_id").dropna(subset=["period"])
    if timed.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns}).astype({"brand": "string"})
    timed["polarity"] = timed["sentiment"].map(POLARITY).astype(float)
    grouped = timed.groupby(["period", "term"], observed=True)
    out = grouped.agg(mentions=("doc_id", "size"), net_sentiment=("polarity", "mean")).reset_index()
    out["share_of_voice"] = out["mentions"] / out.groupby("period")["mentions"].transform("sum")
    return out.rename(columns={"term": "brand"})[columns].sort_values(["period", "brand"]).reset_index(drop=True)


def comentions(mentions: pd.DataFrame) -> pd.DataFrame:
    """Pairs of brands named in the same document, with the number of such documents."""
    pairs: Counter[tuple[str, str]] = Counter()
    for _, names in mentions.groupby("doc_id")["term"]:
        unique = sorted(set(names))
        pairs.update((a, b) for i, a in enumerate(unique) for b in unique[i + 1 :])
    rows = [{"brand_a": a, "brand_b": b, "documents": n} for (a, b), n in pairs.most_common()]
    return pd.DataFrame(rows, columns=["brand_a", "brand_b", "documents"]).astype({"documents": "int64"})


def aspect_tables(
    texts: TextChunks,
    settings: AspectSettings,
    *,
    embedder: Embedder | None,
    scorer: AspectScorer,
    periods: pd.DataFrame | None = None,
    progress: Progress = no_progress,
) -> tuple[dict[str, pd.DataFrame], dict[str, object]]:
    """(the aspect and brand tables, facts for the summary) of a corpus."""
    brands = settings.brands or []
    aspects, source = settings.aspects, "listed" if settings.aspects is not None else "none"
    if aspects is None and settings.discover:
        if embedder is None:
            raise ValueError("aspect discovery needs an embedder (to merge similar phrases)")
        exclude = [f for b in brands for f in b.forms]
        aspects, source = discover_aspects(texts, embedder, settings, exclude=exclude, progress=progress), "discovered"
    kinds = {k: v for k, v in (("aspect", aspects or []), ("brand", brands)) if v}
    if not kinds:
        return {}, {"aspects": {"source": source, "count": 0}}
    mentions = collect_mentions(texts, kinds, scorer, batch_size=settings.batch_size, progress=progress)
    tables: dict[str, pd.DataFrame] = {}
    facts: dict[str, object] = {"aspects": {"source": source, "count": len(aspects or []), "scored": scorer.scores}}
    kept = ["doc_id", "term", "form", "sentiment", "score", "comparison"]
    if "aspect" in mentions:
        found = mentions["aspect"]
        tables["aspects"] = summary_table(found, kinds["aspect"], "aspect", examples=settings.examples)
        tables["aspects"]["source"] = source
        tables["aspect_mentions"] = found[kept].rename(columns={"term": "aspect"})
    if "brand" in mentions:
        found = mentions["brand"]
        tables["brands"] = summary_table(found, brands, "brand", examples=settings.examples)
        tables["brand_mentions"] = found[kept].rename(columns={"term": "brand"})
        tables["brand_comentions"] = comentions(found)
        if periods is not None:
            tables["brand_timeseries"] = brand_timeseries(found, periods)
        facts["brands"] = {"count": len(brands), "mentions": len(found)}
    return tables, facts
