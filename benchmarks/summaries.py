"""Summary quality: ROUGE-1/2/L and faithfulness of megasense's summarizer beside lead and sumy's extractive
summarizers, in the same run, on DialogSum (English dialogues -> one-sentence summaries) and CSL (Chinese paper
abstracts -> titles).

Systems, all given the same word budget (``--max-words``: DialogSum 25 words, CSL 20 characters by default):
- ``lead``: the first units (turns / sentences) within the budget (at least one, cut to the budget);
- ``lexrank``, ``textrank``, ``lsa``: PyPI ``sumy``'s summarizers, taking ranked sentences within the budget. sumy's
  own tokenizer needs nltk's punkt data, which cannot be downloaded here: its place is taken by megasense's
  splitter (``summaries/text.py``: turns, or rule-based sentences) and, for words, a regex (English, with sumy's
  Snowball stemmer and stop words) or jieba (Chinese, sumy's Chinese stop words);
- ``megasense-extract``: the units the encoder finds most central (LexRank on sentence embeddings);
- ``megasense-generate``: the decoder (smollm2-135m-instruct) writing from the central units, sentences the source
  does not support dropped;
- ``megasense`` (``method="auto"``): what ``megasense summarize --style brief`` does for the language.

ROUGE: PyPI ``rouge-score`` (F1; English with its Porter stemmer; Chinese on characters, punctuation dropped, which
``rouge-score`` allows through a tokenizer object). Faithfulness: the share of summary sentences whose cosine with
the closest source unit (a turn or a sentence) reaches the judge's threshold; the judge is multilingual-e5-small (not
MiniLM, the encoder that filters English generations, so the measure is not the filter grading itself), threshold
``JUDGE_THRESHOLD`` = 0.88, chosen with ``--calibrate`` (it prints how well it separates each reference summary's
sentences scored against their own source from the same sentences against the next row's source). The megasense
systems run with ``--strategy`` (greedy by default) and one thread.

    python benchmarks/summaries.py [--limit 40] [--sets dialogsum,csl] [--systems ...] [--calibrate]
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from _common import SHARED_DATA

JUDGE_THRESHOLD = 0.88
SETS = {
    "dialogsum": ("dialogsum-en/dev.csv", "dialogue", "summary", "en", 25),
    "csl": ("csl-titles-zh/dev.csv", "text", "summary", "zh", 20),
}
BASELINES = ("lead", "lexrank", "textrank", "lsa")
OURS = ("megasense-extract", "megasense-generate", "megasense")


class CharTokenizer:
    """Chinese ROUGE on characters: letters and digits kept, punctuation and spaces dropped."""

    def tokenize(self, text: str) -> list[str]:
        return [c for c in text.lower() if c.isalnum()]


class _SumyTokenizer:
    """sumy's tokenizer interface (``to_sentences``, ``to_words``) over megasense's splitter (no nltk data)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.language = "chinese" if lang == "zh" else "english"

    def to_sentences(self, text: str) -> list[str]:
        from megasense.summaries.text import split_units

        return split_units(text, self.lang)

    def to_words(self, sentence: str) -> list[str]:
        if self.lang == "zh":
            import jieba

            return [w for w in jieba.lcut(sentence) if w.strip() and re.search(r"\w", w)]
        return re.findall(r"[A-Za-z0-9]+(?:'[a-z]+)?", sentence)


def lead(units: list[str], max_words: int) -> list[str]:
    from megasense.summaries.text import cut_to_words

    return cut_to_words(units, max_words)[0]


def sumy_system(name: str, lang: str) -> Callable[[str, int], list[str]]:
    from sumy.nlp.stemmers import Stemmer, null_stemmer
    from sumy.parsers.plaintext import PlaintextParser
    from sumy.summarizers.lex_rank import LexRankSummarizer
    from sumy.summarizers.lsa import LsaSummarizer
    from sumy.summarizers.text_rank import TextRankSummarizer
    from sumy.utils import get_stop_words

    from megasense.summaries.text import count_words, cut_to_words

    language = "chinese" if lang == "zh" else "english"
    made = {"lexrank": LexRankSummarizer, "textrank": TextRankSummarizer, "lsa": LsaSummarizer}[name](
        null_stemmer if lang == "zh" else Stemmer(language)
    )
    made.stop_words = get_stop_words(language)
    tokenizer = _SumyTokenizer(lang)

    def run(text: str, max_words: int) -> list[str]:
        document = PlaintextParser.from_string(text, tokenizer).document
        n = len(document.sentences)
        # sumy returns the best k sentences in document order: the largest k within the budget (at least 1)
        best = [str(s) for s in made(document, 1)]
        for k in range(2, n + 1):
            picked = [str(s) for s in made(document, k)]
            if sum(count_words(s) for s in picked) > max_words:
                break
            best = picked
        return cut_to_words(best, max_words)[0]

    return run


def make_system(name: str, lang: str, max_words: int, summarizer, strategy: str) -> Callable[[str], list[str]]:
    """One system: text in, summary sentences out, within ``max_words``."""
    from megasense.summaries.text import split_units

    if name == "lead":
        return lambda text: lead(split_units(text, lang), max_words)
    if name in ("lexrank", "textrank", "lsa"):
        run = sumy_system(name, lang)
        return lambda text: run(text, max_words)
    if name in OURS:
        method = {"megasense-extract": "extract", "megasense-generate": "generate"}.get(name, "auto")
        options = {"style": "brief", "max_words": max_words, "lang": lang, "strategy": strategy, "method": method}
        return lambda text: summarizer.summarize(text, **options).abstract
    raise SystemExit(f"unknown system {name!r}; choose from {', '.join(BASELINES + OURS)}")


def read_set(name: str, limit: int) -> list[dict[str, str]]:
    relative, *_ = SETS[name]
    path = SHARED_DATA / relative
    if not path.is_file():
        raise SystemExit(f"{path} is missing: set MEGASENSE_TEST_DATA to the folder that holds the shared data sets")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=40, help="rows per data set (the first N of dev)")
    parser.add_argument("--sets", default="dialogsum,csl")
    parser.add_argument("--systems", default=",".join(BASELINES + OURS))
    parser.add_argument("--max-words", type=int, default=None, help="the budget (default: per set)")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the decoder (a fine-tuned directory too)")
    parser.add_argument("--strategy", default="greedy")
    parser.add_argument("--calibrate", action="store_true", help="print the judge's similarity separation")
    parser.add_argument("--lead-bias", type=float, default=None, help="override the summarizer's lead bias")
    parser.add_argument(
        "--pair-prompt",
        action="store_true",
        help="ask as `megasense train --task generate` trains (the fine-tuning demonstration's before and after)",
    )
    parser.add_argument("--show", type=int, default=0, help="print the first N summaries of each system")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from rouge_score import rouge_scorer

    from megasense.summaries.extract import check_support
    from megasense.summaries.summarizer import load_summarizer
    from megasense.summaries.text import split_sentences, split_units

    options = {} if args.lead_bias is None else {"lead_bias": args.lead_bias}
    if args.pair_prompt:
        options["pair_prompt"] = True
    summarizer = load_summarizer(args.model, **options)
    judge = summarizer.embedders["zh"]  # multilingual-e5-small, for both languages
    print(f"rows per set: {args.limit}; decoder {args.model}; strategy {args.strategy}; 1 thread", flush=True)
    for set_name in args.sets.split(","):
        relative, text_col, ref_col, lang, default_words = SETS[set_name]
        max_words = args.max_words or default_words
        rows = read_set(set_name, args.limit)
        scorer = rouge_scorer.RougeScorer(
            ["rouge1", "rouge2", "rougeL"],
            use_stemmer=lang == "en",
            tokenizer=CharTokenizer() if lang == "zh" else None,
        )
        if args.calibrate:
            calibrate(rows, text_col, ref_col, lang, judge)
        systems = {
            name: make_system(name, lang, max_words, summarizer, args.strategy) for name in args.systems.split(",")
        }
        unit = "characters" if lang == "zh" else "words"
        print(f"\n{set_name} ({relative}, {len(rows)} rows, budget {max_words} {unit})")
        print(f"{'system':<20} {'R-1':>6} {'R-2':>6} {'R-L':>6} {'faithful':>9} {'words':>6} {'s/doc':>6}")
        for name, system in systems.items():
            scores, faithful, words, started = [], [], [], time.perf_counter()
            for i, row in enumerate(rows):
                sentences = system(row[text_col])
                summary = ("" if lang == "zh" else " ").join(sentences)
                if i < args.show:
                    print(f"  [{name}] {summary!r}\n    ref: {row[ref_col]!r}")
                score = scorer.score(row[ref_col], summary)
                scores.append([score[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")])
                split = split_sentences(summary, lang) or [summary]
                units = split_units(row[text_col], lang)
                source = units + [part for unit in units for part in split_sentences(unit, lang)]  # turns and sentences
                support = check_support(split, source, judge, threshold=JUDGE_THRESHOLD)
                faithful.append(np.mean([s.supported for s in support]))
                words.append(len(summary.split()) if lang == "en" else len(CharTokenizer().tokenize(summary)))
            seconds = (time.perf_counter() - started) / len(rows)
            r1, r2, rl = (100 * np.mean(scores, axis=0)).tolist()
            print(
                f"{name:<20} {r1:6.2f} {r2:6.2f} {rl:6.2f} {100 * np.mean(faithful):8.1f}% "
                f"{statistics.mean(words):6.1f} {seconds:6.2f}",
                flush=True,
            )


def calibrate(rows, text_col: str, ref_col: str, lang: str, judge) -> None:
    """Cosines of each reference summary's sentences with their own source (should pass) and with the next row's
    source (should fail), and the share of each on the right side of thresholds."""
    from megasense.summaries.extract import check_support
    from megasense.summaries.text import split_sentences, split_units

    own, other = [], []
    for i, row in enumerate(rows):
        sentences = split_sentences(row[ref_col], lang) or [row[ref_col]]
        units = split_units(row[text_col], lang)
        other_units = split_units(rows[(i + 1) % len(rows)][text_col], lang)
        own += [s.similarity for s in check_support(sentences, units, judge, threshold=0)]
        other += [s.similarity for s in check_support(sentences, other_units, judge, threshold=0)]
    own_a, other_a = np.array(own), np.array(other)
    print(f"judge cosines: own source median {np.median(own_a):.3f}, other source median {np.median(other_a):.3f}")
    for t in np.arange(0.70, 0.92, 0.02):
        print(
            f"  threshold {t:.2f}: own supported {100 * (own_a >= t).mean():5.1f}%, "
            f"other {100 * (other_a >= t).mean():5.1f}%"
        )


if __name__ == "__main__":
    main()
