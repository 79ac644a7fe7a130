"""Prompts in, text out: plain or chat prompts to continuations with any GPT-family model, whole or streamed.

``TextGenerator`` turns text into token ids for the generation engine (``megasense.inference.generation``,
which sees only ids) and the ids it returns back into text.

Multi-turn chat takes OpenAI-style messages (``[{"role": "system" | "user" | "assistant", "content": str}]``):
``chat_ids`` renders them with the model's chat template and fits them to the context (the system messages
stay; the oldest whole user/assistant turns go first; a last turn too long alone loses its start, and the
``ChatPrompt`` says so). ``stream_chat`` yields the reply in pieces of text as it is generated, cut at the
first stop string if one is given (a tail that could begin a stop string is held back until it cannot);
``chat`` is the same stream read to its end, so a whole reply and a streamed one are the same text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass

from megasense.config import GenerationConfig
from megasense.errors import MegasenseInputError
from megasense.formats.release import LoadedModel
from megasense.inference.generation import Generation, GenerationEngine
from megasense.predictors.texts import check_texts, require_text_model
from megasense.tokenization import Tokenizer

CHAT_ROLES = ("system", "user", "assistant")
"""The roles a chat message may have."""

FINISH_REASONS = ("stop", "length")
"""Why a reply ended: ``stop`` (an end token or a stop string), ``length`` (max_new_tokens reached)."""


@dataclass(frozen=True)
class ChatPrompt:
    """A conversation rendered for the model, fitted to its context."""

    ids: list[int]
    """Token ids of the rendered conversation, ending with the template's opening of the assistant's turn."""
    dropped_messages: int = 0
    """The oldest user/assistant messages left out so the conversation fits (system messages always stay)."""
    last_turn_cut: bool = False
    """Even the last turn alone did not fit: its user message was cut from the left (its start is lost)."""

    @property
    def truncated(self) -> bool:
        return self.dropped_messages > 0 or self.last_turn_cut


@dataclass(frozen=True)
class ChatReply:
    """A whole reply: its text, why it ended, and the tokens it took."""

    text: str
    finish_reason: str
    """One of ``FINISH_REASONS``."""
    prompt_tokens: int
    completion_tokens: int
    """Tokens generated (the end token not counted; with a stop string, up to the token that completed it)."""
    dropped_messages: int = 0
    last_turn_cut: bool = False


class ChatStream:
    """A reply as it is generated: iterate it for pieces of text (joined, they are ``reply.text``); once the
    iteration has ended, ``reply`` holds the whole reply. ``close()`` stops the generation early.

    Any source of text can be one: ``pieces`` is a generator that yields strings and returns
    ``(finish_reason, completion_tokens)``, so a caller may stand its own reply in for the model's
    (``ChatStream.of_text``)."""

    def __init__(self, pieces: Generator[str, None, tuple[str, int]], prompt: ChatPrompt) -> None:
        self.prompt = prompt
        self._pieces = pieces
        self._text: list[str] = []
        self._reply: ChatReply | None = None

    @classmethod
    def of_text(
        cls, text: str, prompt: ChatPrompt, *, completion_tokens: int, finish_reason: str = "stop"
    ) -> ChatStream:
        """A stream of one piece: a reply made some other way than by generating (a template, say)."""

        def pieces() -> Generator[str, None, tuple[str, int]]:
            if text:
                yield text
            return finish_reason, completion_tokens

        return cls(pieces(), prompt)

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self._reply is not None:
            raise StopIteration
        while True:
            try:
                piece = next(self._pieces)
            except StopIteration as end:
                finish_reason, completion_tokens = end.value
                self._reply = ChatReply(
                    text="".join(self._text),
                    finish_reason=finish_reason,
                    prompt_tokens=len(self.prompt.ids),
                    completion_tokens=completion_tokens,
                    dropped_messages=self.prompt.dropped_messages,
                    last_turn_cut=self.prompt.last_turn_cut,
                )
                raise StopIteration from None
            if piece:
                self._text.append(piece)
                return piece

    def close(self) -> None:
        """Stop generating (the reply stays unfinished)."""
        self._pieces.close()

    @property
    def reply(self) -> ChatReply:
        if self._reply is None:
            raise RuntimeError("the reply is not finished: iterate the stream to its end first (or call read())")
        return self._reply

    def read(self) -> ChatReply:
        """The whole reply (the pieces not read yet are generated now)."""
        for _ in self:
            pass
        return self.reply


class TextGenerator:
    """Prompts (plain or chat) -> generated text, with the tokenizer's end tokens as stop tokens."""

    def __init__(self, loaded: LoadedModel, *, context_tokens: int | None = None, precision: str = "auto") -> None:
        """``context_tokens``: the most tokens (prompt + reply) a chat may take; default, and at most, the model's
        ``max_position_embeddings``. ``precision``: how the engine runs the model (``GENERATION_PRECISIONS``);
        ``auto`` is the fastest path measured to keep quality, ``fp32`` the exact one."""
        require_text_model(loaded, arch="gpt", needs="generation needs a decoder")
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        positions = loaded.config.max_position_embeddings
        if context_tokens is not None and not 2 <= context_tokens <= positions:
            raise MegasenseInputError(f"context_tokens={context_tokens} must be 2 to the model's {positions} positions")
        self.context_tokens = context_tokens or positions
        stops = {i for i in (self.tokenizer.eos_id,) if i is not None}
        chat_end = self.tokenizer.token_to_id("<|im_end|>")  # ChatML models end a turn with it
        if chat_end is not None:
            stops.add(chat_end)
        self.engine = GenerationEngine(
            loaded.model, eos_token_ids=sorted(stops), pad_token_id=self.tokenizer.pad_id, precision=precision
        )

    @property
    def has_chat_template(self) -> bool:
        return bool(self.tokenizer.chat_template)

    def prompt_ids(self, prompt: str, *, chat: bool | None = None, system: str | None = None) -> list[int]:
        """Token ids of a prompt; ``chat`` (default: when the model has a template) wraps it as a user turn."""
        if chat is None:
            chat = self.has_chat_template
        if chat:
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}
            ]
            return self._render(messages)
        ids = self.tokenizer.encode(prompt)  # the tokenizer's post-processor adds BOS where the model wants it
        if not ids:
            raise MegasenseInputError("the prompt is empty: give at least one character of text")
        return ids

    def generate(
        self,
        prompts: Sequence[str] | str,
        config: GenerationConfig,
        *,
        chat: bool | None = None,
        stop: Sequence[str] = (),
    ) -> list[tuple[str, Generation]]:
        """(text, generation) for each prompt (``num_return_sequences`` in a row per prompt); the text excludes
        the prompt and the stop token, and ends before the first of the ``stop`` strings (the generation's
        tokens stay whole; its finish reason becomes ``stop``)."""
        prompts = check_texts(prompts)
        stops = check_stop(stop)
        ids = [self.prompt_ids(p, chat=chat) for p in prompts]
        results = []
        for g in self.engine.generate(ids, config):
            text = self.tokenizer.decode(g.tokens)
            cut = _first_stop(text, stops)
            if cut is not None:
                text, g.finish_reason = text[:cut], "stop"
            results.append((text, g))
        return results

    def stream(
        self, prompt: str, config: GenerationConfig, *, chat: bool | None = None, stop: Sequence[str] = ()
    ) -> Iterator[str]:
        """Yield pieces of text as tokens arrive; joined, they equal the full generation's text (cut before the
        first of the ``stop`` strings, if one appears)."""
        yield from _pieces(self.engine, self.tokenizer, self.prompt_ids(prompt, chat=chat), config, check_stop(stop))

    # ------------------------------------------------------------------------------------------
    # Multi-turn chat
    # ------------------------------------------------------------------------------------------
    def chat_ids(self, messages: Sequence[Mapping[str, str]], max_new_tokens: int) -> ChatPrompt:
        """``messages`` rendered with the chat template, fitted to ``context_tokens - max_new_tokens`` tokens.

        Too long, the conversation loses its oldest whole turns first (a user message and the assistant
        messages after it), keeping every system message; if the last turn alone does not fit, its user
        message is cut from the left. A ``MegasenseInputError`` when even that cannot fit (the system messages
        fill the room) or ``max_new_tokens`` leaves none."""
        if not self.has_chat_template:
            raise MegasenseInputError(
                f"{self.loaded.path}: the model has no chat template; chat needs an instruction-tuned decoder "
                "such as smollm2-135m-instruct"
            )
        conversation = check_messages(messages)
        budget = self.context_tokens - max_new_tokens
        if budget < 1:
            raise MegasenseInputError(
                f"max_new_tokens={max_new_tokens} leaves no room for the conversation in the model's context of "
                f"{self.context_tokens} tokens; ask for at most {self.context_tokens - 1} new tokens"
            )
        ids = self._render(conversation)
        if len(ids) <= budget:
            return ChatPrompt(ids)
        system = [i for i, m in enumerate(conversation) if m["role"] == "system"]
        others = [i for i, m in enumerate(conversation) if m["role"] != "system"]
        # where each turn starts among the other messages: at each user message (or each message, with none)
        starts = [k for k, i in enumerate(others) if conversation[i]["role"] == "user"] or list(range(len(others)))
        if not starts:
            raise MegasenseInputError(
                f"the system messages take {len(ids)} tokens; with max_new_tokens={max_new_tokens} at most {budget} "
                f"fit in the model's context of {self.context_tokens}: shorten them"
            )
        if starts[0] != 0:
            starts.insert(0, 0)

        def keeping(first: int) -> list[dict[str, str]]:
            """The system messages and the other messages from the ``first`` on, in their order."""
            return [dict(conversation[i]) for i in sorted(system + others[first:])]

        lo, hi, best = 1, len(starts) - 1, None  # fits(dropping k turns) only gets truer as k grows: bisect
        while lo <= hi:
            mid = (lo + hi) // 2
            candidate = self._render(keeping(starts[mid]))
            if len(candidate) <= budget:
                best, hi = (starts[mid], candidate), mid - 1
            else:
                lo = mid + 1
        if best is not None:
            return ChatPrompt(best[1], dropped_messages=best[0])
        return self._cut_last_turn(keeping(starts[-1]), conversation[others[starts[-1]]], starts[-1], budget)

    def _cut_last_turn(
        self, kept: list[dict[str, str]], first: Mapping[str, str], dropped: int, budget: int
    ) -> ChatPrompt:
        """Cut the first message of the last turn (``first``, the user's) from the left until ``kept`` fits."""
        target = next(k for k, m in enumerate(kept) if m == first)
        kept[target]["content"] = ""
        overhead = len(self._render(kept))
        room = budget - overhead
        content_ids = self.tokenizer.encode(first["content"], add_special_tokens=False)
        while room >= 1:
            # decoding a cut through a multi-byte character leaves a replacement character: drop it
            kept[target]["content"] = self.tokenizer.decode(content_ids[-room:], skip_special_tokens=False).lstrip(
                "\ufffd"
            )
            ids = self._render(kept)
            if len(ids) <= budget:
                return ChatPrompt(ids, dropped_messages=dropped, last_turn_cut=True)
            room -= len(ids) - budget  # tokens merge differently at the cut: take off what is still over
        raise MegasenseInputError(
            f"the conversation does not fit the model's context of {self.context_tokens} tokens: without the text "
            f"of its last user message it already takes {overhead} (the system messages, the messages after it and "
            f"the chat template) of the {budget} left beside max_new_tokens={self.context_tokens - budget}; "
            "shorten the system message or ask for fewer new tokens"
        )

    def stream_chat(
        self, messages: Sequence[Mapping[str, str]], config: GenerationConfig, *, stop: Sequence[str] = ()
    ) -> ChatStream:
        """The assistant's reply to ``messages`` as it is generated, cut before the first ``stop`` string."""
        stops = check_stop(stop)
        prompt = self.chat_ids(messages, config.max_new_tokens)
        return ChatStream(_pieces(self.engine, self.tokenizer, prompt.ids, config, stops), prompt)

    def chat(
        self, messages: Sequence[Mapping[str, str]], config: GenerationConfig, *, stop: Sequence[str] = ()
    ) -> ChatReply:
        """The assistant's whole reply to ``messages`` (``stream_chat`` read to its end)."""
        return self.stream_chat(messages, config, stop=stop).read()

    def _render(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)


def check_messages(messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """The messages as plain dicts of role and content, or a ``MegasenseInputError`` naming the first bad one."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise MegasenseInputError(f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages)}")
    if not messages:
        raise MegasenseInputError("messages is empty: give at least one message (a user's)")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise MegasenseInputError(f"messages[{i}] is a {type(message).__name__}, expected a dict")
        role, content = message.get("role"), message.get("content")
        if role not in CHAT_ROLES:
            raise MegasenseInputError(f"messages[{i}].role={role!r}: expected one of {', '.join(CHAT_ROLES)}")
        if not isinstance(content, str):
            raise MegasenseInputError(f"messages[{i}].content is a {type(content).__name__}, expected a string")
        checked.append({"role": role, "content": content})
    return checked


def check_stop(stop: Sequence[str] | str) -> tuple[str, ...]:
    """Stop strings as a tuple (one string is one stop string); an empty one would stop at once: refused."""
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    for i, s in enumerate(stops):
        if not isinstance(s, str) or not s:
            raise MegasenseInputError(f"stop[{i}]={s!r}: stop strings must be non-empty strings")
    return stops


class _IncrementalText:
    """The text of a growing list of tokens, as the new piece each token adds.

    Each step decodes only the tokens since the last piece, behind one piece's tokens of context (vLLM's
    prefix and read offsets), not the whole list; a token that ends inside a multi-byte character (a Chinese
    character is often two or three byte-level tokens) adds nothing until the character is complete."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.prefix = 0  # the context: tokens[prefix:read] were decoded already
        self.read = 0

    def add(self, token: int) -> str:
        self.tokens.append(token)
        before, now = self._decode()
        if len(now) <= len(before) or now.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(self.tokens)
        return now[len(before) :]

    def flush(self) -> str:
        """What is still held back at the end (an unfinished character shows as a replacement character, as in a
        decode of every token)."""
        before, now = self._decode()
        return now[len(before) :] if len(now) > len(before) else ""

    def _decode(self) -> tuple[str, str]:
        decode = self.tokenizer.decode
        return decode(self.tokens[self.prefix : self.read]), decode(self.tokens[self.prefix :])


def _pieces(
    engine: GenerationEngine, tokenizer: Tokenizer, ids: list[int], config: GenerationConfig, stops: tuple[str, ...]
) -> Generator[str, None, tuple[str, int]]:
    """Pieces of the continuation of ``ids``; returns ``(finish_reason, tokens generated)``.

    With stop strings, the text is cut before the first one and generation ends there; a tail of the text that
    could be the start of a stop string is held back until the next tokens show whether it is."""
    if config.num_return_sequences != 1:
        raise MegasenseInputError(
            f"num_return_sequences={config.num_return_sequences}: a stream is one reply; use generate for several"
        )
    text = _IncrementalText(tokenizer)
    pending = ""  # decoded but not yielded yet (a possible start of a stop string)
    generated, finish = 0, "length"
    with contextlib.closing(engine.stream([ids], config)) as steps:  # closing frees the KV cache at once
        for (token,) in steps:
            if token is None:
                finish = "stop"
                break
            generated += 1
            pending += text.add(token)
            cut = _first_stop(pending, stops)
            if cut is not None:
                if cut:
                    yield pending[:cut]
                return "stop", generated
            ready = len(pending) - _stop_prefix_length(pending, stops)
            if ready:
                yield pending[:ready]
                pending = pending[ready:]
    pending += text.flush()
    cut = _first_stop(pending, stops)
    if cut is not None:
        pending, finish = pending[:cut], "stop"
    if pending:
        yield pending
    return finish, generated


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the first stop string in ``text`` begins, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def _stop_prefix_length(text: str, stops: tuple[str, ...]) -> int:
    """The length of the longest end of ``text`` that is the start of a stop string (to hold back)."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest
