"""The encoder engine: length-sorted batches within budgets, outputs back in the caller's order."""

from __future__ import annotations

import torch

from megasense.config import HeadConfig, preset
from megasense.inference.encoder import EncoderEngine, EncoderSettings, plan_batches
from megasense.models import build_model


def test_plan_respects_budgets_and_covers_everything():
    lengths = [5, 50, 3, 20, 20, 7, 49, 1]
    batches = plan_batches(lengths, EncoderSettings(max_batch_tokens=100, max_batch_size=3))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3 and len(batch) * max(lengths[i] for i in batch) <= 100


def test_outputs_match_one_at_a_time_in_order():
    torch.manual_seed(0)
    model = build_model(preset("bert-tiny"), HeadConfig(task="embedding"))
    model.init_weights()
    g = torch.Generator().manual_seed(1)
    sequences = [
        torch.randint(1, 99, (int(n),), generator=g).tolist() for n in torch.randint(1, 30, (25,), generator=g)
    ]
    engine = EncoderEngine(model, pad_id=0, settings=EncoderSettings(max_batch_tokens=64, max_batch_size=8))
    batched = engine.run(sequences)
    with torch.inference_mode():
        single = torch.cat([model(torch.tensor([s])).embeddings for s in sequences])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
