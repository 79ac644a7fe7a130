"""The generic Trainer, classification fine-tuning and EDA augmentation, on tiny models in seconds."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _sentiment_fixtures import (
    one_thread,  # noqa: F401 (an autouse fixture)
    tiny_base,
    toy_rows,
    write_csv,
)
from megasense.data.collate import pad_right
from megasense.formats.adapter import classifier_on
from megasense.training.augment import AugmentSettings, augment, augment_dataset, random_delete, reorder_sentences
from megasense.training.finetune import (
    BucketedBatches,
    Examples,
    FinetuneConfig,
    class_weight_tensor,
    concat_examples,
    evaluate_examples,
    finetune,
    restrict_labels,
    save_finetuned,
)
from megasense.training.trainer import TrainConfig, Trainer, lr_factor, parameter_groups
from megasense.zoo.load import load_model


@dataclass
class Out:
    loss: torch.Tensor


class Regressor(nn.Module):
    """y = Wx + b with a norm, returning an output dataclass like every megasense model."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 1)
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> Out:
        return Out(loss=((self.proj(self.norm(x)).squeeze(-1) - y) ** 2).mean())


def regression_batches(n_batches: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_batches * size, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    return [{"x": x[i * size : (i + 1) * size], "y": y[i * size : (i + 1) * size]} for i in range(n_batches)]


def test_schedule_warms_up_then_decays_to_zero():
    assert lr_factor(0, total=100, warmup=10, schedule="linear") == pytest.approx(0.1)
    assert lr_factor(9, total=100, warmup=10, schedule="linear") == pytest.approx(1.0)
    assert lr_factor(55, total=100, warmup=10, schedule="linear") == pytest.approx(0.5)
    assert lr_factor(100, total=100, warmup=10, schedule="cosine") == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(55, total=100, warmup=10, schedule="cosine") == pytest.approx(0.5)
    assert lr_factor(90, total=100, warmup=10, schedule="constant") == 1.0


def test_no_weight_decay_on_norms_and_biases():
    model = Regressor()
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [model.proj.weight.shape]
    assert {id(p) for p in no_decay["params"]} == {id(model.proj.bias), id(model.norm.weight), id(model.norm.bias)}


def test_trainer_learns_is_reproducible_and_logs_jsonl(tmp_path):
    def run(seed: int, log=None):
        torch.manual_seed(123)
        model = Regressor()
        cfg = TrainConfig(
            lr=0.05, epochs=3, steps_per_epoch=10, seed=seed, progress=False, metrics_path=log, log_every=5
        )
        result = Trainer(model, cfg).fit(regression_batches(10, 16))
        return model, result

    log = tmp_path / "metrics.jsonl"
    a, result = run(0, str(log))
    b, _ = run(0)
    torch.manual_seed(123)
    first = Regressor()
    with torch.no_grad():
        final_loss = sum(float(a(**batch).loss) for batch in regression_batches(10, 16)) / 10
        start_loss = sum(float(first(**batch).loss) for batch in regression_batches(10, 16)) / 10
    assert result.steps == 30 and final_loss < 0.5 * start_loss
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0]["event"] == "start" and records[-1]["event"] == "end"
    train = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30] and all(r["loss"] >= 0 for r in train)


def test_step_hook_context_and_resumable_state():
    torch.manual_seed(0)
    records, entered = [], []

    class Context:
        def __enter__(self):
            entered.append(1)

        def __exit__(self, *exc):
            return False

    cfg = TrainConfig(lr=0.05, max_steps=6, progress=False, warmup_ratio=0.0, schedule="linear")
    trainer = Trainer(Regressor(), cfg, loss_context=Context, on_step=lambda t, r: records.append(r))
    trainer.fit(regression_batches(4, 8))  # one pass of 4 batches: stops at step 4 (max_steps=6)
    assert [r["step"] for r in records] == [1, 2, 3, 4] and len(entered) == 4
    assert all(r["grad_norm"] > 0 and r["lr"] > 0 for r in records)
    resumed = Trainer(Regressor(), cfg)
    resumed.load_state_dict(trainer.state_dict())
    assert resumed.step == 4 and resumed.scheduler.get_last_lr() == trainer.scheduler.get_last_lr()
    resumed.fit(regression_batches(4, 8))
    assert resumed.step == 6


def test_gradient_accumulation_matches_one_big_batch():
    big = regression_batches(1, 16)
    small = [{k: v[i * 8 : (i + 1) * 8] for k, v in big[0].items()} for i in range(2)]
    models = []
    for batches, accum in ((big, 1), (small, 2)):
        torch.manual_seed(0)
        model = Regressor()
        cfg = TrainConfig(lr=0.1, max_steps=1, grad_accum=accum, warmup_ratio=0.0, grad_clip=None, progress=False)
        Trainer(model, cfg).fit(batches)
        models.append(model)
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_clipping_bounds_the_update():
    torch.manual_seed(0)
    model = Regressor()
    before = [p.detach().clone() for p in model.parameters()]
    batch = [{"x": torch.randn(8, 4) * 100, "y": torch.full((8,), 1e4)}]
    cfg = TrainConfig(lr=1.0, max_steps=1, warmup_ratio=0.0, grad_clip=1e-3, weight_decay=0.0, progress=False)
    trainer = Trainer(model, cfg)
    trainer.optimizer = torch.optim.SGD(trainer.optimizer.param_groups, lr=1.0)  # SGD: the step is the gradient
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda s: 1.0)
    trainer.fit(batch)
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert float(moved.detach()) == pytest.approx(1e-3, rel=1e-3)


def test_early_stopping_restores_the_best_weights():
    torch.manual_seed(0)
    model = Regressor()
    scores = iter([0.5, 0.9, 0.7, 0.6, 0.95])
    seen = []

    def evaluate(m):
        seen.append(m.proj.weight.detach().clone())
        return {"score": next(scores)}

    cfg = TrainConfig(lr=0.01, epochs=1, max_steps=50, eval_every=2, monitor="score", patience=2, progress=False)
    result = Trainer(model, cfg, evaluate=evaluate).fit(regression_batches(50, 4))
    assert result.stopped_early and result.steps == 8 and result.best_step == 4 and result.best_metric == 0.9
    assert torch.equal(model.proj.weight, seen[1]) and not model.training


def test_time_budget_ends_the_run_and_still_evaluates():
    model = Regressor()
    cfg = TrainConfig(lr=0.01, epochs=5, steps_per_epoch=10, time_budget_s=0.0, monitor="s", progress=False)
    result = Trainer(model, cfg, evaluate=lambda m: {"s": 1.0}).fit(regression_batches(10, 4))
    assert result.out_of_time and result.steps == 1 and len(result.history) == 1


def test_config_errors_name_the_numbers():
    with pytest.raises(ValueError, match="grad_accum=0"):
        TrainConfig(grad_accum=0, max_steps=1)
    with pytest.raises(ValueError, match="patience needs"):
        TrainConfig(patience=2, max_steps=1)
    with pytest.raises(ValueError, match="max_steps or steps_per_epoch"):
        Trainer(Regressor(), TrainConfig())  # a config may leave the horizon to its job; the Trainer needs one


def test_class_weights_and_buckets():
    w = class_weight_tensor([0, 0, 0, 1], 3, "balanced")
    assert w.tolist() == pytest.approx([4 / 9, 4 / 3, 1.0])
    assert class_weight_tensor([0, 1], 2, "none") is None
    ids = [[2] + [5] * random.Random(i).randint(1, 30) + [3] for i in range(200)]
    batches = BucketedBatches(ids, [0] * 200, batch_size=16, pad_id=0, seed=1)
    epoch0 = [b["input_ids"] for b in batches(0)]
    assert sum(len(b) for b in epoch0) == 200 and len(epoch0) == len(batches)
    padded = sum(b.numel() for b in epoch0)
    assert padded < 1.3 * sum(len(s) for s in ids)  # length bucketing keeps padding low
    assert [b["input_ids"].tolist() for b in batches(0)] == [b.tolist() for b in epoch0]  # seeded
    assert [b["input_ids"].tolist() for b in batches(1)] != [b.tolist() for b in epoch0]  # a new order each epoch


def _examples(n: int, seed: int) -> Examples:
    labels = ("negative", "neutral", "positive")
    rows = toy_rows(n, seed)
    return Examples(texts=[t for t, _ in rows], labels=[labels.index(y) for _, y in rows])


@pytest.mark.parametrize("lora", [False, True])
def test_finetune_learns_the_toy_task_and_saves_a_loadable_model(tmp_path, lora):
    base = tiny_base(tmp_path)
    settings = dict(lora_rank=8, epochs=10, batch_size=8, lr=5e-3) if lora else dict(epochs=5, batch_size=16, lr=3e-3)
    config = FinetuneConfig(lora=lora, bf16=False, progress=False, patience=None, class_weights="none", **settings)
    result = finetune(base, _examples(320, 0), _examples(90, 1), config)
    assert result.report["accuracy"] >= 0.9, result.train.history
    if lora:
        assert result.adapter and all(
            k.endswith(("lora_a", "lora_b")) or k.startswith("classifier.") or "layernorm" in k for k in result.adapter
        )
        frozen = base.model.state_dict()["layers.0.self_attention.linear_qkv.weight"]
        assert torch.equal(result.model.state_dict()["layers.0.self_attention.linear_qkv.weight"], frozen)
    out = save_finetuned(result, tmp_path / "model", base_name=str(base.path), card="# toy\n")
    loaded = load_model(out)
    ids = torch.tensor([base.tokenizer.encode("the good train was great")])
    expected = result.loaded.model(ids).logits
    torch.testing.assert_close(loaded.model(ids).logits, expected)
    assert loaded.head.labels == ("negative", "neutral", "positive")
    assert (out / "adapter").is_dir() == lora


LABELS = ("negative", "neutral", "positive")


def _binary(n: int, seed: int) -> Examples:
    rows = toy_rows(n, seed, labels=("negative", "positive"))
    return restrict_labels(Examples(texts=[t for t, _ in rows], labels=[LABELS.index(y) for _, y in rows]), LABELS[::2])


def test_label_mask_trains_binary_rows_on_their_labels_only(tmp_path):
    base = tiny_base(tmp_path)
    model, _ = classifier_on(base, LABELS)
    model.eval()  # no dropout: the loss is compared with one computed by hand
    texts = ["the good train", "a bad report", "it was awful", "the table today"]
    ids, attention = pad_right(base.tokenizer.encode_batch(texts), base.tokenizer.pad_id)
    labels = torch.tensor([2, 0, 0, 1])
    mask = torch.tensor([[True, False, True]] * 3 + [[True, True, True]])  # three binary rows, one 3-class row
    out = model(ids, attention, labels=labels, label_mask=mask)
    assert torch.isfinite(out.logits).all()  # the logits themselves are not masked
    two = out.logits[:3, [0, 2]].float()
    expected = (
        F.cross_entropy(two, torch.tensor([1, 0, 0]), reduction="sum") + F.cross_entropy(out.logits[3:], labels[3:])
    ) / 4
    torch.testing.assert_close(out.loss, expected)
    # Binary rows alone send no gradient to the neutral logit; without the mask they push it down.
    model(ids[:3], attention[:3], labels=labels[:3], label_mask=mask[:3]).loss.backward()
    assert model.classifier.weight.grad[1].abs().max() == 0 and model.classifier.bias.grad[1] == 0
    model.zero_grad()
    model(ids[:3], attention[:3], labels=labels[:3]).loss.backward()
    assert model.classifier.bias.grad[1] > 0


def test_label_masks_travel_with_their_rows(tmp_path):
    binary, three = _binary(40, 0), _examples(30, 1)
    assert binary.allowed_labels(LABELS) == ("negative", "positive") and three.allowed_labels(LABELS) is None
    with pytest.raises(ValueError, match=r"rows labelled \['neutral'\]"):
        restrict_labels(three, ("negative", "positive"))
    mixed = concat_examples([three, binary], source="mix")
    assert len(mixed.label_mask) == 70 and mixed.label_mask[0] == (True, True, True)
    assert mixed.label_mask[-1] == (True, False, True) and mixed.allowed_labels(LABELS) is None
    ids = [[2, 5 + i % 7, 3] for i in range(70)]
    batches = BucketedBatches(ids, mixed.labels, batch_size=16, pad_id=0, seed=0, label_mask=mixed.label_mask)
    for batch in batches(0):
        assert batch["label_mask"].dtype == torch.bool and batch["label_mask"].shape == (len(batch["labels"]), 3)
        assert batch["label_mask"].gather(1, batch["labels"][:, None]).all()  # every row allows its own label
    assert sum(int((~b["label_mask"][:, 1]).sum()) for b in batches(0)) == 40
    with pytest.raises(ValueError, match="label_mask"):
        finetune(tiny_base(tmp_path), mixed, None, FinetuneConfig(augment=True, max_steps=1, progress=False))


def test_several_validation_sets_monitor_the_worst_and_restrict_binary_ones(tmp_path):
    base = tiny_base(tmp_path)
    train = concat_examples([_examples(160, 0), _binary(80, 1)])
    val = {"three": _examples(60, 2), "binary": _binary(40, 3)}
    config = FinetuneConfig(
        epochs=2, batch_size=16, lr=3e-3, bf16=False, eval_every=5, patience=None, progress=False, class_weights="none"
    )
    result = finetune(base, train, val, config)
    assert len(result.train.history) >= 3
    for record in result.train.history:
        assert record["macro_recall"] == min(record["three/macro_recall"], record["binary/macro_recall"])
        assert record["accuracy"] == min(record["three/accuracy"], record["binary/accuracy"])
    assert result.train.best_metric == max(r["macro_recall"] for r in result.train.history)
    sets = result.report["sets"]
    assert sets["binary"]["labels"] == ["negative", "positive"] and sets["binary"]["restricted"]
    assert sets["three"]["labels"] == list(LABELS) and not sets["three"]["restricted"]
    # The binary set is measured as `megasense evaluate --labels negative,positive` measures it.
    explicit = evaluate_examples(result.loaded, val["binary"], labels=("negative", "positive"))
    assert sets["binary"]["accuracy"] == explicit["accuracy"]
    assert result.report["macro_recall"] == min(r["macro_recall"] for r in sets.values())
    assert result.train.best_metric == pytest.approx(result.report["macro_recall"])


def test_recipe_sources_binary_package_and_per_source_holdouts(tmp_path, monkeypatch):
    """recipes/sentiment.py's data step: binary sources masked, package data read, measured rows excluded."""
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "recipes"))
    import sentiment as recipe

    data, package = tmp_path / "data", tmp_path / "site" / "toypkg"
    (data / "three").mkdir(parents=True)
    (data / "binary").mkdir()
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('this package does not import')\n")
    rows3 = toy_rows(60, 0)
    write_csv(data / "three" / "train.csv", rows3)
    write_csv(data / "three" / "val.csv", rows3[:5])  # the measured split: these rows must not be trained on
    write_csv(data / "binary" / "train.csv", toy_rows(40, 1, labels=("negative", "positive")))
    (package / "corpus.csv").write_bytes(
        b"sentiment,confidence,text\npositive,1,good \xd1 day\nnegative,0.4,bad day\nneutral,,the table\n"
    )
    monkeypatch.setattr(recipe, "DATA", data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("toypkg", None)
    spec = {
        "name": "toy",
        "finetune": {"seed": 0},
        "train": [
            {"path": "three/train.csv", "exclude": ["three/val.csv"], "holdout": 10},
            {"path": "binary/train.csv", "labels": "negative,positive", "holdout": 8},
            {"package": "toypkg", "path": "corpus.csv", "label_col": "sentiment", "min_confidence": 0.7},
        ],
    }
    train, holdouts, notes = recipe.prepare(spec, tmp_path / "run")
    assert set(holdouts) == {"three/train.csv", "binary/train.csv"}
    assert holdouts["binary/train.csv"].allowed_labels(LABELS) == ("negative", "positive")
    assert holdouts["three/train.csv"].allowed_labels(LABELS) is None and len(holdouts["three/train.csv"].texts) == 10
    banned = {t for t, _ in rows3[:5]}
    assert not banned & set(train.texts) and not banned & set(holdouts["three/train.csv"].texts)
    assert len(train.texts) == len(train.label_mask) == 60 - len(banned) - 10 + 32 + 2
    binary_rows = [m for m in train.label_mask if m == (True, False, True)]
    assert len(binary_rows) == 32
    assert "good  day" in train.texts and "the table" in train.texts and "bad day" not in train.texts
    assert any("binary: trained on negative, positive only" in n for n in notes)


def test_augmentation_is_seeded_and_keeps_meaning_bearing_shape():
    rng = random.Random(0)
    text = "The film was great. The staff were rude! We left early."
    again = random.Random(0)
    outs = [augment(text, rng) for _ in range(20)]
    assert outs == [augment(text, again) for _ in range(20)]
    assert any(o != text for o in outs)
    assert sorted(reorder_sentences(text, random.Random(3)).split()) == sorted(text.split())
    assert random_delete(["one"], 0.9, random.Random(0)) == ["one"]
    synonyms = [augment("good movie", random.Random(s), lexicon={"good": ("fine",)}) for s in range(30)]
    assert "fine movie" in synonyms
    texts, labels = augment_dataset(["a b c", "酒店很好"], [0, 2], seed=1, settings=AugmentSettings(copies=2))
    assert len(texts) == 6 and labels == [0, 2, 0, 2, 0, 2] and texts[:2] == ["a b c", "酒店很好"]
