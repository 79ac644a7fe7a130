"""ParallelConfig and plan matching, in one process: sizes that do not divide are refused by number."""

from __future__ import annotations

import pytest

from megasense.config import ConfigError, HeadConfig
from megasense.config.parallel import ParallelConfig, check_tensor_parallel
from megasense.config.presets import bert_tiny, gpt_tiny, llama_tiny, smollm2_135m
from megasense.models import build_model
from megasense.parallel.plan import PlanError, block_container, match_plan, model_plan, tied_parameters


@pytest.mark.parametrize(
    ("changes", "tp", "message"),
    [
        (
            dict(hidden_size=36, num_attention_heads=3, num_query_groups=3),
            2,
            "num_attention_heads=3, num_query_groups=3 not divisible by tp=2",
        ),
        (dict(num_query_groups=1), 2, "num_query_groups=1 not divisible by tp=2"),
        (dict(ffn_hidden_size=66), 4, "ffn_hidden_size=66 not divisible by tp=4"),
        (dict(make_vocab_size_divisible_by=3), 2, "padded_vocab_size=99 not divisible by tp=2 (raise make_vocab_size"),
    ],
)
def test_sizes_that_do_not_divide_by_tp_are_named(changes, tp, message):
    cfg = llama_tiny().replace(**changes)
    with pytest.raises(ConfigError, match=r"^llama-tiny: ") as err:
        ParallelConfig(tp=tp).check_model(cfg)
    assert message in str(err.value)


def test_tiny_and_real_presets_split_at_the_sizes_they_are_meant_for():
    for cfg in (bert_tiny(), gpt_tiny(), llama_tiny()):
        check_tensor_parallel(cfg, 2)
    check_tensor_parallel(smollm2_135m(), 3)  # 9 heads, 3 groups
    with pytest.raises(ConfigError, match="num_query_groups=3 not divisible by tp=2"):
        check_tensor_parallel(smollm2_135m(), 2)


def test_config_checks_world_size_sequence_and_options():
    config = ParallelConfig(dp=2, tp=2, sequence_parallel=True)
    assert config.world_size == 4
    with pytest.raises(ConfigError, match=r"dp=2 x tp=2 = 4 processes, but the job has world_size=8"):
        config.check_world_size(8)
    with pytest.raises(ConfigError, match="sequence length 9 is not divisible by tp=2"):
        config.check_sequence_length(9)
    config.check_sequence_length(8)
    with pytest.raises(ConfigError, match="tp=0 must be a positive integer"):
        ParallelConfig(tp=0)
    with pytest.raises(ConfigError, match="data_parallel='zero' is not one of fsdp, ddp"):
        ParallelConfig(data_parallel="zero")
    with pytest.raises(ConfigError, match="'ddp' cannot be combined with tp=2"):
        ParallelConfig(tp=2, data_parallel="ddp")
    with pytest.raises(ConfigError, match=r"unknown parallel config keys \['pp_size'\]"):
        ParallelConfig.from_dict({"tp": 2, "pp_size": 2})
    assert ParallelConfig.from_dict(config.to_dict()) == config


def test_plan_patterns_match_real_modules_and_skip_absent_ones():
    gpt = build_model(gpt_tiny())
    matched = match_plan(gpt, model_plan(gpt))
    assert matched["layers.1.self_attention.linear_qkv"] == "colwise"
    assert matched["output_layer"] == "vocab_output"
    assert not any("gate" in name for name in matched)  # GELU model: no dense_h_to_4h_gate to match
    assert len(matched) == 2 + 2 * 4
    llama = build_model(llama_tiny())
    assert "layers.0.mlp.dense_h_to_4h_gate" in match_plan(llama, model_plan(llama))
    assert block_container(gpt, model_plan(gpt)) == "layers"
    assert tied_parameters(gpt) == {"output_layer.weight": "embedding.word_embeddings.weight"}
    assert tied_parameters(llama) == {}
    bert = build_model(bert_tiny(), HeadConfig(task="pretraining"))
    assert tied_parameters(bert) == {"lm_head.output_layer.weight": "embedding.word_embeddings.weight"}


def test_bad_plans_are_refused_with_the_entry():
    gpt = build_model(gpt_tiny())
    with pytest.raises(PlanError, match="style 'diagonal' is not one of colwise, rowwise"):
        model_plan(gpt, {"layers.*.mlp.dense_h_to_4h": "diagonal"})
    with pytest.raises(PlanError, match="matches plan entries with styles 'colwise' and 'rowwise'"):
        match_plan(gpt, {"layers.*.mlp.dense_h_to_4h": "colwise", "layers.0.mlp.*": "rowwise"})
    with pytest.raises(PlanError, match="iterates 'blocks', which this model does not have"):
        block_container(gpt, {"blocks.*.mlp": "colwise"})


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clipping_plain_tensors_matches_torch(norm_type):
    import torch

    from megasense.parallel import clip_grad_norm_

    torch.manual_seed(0)
    cfg = gpt_tiny().replace(hidden_dropout=0.0, attention_dropout=0.0)
    ours, theirs = build_model(cfg), build_model(cfg)
    theirs.load_state_dict(ours.state_dict())
    batch = torch.randint(0, 99, (2, 8))
    for model in (ours, theirs):
        model(batch, labels=batch).loss.backward()
    got = clip_grad_norm_(ours.parameters(), 0.1, norm_type=norm_type)
    want = torch.nn.utils.clip_grad_norm_(theirs.parameters(), 0.1, norm_type=norm_type)
    assert want > 0.1
    torch.testing.assert_close(got, want)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a.grad, b.grad)
