"""``megasense generate``: continue a prompt, or answer it as a chat, with a decoder model."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from megasense.cli.errors import user_errors
from megasense.errors import MegasenseInputError

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
    min_p: Annotated[float, typer.Option(help="Keep tokens >= min_p x the top one's probability (0: off).")] = 0.0,
    no_repeat_ngram_size: Annotated[int, typer.Option(help="Never repeat an n-gram of this size (0: off).")] = 0,
    min_new_tokens: Annotated[int, typer.Option(help="Suppress the end token until this many new tokens.")] = 0,
    beams: Annotated[int, typer.Option(help="Beam search width (1: off).")] = 1,
    length_penalty: Annotated[float, typer.Option(help="Beam scores are divided by length**this (>1: longer).")] = 1.0,
    early_stopping: Annotated[
        str, typer.Option(help="Beam search stops: 'false' (heuristic), 'true' (num_beams finished) or 'never'.")
    ] = "false",
    num_return_sequences: Annotated[
        int, typer.Option("--num-return-sequences", "-n", help="Outputs to print: the best beams, or samples.")
    ] = 1,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string: the text ends before it (repeatable).")] = None,
    precision: Annotated[
        str, typer.Option(help="auto (fastest measured; int4 on CPU), fp32 (exact), fp32-packed, bf16, int8, int4.")
    ] = "auto",
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible sampling.")] = None,
    chat: Annotated[
        bool | None,
        typer.Option("--chat/--no-chat", help="Wrap the prompt in the model's chat template (default: if it has one)."),
    ] = None,
    stream: Annotated[bool, typer.Option(help="Print tokens as they are generated.")] = True,
) -> None:
    """Generate text: greedy, sampling (temperature, top-k, top-p, min-p), or beam search; streamed as it comes.

    Options mean what they mean in Hugging Face generate. Greedy and sampled text streams as it is generated;
    beam search and several outputs (-n) print when done, best first. The default precision runs 4-bit weights
    on CPU (the GGUF's own precision; see benchmarks/generation.py for speed and the measured quality delta);
    --precision fp32 gives the exact reference path.

    Examples:

      megasense generate "What is sentiment analysis?"

      megasense generate "Once upon a time" --no-chat --sample --top-p 0.9 --min-p 0.05 --seed 1 -n 3

      megasense generate "Summarise: ..." --beams 4 --length-penalty 1.2 --no-repeat-ngram-size 3 --stop "\n\n"
    """
    from megasense.config import GenerationConfig
    from megasense.inference.generation import resolve_generation_precision
    from megasense.predictors.generation import TextGenerator
    from megasense.zoo.load import load_model

    with user_errors():
        flags = {"true": True, "false": False, "never": "never"}
        if early_stopping.lower() not in flags:
            raise MegasenseInputError(f"--early-stopping {early_stopping!r}: expected true, false or never")
        resolve_generation_precision(precision)  # a misspelt --precision fails before the model loads
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repetition_penalty=repetition_penalty,
            no_repeat_ngram_size=no_repeat_ngram_size,
            min_new_tokens=min_new_tokens,
            num_beams=beams,
            length_penalty=length_penalty,
            early_stopping=flags[early_stopping.lower()],
            num_return_sequences=num_return_sequences,
            seed=seed,
        )
        generator = TextGenerator(load_model(model), precision=precision)
        if stream and beams == 1 and num_return_sequences == 1:
            for piece in generator.stream(prompt, config, chat=chat, stop=stop or ()):
                console.out(piece, end="", highlight=False)
            console.out("")
            return
        results = generator.generate([prompt], config, chat=chat, stop=stop or ())
        for i, (text, _) in enumerate(results):
            if len(results) > 1:
                console.rule(f"{i + 1} of {len(results)}")
            console.out(text, highlight=False)
