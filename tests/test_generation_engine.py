"""The generation engine against transformers' generate, and the sampling filters on their own."""

from __future__ import annotations

import pytest
import torch

from _tiny_llama import EOS, tiny_llama_pair
from megasense.config import GenerationConfig
from megasense.inference.generation import GenerationEngine
from megasense.inference.sampling import apply_repetition_penalty, top_k_filter, top_p_filter

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def pair():
    ref, ours = tiny_llama_pair()
    return ref, GenerationEngine(ours, eos_token_ids=[EOS], pad_token_id=0)


PROMPTS = [[5, 6, 7, 8, 9], [10, 11, 12], [40, 41, 42, 43, 44, 45, 46]]


def _hf(ref, prompt, **kw):
    out = ref.generate(torch.tensor([prompt]), do_sample=False, pad_token_id=0, eos_token_id=EOS, **kw)
    tokens = out[0, len(prompt) :].tolist()
    return tokens[: tokens.index(EOS)] if EOS in tokens else tokens


def test_greedy_batch_with_left_padding_equals_transformers(pair):
    ref, engine = pair
    results = engine.generate(PROMPTS, GenerationConfig(max_new_tokens=12))
    for prompt, result in zip(PROMPTS, results):
        assert result.tokens == _hf(ref, prompt, max_new_tokens=12)
        assert result.prompt_tokens == len(prompt)


def test_beam_search_equals_transformers(pair):
    ref, engine = pair
    for prompt in PROMPTS:
        ours = engine.generate([prompt], GenerationConfig(max_new_tokens=8, num_beams=4))[0]
        assert ours.tokens == _hf(ref, prompt, max_new_tokens=8, num_beams=4, early_stopping=False)


def test_stream_yields_the_same_tokens_step_by_step(pair):
    _, engine = pair
    config = GenerationConfig(max_new_tokens=10)
    steps = list(engine.stream(PROMPTS, config))
    streamed = [[s[row] for s in steps if s[row] is not None] for row in range(len(PROMPTS))]
    assert streamed == [g.tokens for g in engine.generate(PROMPTS, config)]


def test_sampling_is_seeded_and_top_k_one_is_greedy(pair):
    _, engine = pair
    sample = GenerationConfig(max_new_tokens=10, do_sample=True, temperature=1.5, top_p=0.9, seed=7)
    first = engine.generate(PROMPTS, sample)
    assert [g.tokens for g in first] == [g.tokens for g in engine.generate(PROMPTS, sample)]
    greedy = engine.generate(PROMPTS, GenerationConfig(max_new_tokens=10))
    top1 = engine.generate(PROMPTS, GenerationConfig(max_new_tokens=10, do_sample=True, top_k=1, seed=3))
    assert [g.tokens for g in top1] == [g.tokens for g in greedy]


def test_stop_tokens_and_length_limit(pair):
    _, engine = pair
    greedy = engine.generate([PROMPTS[0]], GenerationConfig(max_new_tokens=6))[0]
    assert greedy.finish_reason == "length" and len(greedy.tokens) == 6
    stop_at = greedy.tokens[2]
    stopped = engine.generate([PROMPTS[0]], GenerationConfig(max_new_tokens=6, stop_token_ids=(stop_at,)))[0]
    assert stopped.finish_reason == "stop" and stopped.tokens == greedy.tokens[: greedy.tokens.index(stop_at)]


def test_prompt_too_long_is_a_clear_error(pair):
    _, engine = pair
    with pytest.raises(ValueError, match="exceeds the model's 64 positions"):
        engine.generate([list(range(3, 60))], GenerationConfig(max_new_tokens=10))


def test_filters():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.isinf(top_k_filter(logits, 2)).tolist() == [[True, False, False, True]]
    # softmax of [1,3,2,0] = [.087,.644,.237,.032]: p=0.7 keeps the two most likely tokens
    assert torch.isinf(top_p_filter(logits, 0.7)).tolist() == [[True, False, False, True]]
    assert not torch.isinf(top_p_filter(logits, 1.0)).any()
    penalised = apply_repetition_penalty(torch.tensor([[2.0, -2.0, 1.0]]), torch.tensor([[0, 1]]), 2.0)
    assert penalised.tolist() == [[1.0, -4.0, 1.0]]
