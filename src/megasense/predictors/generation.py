"""Prompts in, text out: plain or chat prompts to continuations with any GPT-family model, whole or streamed.

``TextGenerator`` turns text into token ids for the generation engine (``megasense.inference.generation``,
which sees only ids) and the ids it returns back into text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from megasense.config import GenerationConfig
from megasense.errors import MegasenseInputError
from megasense.formats.release import LoadedModel
from megasense.inference.generation import Generation, GenerationEngine
from megasense.predictors.texts import check_texts, require_text_model


class TextGenerator:
    """Prompts (plain or chat) -> generated text, with the tokenizer's end tokens as stop tokens."""

    def __init__(self, loaded: LoadedModel) -> None:
        require_text_model(loaded, arch="gpt", needs="generation needs a decoder")
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        stops = {i for i in (self.tokenizer.eos_id,) if i is not None}
        chat_end = self.tokenizer.token_to_id("<|im_end|>")  # ChatML models end a turn with it
        if chat_end is not None:
            stops.add(chat_end)
        self.engine = GenerationEngine(loaded.model, eos_token_ids=sorted(stops), pad_token_id=self.tokenizer.pad_id)

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
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
            return self.tokenizer.encode(text, add_special_tokens=False)
        ids = self.tokenizer.encode(prompt)  # the tokenizer's post-processor adds BOS where the model wants it
        if not ids:
            raise MegasenseInputError("the prompt is empty: give at least one character of text")
        return ids

    def generate(
        self, prompts: Sequence[str] | str, config: GenerationConfig, *, chat: bool | None = None
    ) -> list[tuple[str, Generation]]:
        """(text, generation) for each prompt; the text excludes the prompt and the stop token."""
        prompts = check_texts(prompts)
        ids = [self.prompt_ids(p, chat=chat) for p in prompts]
        generations = self.engine.generate(ids, config)
        return [(self.tokenizer.decode(g.tokens), g) for g in generations]

    def stream(self, prompt: str, config: GenerationConfig, *, chat: bool | None = None) -> Iterator[str]:
        """Yield pieces of text as tokens arrive; joined, they equal the full generation's text.

        Decoding token by token would split multi-byte characters (a Chinese character is often
        two or three byte-level tokens), so each step decodes everything so far and yields only the
        new suffix, holding back a trailing replacement character until it completes.
        """
        ids = [self.prompt_ids(prompt, chat=chat)]
        tokens: list[int] = []
        shown = ""
        for step in self.engine.stream(ids, config):
            if step[0] is None:
                break
            tokens.append(step[0])
            text = self.tokenizer.decode(tokens)
            if text.endswith("\ufffd"):
                continue
            if text.startswith(shown):
                yield text[len(shown) :]
                shown = text
        final = self.tokenizer.decode(tokens)
        if final != shown and final.startswith(shown):
            yield final[len(shown) :]
