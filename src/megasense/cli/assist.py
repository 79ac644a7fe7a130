"""``megasense assist`` (one utterance: intent, emotion, sentiment, recommended features, a reply) and
``megasense chat`` (a multi-turn conversation, with a catalogue grounded like ``assist``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from megasense.cli.errors import user_errors

console = Console()

CatalogueOption = Annotated[
    Path | None,
    typer.Option(
        "--catalogue",
        "-c",
        help="The product's feature catalogue (TOML, [[feature]] tables); e.g. examples/assistant/smart-speaker.toml.",
    ),
]
IntentOption = Annotated[str, typer.Option(help="Intent model: intent-en or a classifier directory.")]
EmotionOption = Annotated[str, typer.Option(help="Emotion model: emotion-en, a directory, or '' for none.")]
ChatModelOption = Annotated[
    str, typer.Option(help="Decoder for replies: smollm2-135m-instruct, a directory, or '' (template replies).")
]
SlotsOption = Annotated[
    str | None, typer.Option(help="A slot model's directory (train --task slots), beside the rules.")
]


def assist(
    text: Annotated[str, typer.Argument(help="What the user said.")],
    catalogue: CatalogueOption = None,
    history: Annotated[
        Path | None,
        typer.Option(
            help="Usage history, JSONL: one {time, user, feature, event} object per line (event: used, "
            "dismissed, shown, opened)."
        ),
    ] = None,
    user: Annotated[str | None, typer.Option(help="Whose history to use (needed when it holds several users).")] = None,
    top: Annotated[int, typer.Option("--top", "-k", help="Most features to recommend.")] = 3,
    reply: Annotated[
        bool, typer.Option("--reply/--no-reply", help="Write a reply (the chat model or a template).")
    ] = True,
    json_out: Annotated[bool, typer.Option("--json", help="Print the whole answer as one JSON object.")] = False,
    intent_model: IntentOption = "intent-en",
    emotion_model: EmotionOption = "emotion-en",
    chat_model: ChatModelOption = "smollm2-135m-instruct",
    slots_model: SlotsOption = None,
) -> None:
    """Answer one utterance as a product's assistant: its intent (or out of scope), emotion, sentiment and
    slots; the catalogue features to offer, each with its reason; and a reply grounded on the top feature.

    Examples:

      megasense assist "set an alarm for seven" -c examples/assistant/smart-speaker.toml

      megasense assist "ugh, the timer went off again for nothing" -c examples/assistant/smart-speaker.toml \\
          --history examples/assistant/history.jsonl --user alex --json
    """
    from megasense.api import load_assistant

    with user_errors():
        if top < 1:
            raise typer.BadParameter(f"--top {top}: recommend at least 1 feature")
        assistant = load_assistant(
            _require(catalogue),
            intent_model=intent_model,
            emotion_model=emotion_model or None,
            chat_model=chat_model or None,
            slots_model=slots_model,
            history=history,
        )
        session = assistant.session(user)
        result = assistant.assist(text, session=session, k=top, reply=reply)
        if json_out:
            console.out(json.dumps(result.to_dict(), ensure_ascii=False, indent=2), highlight=False)
            return
        _print_result(result.to_dict())


def chat(
    catalogue: CatalogueOption = None,
    model: ChatModelOption = "smollm2-135m-instruct",
    system: Annotated[str | None, typer.Option(help="System message (plain chat, without --catalogue).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens per reply.")] = 128,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 is greedy (plain chat).")] = 0.0,
    history: Annotated[Path | None, typer.Option(help="Usage history JSONL (with --catalogue).")] = None,
    user: Annotated[str | None, typer.Option(help="Whose history to use.")] = None,
    intent_model: IntentOption = "intent-en",
    emotion_model: EmotionOption = "emotion-en",
    show: Annotated[
        bool, typer.Option("--show/--no-show", help="With --catalogue: print intent, slots and features each turn.")
    ] = True,
) -> None:
    """Talk with a decoder, turn by turn. The conversation is kept and cut to the model's context (oldest turns
    first). With --catalogue it is the product's assistant: each turn is understood in context ("and
    tomorrow?" keeps the intent and the city), and the reply is grounded on the catalogue and checked.

    Type /reset to start over, /exit (or Ctrl-D) to leave. Lines piped on standard input are the user's
    turns, one per line, so a conversation can be scripted.

    Examples:

      megasense chat -c examples/assistant/smart-speaker.toml

      printf "what's the weather in Paris?\\nand tomorrow?\\n" | megasense chat -c examples/assistant/smart-speaker.toml
    """
    from megasense.api import load_assistant
    from megasense.config import GenerationConfig
    from megasense.predictors.generation import TextGenerator
    from megasense.zoo.load import load_model

    with user_errors():
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=temperature > 0, temperature=temperature or 1.0
        )
        if catalogue is not None:
            assistant = load_assistant(
                catalogue,
                intent_model=intent_model,
                emotion_model=emotion_model or None,
                chat_model=model or None,
                history=history,
            )
            session = assistant.session(user)
            respond = lambda line: _assistant_turn(assistant, session, line, show)  # noqa: E731
            reset = session.reset
        else:
            if not model:
                raise typer.BadParameter("--model '' needs --catalogue (template replies come from a catalogue)")
            generator = TextGenerator(load_model(model))
            messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
            respond = lambda line: _plain_turn(generator, messages, line, config)  # noqa: E731
            reset = lambda: messages.__delitem__(slice(1 if system else 0, None))  # noqa: E731
        interactive = sys.stdin.isatty()
        if interactive:
            console.print("[dim]/reset starts over, /exit leaves[/dim]")
        while True:
            try:
                line = console.input("[bold]you>[/bold] ") if interactive else sys.stdin.readline()
            except (EOFError, KeyboardInterrupt):
                break
            if not interactive and line == "":
                break
            line = line.strip()
            if not line:
                continue
            if line in ("/exit", "/quit"):
                break
            if line == "/reset":
                reset()
                console.print("[dim](conversation cleared)[/dim]")
                continue
            if not interactive:
                console.print(f"[bold]you>[/bold] {line}", highlight=False)
            respond(line)


def _assistant_turn(assistant, session, line: str, show: bool) -> None:
    result = assistant.assist(line, session=session).to_dict()
    if show:
        features = ", ".join(f"{r['name']} ({r['kind']})" for r in result["recommendations"]) or "none"
        slots = ", ".join(f"{k}={v}" for k, v in result["slots"].items()) or "-"
        intent = result["intent"] or "out of scope"
        carried = " (follow-up)" if result["carried_intent"] else ""
        emotions = ", ".join(result["emotions"]) or "-"
        console.print(
            f"[dim]intent {intent}{carried} | slots {slots} | emotion {emotions} | features {features}[/dim]",
            highlight=False,
        )
    console.out(f"assistant> {result['reply']}", highlight=False)


def _plain_turn(generator, messages: list[dict[str, str]], line: str, config) -> None:
    messages.append({"role": "user", "content": line})
    stream = generator.stream_chat(messages, config)
    console.out("assistant> ", end="", highlight=False)
    for piece in stream:
        console.out(piece, end="", highlight=False)
    console.out("")
    reply = stream.reply
    if reply.dropped_messages:  # kept here; each turn the model reads the newest that fit its context
        console.print(f"[dim](the oldest {reply.dropped_messages} messages no longer fit the context)[/dim]")
    messages.append({"role": "assistant", "content": reply.text})


def _require(catalogue: Path | None) -> Path:
    if catalogue is None:
        raise typer.BadParameter(
            "--catalogue is required: the product's features as TOML (try examples/assistant/smart-speaker.toml)"
        )
    return catalogue


def _print_result(result: dict) -> None:
    intent = result["intent"] or "out of scope"
    if result["carried_intent"]:
        intent += " (carried over)"
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("intent", f"{intent}  {result['intent_score']:.2f}")
    table.add_row("slots", ", ".join(f"{k}={v}" for k, v in result["slots"].items()) or "-")
    table.add_row("emotion", ", ".join(result["emotions"]) or "-")
    if result["sentiment"]:
        table.add_row("sentiment", f"{result['sentiment']}  {result['sentiment_score']:.2f}")
    console.print(table)
    if result["recommendations"]:
        recs = Table(title="recommended features", title_justify="left")
        for column in ("#", "feature", "kind", "why"):
            recs.add_column(column)
        for i, rec in enumerate(result["recommendations"], 1):
            recs.add_row(str(i), rec["name"], rec["kind"], rec["reason"])
        console.print(recs)
    else:
        console.print("recommended features: none (nothing in the catalogue serves this request)")
    if result["reply"]:
        source = result["reply_source"] + (f": {result['reply_problem']}" if result["reply_problem"] else "")
        console.out(f"reply: {result['reply']}", highlight=False)
        console.print(f"[dim](reply from the {source})[/dim]", highlight=False)
