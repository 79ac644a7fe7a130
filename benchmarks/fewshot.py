"""Few-shot intents on Banking77: `megasense train`'s defaults beside SetFit on the same MiniLM weights, and baselines.

The protocol: from ``banking77/train.csv`` (77 intents; its test split is held back), a seeded sample of
``--shots`` texts per intent is the training set and every remaining row the test set (``--eval-per-class N``
tests on a seeded N per intent of them instead, for a CPU). Per seed, each row trains on the same sample:

- ``majority``, ``tfidf+lr`` (word 1-2 grams, logistic regression): baselines;
- ``minilm frozen+lr``: a logistic regression on the untouched encoder's embeddings (what contrastive
  fine-tuning starts from);
- ``megasense auto``: ``FinetuneConfig()`` as ``megasense train`` runs it (10-shot data: the contrastive
  method), ``megasense classifier``: today's cross-entropy fine-tuning (``method="classifier"``);
- ``setfit``: SetFit (PyPI ``setfit``) on ``all-minilm-l6-v2`` exported by megasense to a Hugging Face directory
  (mean pooling + normalisation, as the original sentence-transformers model), logistic-regression head.
  ``--setfit-iterations 1`` (the default here) makes 2 x 770 pairs, as many encoder passes as ours
  (4 pairs per text, 2 of them positive for MultipleNegativesRanking); SetFit's own default is 20;
- ``megasense auto +eda`` / ``+paraphrase``: the default with ``augment=True`` (one EDA copy, or up to one
  paraphrase by the embedded decoder, cached by text), given the same number of training steps as the plain
  run, so augmentation is compared at equal compute.

Accuracy is measured as ``megasense evaluate`` measures it (``evaluate_examples``, at bf16, the training
precision); SetFit predicts under bf16 autocast too. The table gives mean ± std over the seeds; the last line
compares the default with SetFit. ``--full`` trains on a stratified 80% of train.csv and tests on the other
20% (the classifier method, which ``auto`` picks for that much data).

SetFit is a benchmark dependency only (``pip install setfit``: sentence-transformers, datasets); without it
the row is skipped. ``--results FILE`` appends each (row, seed) as JSON and skips those already there, so an
interrupted run resumes (``--table-only`` prints its table). On one shared CPU core a seed takes about 1.5 min
for ``megasense auto``, 4 min for SetFit and 14 min for the paraphrase row (13 of them generating 770
paraphrases; cached, so a rerun on the same sample is free).

    .venv/bin/python benchmarks/fewshot.py                                  # the protocol (hours on a CPU)
    .venv/bin/python benchmarks/fewshot.py --eval-per-class 20 --results /tmp/fewshot.jsonl
    .venv/bin/python benchmarks/fewshot.py --full --seeds 0
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED_DATA

ROWS = (
    "majority",
    "tfidf+lr",
    "minilm frozen+lr",
    "megasense auto",
    "megasense classifier",
    "setfit",
    "megasense auto +eda",
    "megasense auto +paraphrase",
)
FULL_ROWS = ("majority", "tfidf+lr", "megasense auto")
BASE = "all-minilm-l6-v2"


def read_banking() -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    path = SHARED_DATA / "banking77" / "train.csv"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: set MEGASENSE_TEST_DATA to the folder that holds the shared data sets")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    names = tuple(sorted({r["category"] for r in rows}))
    index = {n: i for i, n in enumerate(names)}
    return [r["text"] for r in rows], np.array([index[r["category"]] for r in rows]), names


def per_class(indices: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` indices of each label among ``indices`` (all of a label's when it has fewer), sorted."""
    picked = []
    for label in np.unique(labels[indices]):
        pool = indices[labels[indices] == label]
        picked.append(rng.choice(pool, size=min(k, len(pool)), replace=False))
    return np.sort(np.concatenate(picked))


def split(labels: np.ndarray, args, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: ``shots`` per intent and the rest, or (``--full``) a stratified 80/20 split."""
    rng = np.random.default_rng(seed)
    every = np.arange(len(labels))
    if args.full:
        test = np.sort(
            np.concatenate([rng.choice(p, size=round(0.2 * len(p)), replace=False) for p in _by_label(labels)])
        )
        train = np.setdiff1d(every, test)
    else:
        train = per_class(every, labels, args.shots, rng)
        test = np.setdiff1d(every, train)
    if args.eval_per_class:
        test = per_class(test, labels, args.eval_per_class, np.random.default_rng(seed + 1000))
    return train, test


def _by_label(labels: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(labels == y) for y in np.unique(labels)]


class Context:
    """What the rows share: the base encoder (loaded once), the label names, the benchmark's options."""

    def __init__(self, args, names: tuple[str, ...]) -> None:
        from megasense.zoo import load_model

        self.args, self.names = args, names
        self.base = load_model(BASE)
        self._hf_dir: Path | None = None
        self.plain_steps: dict[int, int] = {}

    def hf_dir(self) -> Path:
        """``all-minilm-l6-v2`` exported to a Hugging Face directory (once), for SetFit."""
        if self._hf_dir is None:
            from megasense.formats.convert import export_weights

            target = Path(self.args.work) / "all-minilm-l6-v2-hf"
            if not (target / "model.safetensors").is_file():
                export_weights(self.base, target, "hf", overwrite=True)
            self._hf_dir = target
        return self._hf_dir


def run_row(row: str, ctx: Context, seed: int, train: tuple, test: tuple) -> dict:
    (x_train, y_train), (x_test, y_test) = train, test
    started = time.perf_counter()
    if row == "majority":
        predicted = np.full(len(y_test), np.bincount(y_train).argmax())
        out = {"accuracy": float(np.mean(predicted == y_test))}
    elif row == "tfidf+lr":
        out = {"accuracy": tfidf_accuracy(x_train, y_train, x_test, y_test)}
    elif row == "minilm frozen+lr":
        out = {"accuracy": frozen_accuracy(ctx, x_train, y_train, x_test, y_test)}
    elif row == "setfit":
        out = {"accuracy": setfit_accuracy(ctx, seed, x_train, y_train, x_test, y_test)}
    else:
        out = megasense_row(row, ctx, seed, x_train, y_train, x_test, y_test)
    return {**out, "seconds": time.perf_counter() - started}


def tfidf_accuracy(x_train, y_train, x_test, y_test) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    model = LogisticRegression(C=10.0, max_iter=2000).fit(vectorizer.fit_transform(x_train), y_train)
    return float(model.score(vectorizer.transform(x_test), y_test))


def frozen_accuracy(ctx: Context, x_train, y_train, x_test, y_test) -> float:
    from sklearn.linear_model import LogisticRegression

    from megasense.formats.adapter import classifier_on
    from megasense.training.fewshot import embed_ids

    model, _ = classifier_on(ctx.base, ctx.names)
    tok = ctx.base.tokenizer

    def embed(texts):
        return embed_ids(model, tok.encode_batch(texts, max_length=128), pad_id=tok.pad_id, bf16=True)

    regression = LogisticRegression(max_iter=2000).fit(embed(x_train), y_train)
    return float(regression.score(embed(x_test), y_test))


def megasense_row(row: str, ctx: Context, seed: int, x_train, y_train, x_test, y_test) -> dict:
    from megasense.training.finetune import Examples, FinetuneConfig, evaluate_examples, finetune

    args = ctx.args
    options: dict = {"seed": seed, "progress": False, "pairs_per_example": args.pairs_per_example}
    extra: dict = {}
    if row == "megasense classifier":
        options["method"] = "classifier"
    if row.endswith(("+eda", "+paraphrase")):
        options |= {"augment": True, "augmenter": row.rsplit("+", 1)[1]}
        if seed in ctx.plain_steps:  # the same budget as the plain run: augmentation at equal compute
            options["max_steps"] = ctx.plain_steps[seed]
    if row.endswith("+paraphrase"):
        extra = pregenerate_paraphrases(x_train, y_train, seed)
    train = Examples(texts=list(x_train), labels=[int(y) for y in y_train], source="banking77", label_names=ctx.names)
    test = Examples(texts=list(x_test), labels=[int(y) for y in y_test], source="banking77", label_names=ctx.names)
    result = finetune(ctx.base, train, None, FinetuneConfig(**options))
    if row == "megasense auto" and result.config.method == "contrastive":
        ctx.plain_steps[seed] = result.train.steps
    report = evaluate_examples(result.loaded, test, precision=result.config.precision, max_length=128)
    return {
        "accuracy": report["accuracy"],
        "method": result.config.method,
        "why": result.method_reason,
        "steps": result.train.steps,
        "train_s": result.seconds,
        **extra,
    }


def pregenerate_paraphrases(x_train, y_train, seed: int) -> dict:
    """Fill the paraphrase cache as training will ask (the same settings), timing the generation."""
    from megasense.training.paraphrase import Paraphraser, ParaphraseSettings, decoder_generate, default_cache_dir

    settings = ParaphraseSettings(copies=1, samples=1, seed=seed)  # what FinetuneConfig(augment_copies=1) asks
    paraphraser = Paraphraser(decoder_generate(settings), settings, cache_dir=default_cache_dir())
    started = time.perf_counter()
    found = paraphraser.paraphrase(list(x_train))
    pairs = [(text, rewrites[0]) for text, rewrites in zip(x_train, found) if rewrites]
    return {
        "paraphrases": len(pairs),
        "generated": paraphraser.generated_,
        "generation_s": time.perf_counter() - started,
        "examples": pairs[:6],
    }


def setfit_accuracy(ctx: Context, seed: int, x_train, y_train, x_test, y_test) -> float:
    try:
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer, models
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError as exc:
        raise RuntimeError(f"SetFit is not installed ({exc}): pip install setfit") from None
    from sklearn.linear_model import LogisticRegression

    directory = str(ctx.hf_dir())
    transformer = models.Transformer(directory, max_seq_length=128)
    pooling = models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="mean")
    body = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    model = SetFitModel(model_body=body, model_head=LogisticRegression())
    settings = TrainingArguments(
        batch_size=16,
        num_iterations=ctx.args.setfit_iterations,
        num_epochs=1,
        seed=seed,
        report_to="none",
        show_progress_bar=False,
        save_strategy="no",
    )
    data = Dataset.from_dict({"text": list(x_train), "label": [int(y) for y in y_train]})
    Trainer(model=model, args=settings, train_dataset=data).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        predicted = np.asarray(model.predict(list(x_test), batch_size=64, as_numpy=True))
    return float(np.mean(predicted.astype(np.int64) == y_test))


def load_results(path: str | None) -> list[dict]:
    if not path or not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def print_table(results: list[dict], rows: tuple[str, ...], args) -> None:
    setting = f"{'full 80/20' if args.full else f'{args.shots}-shot'}, test {args.eval_per_class or 'all'} per intent"
    print(f"\nBanking77 {setting} (accuracy, mean ± std over seeds)")
    print(f"{'row':28s} {'seeds':>5s} {'accuracy':>16s} {'seconds':>8s}  per seed")
    means = {}
    for row in rows:
        found = [r for r in results if r["row"] == row]
        if not found:
            continue
        accuracies = [r["accuracy"] for r in found]
        std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        means[row] = statistics.mean(accuracies)
        seconds = statistics.mean(r["seconds"] for r in found)
        each = " ".join(f"{r['seed']}:{r['accuracy']:.3f}" for r in sorted(found, key=lambda r: r["seed"]))
        print(f"{row:28s} {len(found):5d} {means[row]:8.3f} ± {std:.3f} {seconds:8.0f}  {each}")
    ours, theirs = means.get("megasense auto"), means.get("setfit")
    if ours is not None and theirs is not None and not args.full:
        print(f"{args.shots}-shot accuracy: megasense {ours:.3f} vs SetFit {theirs:.3f} (ratio {ours / theirs:.2f}x)")
    elif ours is not None:
        print(f"{setting} accuracy: megasense {ours:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shots", type=int, default=10, help="training texts per intent")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-per-class", type=int, default=None, help="test on N per intent (default: all)")
    parser.add_argument("--rows", nargs="+", default=None, help=f"rows to run (default all): {', '.join(ROWS)}")
    parser.add_argument("--pairs-per-example", type=int, default=4, help="FinetuneConfig.pairs_per_example")
    parser.add_argument("--setfit-iterations", type=int, default=1, help="SetFit's num_iterations (its default: 20)")
    parser.add_argument("--full", action="store_true", help="train on 80%% of train.csv, test on 20%%")
    parser.add_argument("--results", default=None, help="JSONL to append results to (and resume from)")
    parser.add_argument("--work", default="/tmp/megasense-fewshot-bench", help="scratch folder (the HF export)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the build machine is shared)")
    parser.add_argument("--table-only", action="store_true", help="print the table of --results; run nothing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = tuple(args.rows or (FULL_ROWS if args.full else ROWS))
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; known: {', '.join(ROWS)}")
    mode = {"full": args.full, "shots": args.shots, "eval_per_class": args.eval_per_class}
    mode |= {"pairs_per_example": args.pairs_per_example, "setfit_iterations": args.setfit_iterations}
    results = [r for r in load_results(args.results) if all(r.get(k) == v for k, v in mode.items())]
    if args.table_only:
        print_table(results, rows, args)
        return
    texts, labels, names = read_banking()
    ctx = Context(args, names)
    for r in results:
        if r["row"] == "megasense auto" and r.get("method") == "contrastive":
            ctx.plain_steps[r["seed"]] = r["steps"]
    started = time.perf_counter()
    for seed in args.seeds:
        train, test = split(labels, args, seed)
        data = ([texts[i] for i in train], labels[train]), ([texts[i] for i in test], labels[test])
        for row in rows:
            if any(r["row"] == row and r["seed"] == seed for r in results):
                continue
            try:
                record = {"row": row, "seed": seed, **mode, **run_row(row, ctx, seed, *data)}
            except RuntimeError as exc:
                print(f"{row}: skipped ({exc})", file=sys.stderr)
                continue
            record |= {"n_train": len(train), "n_test": len(test)}
            results.append(record)
            print(json.dumps(record), file=sys.stderr, flush=True)
            if args.results:
                with open(args.results, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record) + "\n")
    print_table(results, rows, args)
    print(f"(this run: {time.perf_counter() - started:.0f} s with {args.threads} torch thread(s))")


if __name__ == "__main__":
    main()
