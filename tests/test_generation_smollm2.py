"""The generation engine on the embedded SmolLM2-135M-Instruct against transformers with the same weights:
batched greedy and batched beam search token for token (exact fp32 path), and the packed fast paths' logits."""

from __future__ import annotations

import pytest
import torch

from megasense.config import GenerationConfig
from megasense.inference.generation import GenerationEngine

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.slow
QUESTIONS = ["What is the capital of France?", "Name three colours.", "Why do cats purr?"]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    from megasense.formats.hf.directory import write_hf_dir
    from megasense.zoo.embedded import ModelNotInstalledError
    from megasense.zoo.load import load_model

    try:
        loaded = load_model("smollm2-135m-instruct")
    except ModelNotInstalledError as exc:
        pytest.skip(str(exc))
    out = write_hf_dir(
        tmp_path_factory.mktemp("hf") / "smollm2",
        config=loaded.config,
        head=loaded.head,
        state_dict=loaded.model.state_dict(),
    )
    ref = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    tok = loaded.tokenizer
    prompts = [tok.encode(tok.apply_chat_template([{"role": "user", "content": q}])) for q in QUESTIONS]
    assert len({len(p) for p in prompts}) > 1  # the batch needs left padding
    return loaded, ref, prompts


@pytest.fixture
def one_thread():
    """Token-by-token decoding of a 135M model is latency-bound; on a busy machine extra threads only fight."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _hf(ref, prompts, pad, eos, **kw):
    P = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (P - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = ref.generate(ids, attention_mask=mask, pad_token_id=pad, eos_token_id=eos, do_sample=False, **kw)
    rows = [row[P:].tolist() for row in out]
    return [row[: row.index(eos)] if eos in row else row for row in rows]


def test_batched_greedy_and_beam_search_equal_transformers(smollm2, one_thread):
    loaded, ref, prompts = smollm2
    tok = loaded.tokenizer
    engine = GenerationEngine(loaded.model, eos_token_ids=[tok.eos_id], pad_token_id=tok.pad_id, precision="fp32")
    greedy = {"max_new_tokens": 8, "repetition_penalty": 1.2}
    ours = [g.tokens for g in engine.generate(prompts, GenerationConfig(**greedy))]
    assert ours == _hf(ref, prompts, tok.pad_id, tok.eos_id, **greedy)
    beams = {"max_new_tokens": 6, "num_beams": 3, "num_return_sequences": 2, "no_repeat_ngram_size": 3}
    ours = [g.tokens for g in engine.generate(prompts, GenerationConfig(**beams))]
    assert ours == _hf(ref, prompts, tok.pad_id, tok.eos_id, **beams)
    assert all(len(t) >= 3 for t in ours)


@pytest.mark.parametrize(("precision", "tolerance"), [("fp32-packed", 1e-4), ("bf16", 0.05), ("int4", 0.05)])
def test_packed_paths_pick_the_same_next_tokens(smollm2, one_thread, precision, tolerance):
    """Prefill logits of the packed decoder against the model's own (left-padded batch): the same argmax
    everywhere, and close values (bf16 activations move logits by a few per cent of their range)."""
    loaded, _, prompts = smollm2
    tok = loaded.tokenizer
    exact = GenerationEngine(loaded.model, eos_token_ids=[tok.eos_id], pad_token_id=tok.pad_id)
    packed = GenerationEngine(loaded.model, eos_token_ids=[tok.eos_id], pad_token_id=tok.pad_id, precision=precision)
    batch = exact._prepare(prompts, 1)
    with torch.inference_mode():
        expected = exact._session(batch, batch.ids.shape[1] + 1).prefill(batch.ids, batch.prefill_positions)
        got = packed._session(batch, batch.ids.shape[1] + 1).prefill(batch.ids, batch.prefill_positions)
    assert torch.equal(got.argmax(-1), expected.argmax(-1))
    assert (got - expected).abs().max() < tolerance * expected.abs().max()
