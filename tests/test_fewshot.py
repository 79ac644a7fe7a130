"""Few-shot training (SetFit-style contrastive fine-tuning, then a logistic-regression head) and paraphrases.

The tiny word-level model learns toy intents from 8 examples each: "praise" (positive words), "complain"
(negative words), "schedule" (neutral words). The paraphraser is tested with a fake generator: no decoder.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from _sentiment_fixtures import (
    FILLER,
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    one_thread,  # noqa: F401 (an autouse fixture)
    save_base,
    tiny_base,
)
from megasense.errors import ConfigError
from megasense.formats.adapter import classifier_on
from megasense.training.fewshot import FEW_SHOT_MEDIAN, PairLoss, choose_method, fit_head, sample_pairs
from megasense.training.finetune import FinetuneConfig, read_examples, train
from megasense.training.paraphrase import (
    Paraphraser,
    ParaphraseSettings,
    clean_paraphrases,
    paraphrase_dataset,
)

INTENT_WORDS = {"praise": POSITIVE, "complain": NEGATIVE, "schedule": NEUTRAL}


def intent_rows(per_intent: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for intent, words in INTENT_WORDS.items():
        for _ in range(per_intent):
            body = [rng.choice(FILLER) for _ in range(rng.randint(1, 3))]
            body.insert(rng.randrange(len(body) + 1), rng.choice(words))
            rows.append((" ".join(body), intent))
    rng.shuffle(rows)
    return rows


def write(path, rows):
    import csv

    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "intent"])
        writer.writerows(rows)
    return path


def test_pairs_are_balanced_seeded_and_right():
    labels = [0] * 5 + [1] * 4 + [2] * 3 + [3]
    pairs = sample_pairs(labels, 6, seed=1)
    assert len(pairs) == 3 * len(labels) * 2  # 3 rounds, one positive and one negative pair per text
    positives = [p for p in pairs if p[2] == 1.0]
    assert len(positives) == len(pairs) / 2
    assert all(labels[i] == labels[j] for i, j, _ in positives)
    assert all(i != j for i, j, _ in positives if labels[i] != 3)
    assert (12, 12, 1.0) in pairs  # the single example of label 3 pairs with itself
    assert all(labels[i] != labels[j] for i, j, s in pairs if s == 0.0)
    assert sorted(i for i, _, _ in pairs) == sorted(list(range(len(labels))) * 6)  # every text anchors equally
    assert sample_pairs(labels, 6, seed=1) == pairs
    assert sample_pairs(labels, 6, seed=2) != pairs
    with pytest.raises(ConfigError, match="pairs_per_example=0"):
        sample_pairs(labels, 0, seed=1)


def test_auto_chooses_contrastive_for_few_shot_data_only():
    few = [c for c in range(77) for _ in range(10)]
    assert choose_method(few)[0] == "contrastive"
    assert "median 10" in choose_method(few)[1]
    assert choose_method([c for c in range(5) for _ in range(FEW_SHOT_MEDIAN)])[0] == "contrastive"
    assert choose_method([c for c in range(5) for _ in range(FEW_SHOT_MEDIAN + 1)])[0] == "classifier"
    # one large class does not make the data large: the median class decides
    assert choose_method([0] * 500 + [c for c in range(1, 9) for _ in range(8)])[0] == "contrastive"
    assert choose_method(few, multi_label=True)[0] == "classifier"
    assert choose_method(few, label_mask=True)[0] == "classifier"
    with pytest.raises(ConfigError, match=r"train\.method='fast'"):
        FinetuneConfig(method="fast")
    with pytest.raises(ConfigError, match=r"train\.augmenter='back-translate'"):
        FinetuneConfig(augmenter="back-translate")


def test_mnrl_leaves_same_label_texts_out_of_the_negatives(tmp_path):
    base = tiny_base(tmp_path)
    model, _ = classifier_on(base, ("a", "b"))
    loss = PairLoss(model, "mnrl")
    ids = torch.randint(5, 40, (8, 6))  # 4 pairs: 4 first texts, then their 4 partners
    mask = torch.ones_like(ids)
    similar = torch.ones(4)
    same = loss(ids, mask, similar, torch.zeros(8, dtype=torch.long)).loss
    assert same.item() == pytest.approx(0.0, abs=1e-6)  # every other text shares the label: no negatives
    mixed = loss(ids, mask, similar, torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])).loss
    assert mixed.item() > 0.0
    cosine = PairLoss(model, "cosine")(ids, mask, torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.zeros(8)).loss
    assert cosine.item() > 0.0


@pytest.mark.parametrize("classes", [2, 3])
def test_fitted_head_is_the_logistic_regression(classes):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(classes, 16)) * 3
    labels = np.repeat(np.arange(classes), 10)
    embeddings = (centres[labels] + rng.normal(size=(len(labels), 16))).astype(np.float32)
    model = nn.Module()
    model.classifier = nn.Linear(16, classes + 1)  # one label the data lacks
    fit_head(model, embeddings, labels, classes + 1)
    with torch.no_grad():
        logits = model.classifier(torch.from_numpy(embeddings))
    assert (logits.argmax(-1).numpy() == labels).all()
    assert (logits[:, classes] < -20).all()  # the absent label is never predicted


def test_train_auto_on_few_shot_intents_trains_contrastively_and_classifies(tmp_path):
    from megasense.predictors.sentiment import load_predictor

    base = save_base(tmp_path)
    path = write(tmp_path / "train.csv", intent_rows(16, seed=1))
    val = write(tmp_path / "val.csv", intent_rows(20, seed=2))
    out = tmp_path / "few-shot"
    options = {"label_col": "intent", "bf16": False, "batch_size": 8, "pairs_per_example": 16, "max_length": 32}
    result = train(path, val, base=str(base), output=out, lr=3e-3, **options)
    assert result.config.method == "contrastive"
    assert "few-shot data: median 16 texts per class" in result.method_reason
    assert result.train.steps == 48  # 8 rounds x 48 texts = 384 positive pairs (mnrl's), 8 a batch
    assert result.train.history[-1]["head_train_accuracy"] == 1.0
    assert result.report["accuracy"] >= 0.9
    # the pairs taught the encoder: the same head on the untrained encoder does worse
    frozen = train(path, val, base=str(base), output=tmp_path / "frozen", lr=1e-12, **options)
    assert frozen.report["accuracy"] < result.report["accuracy"] - 0.1
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Method: contrastive (SetFit-style" in card and "auto: few-shot data" in card
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["head"]["task"] == "classification"
    examples = read_examples(val, label_col="intent")
    predicted = load_predictor(str(out)).predict(examples.texts)
    gold = [examples.label_names[y] for y in examples.labels]
    assert np.mean([p == g for p, g in zip(predicted.labels, gold)]) == pytest.approx(result.report["accuracy"])


def test_train_method_contrastive_on_the_command_line_with_lora_saves_an_adapter(tmp_path):
    from typer.testing import CliRunner

    from megasense.cli.main import _register, app

    if not any(c.name == "train" for c in app.registered_commands):
        _register()
    base = save_base(tmp_path)
    path = write(tmp_path / "train.csv", intent_rows(6, seed=3))
    out = tmp_path / "few-shot-lora"
    args = ["train", str(path), "--label-col", "intent", "--base", str(base), "--output", str(out)]
    result = CliRunner().invoke(app, [*args, "--method", "contrastive", "--lora", "--no-bf16", "--max-length", "32"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "adapter" / "adapter.json").read_text(encoding="utf-8"))
    assert saved["lora"] and (out / "adapter" / "adapter.safetensors").is_file()
    assert "Method: contrastive" in (out / "README.md").read_text(encoding="utf-8")
    assert "method contrastive as given" in (out / "README.md").read_text(encoding="utf-8")
    bad = CliRunner().invoke(app, [*args, "--method", "fast", "--overwrite"])
    assert bad.exit_code != 0 and "train.method='fast'" in bad.output


def test_paraphrases_are_cleaned_and_cached(tmp_path):
    text = "How do I top up with cash?"
    answers = [
        "",
        "Rewrite: How can I add money using cash?",
        "how do i top up with cash",  # the text itself
        '"How can I add money using cash?"',  # a duplicate once quoted
        "1. Can I put cash on my account?\n2. Something else",
        "Texting is not a label",
        "Here are some rewrites:",
        "To top up with cash you go to a shop, and then you hand the cash over and they put it on your card for you",
    ]
    assert clean_paraphrases(text, answers, limit=5) == [
        "How can I add money using cash?",
        "Can I put cash on my account?",
        "Texting is not a label",
    ]
    assert clean_paraphrases(text, answers, limit=1) == ["How can I add money using cash?"]

    calls = []

    def fake(prompts):
        calls.append(len(prompts))
        return [f"{p.rsplit(chr(10), 1)[-1]} again {i}" for i, p in enumerate(prompts)]

    settings = ParaphraseSettings(copies=2, samples=3, batch_size=2)
    first = Paraphraser(fake, settings, cache_dir=tmp_path)
    texts, labels = paraphrase_dataset(["a b", "c d", "a b", "e f"], [0, 1, 0, 2], paraphraser=first)
    assert calls == [6, 3]  # three distinct texts, three answers each, two texts a batch
    assert texts[:4] == ["a b", "c d", "a b", "e f"] and len(texts) == 4 + 4 * 2
    assert labels[4:] == [0, 0, 1, 1, 0, 0, 2, 2]

    def broken(prompts):
        raise AssertionError("the cache should answer")

    again = Paraphraser(broken, settings, cache_dir=tmp_path)
    assert paraphrase_dataset(["e f", "a b"], [2, 0], paraphraser=again)[0][2:] == texts[10:12] + texts[4:6]
    assert again.generated_ == 0
    with pytest.raises(ConfigError, match="copies=4"):
        ParaphraseSettings(copies=4, samples=3)
