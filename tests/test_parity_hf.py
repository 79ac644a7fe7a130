"""Parity with transformers at tiny sizes: copy random weights across, compare outputs to 1e-5."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from megasense.config import HeadConfig  # noqa: E402
from megasense.formats.hf import keys as hf  # noqa: E402
from megasense.models import build_model, load_weights  # noqa: E402

ATOL = 1e-5


def _ours(hf_model, task: str | None = None):
    hf_config = hf_model.config.to_dict()
    sd = hf_model.state_dict()
    cfg = hf.model_config_from_hf(hf_config, sd).replace(make_vocab_size_divisible_by=8)
    head = HeadConfig(task=task) if task else hf.head_config_from_hf(hf_config, sd)
    model = build_model(cfg, head)
    load_weights(model, hf.state_dict_from_hf(hf_config, sd, cfg))
    return model.eval(), cfg, head


def _batch(vocab: int, B: int = 3, T: int = 11, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    types = torch.randint(0, 2, (B, T), generator=g)
    return ids, mask, types


def _bert_config(**kw):
    return transformers.BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        **kw,
    )


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_bert_hidden_states_and_pooler(hidden_act):
    torch.manual_seed(0)
    ref = transformers.BertModel(_bert_config(hidden_act=hidden_act)).eval()
    ours, _, _ = _ours(ref)
    ids, mask, types = _batch(99)
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
        b = ours(ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    torch.testing.assert_close(b.last_hidden_state[real], a.last_hidden_state[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(b.pooled_output, a.pooler_output, atol=ATOL, rtol=0)


def test_bert_pretraining_logits():
    torch.manual_seed(1)
    ref = transformers.BertForPreTraining(_bert_config()).eval()
    ours, cfg, head = _ours(ref)
    assert head.task == "pretraining" and cfg.binary_head
    ids, mask, types = _batch(99)
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
        b = ours(ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    torch.testing.assert_close(b.logits[..., :99][real], a.prediction_logits[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(b.binary_logits, a.seq_relationship_logits, atol=ATOL, rtol=0)


def test_bert_sequence_classification():
    torch.manual_seed(2)
    ref = transformers.BertForSequenceClassification(_bert_config(num_labels=3)).eval()
    ours, _, head = _ours(ref)
    assert head.task == "classification" and len(head.labels) == 3 and head.pooling == "pooler"
    ids, mask, types = _batch(99)
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        b = ours(ids, attention_mask=mask, token_type_ids=types).logits
    torch.testing.assert_close(b, a, atol=ATOL, rtol=0)


def test_megatron_bert_pretraining():
    torch.manual_seed(3)
    ref = transformers.MegatronBertForPreTraining(
        transformers.MegatronBertConfig(
            vocab_size=99,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=64,
        )
    ).eval()
    ours, cfg, _ = _ours(ref)
    assert cfg.pre_norm and cfg.final_norm and not cfg.embedding_norm
    ids, mask, types = _batch(99)
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
        b = ours(ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    torch.testing.assert_close(b.logits[..., :99][real], a.prediction_logits[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(b.binary_logits, a.seq_relationship_logits, atol=ATOL, rtol=0)


def _gpt2(**kw):
    return transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0, **kw
        )
    ).eval()


def _llama(**kw):
    return transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=99,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
            **kw,
        )
    ).eval()


@pytest.mark.parametrize(
    "make",
    [_gpt2, lambda: _llama(tie_word_embeddings=False), lambda: _llama(tie_word_embeddings=True, rope_theta=500.0)],
    ids=["gpt2", "llama-untied", "llama-tied"],
)
def test_decoder_logits_with_left_padding(make):
    torch.manual_seed(4)
    ref = make()
    ours, cfg, _ = _ours(ref)
    ids, mask, _ = _batch(99)
    mask = mask.flip(1)  # left padding, as in batched generation
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        b = ours(ids, attention_mask=mask, position_ids=pos).logits[..., : cfg.vocab_size]
        c = ref(input_ids=ids).logits  # no padding: the causal fast path
        d = ours(ids).logits[..., : cfg.vocab_size]
    real = mask.bool()
    torch.testing.assert_close(b[real], a[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(d, c, atol=ATOL, rtol=0)


@pytest.mark.parametrize("make", [_gpt2, _llama], ids=["gpt2", "llama"])
def test_kv_cache_decoding_equals_full_forward(make):
    torch.manual_seed(5)
    ours, _cfg, _ = _ours(make())
    ids = torch.randint(0, 99, (2, 12))
    with torch.no_grad():
        full = ours(ids).logits
        cache = ours.new_kv_cache(batch_size=2, max_length=16)
        steps = [ours(ids[:, :5], kv_cache=cache).logits]
        for t in range(5, 12):
            steps.append(ours(ids[:, t : t + 1], kv_cache=cache).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=ATOL, rtol=0)
    assert cache.length == 12


@pytest.mark.parametrize(
    "make",
    [
        lambda: transformers.BertForPreTraining(_bert_config()),
        lambda: transformers.MegatronBertForSequenceClassification(
            transformers.MegatronBertConfig(
                vocab_size=99,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=37,
                num_labels=3,
            )
        ),
        _gpt2,
        _llama,
    ],
    ids=["bert", "megatron-bert-cls", "gpt2", "llama"],
)
def test_state_dict_round_trip_to_hf(make):
    ref = make().eval()
    ours, cfg, head = _ours(ref)
    back = hf.state_dict_to_hf({k: v for k, v in ours.state_dict().items()}, cfg, head)
    expected = hf.drop_buffers(ref.state_dict())
    for key, value in back.items():
        torch.testing.assert_close(value, expected[key], atol=0, rtol=0, msg=key)
    missing = set(expected) - set(back)
    assert not missing, f"export lost {sorted(missing)}"
    rebuilt = hf.model_config_to_hf(cfg, head)
    assert hf.model_config_from_hf(rebuilt, back).replace(make_vocab_size_divisible_by=8, name=cfg.name) == cfg
