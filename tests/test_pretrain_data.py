"""Pretraining samples: GPT packing over documents, BERT dynamic masking with sentence order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from megasense.data.corpus import split_sentences
from megasense.data.indexed import IndexedDataset, IndexedDatasetWriter
from megasense.data.pretrain import BertMaskedDataset, GPTPackedDataset, collate

EOD = 0


def _docs(tmp_path, docs):
    with IndexedDatasetWriter(tmp_path / "ds", dtype=np.uint16) as w:
        for doc in docs:
            w.add_document(doc)
    return IndexedDataset(tmp_path / "ds")


def test_gpt_windows_cover_each_epoch_once_and_labels_shift(tmp_path):
    rng = np.random.default_rng(0)
    docs = [[[*rng.integers(1, 50, rng.integers(3, 20)).tolist(), EOD]] for _ in range(30)]
    data = _docs(tmp_path, docs)
    ds = GPTPackedDataset(data, seq_length=16, seed=7, eod_id=EOD)
    total = sum(len(d[0]) for d in docs)
    assert ds.samples_per_epoch == (total - 1) // 16
    stream = torch.cat([ds[i].input_ids for i in range(ds.samples_per_epoch)])
    order = np.random.default_rng([7, 0]).permutation(30)
    expected = np.concatenate([docs[j][0] for j in order])
    assert stream.tolist() == expected[: len(stream)].tolist()
    s = ds[3]
    assert s.labels[:-1].tolist() == s.input_ids[1:].tolist()
    assert s.labels[-1].item() == expected[4 * 16]
    # Deterministic, and a new order in the next epoch.
    again = GPTPackedDataset(data, seq_length=16, seed=7, eod_id=EOD)
    assert torch.equal(again[5].input_ids, ds[5].input_ids)
    assert not torch.equal(ds[ds.samples_per_epoch].input_ids, ds[0].input_ids)


def test_gpt_position_reset_after_end_of_document(tmp_path):
    data = _docs(tmp_path, [[[5, 6, EOD]], [[7, 8, 9, EOD]], [[1, 2, 3, 4, 5, EOD]]])
    ds = GPTPackedDataset(data, seq_length=8, seed=0, eod_id=EOD, reset_position_ids=True)
    s = ds[0]
    ids = s.input_ids.tolist()
    expected, pos = [], 0
    for t in ids:
        expected.append(pos)
        pos = 0 if t == EOD else pos + 1
    assert s.position_ids.tolist() == expected
    with pytest.raises(ValueError, match="fewer than one sample"):
        GPTPackedDataset(data, seq_length=64)


def test_bert_masking_is_fresh_each_epoch_and_sentence_order_is_balanced(tmp_path):
    rng = np.random.default_rng(1)
    docs = [[rng.integers(10, 90, rng.integers(4, 12)).tolist() for _ in range(rng.integers(2, 5))] for _ in range(200)]
    data = _docs(tmp_path, docs)
    kw = dict(seq_length=32, vocab_size=99, cls_id=1, sep_id=2, mask_id=3, pad_id=0, seed=5)
    ds = BertMaskedDataset(data, **kw)
    s = ds[0]
    real = s.attention_mask.bool()
    ids = s.input_ids[real]
    assert ids[0] == 1 and ids[-1] == 2 and (ids == 2).sum() == 2
    sep = (ids == 2).nonzero().flatten()[0].item()
    assert s.token_type_ids[real][: sep + 1].sum() == 0 and s.token_type_ids[real][sep + 1 :].min() == 1
    predicted = s.labels != -100
    assert predicted.any() and not predicted[~real].any()
    assert (s.labels[predicted] >= 10).all()  # only real tokens are predicted, never [CLS]/[SEP]/pad
    labels = [ds[i].binary_label for i in range(200)]
    assert 60 < sum(labels) < 140
    fractions = []
    for i in range(200):
        x = ds[i]
        chosen = x.labels != -100
        fractions.append(chosen.sum().item() / (x.attention_mask.sum().item() - 3))
    assert 0.12 < np.mean(fractions) < 0.18
    # The same document in the next epoch gets another mask (dynamic masking).
    first = {tuple(ds[i].labels.tolist()) for i in range(200)}
    second = {tuple(ds[200 + i].labels.tolist()) for i in range(200)}
    assert len(first & second) < 20
    batch = collate([ds[i] for i in range(4)])
    assert batch["input_ids"].shape == (4, 32) and batch["binary_label"].shape == (4,)


def test_bert_needs_documents_of_several_sentences(tmp_path):
    data = _docs(tmp_path, [[[5, 6, 7]], [[8, 9]]])
    with pytest.raises(ValueError, match="--split-sentences"):
        BertMaskedDataset(data, seq_length=16, vocab_size=99, cls_id=1, sep_id=2, mask_id=3, pad_id=0)


def test_sentence_splitting_english_and_chinese():
    assert split_sentences("Great phone. Battery died! Why? ok") == ["Great phone.", "Battery died!", "Why?", "ok"]
    assert split_sentences("房间很干净。服务很好！还会再来吗？") == ["房间很干净。", "服务很好！", "还会再来吗？"]
    assert split_sentences("v1.2 is out") == ["v1.2 is out"]
