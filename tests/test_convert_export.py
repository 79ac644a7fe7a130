"""convert / export / load_model as a user runs them, and the errors bad checkpoints get."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
import torch

from megasense.config import HeadConfig, preset
from megasense.errors import CheckpointError
from megasense.formats.release import save_release
from megasense.models import build_model, weights_for_saving
from megasense.tokenization import Tokenizer
from megasense.zoo.embedded import find_embedded, package_path
from megasense.zoo.load import load_model

transformers = pytest.importorskip("transformers")

CLI = [sys.executable, "-m", "megasense.cli.main"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)


def _ids(vocab: int = 99):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return ids, mask


@pytest.mark.parametrize(
    "make",
    [
        lambda: transformers.BertModel(
            transformers.BertConfig(
                vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
            )
        ),
        lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4)),
        lambda: transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                vocab_size=99,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=37,
                tie_word_embeddings=False,
            )
        ),
    ],
    ids=["bert", "gpt2", "llama"],
)
def test_hf_convert_then_export_round_trips_through_the_cli(make, tmp_path):
    torch.manual_seed(0)
    ref = make().eval()
    ref.save_pretrained(tmp_path / "hf")
    done = _cli("convert", str(tmp_path / "hf"), "--to", str(tmp_path / "ours"))
    assert done.returncode == 0, done.stderr
    loaded = load_model(tmp_path / "ours")
    ids, mask = _ids()
    with torch.no_grad():
        a = ref(input_ids=ids, attention_mask=mask)
        b = loaded.model(ids, attention_mask=mask)
    real = mask.bool()
    if hasattr(a, "logits"):
        torch.testing.assert_close(b.logits[..., :99][real], a.logits[real], atol=1e-5, rtol=0)
    else:
        torch.testing.assert_close(b.last_hidden_state[real], a.last_hidden_state[real], atol=1e-5, rtol=0)
    done = _cli("export", str(tmp_path / "ours"), str(tmp_path / "back"), "--to", "hf")
    assert done.returncode == 0, done.stderr
    back = type(ref).from_pretrained(tmp_path / "back").eval()
    for key, value in ref.state_dict().items():
        if key in back.state_dict():
            torch.testing.assert_close(back.state_dict()[key], value, atol=0, rtol=0, msg=key)
    # The output directory is never replaced silently.
    again = _cli("export", str(tmp_path / "ours"), str(tmp_path / "back"), "--to", "hf")
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_release_round_trip_with_tokenizer(tmp_path):
    cfg = preset("bert-tiny")
    model = build_model(cfg, HeadConfig(task="embedding"))
    model.init_weights()
    tok = Tokenizer.load(package_path(find_embedded("all-minilm-l6-v2")))
    save_release(tmp_path / "m", config=cfg, head=HeadConfig(task="embedding"), state_dict=weights_for_saving(model))
    loaded = load_model(tmp_path / "m")
    assert loaded.tokenizer is None and loaded.head.task == "embedding"
    save_release(
        tmp_path / "m",
        config=cfg,
        head=HeadConfig(task="embedding"),
        state_dict=weights_for_saving(model),
        tokenizer=tok,
        overwrite=True,
    )
    again = load_model(tmp_path / "m")
    assert again.tokenizer.encode("hello") == tok.encode("hello")
    ids, mask = _ids()
    with torch.no_grad():
        torch.testing.assert_close(again.model(ids, mask).embeddings, model.eval()(ids, mask).embeddings)


def _release(tmp_path):
    cfg = preset("gpt-tiny")
    model = build_model(cfg)
    model.init_weights()
    return save_release(
        tmp_path / "rel", config=cfg, head=HeadConfig(task="causal_lm"), state_dict=weights_for_saving(model)
    )


def test_truncated_and_corrupt_weights_name_the_file(tmp_path):
    path = _release(tmp_path)
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated or corrupt"):
        load_model(path)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_model(path)


def test_config_problems_name_the_file_and_field(tmp_path):
    path = _release(tmp_path)
    payload = json.loads((path / "config.json").read_text())
    payload["model"]["num_attention_heads"] = 5
    (path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(
        CheckpointError, match=r"config\.json.*hidden_size=32 is not divisible by num_attention_heads=5"
    ):
        load_model(path)
    payload["model"]["num_attention_heads"] = 4
    payload["model"]["hidden_sizee"] = 1
    (path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match=r"unknown model config keys \['hidden_sizee'\]"):
        load_model(path)
    (path / "config.json").write_text("{oops")
    with pytest.raises(CheckpointError, match=r"config\.json"):
        load_model(path)


def test_unknown_architecture_empty_dir_and_missing_paths(tmp_path):
    hf_dir = tmp_path / "t5"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps({"model_type": "t5", "architectures": ["T5Model"]}))
    torch.save({}, hf_dir / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="unknown architecture model_type='t5'"):
        load_model(hf_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty directory"):
        load_model(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="not an embedded model name"):
        load_model(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="is a model shape"):
        load_model("gpt2-124m")


def test_pickle_that_runs_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    hf_dir = tmp_path / "evil"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with open(hf_dir / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"x": Evil()}, handle)
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin"):
        load_model(hf_dir)
    assert not marker.exists()


def test_failed_convert_leaves_no_output_directory(tmp_path):
    src = tmp_path / "hf"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 99}))
    (src / "model.safetensors").write_bytes(b"garbage")
    done = _cli("convert", str(src), "--to", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "model.safetensors" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_generate_and_embed_refuse_the_wrong_kind_of_model(tmp_path):
    path = _release(tmp_path)
    done = _cli("embed", "hello", "--model", str(path))
    assert done.returncode == 2 and "need an encoder" in done.stderr
    done = _cli("generate", "hello", "--model", str(path))
    assert done.returncode == 2 and "no tokenizer files" in done.stderr


def test_megatron_export_with_tp_shards_converts_back(tmp_path):
    cfg = preset("gpt-tiny")
    model = build_model(cfg)
    model.init_weights()
    save_release(tmp_path / "rel", config=cfg, head=HeadConfig(task="causal_lm"), state_dict=weights_for_saving(model))
    done = _cli("export", str(tmp_path / "rel"), str(tmp_path / "meg"), "--to", "megatron", "--tp", "2")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "meg" / "release").iterdir()) == ["mp_rank_00", "mp_rank_01"]
    done = _cli("convert", "--from", "megatron", str(tmp_path / "meg"), "--to", str(tmp_path / "back"))
    assert done.returncode == 0, done.stderr
    back = load_model(tmp_path / "back")
    ids, mask = _ids()
    with torch.no_grad():
        torch.testing.assert_close(back.model(ids, mask).logits, model.eval()(ids, mask).logits, atol=1e-6, rtol=0)
    bad = _cli("export", str(tmp_path / "rel"), str(tmp_path / "meg3"), "--to", "megatron", "--tp", "3")
    assert bad.returncode == 2 and "3" in bad.stderr and not (tmp_path / "meg3").exists()
