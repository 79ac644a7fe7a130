"""A tiny Llama in transformers and the same weights in megasense, for generation parity tests."""

from __future__ import annotations

import torch

EOS = 2


def tiny_llama_pair(*, sharpen: float = 1.0):
    """(transformers' LlamaForCausalLM, megasense GPTModel) with the same random weights (seed 0).

    ``sharpen`` scales the output layer: a peakier next-token distribution than random init gives, so beams
    end at different lengths and sampling filters have something to cut."""
    import transformers

    from megasense.formats.hf import keys as hf
    from megasense.models import materialize

    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=99,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
            bos_token_id=1,
            eos_token_id=EOS,
            pad_token_id=0,
        )
    ).eval()
    with torch.no_grad():
        ref.lm_head.weight.mul_(sharpen)
    sd, hc = ref.state_dict(), ref.config.to_dict()
    cfg = hf.model_config_from_hf(hc, sd)
    return ref, materialize(cfg, hf.head_config_from_hf(hc, sd), hf.state_dict_from_hf(hc, sd, cfg))
