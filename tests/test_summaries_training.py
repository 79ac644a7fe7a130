"""``megasense train PAIRS.csv --task generate``: pairs read as one-exchange conversations (loss on the response only),
trained by chat fine-tuning on a tiny decoder, and the model it writes prompted as it was trained."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from megasense.cli.main import _register, app
from megasense.summaries.summarizer import Summarizer
from megasense.training.chat import train_chat
from megasense.training.chat_data import (
    IGNORE,
    SUMMARY_INSTRUCTION,
    ChatDataError,
    encode_conversation,
    pair_messages,
    read_pairs,
)
from megasense.zoo.load import load_model
from test_chat_train import chatml_tokenizer, tiny_decoder_dir  # noqa: F401  (fixtures)
from test_summaries import BagOfWords

PAIRS = [
    ("#Person1#: where is paris?\n#Person2#: in france.", "#Person2# says paris is in france."),
    ("#Person1#: is rome old?\n#Person2#: very old.", "#Person2# says rome is very old."),
    ("#Person1#: is oslo cold?\n#Person2#: yes, cold.", "#Person2# says oslo is cold."),
    ("#Person1#: is lima far?\n#Person2#: quite far.", "#Person2# says lima is far."),
]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_pairs_are_read_by_their_columns_and_empty_rows_counted(tmp_path):
    path = tmp_path / "pairs.csv"
    pd.DataFrame({"text": ["a dialogue", "", "another"], "summary": ["its summary", "x", "  "]}).to_csv(
        path, index=False
    )
    data = read_pairs(path)
    assert len(data.conversations) == 1 and data.no_assistant == [3, 4]  # file rows (the header is row 1)
    user, assistant = data.conversations[0].messages
    assert user["content"] == f"{SUMMARY_INSTRUCTION}\n\na dialogue" and assistant["content"] == "its summary"
    prompts = tmp_path / "prompts.jsonl"
    pd.DataFrame({"prompt": ["hi"], "response": ["hello"]}).to_json(prompts, orient="records", lines=True)
    assert read_pairs(prompts).conversations[0].messages[0]["content"] == "hi"  # a prompt is asked as it is
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"dialogue": ["x"], "label": ["y"]}).to_csv(bad, index=False)
    with pytest.raises(ChatDataError, match=r"bad\.csv: expected columns prompt and response.*'dialogue', 'label'"):
        read_pairs(bad)


def test_the_loss_is_on_the_response_only(chatml_tokenizer):  # noqa: F811
    example = encode_conversation(chatml_tokenizer, pair_messages("where is paris?", "in france."), max_length=128)
    learned = [t for t in example.labels if t != IGNORE]
    assert chatml_tokenizer.decode(learned, skip_special_tokens=False) == "in france.<|im_end|>"


def test_train_generate_writes_a_model_the_summarizer_prompts_as_trained(tmp_path, tiny_decoder_dir):  # noqa: F811
    train_csv, val_csv = tmp_path / "train.csv", tmp_path / "val.csv"
    pd.DataFrame({"text": [p[0] for p in PAIRS * 4], "summary": [p[1] for p in PAIRS * 4]}).to_csv(
        train_csv, index=False
    )
    pd.DataFrame({"text": [p[0] for p in PAIRS], "summary": [p[1] for p in PAIRS]}).to_csv(val_csv, index=False)
    result = train_chat(
        train_csv, val_csv, base=str(tiny_decoder_dir), output=tmp_path / "summ", task="generate", max_steps=6,
        batch_size=4, max_length=96, lr=3e-3, bf16=False,
    )  # fmt: skip
    assert result.after.loss < result.before.loss  # the held-out loss on the summaries falls
    loaded = load_model(tmp_path / "summ")
    assert loaded.metadata["task"] == "generate"
    from megasense.predictors.generation import TextGenerator

    summarizer = Summarizer(TextGenerator(loaded), {"en": BagOfWords()})
    assert summarizer.pair_prompt
    summary = summarizer.summarize("Paris is in France. Rome is very old.", style="brief", method="generate")
    assert summary.method in ("generated", "extracted")  # a random tiny model: its words may be unsupported


def test_cli_train_task_generate(tmp_path, tiny_decoder_dir):  # noqa: F811
    _register()
    train_csv = tmp_path / "pairs.csv"
    pd.DataFrame({"prompt": [p[0] for p in PAIRS * 2], "response": [p[1] for p in PAIRS * 2]}).to_csv(
        train_csv, index=False
    )
    out = tmp_path / "model"
    args = ["train", str(train_csv), "--task", "generate", "--base", str(tiny_decoder_dir), "--max-steps", "2"]
    result = CliRunner().invoke(app, [*args, "--max-length", "160", "--batch-size", "4", "--no-bf16", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "adapter.json").is_file() or (out / "config.json").is_file()
    refused = CliRunner().invoke(app, [*args, "--text-col", "body", "-o", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "--task generate" in refused.output
