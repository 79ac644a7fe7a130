"""The packed decoder's kernels: the dense bf16 copy a quantised matrix keeps for many-row calls holds the very
weights the int4/int8 kernels multiply by, and a decode step attends only over the cache columns written so far."""

from __future__ import annotations

import pytest
import torch

from megasense.config.presets import llama_tiny
from megasense.inference.decoder import PackedDecoder
from megasense.inference.linear import PackedLinear
from megasense.models import GPTModel

ALWAYS_KERNEL, ALWAYS_DENSE = 10**9, 1


@pytest.mark.parametrize("fmt", ["int4", "int8"])
def test_dense_copy_holds_the_kernels_weights(fmt):
    torch.manual_seed(0)
    weight = torch.randn(48, 64) * 0.1
    linear = PackedLinear(weight, None, fmt, dense_from=ALWAYS_KERNEL)
    assert linear.format == fmt
    eye = torch.eye(64, dtype=torch.bfloat16)  # row i of the output is the weights' column i, as the path sees it
    kernel = linear(eye)
    linear.dense_from = ALWAYS_DENSE
    assert torch.equal(linear(eye), kernel)
    x = torch.randn(6, 64, dtype=torch.bfloat16)
    linear.dense_from = ALWAYS_KERNEL
    by_kernel = linear(x).float()
    linear.dense_from = ALWAYS_DENSE
    # the same products summed in another order, each rounded to bf16 at the end
    torch.testing.assert_close(linear(x).float(), by_kernel, atol=2e-2 * by_kernel.abs().max().item(), rtol=0)


def test_calls_switch_to_the_dense_copy_from_dense_from_rows():
    linear = PackedLinear(torch.randn(32, 64), None, "int4", dense_from=3)
    calls = []
    real = torch._weight_int4pack_mm_for_cpu

    def spy(*args):
        calls.append(args[0].shape[0])
        return real(*args)

    torch._weight_int4pack_mm_for_cpu = spy
    try:
        for rows in (1, 2, 3, 8):
            assert linear(torch.randn(rows, 64, dtype=torch.bfloat16)).shape == (rows, 32)
    finally:
        torch._weight_int4pack_mm_for_cpu = real
    assert calls == [1, 2]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    # widths that int4 packs (inputs in groups of 32, outputs in 16s), unlike the 32-wide tiny preset
    config = llama_tiny().replace(hidden_size=64, ffn_hidden_size=128)
    model = GPTModel(config).eval()
    model.init_weights()
    return model


def _greedy_logits(decoder, ids, mask, max_length, steps=4):
    """Prefill a left-padded batch, then ``steps`` greedy decode steps; every step's logits."""
    B, P = ids.shape
    session = decoder.new_session(B, max_length, mask)
    positions = (mask[:, :P].cumsum(1) - 1).clamp(min=0)
    logits = [session.prefill(ids, positions)]
    for step in range(steps):
        token = logits[-1].argmax(-1)
        logits.append(session.step(token[:, None], mask[:, :P].sum(1, keepdim=True) + step))
    return torch.stack(logits)


def _batch(B=3, P=6, new=4):
    torch.manual_seed(1)
    ids = torch.randint(3, 99, (B, P))
    mask = torch.ones(B, P + new, dtype=torch.long)
    mask[1, :2] = 0  # left padding
    return ids, mask


def test_decode_attends_only_to_the_written_columns(model):
    """Poison the cache beyond what has been written: a step that read the whole preallocated length would turn
    the poison into NaN logits even with those columns masked (0 x NaN)."""
    decoder = PackedDecoder(model, "fp32")
    ids, mask = _batch()
    clean = _greedy_logits(decoder, ids, mask, ids.shape[1] + 4)
    new_session = decoder.new_session

    def poisoned(*args):
        session = new_session(*args)
        session.cache.fill_(float("nan"))
        return session

    decoder.new_session = poisoned
    longer_mask = torch.cat([mask, torch.ones(mask.shape[0], 20, dtype=torch.long)], 1)
    dirty = _greedy_logits(decoder, ids, longer_mask, ids.shape[1] + 24)
    assert torch.isfinite(dirty).all()
    torch.testing.assert_close(dirty, clean, atol=1e-5, rtol=0)


@pytest.mark.parametrize("fmt", ["int4", "int8"])
def test_wide_calls_through_the_dense_copy_decode_like_the_kernels(model, fmt):
    decoder = PackedDecoder(model, fmt)
    linears = [m for layer in decoder.layers for m in (layer.qkv, layer.out, layer.up, layer.down)]
    assert {m.format for m in linears} == {fmt}
    ids, mask = _batch()

    def run(dense_from):
        for m in [*linears, decoder.head]:
            m.dense_from = dense_from
        return _greedy_logits(decoder, ids, mask, ids.shape[1] + 4).float()

    by_kernel, by_dense = run(ALWAYS_KERNEL), run(ALWAYS_DENSE)
    assert torch.equal(by_dense[0].argmax(-1), by_kernel[0].argmax(-1))
    torch.testing.assert_close(by_dense, by_kernel, atol=0.03 * by_kernel.abs().max().item(), rtol=0)


@pytest.mark.parametrize("fmt", ["bf16", "int4"])
def test_leading_logits_are_exact_in_fp32(model, fmt):
    """bf16 outputs round logits to a 256th of their size, enough to tie two candidates; the leading ones are
    recomputed in fp32 from the output layer's own weights (int8 under int4)."""
    decoder = PackedDecoder(model, fmt)
    torch.manual_seed(2)
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    vocabulary = torch.arange(decoder.vocab_size)
    exact = x.float() @ decoder.head.rows(vocabulary).T  # (3, V) in fp32
    logits = decoder._logits(x)
    assert logits.dtype == torch.float32
    top = exact.topk(4, dim=-1).indices
    torch.testing.assert_close(logits.gather(1, top), exact.gather(1, top), atol=1e-5, rtol=1e-5)
    assert torch.equal(logits.argmax(-1), exact.argmax(-1))
