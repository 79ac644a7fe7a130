"""Conversations for chat fine-tuning: OpenAI ``messages`` lines read and checked, then encoded as token ids with
labels on the assistant's turns only.

The steps: read one conversation per line (``{"messages": [{"role", "content"}, ...]}``, extra keys ignored;
``.jsonl`` or ``.jsonl.gz``; bad lines named by file and line), render each with the base model's chat
template, tokenize, and label only the tokens of assistant turns, each with its end-of-turn token
(``<|im_end|>`` in ChatML) so the model learns to stop; the template's own tokens and the other roles'
turns are context, labelled -100. Where a turn starts and ends is found from the template itself: the
prefix of the conversation up to an assistant turn is rendered with the generation prompt, the prefix
through that turn without it, and the characters between them are mapped to tokens by the tokenizer's
character offsets (any chat template whose prefixes render as prefixes works; no role markers are
hard-coded). A conversation longer than ``max_length`` tokens loses whole turns from its start, never
its last assistant turn; one whose last exchange alone does not fit is cut at the end when some of its
assistant tokens fit, else skipped and counted. ``split_holdout`` sets a seeded part aside for evaluation.
"""

from __future__ import annotations

import gzip
import itertools
import json
import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from megasense.errors import ConfigError, MegasenseInputError
from megasense.tokenization import Tokenizer

ROLES = ("system", "user", "assistant")
IGNORE = -100


class ChatDataError(MegasenseInputError):
    """A conversation line is not what the chat format expects; the message names the file and line."""


# ----------------------------------------------------------------------------------------------
# Reading conversations
# ----------------------------------------------------------------------------------------------
@dataclass
class Conversation:
    messages: list[dict[str, Any]]
    """``{"role", "content"}`` dicts; an assistant turn with ``weight`` 0 is context, not trained."""
    line: int = 0
    """Line number in ``source`` (1-based; 0 when made in code)."""
    source: str = ""


@dataclass
class ChatData:
    conversations: list[Conversation]
    source: str
    no_assistant: list[int] = field(default_factory=list)
    """Lines skipped because they have no (trained) assistant turn."""
    blank_lines: int = 0


def read_conversations(path: str | Path) -> ChatData:
    """Conversations from a ``.jsonl`` (or ``.jsonl.gz``) file, one per line; blank lines are ignored, lines without
    a trained assistant turn skipped and counted, anything else malformed refused with its line number."""
    path = Path(path)
    if not path.is_file():
        raise ChatDataError(f"{path}: no such file" if not path.exists() else f"{path}: is not a file")
    data = ChatData(conversations=[], source=str(path))
    opener = gzip.open if path.suffix == ".gz" else open
    number = 0
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    data.blank_lines += 1
                    continue
                conversation = parse_conversation(text, where=f"{path}, line {number}")
                conversation.line, conversation.source = number, str(path)
                if any(_trained(m) for m in conversation.messages):
                    data.conversations.append(conversation)
                else:
                    data.no_assistant.append(number)
    except UnicodeDecodeError as exc:
        raise ChatDataError(f"{path}, line {number + 1}: is not UTF-8 text ({exc.reason})") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ChatDataError(f"{path}: is not a readable gzip file (truncated or corrupt?): {exc}") from None
    if not data.conversations:
        raise ChatDataError(
            f"{path}: no conversation with an assistant turn ({number} lines, {len(data.no_assistant)} without "
            'one); expected lines like {"messages": [{"role": "user", "content": ...}, {"role": "assistant", ...}]}'
        )
    return data


def parse_conversation(text: str, *, where: str = "conversation") -> Conversation:
    """One line of the chat format: a JSON object whose ``messages`` is a list of ``{"role", "content"}``."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChatDataError(f"{where}: is not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ChatDataError(f'{where}: found a JSON {type(record).__name__}, expected an object with "messages"')
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        found = "no messages key" if "messages" not in record else f"messages = {_short(messages)}"
        raise ChatDataError(f'{where}: {found}; expected "messages": a non-empty list of {{"role", "content"}}')
    return Conversation(messages=[_message(m, f"{where}, message {i + 1}") for i, m in enumerate(messages)])


def _message(message: Any, where: str) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise ChatDataError(f'{where}: found {_short(message)}, expected an object with "role" and "content"')
    role = message.get("role")
    if role not in ROLES:
        raise ChatDataError(f"{where}: role {_short(role)}, expected one of {', '.join(ROLES)}")
    content = message.get("content")
    if isinstance(content, list):  # OpenAI's content parts: [{"type": "text", "text": ...}]
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            raise ChatDataError(
                f'{where}: content parts must all be {{"type": "text", "text": ...}}; found other parts'
            )
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise ChatDataError(f"{where}: content is {_short(content)}, expected a string")
    out = {"role": role, "content": content}
    if "weight" in message:  # OpenAI's fine-tuning files: weight 0 marks an assistant turn not to learn
        if role != "assistant" or message["weight"] not in (0, 1):
            raise ChatDataError(f"{where}: weight {_short(message['weight'])}, expected 0 or 1 on an assistant turn")
        out["weight"] = int(message["weight"])
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _trained(message: dict[str, Any]) -> bool:
    return message["role"] == "assistant" and message.get("weight", 1) == 1


# ----------------------------------------------------------------------------------------------
# Conversations to token ids and labels
# ----------------------------------------------------------------------------------------------
@dataclass
class ChatExample:
    input_ids: list[int]
    """The rendered conversation's tokens but the last, (T,)."""
    labels: list[int]
    """(T,) ``labels[t]`` is the token after ``input_ids[t]`` where that token is in a trained assistant turn
    (its content and its end-of-turn token), else -100: the shifted labels ``GPTModel`` takes."""
    dropped_messages: int = 0
    """Messages dropped from the start to fit ``max_length``."""
    cut: bool = False
    """The last exchange alone was too long: the tokens past ``max_length`` were cut."""


def render_chat(tokenizer: Tokenizer, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool) -> str:
    """``messages`` rendered with the tokenizer's chat template (compiled once per template by the tokenizer)."""
    return tokenizer.apply_chat_template(list(messages), add_generation_prompt=add_generation_prompt)


def assistant_token_mask(tokenizer: Tokenizer, messages: Sequence[dict[str, Any]]) -> tuple[list[int], list[bool]]:
    """The token ids of ``messages`` rendered with the chat template, and per token whether it belongs to a trained
    assistant turn (from its first content token through its end-of-turn token; the whitespace the template puts
    after that token is not learned)."""
    text = render_chat(tokenizer, messages, add_generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if not _trained(message):
            continue
        upto = render_chat(tokenizer, messages[: i + 1], add_generation_prompt=False)
        prompt = render_chat(tokenizer, messages[:i], add_generation_prompt=True) if i else None
        if not text.startswith(upto):
            raise ChatDataError(
                f"the chat template renders the conversation up to message {i + 1} differently from the start of the "
                "whole conversation, so assistant turns cannot be located; use a base whose template renders "
                "each turn independently (ChatML does)"
            )
        if prompt is not None and upto.startswith(prompt):
            start = len(prompt)
        else:  # no prompt before it, or a template that renders the generation prompt differently
            start = upto.rfind(message["content"].strip()) if message["content"].strip() else len(upto.rstrip())
            if start < 0:
                raise ChatDataError(f"the chat template does not render message {i + 1}'s content verbatim")
        spans.append((start, len(upto.rstrip())))
    encoding = tokenizer.backend.encode(text, add_special_tokens=False)
    mask = [any(s < end and e > start for start, end in spans) for s, e in encoding.offsets]
    return list(encoding.ids), mask


def encode_conversation(
    tokenizer: Tokenizer, messages: Sequence[dict[str, Any]], *, max_length: int
) -> ChatExample | None:
    """``messages`` as a training example of at most ``max_length`` tokens, or None when no assistant token fits.

    Too long: whole turns go from the start (leading system messages stay), up to the next user message each
    time, while a trained assistant turn remains; if the last exchange still does not fit, the tokens past
    ``max_length`` are cut."""
    system = list(itertools.takewhile(lambda m: m["role"] == "system", messages))
    rest = list(messages[len(system) :])
    # where the kept part may start: the start, or a user message with a trained assistant turn after it
    starts = [0] + [j for j in range(1, len(rest)) if rest[j]["role"] == "user" and any(map(_trained, rest[j:]))]
    dropped = next((j for j in starts if _length(tokenizer, system + rest[j:]) <= max_length), starts[-1])
    ids, mask = assistant_token_mask(tokenizer, system + rest[dropped:])
    cut_tail = len(ids) > max_length
    ids, mask = ids[:max_length], mask[:max_length]
    labels = [token if learn else IGNORE for token, learn in zip(ids[1:], mask[1:])]
    if all(label == IGNORE for label in labels):
        return None
    return ChatExample(input_ids=ids[:-1], labels=labels, dropped_messages=dropped, cut=cut_tail)


def _length(tokenizer: Tokenizer, messages: Sequence[dict[str, Any]]) -> int:
    text = render_chat(tokenizer, messages, add_generation_prompt=False)
    return len(tokenizer.backend.encode(text, add_special_tokens=False).ids)


@dataclass
class EncodedChats:
    examples: list[ChatExample]
    too_long: list[int] = field(default_factory=list)
    """Lines (or indices, for conversations made in code) skipped: no assistant token fits ``max_length``."""

    @property
    def shortened(self) -> int:
        return sum(1 for e in self.examples if e.dropped_messages or e.cut)

    @property
    def assistant_tokens(self) -> int:
        return sum(sum(1 for y in e.labels if y != IGNORE) for e in self.examples)


def encode_conversations(
    tokenizer: Tokenizer, conversations: Iterable[Conversation | Sequence[dict[str, Any]]], *, max_length: int
) -> EncodedChats:
    out = EncodedChats(examples=[])
    for i, conversation in enumerate(conversations):
        messages = conversation.messages if isinstance(conversation, Conversation) else conversation
        line = conversation.line if isinstance(conversation, Conversation) else i
        try:
            example = encode_conversation(tokenizer, messages, max_length=max_length)
        except ChatDataError as exc:
            where = f"{conversation.source}, line {line}" if isinstance(conversation, Conversation) else f"#{i}"
            raise ChatDataError(f"{where}: {exc}") from None
        if example is None:
            out.too_long.append(line)
        else:
            out.examples.append(example)
    return out


# ----------------------------------------------------------------------------------------------
# A held-out part
# ----------------------------------------------------------------------------------------------
class _HoldoutSettings(Protocol):
    """What ``split_holdout`` reads of a ``ChatTrainConfig``."""

    @property
    def holdout(self) -> float: ...
    @property
    def max_holdout(self) -> int: ...
    @property
    def seed(self) -> int: ...


def split_holdout(
    conversations: list[Conversation], config: _HoldoutSettings
) -> tuple[list[Conversation], list[Conversation]]:
    """(train, held out): a seeded ``holdout`` fraction of ``conversations``, at most ``max_holdout``."""
    n = min(config.max_holdout, round(len(conversations) * config.holdout))
    if config.holdout > 0 and n == 0:
        n = 1
    if n and len(conversations) - n < 1:
        raise ConfigError(
            f"{len(conversations)} conversation(s) cannot be split into training and held-out data; give a "
            "validation file or train.holdout=0"
        )
    order = list(range(len(conversations)))
    random.Random(config.seed).shuffle(order)
    held = set(order[:n])
    return [c for i, c in enumerate(conversations) if i not in held], [conversations[i] for i in sorted(held)]


# ----------------------------------------------------------------------------------------------
# Prompt/response pairs (``megasense train PAIRS.csv --task generate``)
# ----------------------------------------------------------------------------------------------
PAIR_COLUMNS = (("prompt", "response"), ("text", "summary"))
"""The column pairs a pairs table may have, in the order they are looked for."""

SUMMARY_INSTRUCTION = "Summarize the text."
"""What a ``text``/``summary`` pair's user turn asks before the text; ``summaries`` asks a model fine-tuned on pairs
the same (``pair_messages``), so it is prompted as it was trained."""


def pair_messages(prompt: str, response: str | None = None, *, summary: bool = False) -> list[dict[str, str]]:
    """A pair as chat messages: the user's prompt (after ``SUMMARY_INSTRUCTION`` for a text to summarize) and, when
    given, the assistant's response: one exchange, so chat fine-tuning learns the response alone."""
    user = f"{SUMMARY_INSTRUCTION}\n\n{prompt}" if summary else prompt
    messages = [{"role": "user", "content": user}]
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages


def read_pairs(path: str | Path) -> ChatData:
    """Conversations of one exchange from a table (CSV, TSV, JSONL, Parquet) with ``prompt`` and ``response`` columns,
    or ``text`` and ``summary`` (the text asked to be summarized); rows with an empty prompt or response are skipped
    and counted by row number."""
    from megasense.files.tables import read_chunks, text_column

    path = Path(path)
    data = ChatData(conversations=[], source=str(path))
    columns: tuple[str, str] | None = None
    rows = 0
    for chunk in read_chunks(path):
        if columns is None:
            columns = next((pair for pair in PAIR_COLUMNS if set(pair) <= set(chunk.frame.columns)), None)
            if columns is None:
                found = ", ".join(map(repr, chunk.frame.columns))
                raise ChatDataError(
                    f"{path}: expected columns prompt and response (or text and summary) for --task generate; the "
                    f"columns are: {found}"
                )
        prompts, responses = text_column(chunk.frame, columns[0]), text_column(chunk.frame, columns[1])
        for offset, (prompt, response) in enumerate(zip(prompts, responses)):
            row = chunk.first_row + offset
            rows += 1
            if not prompt.strip() or not response.strip():
                data.no_assistant.append(row)
                continue
            messages = pair_messages(prompt, response, summary=columns == ("text", "summary"))
            data.conversations.append(Conversation(messages=messages, line=row, source=str(path)))
    if not data.conversations:
        raise ChatDataError(
            f"{path}: no row with both a prompt and a response ({rows} rows, {len(data.no_assistant)} with one empty)"
        )
    return data
