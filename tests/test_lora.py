"""LoRA adapters: start as the identity update, train only what they should, merge exactly."""

from __future__ import annotations

import pytest
import torch

from megasense.config import HeadConfig, preset
from megasense.models import build_model
from megasense.models.lora import LoRALinear, LoRASettings, apply_lora, merge_lora, trainable_state_dict


def _classifier(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(
        preset("bert-tiny").replace(hidden_dropout=0.0, attention_dropout=0.0),
        HeadConfig(task="classification", labels=("negative", "neutral", "positive")),
    )
    model.init_weights()
    return model.eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 99, (4, 9), generator=g), torch.tensor([0, 1, 2, 1])


def test_fresh_adapters_do_not_change_outputs_and_keep_keys():
    model = _classifier()
    ids, _ = _batch()
    before = model(ids).logits
    keys_before = set(model.state_dict())
    adapted = apply_lora(model, LoRASettings(rank=4), train_also=("classifier.*",))
    assert len(adapted) == 2 * 4  # 2 layers x (qkv, dense, h_to_4h, 4h_to_h)
    torch.testing.assert_close(model(ids).logits, before, atol=0, rtol=0)
    assert keys_before <= set(model.state_dict())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(trainable_state_dict(model))
    assert all(".lora_" in n or n.startswith("classifier.") for n in trainable)
    assert "classifier.weight" in trainable and "layers.0.self_attention.linear_qkv.weight" not in trainable


def test_training_moves_only_adapters_and_merge_is_exact():
    model = _classifier()
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    apply_lora(model, LoRASettings(rank=4, alpha=8), train_also=("classifier.*",))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, labels = _batch()
    for _ in range(5):
        opt.zero_grad()
        model(ids, labels=labels).loss.backward()
        opt.step()
    model.eval()
    for name, param in model.named_parameters():
        if name in frozen and not name.startswith("classifier."):
            assert torch.equal(param, frozen[name]), name
    with torch.no_grad():
        adapted_logits = model(ids).logits
        merge_lora(model)
        merged_logits = model(ids).logits
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    torch.testing.assert_close(merged_logits, adapted_logits, atol=1e-5, rtol=0)
    assert set(model.state_dict()) == set(frozen)


def test_no_matching_target_is_an_error():
    with pytest.raises(ValueError, match="no linear layer matches"):
        apply_lora(_classifier(), LoRASettings(targets=("encoder.*.query",)))
