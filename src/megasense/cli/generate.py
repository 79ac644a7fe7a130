"""``megasense generate``: continue a prompt, or answer it as a chat, with a decoder model."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from megasense.cli.errors import user_errors

console = Console()


def generate(
    prompt: Annotated[str, typer.Argument(help="The prompt (a user message when --chat is on).")],
    model: Annotated[str, typer.Option(help="Embedded model name or model directory.")] = "smollm2-135m-instruct",
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens to generate.")] = 128,
    sample: Annotated[bool, typer.Option("--sample/--greedy", help="Sample instead of greedy decoding.")] = False,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (with --sample).")] = 0.7,
    top_k: Annotated[int, typer.Option(help="Sample among the k likeliest tokens (0: off).")] = 0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold (1.0: off).")] = 1.0,
    repetition_penalty: Annotated[float, typer.Option(help="Penalise repeated tokens (1.0: off).")] = 1.0,
    beams: Annotated[int, typer.Option(help="Beam search width (1: off).")] = 1,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible sampling.")] = None,
    chat: Annotated[
        bool | None,
        typer.Option("--chat/--no-chat", help="Wrap the prompt in the model's chat template (default: if it has one)."),
    ] = None,
    stream: Annotated[bool, typer.Option(help="Print tokens as they are generated.")] = True,
) -> None:
    """Generate text: greedy, sampling (temperature, top-k, top-p), or beam search; streamed as it comes.

    Examples:

      megasense generate "What is sentiment analysis?"

      megasense generate "Once upon a time" --no-chat --sample --top-p 0.9 --seed 1
    """
    from megasense.config import GenerationConfig
    from megasense.predictors.generation import TextGenerator
    from megasense.zoo.load import load_model

    with user_errors():
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            num_beams=beams,
            seed=seed,
        )
        generator = TextGenerator(load_model(model))
        if stream and beams == 1:
            for piece in generator.stream(prompt, config, chat=chat):
                console.out(piece, end="", highlight=False)
            console.out("")
            return
        text, _ = generator.generate([prompt], config, chat=chat)[0]
        console.out(text, highlight=False)
