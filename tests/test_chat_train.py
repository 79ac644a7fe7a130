"""Chat fine-tuning: assistant-only labels (exact tokens, on SmolLM2's own tokenizer and a tiny ChatML one), truncation
by whole turns, bad lines named by file and line, and a tiny Llama-style decoder trained end to end: its held-out
loss falls, the adapter it writes loads with ``load_model`` and generates, a killed run resumes to the same weights."""

from __future__ import annotations

import gzip
import json
import math
import random
from pathlib import Path

import pytest
import tokenizers
import torch
import torch.nn.functional as F
from tokenizers import decoders, models, pre_tokenizers, trainers
from typer.testing import CliRunner

from megasense.cli.main import _register, app
from megasense.config import GenerationConfig, HeadConfig
from megasense.config.presets import llama_tiny
from megasense.formats.release import LoadedModel, save_release
from megasense.models import GPTModel, weights_for_saving
from megasense.predictors.generation import TextGenerator
from megasense.tokenization import SpecialTokens, Tokenizer
from megasense.training.chat import ChatTrainConfig, evaluate_chat_perplexity, finetune_chat, train_chat
from megasense.training.chat_data import (
    IGNORE,
    ChatDataError,
    Conversation,
    assistant_token_mask,
    encode_conversation,
    read_conversations,
    render_chat,
    split_holdout,
)
from megasense.training.checkpoint import TrainingCheckpoints
from megasense.zoo.load import load_model

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""SmolLM2's template (its default system prompt shortened)."""

CITIES = ["paris", "rome", "tokyo", "cairo", "lima", "oslo", "delhi", "quito"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def dialogue(rng: random.Random, turns: int = 2) -> list[dict]:
    """A toy task the tiny model can learn: the assistant books the city the user names."""
    messages = []
    for _ in range(turns):
        city = rng.choice(CITIES)
        messages += [
            {"role": "user", "content": f"a taxi to {city} please"},
            {"role": "assistant", "content": f"booked a taxi to {city} ."},
        ]
    return messages


@pytest.fixture(scope="module")
def chatml_tokenizer() -> Tokenizer:
    backend = tokenizers.Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    texts = [json.dumps(dialogue(random.Random(i))) for i in range(50)] + ["你好 system user assistant helpful"]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(texts, trainer)
    special = SpecialTokens(pad="<|im_end|>", bos="<|im_start|>", eos="<|im_end|>", unk="<|endoftext|>")
    return Tokenizer(backend, kind="bpe", special=special, model_max_length=256, chat_template=CHATML)


@pytest.fixture(scope="module")
def tiny_decoder_dir(tmp_path_factory, chatml_tokenizer) -> Path:
    """A randomly initialised Llama-style decoder (2 layers, hidden 32, untied output layer) with the ChatML
    tokenizer, as a release."""
    torch.manual_seed(0)
    config = llama_tiny().replace(vocab_size=chatml_tokenizer.vocab_size, max_position_embeddings=256)
    model = GPTModel(config)
    model.init_weights()
    with torch.no_grad():  # logits as large as a trained model's, so that LoRA on the layers can move them
        model.output_layer.weight.normal_(0.0, 1.0)
    return save_release(
        tmp_path_factory.mktemp("base") / "tiny-chat",
        config=config,
        head=HeadConfig(task="causal_lm"),
        state_dict=weights_for_saving(model),
        tokenizer=chatml_tokenizer,
    )


def write_jsonl(path: Path, conversations: list[list[dict]]) -> Path:
    lines = "".join(json.dumps({"id": i, "messages": m}) + "\n" for i, m in enumerate(conversations))
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(lines.encode("utf-8")))
    else:
        path.write_text(lines, encoding="utf-8")
    return path


def trained_tokens(tokenizer: Tokenizer, messages: list[dict]) -> list[str]:
    ids, mask = assistant_token_mask(tokenizer, messages)
    return [tokenizer.id_to_token(i) for i, m in zip(ids, mask) if m]


# ----------------------------------------------------------------------------------------------
# Labels on assistant tokens only
# ----------------------------------------------------------------------------------------------
def test_smollm2_template_labels_exactly_the_assistant_tokens_and_their_end_token():
    from megasense.zoo.embedded import ModelNotInstalledError, ensure_converted, find_embedded

    try:
        tokenizer = Tokenizer.load(ensure_converted(find_embedded("smollm2-135m-instruct")))
    except ModelNotInstalledError as exc:
        pytest.skip(f"needs the embedded smollm2 tokenizer: {exc}")
    messages = [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "book a taxi"},
        {"role": "assistant", "content": "Sure."},
    ]
    for prompt in (False, True):  # the template compiled once renders as the tokenizer renders
        expected = tokenizer.apply_chat_template(messages, add_generation_prompt=prompt)
        assert render_chat(tokenizer, messages, add_generation_prompt=prompt) == expected
    ids, mask = assistant_token_mask(tokenizer, messages)
    tokens = [tokenizer.id_to_token(i) for i in ids]
    learned = [t for t, m in zip(tokens, mask) if m]
    assert learned == ["Hello", "!", "ĠHow", "Ġcan", "ĠI", "Ġhelp", "?", "<|im_end|>", "Sure", ".", "<|im_end|>"]
    # context: the default system prompt, the user turns, the role headers and the newline after each <|im_end|>
    first = tokens.index("Hello")
    assert tokens[first - 4 : first] == ["<|im_start|>", "ass", "istant", "Ċ"] and not any(mask[:first])
    assert tokens[-1] == "Ċ" and not mask[-1]
    example = encode_conversation(tokenizer, messages, max_length=512)
    assert example.input_ids == ids[:-1]
    assert [tokenizer.id_to_token(y) for y in example.labels if y != IGNORE] == learned  # labels shifted by one


def test_weight_zero_system_messages_and_chinese_text(chatml_tokenizer):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好!", "weight": 0},
        {"role": "user", "content": "taxi"},
        {"role": "assistant", "content": "booked 你"},
    ]
    learned = chatml_tokenizer.decode(
        [i for i, m in zip(*assistant_token_mask(chatml_tokenizer, messages)) if m], skip_special_tokens=False
    )
    assert learned == "booked 你<|im_end|>"  # byte-level pieces of one character join back whole
    # an assistant turn first: there is no prompt before it, so its content is found in the rendering
    first = [{"role": "assistant", "content": "how can I help ?"}, {"role": "user", "content": "hi"}]
    learned = chatml_tokenizer.decode(
        [i for i, m in zip(*assistant_token_mask(chatml_tokenizer, first)) if m], skip_special_tokens=False
    )
    assert learned == "how can I help ?<|im_end|>"


def test_a_template_that_rewrites_earlier_turns_is_refused(chatml_tokenizer):
    odd = Tokenizer(
        chatml_tokenizer.backend,
        kind="bpe",
        special=chatml_tokenizer.special,
        chat_template="{% for m in messages %}{{ m['content'] }}{% if loop.last %}!{% endif %}{% endfor %}",
    )
    with pytest.raises(ChatDataError, match="renders the conversation up to message 2 differently"):
        assistant_token_mask(odd, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}] * 2)


# ----------------------------------------------------------------------------------------------
# Truncation
# ----------------------------------------------------------------------------------------------
def test_long_conversations_lose_whole_turns_from_the_start_never_the_last_assistant_turn(chatml_tokenizer):
    messages = [{"role": "system", "content": "be brief"}, *dialogue(random.Random(1), turns=6)]
    full, _ = assistant_token_mask(chatml_tokenizer, messages)
    example = encode_conversation(chatml_tokenizer, messages, max_length=len(full) // 2)
    assert example.dropped_messages > 0 and example.dropped_messages % 2 == 0 and not example.cut
    kept = [messages[0], *messages[1 + example.dropped_messages :]]
    ids, mask = assistant_token_mask(chatml_tokenizer, kept)
    assert example.input_ids == ids[:-1] and len(ids) <= len(full) // 2
    assert chatml_tokenizer.decode(example.input_ids).startswith("system\nbe brief")  # the system message stays
    # the last exchange alone does not fit: its end is cut, some assistant tokens stay
    last = [messages[0], *messages[-2:]]
    ids, mask = assistant_token_mask(chatml_tokenizer, last)
    limit = mask.index(True) + 3  # three tokens of the last reply fit
    one = encode_conversation(chatml_tokenizer, messages, max_length=limit)
    assert one.cut and one.dropped_messages == 10 and one.input_ids == ids[: limit - 1]
    assert [y for y in one.labels if y != IGNORE] == ids[limit - 3 : limit]
    # not a single assistant token fits: skipped
    long_user = [{"role": "user", "content": "taxi " * 40}, {"role": "assistant", "content": "ok"}]
    assert encode_conversation(chatml_tokenizer, long_user, max_length=32) is None


# ----------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------
GOOD = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "line 2: is not valid JSON"),
        ("[1, 2]", "line 2: found a JSON list, expected an object"),
        ('{"id": 3}', 'line 2: no messages key; expected "messages"'),
        ('{"messages": []}', "line 2: messages = \\[\\]"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', "line 2, message 1: role 'bot', expected one of system"),
        ('{"messages": [{"role": "user", "content": 5}]}', "line 2, message 1: content is 5, expected a string"),
        ('{"messages": ["hi"]}', "line 2, message 1: found 'hi', expected an object"),
        ('{"messages": [{"role": "user", "content": "x", "weight": 0}]}', "weight 0, expected 0 or 1 on an assistant"),
    ],
)
def test_bad_lines_are_named_by_file_and_line(tmp_path, line, expected):
    path = tmp_path / "dialogs.jsonl"
    path.write_text(GOOD + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ChatDataError, match=expected) as info:
        read_conversations(path)
    assert str(path) in str(info.value)


def test_gzip_blank_lines_extra_keys_content_parts_and_lines_without_an_assistant(tmp_path):
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "h"}, {"type": "text", "text": "i"}]}]}
    parts["messages"].append({"role": "assistant", "content": "yo", "name": "bot"})
    text = "\n".join([GOOD, "", json.dumps({"messages": [{"role": "user", "content": "alone"}]}), json.dumps(parts)])
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress((text + "\n").encode("utf-8")))
    data = read_conversations(path)
    assert [c.line for c in data.conversations] == [1, 4] and data.no_assistant == [3] and data.blank_lines == 1
    assert data.conversations[1].messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    (tmp_path / "none.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(ChatDataError, match="no conversation with an assistant turn"):
        read_conversations(tmp_path / "none.jsonl")
    for name, content in [("cut.jsonl.gz", gzip.compress((GOOD + "\n").encode() * 50)[:-12]), ("no.gz", b"plain")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ChatDataError, match="not a readable gzip file"):
            read_conversations(tmp_path / name)


# ----------------------------------------------------------------------------------------------
# Training end to end on a tiny decoder
# ----------------------------------------------------------------------------------------------
def test_tiny_decoder_learns_the_assistant_turns_and_its_adapter_loads_and_generates(tmp_path, tiny_decoder_dir):
    rng = random.Random(0)
    path = write_jsonl(tmp_path / "dialogs.jsonl.gz", [dialogue(rng) for _ in range(60)])
    out = tmp_path / "chat-model"
    result = train_chat(
        path, base=str(tiny_decoder_dir), output=out, max_steps=60, eval_every=20, batch_size=8, lr=1e-2, bf16=False
    )
    assert result.data["heldout_conversations"] == 6 and result.data["train_conversations"] == 54
    assert result.after.loss < result.before.loss - 1.0, (result.before, result.after)
    assert [h["step"] for h in result.train.history] == [20, 40, 60]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"{result.before.perplexity:.3f}" in card and f"{result.after.perplexity:.3f}" in card
    config = json.loads((out / "adapter.json").read_text(encoding="utf-8"))
    assert config["base"] == str(tiny_decoder_dir.resolve()) and config["head"]["task"] == "causal_lm"
    # what load_model gives back measures as training measured (fp16 adapter file: not bit for bit)
    loaded = load_model(out)
    heldout = split_holdout(read_conversations(path).conversations, result.config)[1]
    again = evaluate_chat_perplexity(loaded, heldout, max_length=result.config.max_length)
    assert again.tokens == result.after.tokens and again.perplexity == pytest.approx(result.after.perplexity, rel=0.02)
    text, generation = TextGenerator(loaded).generate(["a taxi to rome please"], GenerationConfig(max_new_tokens=12))[0]
    assert text.strip().startswith("booked") and generation.tokens


def test_cli_trains_a_chat_model_that_megasense_generate_loads(tmp_path, tiny_decoder_dir):
    if not any(c.name == "train" for c in app.registered_commands):
        _register()
    rng = random.Random(1)
    path = write_jsonl(tmp_path / "dialogs.jsonl", [dialogue(rng) for _ in range(12)])
    out = tmp_path / "cli-chat"
    args = ["train", str(path), "--task", "chat", "--base", str(tiny_decoder_dir), "--max-steps", "3", "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--lora-rank", "4", "--batch-size", "4", "--max-length", "64"])
    assert result.exit_code == 0, result.output
    assert "held-out perplexity" in result.output and (out / "adapter.safetensors").is_file()
    assert json.loads((out / "adapter.json").read_text())["lora"]["rank"] == 4
    generated = CliRunner().invoke(app, ["generate", "hi", "--model", str(out), "--max-new-tokens", "3"])
    assert generated.exit_code == 0, generated.output
    refused = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "x"), "--multi-label"])
    assert refused.exit_code == 2 and "--multi-label does not apply to --task chat" in refused.output


def test_full_fine_tuning_writes_a_release(tmp_path, tiny_decoder_dir):
    path = write_jsonl(tmp_path / "d.jsonl", [dialogue(random.Random(i)) for i in range(8)])
    out = tmp_path / "full"
    train_chat(path, base=str(tiny_decoder_dir), output=out, lora=False, max_steps=2, bf16=False)
    assert (out / "model.safetensors").is_file() and not (out / "adapter.json").exists()
    assert load_model(out).config.arch == "gpt"


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_weights(tmp_path, tiny_decoder_dir, monkeypatch):
    conversations = [Conversation(dialogue(random.Random(i))) for i in range(24)]
    settings = dict(max_steps=6, batch_size=4, lr=1e-2, bf16=False, holdout=0.0, checkpoint_every=2, progress=False)

    def run(directory: Path, *, resume: bool = False) -> dict[str, torch.Tensor]:
        base = load_model(tiny_decoder_dir)
        config = ChatTrainConfig(**settings, checkpoint_dir=str(directory))
        result = finetune_chat(base, conversations, [], config, resume=resume)
        return {k: v.detach().clone() for k, v in result.model.named_parameters() if v.requires_grad}

    straight = run(tmp_path / "a")
    original = TrainingCheckpoints.save

    def save_then_die(self, step, *args, **kwargs):
        saved = original(self, step, *args, **kwargs)
        if step == 4:
            raise KeyboardInterrupt("killed")
        return saved

    monkeypatch.setattr(TrainingCheckpoints, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    monkeypatch.setattr(TrainingCheckpoints, "save", original)
    resumed = run(tmp_path / "b", resume=True)
    assert resumed.keys() == straight.keys()
    for name in straight:
        torch.testing.assert_close(resumed[name], straight[name], rtol=0, atol=0, msg=name)
    with pytest.raises(Exception, match="already holds checkpoints"):
        run(tmp_path / "b")


def test_evaluate_chat_perplexity_is_the_models_own_loss_on_assistant_tokens(tiny_decoder_dir):
    loaded: LoadedModel = load_model(tiny_decoder_dir)
    conversations = [dialogue(random.Random(i)) for i in range(3)]
    measured = evaluate_chat_perplexity(loaded, conversations)
    assert measured.conversations == 3 and float(measured) == pytest.approx(math.exp(measured.loss))
    examples = [encode_conversation(loaded.tokenizer, m, max_length=256) for m in conversations]
    assert measured.tokens == sum(sum(y != IGNORE for y in e.labels) for e in examples)
    vocab = loaded.config.vocab_size
    assert loaded.config.padded_vocab_size > vocab  # Megatron's padding columns: no tokens, left out of the softmax
    with torch.no_grad():  # one conversation at a time, unbatched
        logits = [loaded.model(torch.tensor([e.input_ids])).logits[0, :, :vocab] for e in examples]
        nll = [F.cross_entropy(x, torch.tensor(e.labels), reduction="sum") for x, e in zip(logits, examples)]
    assert measured.loss == pytest.approx(float(sum(nll)) / measured.tokens, rel=1e-5)
